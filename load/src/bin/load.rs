//! `load`: the load generator for the auth service. See `load --help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_load::client::Target;
use auth_load::report;
use auth_load::runner::{self, RunConfig, RunResult};
use auth_load::scenario::{self, Kind, Options, Prepared};
use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "Load generator for the auth service (HTTP/1.1 keep-alive, closed and open models, HDR histograms).";

const LONG_ABOUT: &str = "Load generator for the auth service.

Each connection is one HTTP/1.1 keep-alive connection driven by one worker.
Closed model (default): every connection sends its next request as soon as
the previous answer arrived, so the server sets the pace (--connections N).
Open model (--rate R): requests are due at R per second whatever the server
does; latency is counted from when each request was due, not from when a
free connection finally sent it, so a server that stalls is charged for the
whole wait (coordinated omission corrected). Give it enough connections
(rate x expected latency, with headroom).

Only successful (2xx) responses count as successes. Non-2xx responses,
unexpected bodies, socket errors and timeouts are errors; 503s are also
counted separately, with how many carried Retry-After. Latency percentiles
are of the successes.

Every scenario prepares its own data first (registers users, logs them in,
creates workspaces) and only then starts the clock.

Point it only at hosts you own and are allowed to load. Targets outside the
loopback range (127.0.0.0/8, ::1) are refused unless --allow-remote is given.";

#[derive(Parser)]
#[command(name = "load", version, about = ABOUT, long_about = LONG_ABOUT, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Merge result JSON files (from --json) into one HTML report and/or JSON file.
    Report {
        /// Output HTML file.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Output JSON file (all runs).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Title of the page.
        #[arg(long, default_value = "auth-service load test")]
        title: String,
        /// A text file shown at the top of the page (e.g. the bench summary).
        #[arg(long)]
        preface: Option<PathBuf>,
        /// Result files written by --json.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a free TCP port on 127.0.0.1 (for scripts).
    FreePort,
    /// Wait until URL answers 200 (for scripts).
    Wait {
        /// URL to poll with GET.
        url: String,
        /// Give up after this long.
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Base URL of the service (http:// only).
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    target: String,
    /// Scenario(s) to run, one after the other (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "me")]
    scenario: Vec<Kind>,
    /// Measured time per scenario (e.g. 30s, 2m, 500ms; a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unrecorded warm-up before the measured time (warms caches and connections).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Keep-alive connections (one worker each).
    #[arg(long, short = 'c', default_value_t = 32)]
    connections: usize,
    /// Open model: offered requests per second (latency from the due time).
    /// Without it: closed model, as fast as the connections get answers.
    #[arg(long)]
    rate: Option<f64>,
    /// Per-request timeout; a request without a full answer by then is a timeout error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Threads of the load generator's runtime (keep it small when the server runs on the same cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Users to prepare (default: min(connections, 100)).
    #[arg(long)]
    users: Option<usize>,
    /// Introspection service key (a key of the server's INTROSPECTION_KEYS); prefer the env variable.
    #[arg(long, env = "LOAD_SERVICE_KEY", hide_env_values = true)]
    service_key: Option<String>,
    /// Path for the `get` scenario.
    #[arg(long, default_value = "/")]
    path: String,
    /// `me` requests per `mixed` iteration.
    #[arg(long, default_value_t = 5)]
    me_per_iteration: u32,
    /// Workspaces each prepared user owns in `workspaces-list`.
    #[arg(long, default_value_t = 3)]
    workspaces_per_user: usize,
    /// Connections used to prepare data.
    #[arg(long, default_value_t = 4)]
    setup_concurrency: usize,
    /// Write all numbers as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write `key=value` lines (totals of the last scenario) here, for scripts.
    #[arg(long)]
    kv: Option<PathBuf>,
    /// Name of the run in the reports (default: the scenario).
    #[arg(long)]
    label: Option<String>,
    /// No progress line each second.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Create this file when the data is prepared (before --wait-file; for scripts).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// After preparing, wait until this file exists before starting the clock (for scripts).
    #[arg(long)]
    wait_file: Option<PathBuf>,
    /// Allow a target outside the loopback range. Only for hosts you own.
    #[arg(long)]
    allow_remote: bool,
}

/// `10`, `10s`, `500ms`, `2m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 10s, 500ms, 2m)"))?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(format!("not a duration: {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::FreePort) => match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => {
                println!("{}", addr.port());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("free-port: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Cmd::Report {
            html,
            json,
            title,
            preface,
            files,
        }) => report_cmd(html, json, &title, preface, &files),
        Some(Cmd::Wait { url, timeout }) => runtime(1).block_on(wait(&url, timeout)),
        None => {
            let threads = cli.run.threads.max(1);
            runtime(threads).block_on(run_cmd(cli.run, threads))
        }
    }
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    let mut b = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    b.enable_all().build().expect("tokio runtime")
}

fn read_results(path: &PathBuf) -> Result<Vec<RunResult>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let runs = v.get("runs").cloned().unwrap_or(v);
    serde_json::from_value(runs).map_err(|e| format!("{}: not a result file: {e}", path.display()))
}

fn write_outputs(
    runs: &[RunResult],
    json: Option<&PathBuf>,
    html: Option<&PathBuf>,
    title: &str,
    preface: Option<&str>,
) -> Result<(), String> {
    if let Some(path) = json {
        let doc = serde_json::json!({"tool": "auth-load", "version": env!("CARGO_PKG_VERSION"), "runs": runs});
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = html {
        std::fs::write(path, report::html(title, runs, preface)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn report_cmd(
    html: Option<PathBuf>,
    json: Option<PathBuf>,
    title: &str,
    preface: Option<PathBuf>,
    files: &[PathBuf],
) -> ExitCode {
    let mut runs = Vec::new();
    for f in files {
        match read_results(f) {
            Ok(mut r) => runs.append(&mut r),
            Err(e) => {
                eprintln!("report: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let preface = match preface.map(|p| std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            eprintln!("report: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = write_outputs(&runs, json.as_ref(), html.as_ref(), title, preface.as_deref()) {
        eprintln!("report: {e}");
        return ExitCode::FAILURE;
    }
    print!("{}", report::table(&runs));
    ExitCode::SUCCESS
}

async fn wait(url: &str, timeout: Duration) -> ExitCode {
    let target = match Target::parse(url).await {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("wait: {e}");
            return ExitCode::FAILURE;
        }
    };
    let deadline = Instant::now() + timeout;
    let call = auth_load::client::Call::get("wait", "", None);
    loop {
        let mut conn = auth_load::client::Conn::new(target.clone());
        if let Ok(r) = conn.send(&call, Duration::from_secs(2)).await {
            if r.status == 200 {
                return ExitCode::SUCCESS;
            }
        }
        if Instant::now() >= deadline {
            eprintln!("wait: {url} did not answer 200 within {}s", timeout.as_secs());
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_cmd(args: RunArgs, threads: usize) -> ExitCode {
    let target = match Target::parse(&args.target).await {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !target.addr.ip().is_loopback() && !args.allow_remote {
        eprintln!(
            "refusing to load {} ({}): not a loopback address. Point this tool only at hosts you \
             own; pass --allow-remote if you do.",
            target.url,
            target.addr.ip()
        );
        return ExitCode::from(2);
    }
    let connections = args.connections.max(1);
    let opts = Options {
        users: args.users.unwrap_or(connections.min(100)).max(1),
        workspaces_per_user: args.workspaces_per_user.max(1),
        me_per_iteration: args.me_per_iteration,
        service_key: args.service_key.clone(),
        path: if args.path.starts_with('/') { args.path.clone() } else { format!("/{}", args.path) },
        setup_concurrency: args.setup_concurrency.max(1),
        timeout: args.timeout,
        connections,
    };
    let mut results = Vec::new();
    let mut failed = false;
    for (n, kind) in args.scenario.iter().copied().enumerate() {
        let label = match (&args.label, args.scenario.len()) {
            (Some(l), 1) => l.clone(),
            (Some(l), _) => format!("{l}-{}", kind.name()),
            (None, _) => kind.name().to_owned(),
        };
        let cfg = RunConfig {
            label: label.clone(),
            kind,
            connections,
            rate: args.rate.filter(|r| *r > 0.0),
            duration: args.duration,
            warmup: args.warmup,
            timeout: args.timeout,
            threads,
            progress: !args.quiet,
        };
        if !args.quiet {
            eprintln!("== {label}: preparing data for {} ...", kind.name());
        }
        let t0 = Instant::now();
        let prepared = scenario::prepare(kind, &opts, &target).await;
        let setup_s = t0.elapsed().as_secs_f64();
        let result = match prepared {
            Err(e) => {
                eprintln!("{label}: setup failed: {e}");
                failed = true;
                continue;
            }
            Ok(Prepared::Skipped(why)) => {
                eprintln!("{label}: SKIPPED: {why}");
                RunResult::skipped(&cfg, &target.url, setup_s, why)
            }
            Ok(Prepared::Ready(shared)) => {
                if let Some(ready) = &args.ready_file {
                    let _ = std::fs::write(ready, b"ready\n");
                }
                if let Some(wait) = &args.wait_file {
                    if n == 0 {
                        while !wait.exists() {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                if !args.quiet {
                    eprintln!(
                        "== {label}: prepared in {setup_s:.1}s; {} {} connections, {:.0}s warm-up + {:.0}s",
                        match cfg.rate {
                            Some(r) => format!("open model at {r:.1} req/s over"),
                            None => "closed model on".into(),
                        },
                        connections,
                        cfg.warmup.as_secs_f64(),
                        cfg.duration.as_secs_f64()
                    );
                }
                runner::run(&cfg, Arc::from(shared), target.clone(), setup_s).await
            }
        };
        print!("{}", report::table(std::slice::from_ref(&result)));
        if let Some(path) = &args.kv {
            if let Err(e) = std::fs::write(path, report::kv(&result)) {
                eprintln!("{}: {e}", path.display());
                failed = true;
            }
        }
        results.push(result);
    }
    if results.len() > 1 {
        println!("\n{}", report::table(&results));
    }
    if let Err(e) = write_outputs(
        &results,
        args.json.as_ref(),
        args.html.as_ref(),
        "auth-service load test",
        None,
    ) {
        eprintln!("{e}");
        failed = true;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
