//! `auth-service serve` | `auth-service migrate up|down [N]|status`.

use std::process::ExitCode;

use auth_service::config::Config;
use auth_service::startup::{self, Application};
use auth_service::{db, telemetry};

const USAGE: &str = "usage: auth-service [serve]
       auth-service migrate up|down [N]|status
       auth-service keys rotate    (JWT_ALGORITHM=EdDSA: new signing key, old one verifies until its tokens expire)

Settings come from the environment; see .env.example.";

enum Command {
    Serve,
    MigrateUp,
    MigrateDown(usize),
    MigrateStatus,
    RotateKeys,
}

fn parse(args: &[String]) -> Result<Command, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["serve"] => Ok(Command::Serve),
        ["migrate", "up"] => Ok(Command::MigrateUp),
        ["migrate", "down"] => Ok(Command::MigrateDown(1)),
        ["migrate", "down", n] => n
            .parse()
            .map(Command::MigrateDown)
            .map_err(|_| format!("migrate down takes a number of steps, not {n:?}")),
        ["migrate", "status"] => Ok(Command::MigrateStatus),
        ["keys", "rotate"] => Ok(Command::RotateKeys),
        _ => Err(USAGE.to_owned()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let command = match parse(&args) {
        Ok(command) => command,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Held to the end of main: dropping it flushes the last log lines.
    let _log_guard = telemetry::init(config.log_format);
    let outcome = match command {
        Command::Serve => match Application::build(config).await {
            Ok(app) => {
                app.run_until_stopped(startup::shutdown_signal()).await;
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        other => migrate(&mut config, other).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: &mut Config, command: Command) -> Result<(), String> {
    let (url, _local) = startup::resolve_database(config).await.map_err(|e| e.0)?;
    let pg = db::connection_config(&url)?;
    let mut client = db::connect(&pg)
        .await
        .map_err(|e| format!("database: {e}"))?;
    match command {
        Command::MigrateUp => {
            let n = db::migrations::up(&mut client).await.map_err(|e| e.0)?;
            println!("applied {n} migration(s)");
        }
        Command::MigrateDown(steps) => {
            let n = db::migrations::down(&mut client, steps)
                .await
                .map_err(|e| e.0)?;
            println!("reverted {n} migration(s)");
        }
        Command::MigrateStatus => {
            for m in db::migrations::status(&mut client).await.map_err(|e| e.0)? {
                let state = m
                    .applied_at
                    .map_or_else(|| "pending".to_owned(), |at| format!("applied {at}"));
                println!("{:<24} {state}", m.name);
            }
        }
        Command::RotateKeys => {
            let secret = config.secret_key.as_ref().ok_or("SECRET_KEY is required")?;
            db::signing_keys::create(&mut client, secret, false)
                .await
                .map_err(|e| e.0)?;
            println!(
                "new signing key in use; running instances picked it up through the change feed"
            );
        }
        Command::Serve => {}
    }
    Ok(())
}
