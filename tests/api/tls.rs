//! TLS to PostgreSQL: a local server with a self-signed certificate, and
//! libpq's sslmode semantics (require, verify-ca, verify-full).

use std::path::{Path, PathBuf};
use std::process::Command;

use auth_service::config::Config;
use auth_service::db::local_pg::{LocalPgOptions, LocalPostgres};
use auth_service::startup::Application;

use crate::helpers::{base_settings, spawn_app_on, unique_email, PASSWORD};

/// Makes a CA and a server certificate for `localhost` (DNS name only) in `dir`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").expect("ext");
    for (name, subject) in [("ca", "/CN=test-ca"), ("other-ca", "/CN=other-ca")] {
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            subject,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
    // The server runs as `postgres` when we are root: it must own its key.
    if unsafe { libc::geteuid() } == 0 {
        let name = std::ffi::CString::new("postgres").expect("name");
        // SAFETY: getpwnam with a valid C string; the record is read at once.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        assert!(!pw.is_null(), "no postgres user");
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        for file in ["server.key", "server.crt", "ca.crt"] {
            std::os::unix::fs::chown(dir.join(file), Some(uid), Some(gid)).expect("chown");
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod key");
    (dir.join("ca.crt"), dir.join("other-ca.crt"))
}

async fn tls_server(dir: &Path) -> LocalPostgres {
    let pg = tokio::task::spawn_blocking(|| LocalPostgres::start(LocalPgOptions::default()))
        .await
        .expect("join")
        .expect("cluster");
    let (client, conn) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    // One statement per call: ALTER SYSTEM refuses a multi-statement batch.
    for statement in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
        "CREATE DATABASE tls".to_owned(),
    ] {
        client.batch_execute(&statement).await.expect("enable ssl");
    }
    // The reload is asynchronous: wait until the server speaks TLS.
    let require = auth_service::db::connection_config(&url(&pg, "127.0.0.1", "sslmode=require"))
        .expect("config");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while auth_service::db::connect(&require).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never enabled TLS"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    pg
}

fn url(pg: &LocalPostgres, host: &str, query: &str) -> String {
    format!("postgres://postgres@{host}:{}/tls?{query}", pg.port())
}

async fn builds(db_url: &str) -> Result<(), String> {
    let mut settings = base_settings(db_url);
    settings.insert("DB_POOL_SIZE".into(), "2".into());
    let config = Config::from_lookup(|name| settings.get(name).cloned()).map_err(|e| e.0)?;
    Application::build(config)
        .await
        .map(|_| ())
        .map_err(|e| e.0)
}

#[tokio::test]
async fn database_connections_use_tls_as_sslmode_asks() {
    let dir = std::env::temp_dir().join(format!("auth-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (ca, other_ca) = certificates(&dir);
    let pg = tls_server(&dir).await;

    // verify-full against the right CA and name: the service works, over TLS.
    let full = url(
        &pg,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    let app = spawn_app_on(base_settings(&full)).await;
    assert_eq!(app.register(&unique_email(), PASSWORD).await.status(), 201);
    let (check, conn) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let encrypted: i64 = check
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'auth-service' AND s.ssl",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert!(encrypted > 0, "the service's connections are encrypted");
    let plain: i64 = check
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'auth-service' AND NOT s.ssl",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(plain, 0, "and none of them is in clear");

    // verify-full refuses another CA, and a name the certificate does not carry.
    let wrong_ca = url(
        &pg,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", other_ca.display()),
    );
    assert!(
        builds(&wrong_ca).await.is_err(),
        "an unknown CA must be refused"
    );
    let wrong_name = url(
        &pg,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    assert!(
        builds(&wrong_name).await.is_err(),
        "verify-full checks the host name"
    );
    // verify-ca checks the chain only; require only encrypts.
    let ca_only = url(
        &pg,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", ca.display()),
    );
    builds(&ca_only).await.expect("verify-ca ignores the name");
    builds(&url(&pg, "127.0.0.1", "sslmode=require"))
        .await
        .expect("require takes any certificate");
    let _ = std::fs::remove_dir_all(&dir);
}
