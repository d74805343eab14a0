//! A PostgreSQL cluster started by this process, for development and tests.
//!
//! `auth-service serve` without `DATABASE_URL` runs a persistent dev cluster,
//! and the integration tests run one throwaway cluster per test process in
//! which each test creates its own database. The server binaries come from
//! the machine (PATH, then Debian's `/usr/lib/postgresql/<version>/bin`);
//! nothing is downloaded.
//!
//! The server is a direct child (not started through `pg_ctl`) so that we own
//! its lifetime: it is stopped on drop, and the kernel stops it when this
//! process dies without running destructors (see [`ServerThread`]).

use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::fs::{self, DirBuilder, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// How long the server may take to accept connections after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often startup, shutdown and the supervising thread look at the server.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Free ports are picked then released, so another process can take one
/// before the server binds it; that race is retried this many times in all.
const PORT_ATTEMPTS: u32 = 5;
/// Lines of initdb output or server log quoted in an error.
const TAIL_LINES: usize = 6;
/// Where Debian installs each major version's server binaries.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";
/// `sun_path` is 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Throwaway folders are named `<prefix><pid>-<counter>-<nanos>` under the temp dir.
const THROWAWAY_PREFIX: &str = "auth-service-pg-";

/// Tells apart throwaway folders created by one process.
static FOLDER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Options for a local cluster.
#[derive(Debug, Clone, Default)]
pub struct LocalPgOptions {
    /// Where the cluster lives. `None` = a fresh unique folder under the temp dir (throwaway; removed on drop).
    /// `Some(path)` = persistent: initdb only if `path/PG_VERSION` does not exist; reused across runs; never removed.
    pub data_dir: Option<PathBuf>,
}

/// A running local PostgreSQL server; stopping it on drop.
#[derive(Debug)]
pub struct LocalPostgres {
    /// The TCP port on 127.0.0.1; the only way clients reach the server.
    port: u16,
    /// The thread owning the server process; `None` once stopped.
    server: Option<ServerThread>,
    /// The folder to delete after the server stopped; only throwaway clusters have one.
    throwaway_root: Option<PathBuf>,
}

impl LocalPostgres {
    /// Starts the cluster (initdb first when needed) and waits until it accepts connections (timeout ~30 s).
    pub fn start(opts: LocalPgOptions) -> Result<LocalPostgres, LocalPgError> {
        let bins = Binaries::find()?;
        let run_as = RunAs::detect()?;
        let layout = Layout::prepare(opts.data_dir, &run_as)?;
        // From here on, an early return drops `pg`, which removes a throwaway folder.
        let mut pg = LocalPostgres {
            port: 0,
            server: None,
            throwaway_root: layout.throwaway_root.clone(),
        };
        if !layout.data_dir.join("PG_VERSION").exists() {
            init_cluster(&bins, &run_as, &layout)?;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let log = File::create(&layout.log_file)
                .map_err(|e| LocalPgError::io("create", &layout.log_file, e))?;
            let command = server_command(&bins, &run_as, &layout, port, log)?;
            let mut server = ServerThread::spawn(command, &bins.postgres)?;
            match wait_until_ready(&server, &layout, port) {
                Ok(()) => {
                    pg.port = port;
                    pg.server = Some(server);
                    return Ok(pg);
                }
                Err(failure) => {
                    server.stop();
                    match failure {
                        StartFailure::PortTaken if attempt < PORT_ATTEMPTS => continue,
                        other => return Err(other.into_error(&layout, port)),
                    }
                }
            }
        }
    }

    /// Port it listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database `dbname`, user `postgres`, e.g. `postgres://postgres@127.0.0.1:PORT/dbname`.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.port,
            percent_encode(dbname)
        )
    }

    /// Stops the server (fast shutdown) and waits for it, removing a throwaway data dir.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
        if let Some(root) = self.throwaway_root.take() {
            if let Err(e) = fs::remove_dir_all(&root) {
                tracing::warn!(
                    folder = %root.display(),
                    error = %e,
                    "could not remove a throwaway PostgreSQL folder"
                );
            }
        }
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.stop()
    }
}

/// Why a local cluster could not be started: a one-line human message (which binary is missing, initdb's stderr tail, ...).
#[derive(Debug)]
pub struct LocalPgError(pub String);

impl LocalPgError {
    fn io(action: &str, path: &Path, e: io::Error) -> Self {
        LocalPgError(format!("could not {action} {}: {e}", path.display()))
    }
}

impl fmt::Display for LocalPgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LocalPgError {}

/// Helper for persistent dev clusters: the default data dir for `auth-service serve` without DATABASE_URL:
/// non-root: `<cwd>/.local/postgres`; root: `<temp_dir>/auth-service-dev-<short stable hash of the cwd path>/data` (parent created 0700 owned by postgres).
pub fn default_dev_data_dir() -> PathBuf {
    // A relative path still means "under the working directory" if it cannot be named.
    let cwd = std::env::current_dir().unwrap_or_default();
    if !is_root() {
        return cwd.join(".local").join("postgres");
    }
    // As root the checkout may sit where only root can enter, and the server
    // runs as `postgres`; the hash keeps one dev cluster per checkout.
    let digest = Sha256::digest(cwd.as_os_str().as_bytes());
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let parent = std::env::temp_dir().join(format!("auth-service-dev-{hash}"));
    // Best effort: this returns a path, and `start` reports whatever is wrong
    // with it (no postgres user, no permission) in its own error.
    if let Some(account) = lookup_account("postgres") {
        let _ = prepare_dir(&parent, &RunAs::System(account));
    }
    parent.join("data")
}

/// The server binaries of one PostgreSQL installation.
struct Binaries {
    postgres: PathBuf,
    initdb: PathBuf,
}

impl Binaries {
    fn find() -> Result<Self, LocalPgError> {
        let postgres = find_binary("postgres").ok_or_else(|| missing_binary("postgres"))?;
        // initdb refuses a server of another major version, so prefer the one
        // installed next to the server (PATH often holds symlinks into it).
        let sibling = fs::canonicalize(&postgres)
            .ok()
            .and_then(|p| p.parent().map(|dir| dir.join("initdb")))
            .filter(|p| is_executable(p));
        let initdb = sibling
            .or_else(|| find_binary("initdb"))
            .ok_or_else(|| missing_binary("initdb"))?;
        Ok(Binaries { postgres, initdb })
    }
}

fn missing_binary(name: &str) -> LocalPgError {
    LocalPgError(format!(
        "PostgreSQL binary `{name}` not found on PATH or in {DEBIAN_PG_ROOT}/*/bin; \
         install the PostgreSQL server or set DATABASE_URL"
    ))
}

/// Looks on PATH first, then in the newest Debian-style versioned folder.
fn find_binary(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    });
    on_path.or_else(|| {
        let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(DEBIAN_PG_ROOT)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let version = parse_version(&entry.file_name().to_string_lossy())?;
                let candidate = entry.path().join("bin").join(name);
                is_executable(&candidate).then_some((version, candidate))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, path)| path)
    })
}

/// "15" → [15], "9.6" → [9, 6]; anything else is not a version folder.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The account PostgreSQL's programs run as.
#[derive(Debug, Clone)]
enum RunAs {
    /// Whoever runs us; the usual case outside containers.
    CurrentUser,
    /// initdb and postgres refuse to run as root, so root hands them to this account.
    System(Account),
}

#[derive(Debug, Clone)]
struct Account {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl RunAs {
    fn detect() -> Result<Self, LocalPgError> {
        if !is_root() {
            return Ok(RunAs::CurrentUser);
        }
        lookup_account("postgres")
            .map(RunAs::System)
            .ok_or_else(|| {
                LocalPgError(
                "running as root, which initdb and postgres refuse, and there is no `postgres` \
                 system user to run them as (create one, e.g. `useradd --system postgres`)"
                    .to_owned(),
            )
            })
    }

    fn owner(&self) -> Option<(u32, u32)> {
        match self {
            RunAs::CurrentUser => None,
            RunAs::System(account) => Some((account.uid, account.gid)),
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Reads a passwd entry with the reentrant call, since tests start clusters from many threads.
fn lookup_account(name: &str) -> Option<Account> {
    let c_name = CString::new(name).ok()?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: all-zero is a valid `passwd` (null pointers and zero ids);
        // getpwnam_r fills it in.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the duration of the call and
        // `buf.len()` is the true size of the buffer.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || found.is_null() {
            return None;
        }
        let home = if entry.pw_dir.is_null() {
            PathBuf::from("/")
        } else {
            // SAFETY: a non-null pw_dir points at a NUL-terminated string in `buf`,
            // which is still alive here.
            let bytes = unsafe { CStr::from_ptr(entry.pw_dir) }.to_bytes();
            PathBuf::from(OsStr::from_bytes(bytes))
        };
        return Some(Account {
            uid: entry.pw_uid,
            gid: entry.pw_gid,
            home,
        });
    }
}

/// Where a cluster's files go.
struct Layout {
    data_dir: PathBuf,
    /// `None` when the path would be too long for a Unix socket; the server is then TCP-only.
    socket_dir: Option<PathBuf>,
    /// The server's stdout and stderr, outside the data dir so initdb finds that empty.
    log_file: PathBuf,
    /// The folder holding all of the above, for throwaway clusters only.
    throwaway_root: Option<PathBuf>,
    /// Durability settings are only worth their cost for a cluster that is kept.
    persistent: bool,
}

impl Layout {
    fn prepare(data_dir: Option<PathBuf>, run_as: &RunAs) -> Result<Self, LocalPgError> {
        match data_dir {
            None => Self::throwaway(run_as),
            Some(path) => Self::persistent(path, run_as),
        }
    }

    fn throwaway(run_as: &RunAs) -> Result<Self, LocalPgError> {
        remove_abandoned_throwaway_folders();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let root = std::env::temp_dir().join(format!(
            "{THROWAWAY_PREFIX}{}-{}-{nanos}",
            std::process::id(),
            FOLDER_COUNTER.fetch_add(1, Ordering::Relaxed),
        ));
        // `create`, not `create_all`: a folder that already exists is not ours.
        DirBuilder::new()
            .mode(0o700)
            .create(&root)
            .map_err(|e| LocalPgError::io("create", &root, e))?;
        let layout = Layout {
            data_dir: root.join("data"),
            socket_dir: socket_dir_if_short(root.join("socket")),
            log_file: root.join("postgres.log"),
            throwaway_root: Some(root.clone()),
            persistent: false,
        };
        let prepared = prepare_dir(&root, run_as).and_then(|()| layout.prepare_children(run_as));
        if let Err(e) = prepared {
            let _ = fs::remove_dir_all(&root);
            return Err(e);
        }
        Ok(layout)
    }

    fn persistent(path: PathBuf, run_as: &RunAs) -> Result<Self, LocalPgError> {
        // Children run from "/", so a relative path must be pinned to our cwd now.
        let data_dir =
            std::path::absolute(&path).map_err(|e| LocalPgError::io("resolve", &path, e))?;
        let (Some(parent), Some(name)) = (data_dir.parent(), data_dir.file_name()) else {
            return Err(LocalPgError(format!(
                "{} cannot hold a data directory: it has no parent folder",
                data_dir.display()
            )));
        };
        fs::create_dir_all(parent).map_err(|e| LocalPgError::io("create", parent, e))?;
        let name = name.to_string_lossy();
        let layout = Layout {
            socket_dir: socket_dir_if_short(parent.join(format!("{name}-socket"))),
            log_file: parent.join(format!("{name}.log")),
            data_dir,
            throwaway_root: None,
            persistent: true,
        };
        layout.prepare_children(run_as)?;
        Ok(layout)
    }

    fn prepare_children(&self, run_as: &RunAs) -> Result<(), LocalPgError> {
        // An initialised cluster already has the owner and mode postgres checks for.
        if !self.data_dir.join("PG_VERSION").exists() {
            prepare_dir(&self.data_dir, run_as)?;
        }
        match &self.socket_dir {
            Some(dir) => prepare_dir(dir, run_as),
            None => Ok(()),
        }
    }
}

/// Deletes throwaway folders whose process and server are both gone.
///
/// A test binary keeps its cluster in a static, which is never dropped: the
/// server still stops (PDEATHSIG) but its folder stays behind, ~40 MB per run.
/// Best effort: folders we may not delete, or cannot judge, are left alone.
fn remove_abandoned_throwaway_folders() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(THROWAWAY_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let root = entry.path();
        let server = fs::read_to_string(root.join("data").join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().and_then(|l| l.trim().parse().ok()));
        if !process_exists(owner) && !server.is_some_and(process_exists) {
            let _ = fs::remove_dir_all(&root);
        }
    }
}

/// Whether `pid` names a process, ours or anyone's (EPERM still means it exists).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence; kill has no memory arguments.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Creates `dir` if needed and gives it mode 0700 and, as root, to the `postgres` user.
fn prepare_dir(dir: &Path, run_as: &RunAs) -> Result<(), LocalPgError> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(LocalPgError::io("create", dir, e)),
    }
    // A symlink planted in a shared temp dir must not redirect the chown.
    let meta = fs::symlink_metadata(dir).map_err(|e| LocalPgError::io("inspect", dir, e))?;
    if !meta.is_dir() {
        return Err(LocalPgError(format!(
            "{} exists but is not a directory",
            dir.display()
        )));
    }
    if let Some((uid, gid)) = run_as.owner() {
        chown(dir, Some(uid), Some(gid)).map_err(|e| LocalPgError::io("chown", dir, e))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| LocalPgError::io("set permissions on", dir, e))
}

fn socket_dir_if_short(dir: PathBuf) -> Option<PathBuf> {
    let longest_socket = dir.join(".s.PGSQL.65535.lock");
    (longest_socket.as_os_str().len() <= MAX_SOCKET_PATH).then_some(dir)
}

fn init_cluster(bins: &Binaries, run_as: &RunAs, layout: &Layout) -> Result<(), LocalPgError> {
    let mut cmd = Command::new(&bins.initdb);
    cmd.arg("-D").arg(&layout.data_dir).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C",
    ]);
    if !layout.persistent {
        cmd.arg("--no-sync");
    }
    configure_child(&mut cmd, run_as);
    let output = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| LocalPgError::io("run", &bins.initdb, e))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    Err(LocalPgError(format!(
        "initdb for {} failed ({}): {}",
        layout.data_dir.display(),
        output.status,
        tail(&text)
    )))
}

fn server_command(
    bins: &Binaries,
    run_as: &RunAs,
    layout: &Layout,
    port: u16,
    log: File,
) -> Result<Command, LocalPgError> {
    let log_err = log
        .try_clone()
        .map_err(|e| LocalPgError::io("reopen", &layout.log_file, e))?;
    let mut cmd = Command::new(&bins.postgres);
    cmd.arg("-D")
        .arg(&layout.data_dir)
        .arg("-p")
        .arg(port.to_string())
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(match &layout.socket_dir {
            Some(dir) => format!("unix_socket_directories={}", quote_directory(dir)),
            None => "unix_socket_directories=".to_owned(),
        })
        .args(["-c", "max_connections=300", "-c", "shared_buffers=128MB"]);
    if !layout.persistent {
        // A throwaway cluster dies with us, so crash safety only costs time.
        cmd.args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]);
    }
    configure_child(&mut cmd, run_as);
    cmd.stdout(Stdio::from(log)).stderr(Stdio::from(log_err));
    Ok(cmd)
}

/// unix_socket_directories is a comma-separated list, so a path is quoted as one entry.
fn quote_directory(dir: &Path) -> String {
    format!("\"{}\"", dir.to_string_lossy().replace('"', "\"\""))
}

/// Settings shared by every PostgreSQL program we run.
fn configure_child(cmd: &mut Command, run_as: &RunAs) {
    // Children run from "/" because our cwd may be a folder `postgres` cannot enter.
    cmd.current_dir("/").stdin(Stdio::null());
    // PGDATA, PGPORT and friends from a developer's shell must not redirect these programs.
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"PG") {
            cmd.env_remove(key);
        }
    }
    // English messages: they are quoted in errors and matched to detect a taken port.
    cmd.env("LC_ALL", "C");
    if let RunAs::System(account) = run_as {
        cmd.uid(account.uid)
            .gid(account.gid)
            .env("HOME", &account.home)
            .env("USER", "postgres")
            .env("LOGNAME", "postgres");
    }
    // Our own process group keeps a terminal's Ctrl-C away from the server, so
    // `serve` can drain requests before it stops the database itself.
    cmd.process_group(0);
    let parent = std::process::id();
    // SAFETY: the closure only makes async-signal-safe system calls and does not allocate.
    unsafe {
        cmd.pre_exec(move || stop_with_parent(parent));
    }
}

/// Asks the kernel to stop the child when the thread that spawned it exits.
///
/// std runs this after setuid/setgid, which would otherwise clear the setting.
/// SIGINT is PostgreSQL's fast shutdown; SIGTERM (smart shutdown) would keep
/// the server up for as long as any client stays connected.
#[cfg(target_os = "linux")]
fn stop_with_parent(parent: u32) -> io::Result<()> {
    // SAFETY: prctl and getppid are plain system calls without memory arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT as libc::c_ulong) == -1 {
            return Err(io::Error::last_os_error());
        }
        // The parent may have died before prctl took effect; then nobody would signal us.
        if libc::getppid() as u32 != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn stop_with_parent(_parent: u32) -> io::Result<()> {
    Ok(())
}

/// Binds a port the kernel considers free and releases it for the server.
fn free_port() -> Result<u16, LocalPgError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| LocalPgError(format!("could not pick a free port on 127.0.0.1: {e}")))
}

/// The thread that spawned and owns the server process.
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so
/// the fork happens on this thread, which lives until `stop`. If the process
/// dies (or exits without dropping a static), the thread dies with it and the
/// kernel sends the server SIGINT.
#[derive(Debug)]
struct ServerThread {
    pid: u32,
    stop_tx: mpsc::Sender<()>,
    /// Set by the thread if the server exits on its own.
    exited: Arc<OnceLock<ExitStatus>>,
    handle: Option<JoinHandle<()>>,
}

impl ServerThread {
    fn spawn(mut command: Command, program: &Path) -> Result<Self, LocalPgError> {
        let (spawned_tx, spawned_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel();
        let exited = Arc::new(OnceLock::new());
        let exited_by_thread = Arc::clone(&exited);
        let handle = thread::Builder::new()
            .name("local-postgres".to_owned())
            .spawn(move || match command.spawn() {
                Ok(child) => {
                    let _ = spawned_tx.send(Ok(child.id()));
                    supervise(child, &stop_rx, &exited_by_thread);
                }
                Err(e) => {
                    let _ = spawned_tx.send(Err(e));
                }
            })
            .map_err(|e| LocalPgError(format!("could not start a thread for postgres: {e}")))?;
        let spawned = spawned_rx.recv().unwrap_or_else(|_| {
            Err(io::Error::other(
                "the thread spawning it ended unexpectedly",
            ))
        });
        match spawned {
            Ok(pid) => Ok(ServerThread {
                pid,
                stop_tx,
                exited,
                handle: Some(handle),
            }),
            Err(e) => {
                let _ = handle.join();
                Err(LocalPgError::io("run", program, e))
            }
        }
    }

    /// The server's exit status if it has exited on its own.
    fn exit_status(&self) -> Option<ExitStatus> {
        self.exited.get().copied()
    }

    /// Stops the server and waits for it; safe to call more than once.
    fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // A send error means the server already exited and the thread is done.
            let _ = self.stop_tx.send(());
            let _ = handle.join();
        }
    }
}

fn supervise(mut child: Child, stop_rx: &mpsc::Receiver<()>, exited: &OnceLock<ExitStatus>) {
    loop {
        match stop_rx.recv_timeout(POLL_INTERVAL) {
            // A dropped sender means nobody can stop the server any more; stop it now.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return shut_down(&mut child),
            Err(RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    let _ = exited.set(status);
                    return;
                }
            }
        }
    }
}

/// Fast shutdown, then SIGKILL if that takes longer than `STOP_TIMEOUT`.
fn shut_down(child: &mut Child) {
    // Only this thread reaps the child, so its pid cannot have been reused yet.
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill has no memory arguments; `pid` is our unreaped child.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => thread::sleep(POLL_INTERVAL),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Why one attempt to bring up the server did not succeed.
enum StartFailure {
    PortTaken,
    Exited(ExitStatus),
    TimedOut,
}

impl StartFailure {
    fn into_error(self, layout: &Layout, port: u16) -> LocalPgError {
        let log = format!(
            "{}: {}",
            layout.log_file.display(),
            log_tail(&layout.log_file)
        );
        LocalPgError(match self {
            StartFailure::PortTaken => {
                format!("postgres could not bind port {port} on 127.0.0.1; log {log}")
            }
            StartFailure::Exited(status) => {
                format!("postgres exited during startup ({status}); log {log}")
            }
            StartFailure::TimedOut => format!(
                "postgres did not accept connections on port {port} within {}s; log {log}",
                READY_TIMEOUT.as_secs()
            ),
        })
    }
}

/// Waits the way `pg_ctl start -w` does: for our server's pid and "ready" in
/// postmaster.pid, which PostgreSQL writes once it accepts connections; a TCP
/// connect then confirms it is our port that it listens on.
fn wait_until_ready(server: &ServerThread, layout: &Layout, port: u16) -> Result<(), StartFailure> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = server.exit_status() {
            let log = fs::read(&layout.log_file).unwrap_or_default();
            let log = String::from_utf8_lossy(&log);
            if log.contains("Address already in use")
                || log.contains("could not create any TCP/IP sockets")
            {
                return Err(StartFailure::PortTaken);
            }
            return Err(StartFailure::Exited(status));
        }
        if pid_file_says_ready(&layout.data_dir, server.pid)
            && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StartFailure::TimedOut);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Line 1 of postmaster.pid is the postmaster's pid, line 8 its status.
fn pid_file_says_ready(data_dir: &Path, pid: u32) -> bool {
    let Ok(text) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return false;
    };
    let mut lines = text.lines().map(str::trim);
    lines.next() == Some(pid.to_string().as_str()) && lines.nth(6) == Some("ready")
}

fn log_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => tail(&String::from_utf8_lossy(&bytes)),
        Err(e) => format!("(unreadable: {e})"),
    }
}

/// The last non-empty lines of `text` on one line, for an error message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..].join(" | ")
}

/// Percent-encodes everything but URL-unreserved characters, for the URL's path.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    type TestResult = Result<(), Box<dyn Error>>;

    async fn select_one(url: &str) -> Result<i32, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        let value = client.query_one("SELECT 1", &[]).await?.get(0);
        drop(client);
        let _ = connection.await;
        Ok(value)
    }

    #[tokio::test]
    async fn throwaway_cluster_serves_queries_and_is_removed_on_stop() -> TestResult {
        let mut pg = LocalPostgres::start(LocalPgOptions::default())?;
        let root = pg.throwaway_root.clone().ok_or("no throwaway folder")?;
        assert!(root.join("data").join("PG_VERSION").exists());
        let port = pg.port();
        TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        assert_eq!(select_one(&pg.url("postgres")).await?, 1);

        pg.stop();
        assert!(!root.exists(), "{} should be gone", root.display());
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
        pg.stop();
        Ok(())
    }

    #[tokio::test]
    async fn two_clusters_run_side_by_side() -> TestResult {
        let a = LocalPostgres::start(LocalPgOptions::default())?;
        let b = LocalPostgres::start(LocalPgOptions::default())?;
        assert_ne!(a.port(), b.port());
        assert_ne!(a.throwaway_root, b.throwaway_root);
        assert_eq!(select_one(&a.url("postgres")).await?, 1);
        assert_eq!(select_one(&b.url("postgres")).await?, 1);
        Ok(())
    }

    /// Removes the test's folder even when an assertion fails.
    struct RemoveOnDrop(PathBuf);

    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn persistent_cluster_keeps_its_data_across_restarts() -> TestResult {
        let parent = std::env::temp_dir().join(format!(
            "auth-service-local-pg-test-{}-{}",
            std::process::id(),
            FOLDER_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _cleanup = RemoveOnDrop(parent.clone());
        let data_dir = parent.join("data");
        let opts = LocalPgOptions {
            data_dir: Some(data_dir.clone()),
        };

        let mut first = LocalPostgres::start(opts.clone())?;
        let (client, connection) =
            tokio_postgres::connect(&first.url("postgres"), tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        client.batch_execute("CREATE DATABASE kept").await?;
        drop(client);
        let _ = connection.await;
        first.stop();
        assert!(data_dir.join("PG_VERSION").exists());

        let second = LocalPostgres::start(opts)?;
        assert_eq!(select_one(&second.url("kept")).await?, 1);
        drop(second);
        assert!(data_dir.join("PG_VERSION").exists());
        Ok(())
    }

    #[test]
    fn handle_can_live_in_a_static() {
        // Test harnesses keep one cluster per process in a `static OnceLock`.
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LocalPostgres>();
    }

    #[test]
    fn urls_escape_database_names() {
        assert_eq!(percent_encode("test_db-1"), "test_db-1");
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn version_folders_sort_numerically() {
        assert_eq!(parse_version("15"), Some(vec![15]));
        assert_eq!(parse_version("9.6"), Some(vec![9, 6]));
        assert_eq!(parse_version("common"), None);
        assert!(parse_version("9.6") < parse_version("15"));
    }
}
