//! The audit log: security events, append-only.
//!
//! Handlers call [`Audit::record`], which never waits and never fails: it
//! counts the event against a bounded queue and casts it to the
//! [`AuditWriter`] actor. The writer batches events (up to [`BATCH`] rows
//! per INSERT) and writes at least every [`FLUSH_EVERY`]; a write the
//! database cannot take now keeps its rows and is retried, so an outage
//! loses nothing until the queue is full. Readers call [`Audit::flush`]
//! first, so a client reading its audit right after an action sees it. An
//! [`AuditSupervisor`] restarts a writer that fails.
//!
//! When the queue is full ([`QUEUE_BOUND`] events not yet written: the
//! database has been down or far too slow for a while) a new event is
//! dropped, counted ([`Audit::dropped`]) and logged at error level with the
//! running count. Waiting instead would make every request as slow as the
//! audit log, and writing around the queue would pile up tasks against a
//! database that is already failing; dropping keeps memory and latency
//! bounded and the loss visible.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use deadpool_postgres::Pool;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::actors::ActorSlot;
use crate::db;
use crate::db::audit::AuditRow;
use crate::error::ApiError;

/// Events accepted but not yet written before new ones are dropped.
pub const QUEUE_BOUND: usize = 10_000;
/// Most rows per INSERT.
pub const BATCH: usize = 100;
/// The longest an event waits in memory while the database is healthy.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// After a failed write, timer flushes pause this long (an explicit flush
/// still tries at once).
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long a reader waits for pending events to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Past the first, one dropped event in this many is logged.
const LOG_DROPS_EVERY: u64 = 100;

/// The `outcome` of an event that did what was asked.
pub const SUCCESS: &str = "success";
/// The `outcome` of an attempt that failed (bad credentials, reuse, ...).
pub const FAILURE: &str = "failure";
/// The `outcome` of a member refused for too low a role.
pub const DENIED: &str = "denied";

/// The `action` names recorded here. A refused workspace action is
/// recorded under the action it attempted, with outcome [`DENIED`].
pub mod action {
    /// An account was created.
    pub const USER_REGISTERED: &str = "user.registered";
    /// A user was deactivated; every session ended.
    pub const USER_DEACTIVATED: &str = "user.deactivated";
    /// A password login succeeded.
    pub const LOGIN_SUCCEEDED: &str = "login.succeeded";
    /// A password login failed (the account, if any, sees it).
    pub const LOGIN_FAILED: &str = "login.failed";
    /// A login was refused because the e-mail is locked after failures.
    pub const LOGIN_LOCKED: &str = "login.locked";
    /// The caller logged out.
    pub const LOGOUT: &str = "session.logged_out";
    /// The caller ended one of their sessions.
    pub const SESSION_ENDED: &str = "session.ended";
    /// Sessions were ended wholesale (password change or reset); the target
    /// is the reason.
    pub const SESSIONS_ENDED: &str = "sessions.ended";
    /// A spent refresh token was presented again; its session was revoked.
    pub const REFRESH_REUSED: &str = "token.reuse_detected";
    /// Introspection was called with an unknown service key.
    pub const BAD_SERVICE_KEY: &str = "service_key.rejected";
    /// A workspace was created.
    pub const WORKSPACE_CREATED: &str = "workspace.created";
    /// A workspace was renamed or re-tiered.
    pub const WORKSPACE_UPDATED: &str = "workspace.updated";
    /// A workspace was deleted.
    pub const WORKSPACE_DELETED: &str = "workspace.deleted";
    /// A member was added.
    pub const MEMBER_ADDED: &str = "member.added";
    /// A member's role changed.
    pub const MEMBER_ROLE_CHANGED: &str = "member.role_changed";
    /// A member was removed by another.
    pub const MEMBER_REMOVED: &str = "member.removed";
    /// A member left.
    pub const MEMBER_LEFT: &str = "member.left";
    /// A workspace's audit log was read.
    pub const AUDIT_READ: &str = "audit.read";
}

/// One security event. Never put a password, token, key or hash in it.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// What happened (`login.succeeded`, `member.role_changed`, ...).
    pub action: &'static str,
    /// Who did it, when known.
    pub actor_id: Option<Uuid>,
    /// The workspace it concerns, if any.
    pub workspace_id: Option<Uuid>,
    /// The account whose own audit feed shows it, if any.
    pub user_id: Option<Uuid>,
    /// What it was done to (an id, an e-mail), free text.
    pub target: Option<String>,
    /// Client address.
    pub ip: Option<IpAddr>,
    /// `success`, `failure` or `denied`.
    pub outcome: &'static str,
}

impl AuditEvent {
    /// A successful event of `user`'s own account, done by `user`.
    pub fn account(action: &'static str, user: Uuid, ip: Option<IpAddr>) -> AuditEvent {
        AuditEvent {
            action,
            actor_id: Some(user),
            workspace_id: None,
            user_id: Some(user),
            target: None,
            ip,
            outcome: SUCCESS,
        }
    }

    /// A successful event of `workspace`, done by `actor`.
    pub fn workspace(action: &'static str, workspace: Uuid, actor: Uuid, ip: IpAddr) -> AuditEvent {
        AuditEvent {
            action,
            actor_id: Some(actor),
            workspace_id: Some(workspace),
            user_id: None,
            target: None,
            ip: Some(ip),
            outcome: SUCCESS,
        }
    }

    /// The same event with `target`.
    pub fn target(mut self, target: impl Into<String>) -> AuditEvent {
        self.target = Some(target.into());
        self
    }

    /// The same event with `outcome`.
    pub fn outcome(mut self, outcome: &'static str) -> AuditEvent {
        self.outcome = outcome;
        self
    }

    /// The row, stamped now: the time is when it happened, not when the
    /// batch was written.
    fn into_row(self) -> AuditRow {
        AuditRow {
            id: Uuid::now_v7(),
            at: Utc::now(),
            actor_id: self.actor_id,
            workspace_id: self.workspace_id,
            user_id: self.user_id,
            action: self.action.to_owned(),
            target: self.target,
            ip: self.ip.map(|ip| ip.to_string()),
            outcome: self.outcome.to_owned(),
        }
    }
}

/// Counters shared by the handle, the writer and its supervisor.
#[derive(Default)]
struct Counters {
    /// Events accepted and not yet written (or given up on): the queue.
    pending: AtomicUsize,
    /// Events lost: queue full, writer down, or refused by the database.
    dropped: AtomicU64,
}

impl Counters {
    /// `n` events left the queue.
    fn release(&self, n: usize) {
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(n))
            });
    }

    /// `n` events were lost; logged with the running count.
    fn lost(&self, n: u64, action: &str, why: &str) {
        if n == 0 {
            return;
        }
        let before = self.dropped.fetch_add(n, Ordering::AcqRel);
        let total = before + n;
        if before == 0 || before / LOG_DROPS_EVERY != total / LOG_DROPS_EVERY || n > 1 {
            tracing::error!(
                action,
                lost = n,
                dropped_total = total,
                "audit events dropped: {why}"
            );
        }
    }
}

/// Messages of the audit writer.
pub enum AuditMsg {
    /// Append one event.
    Record(AuditRow),
    /// Write what is buffered (the timer).
    Tick,
    /// Write everything received so far; answered when it is stored.
    Flush(RpcReplyPort<Result<(), String>>),
}

/// What the writer is started with.
pub struct WriterArgs {
    db: Pool,
    counters: Arc<Counters>,
}

/// The writer's state.
pub struct WriterState {
    db: Pool,
    counters: Arc<Counters>,
    /// Received, not yet written, oldest first.
    buffer: Vec<AuditRow>,
    /// Set after a failed write: timer flushes wait until then.
    retry_at: Option<Instant>,
    /// The flush timer, stopped with the actor.
    ticker: Option<JoinHandle<()>>,
}

impl WriterState {
    /// Writes the buffer out in batches; on failure keeps what is left.
    async fn write_out(&mut self) -> Result<(), String> {
        while !self.buffer.is_empty() {
            let n = self.buffer.len().min(BATCH);
            if let Err(e) = self.write_batch(n).await {
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
                return Err(e);
            }
            self.buffer.drain(..n);
            self.counters.release(n);
        }
        self.retry_at = None;
        Ok(())
    }

    /// Writes the first `n` buffered rows. A batch the database itself
    /// refuses (not a lost connection) is written row by row, so one bad
    /// row never blocks the rest; the refused ones are counted as lost.
    async fn write_batch(&self, n: usize) -> Result<(), String> {
        let rows = &self.buffer[..n];
        let client = self.db.get().await.map_err(|e| e.to_string())?;
        match db::audit::insert(&client, rows).await {
            Ok(_) => Ok(()),
            Err(e) if e.as_db_error().is_none() => Err(describe(&e)),
            Err(_) => {
                for row in rows {
                    if let Err(e) = db::audit::insert(&client, std::slice::from_ref(row)).await {
                        if e.as_db_error().is_none() {
                            return Err(describe(&e));
                        }
                        self.counters
                            .lost(1, &row.action, &format!("refused ({})", describe(&e)));
                    }
                }
                Ok(())
            }
        }
    }
}

/// A database error without the row values PostgreSQL may add as detail.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// The actor that writes events in batches.
pub struct AuditWriter;

impl Actor for AuditWriter {
    type Msg = AuditMsg;
    type State = WriterState;
    type Arguments = WriterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<AuditMsg>,
        args: WriterArgs,
    ) -> Result<WriterState, ActorProcessingErr> {
        Ok(WriterState {
            db: args.db,
            counters: args.counters,
            buffer: Vec::with_capacity(BATCH),
            retry_at: None,
            ticker: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<AuditMsg>,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        state.ticker = Some(myself.send_interval(FLUSH_EVERY, || AuditMsg::Tick));
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AuditMsg>,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        if let Err(e) = state.write_out().await {
            let n = state.buffer.len();
            state.counters.release(n);
            state
                .counters
                .lost(n as u64, "", &format!("writer stopped: {e}"));
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<AuditMsg>,
        msg: AuditMsg,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AuditMsg::Record(row) => {
                state.buffer.push(row);
                if state.buffer.len() >= BATCH && state.retry_at.is_none() {
                    if let Err(e) = state.write_out().await {
                        tracing::warn!(error = %e, queued = state.buffer.len(), "audit write failed; will retry");
                    }
                }
            }
            AuditMsg::Tick => {
                let due = state.retry_at.is_none_or(|at| Instant::now() >= at);
                if !state.buffer.is_empty() && due {
                    if let Err(e) = state.write_out().await {
                        tracing::warn!(error = %e, queued = state.buffer.len(), "audit write failed; will retry");
                    }
                }
            }
            AuditMsg::Flush(reply) => {
                let _ = reply.send(state.write_out().await);
            }
        }
        Ok(())
    }
}

/// What the supervisor is started with.
pub struct SupervisorArgs {
    db: Pool,
    slot: ActorSlot<AuditMsg>,
    counters: Arc<Counters>,
}

/// The audit writer's supervisor: restarts it when it fails, and stops
/// with it when it is stopped.
pub struct AuditSupervisor;

impl AuditSupervisor {
    async fn spawn_writer(
        myself: &ActorRef<()>,
        args: &SupervisorArgs,
    ) -> Result<(), ActorProcessingErr> {
        let (writer, _) = Actor::spawn_linked(
            None,
            AuditWriter,
            WriterArgs {
                db: args.db.clone(),
                counters: args.counters.clone(),
            },
            myself.get_cell(),
        )
        .await?;
        args.slot.set(Some(writer));
        Ok(())
    }
}

impl Actor for AuditSupervisor {
    type Msg = ();
    type State = SupervisorArgs;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        args: SupervisorArgs,
    ) -> Result<SupervisorArgs, ActorProcessingErr> {
        AuditSupervisor::spawn_writer(&myself, &args).await?;
        Ok(args)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut SupervisorArgs,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(_, err) => {
                state.slot.set(None);
                // Its buffer and mailbox died with it: all that was queued.
                let lost = state.counters.pending.swap(0, Ordering::AcqRel);
                state
                    .counters
                    .lost(lost as u64, "", &format!("writer failed: {err}"));
                tracing::error!(error = %err, "audit writer failed; restarting it");
                if let Err(e) = AuditSupervisor::spawn_writer(&myself, state).await {
                    tracing::error!(error = %e, "audit writer restart failed");
                    myself.stop(Some("audit writer would not restart".to_owned()));
                }
            }
            SupervisionEvent::ActorTerminated(..) => {
                state.slot.set(None);
                myself.stop(None);
            }
            _ => {}
        }
        Ok(())
    }
}

/// The handle that records events.
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

struct Inner {
    /// The live writer; the supervisor keeps it current.
    slot: ActorSlot<AuditMsg>,
    counters: Arc<Counters>,
    supervisor: ActorRef<()>,
}

impl Drop for Inner {
    /// The last handle gone (the instance stopped): the writer handles what
    /// is in its mailbox, writes what it can, then stops with its
    /// supervisor.
    fn drop(&mut self) {
        match self.slot.get() {
            Some(writer) => {
                if writer.drain().is_err() {
                    self.supervisor.stop(None);
                }
            }
            None => self.supervisor.stop(None),
        }
    }
}

impl Audit {
    /// Starts the audit writer and its supervisor.
    pub async fn start(db: Pool) -> Result<Audit, String> {
        let slot = ActorSlot::default();
        let counters = Arc::new(Counters::default());
        let (supervisor, _) = Actor::spawn(
            None,
            AuditSupervisor,
            SupervisorArgs {
                db,
                slot: slot.clone(),
                counters: counters.clone(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(Audit {
            inner: Arc::new(Inner {
                slot,
                counters,
                supervisor,
            }),
        })
    }

    /// Records an event: never waits, never fails the caller. A loss (queue
    /// full, writer restarting) is counted and logged.
    pub fn record(&self, event: AuditEvent) {
        let counters = &self.inner.counters;
        if counters.pending.fetch_add(1, Ordering::AcqRel) >= QUEUE_BOUND {
            counters.release(1);
            counters.lost(1, event.action, "queue is full");
            return;
        }
        let action = event.action;
        let sent = self
            .inner
            .slot
            .get()
            .is_some_and(|writer| writer.cast(AuditMsg::Record(event.into_row())).is_ok());
        if !sent {
            counters.release(1);
            counters.lost(1, action, "writer is not running");
        }
    }

    /// Returns once every event recorded before the call is stored (503
    /// when the database cannot take them now).
    pub async fn flush(&self) -> Result<(), ApiError> {
        self.inner
            .slot
            .call(AuditMsg::Flush, FLUSH_TIMEOUT, "audit flush")
            .await?
            .map_err(|e| ApiError::Unavailable(format!("audit flush: {e}")))
    }

    /// Events lost since start.
    pub fn dropped(&self) -> u64 {
        self.inner.counters.dropped.load(Ordering::Acquire)
    }

    /// Events waiting to be written.
    pub fn pending(&self) -> usize {
        self.inner.counters.pending.load(Ordering::Acquire)
    }
}
