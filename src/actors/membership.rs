//! Workspace membership lookups (roles), for authorization checks and
//! introspection.
//!
//! One [`WorkspaceActor`] per active workspace owns that workspace's role
//! cache; a [`MembershipSupervisor`] spawns them on demand, restarts one
//! that fails (with an empty cache, so nothing stale survives a crash) and
//! forgets one that stopped after `MEMBERSHIP_IDLE_SECONDS` without a lookup. Request
//! handlers go through the cloneable [`Memberships`] handle, which finds a
//! workspace's actor in a shared map (one hash lookup) and calls it with a
//! timeout: a stuck or dead actor means 503, never a hang.
//!
//! A warm lookup is one actor round trip and one cache hit; it never touches
//! the database, which is what introspection needs. A miss is loaded by a
//! task the actor spawns, so a slow database never blocks the actor's
//! mailbox, and concurrent misses for one user share one query.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use moka::future::Cache;
use ractor::rpc::CallResult;
use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SupervisionEvent,
};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::db;
use crate::domain::Role;
use crate::error::ApiError;

/// How often a workspace actor checks whether it has been idle long enough.
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(30);
/// Users cached per workspace; the least used go first beyond this.
const CACHE_CAPACITY: u64 = 10_000;
/// A safety net only: every write and every change-feed notification
/// invalidates at once.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// The longest a request waits for an actor. Longer than the pool's own
/// timeout, so a miss against a slow database reports the database's 503.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A change is applied by then, or the actor is considered stuck.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(2);
/// A load that raced a change is retried this often before reading the
/// database directly.
const LOAD_ATTEMPTS: usize = 3;

/// A membership change, from a write on this instance or the change feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// One user's role in one workspace changed or was removed.
    Member {
        /// The workspace.
        workspace: Uuid,
        /// The user.
        user: Uuid,
    },
    /// The workspace was deleted (or changed wholesale).
    Workspace {
        /// The workspace.
        workspace: Uuid,
    },
}

/// What a workspace actor forgets.
#[derive(Debug, Clone, Copy)]
pub enum Forget {
    /// One user's entry.
    User(Uuid),
    /// Every entry.
    All,
}

/// A cached answer and the cache generation at the moment its database
/// read began: an answer older than the current generation may predate a
/// change and is never served.
type Stamped = (u64, Option<Role>);

/// Messages of a workspace actor.
pub enum WorkspaceMsg {
    /// The role of `user` here, `None` when not a member.
    Role {
        /// The user.
        user: Uuid,
        /// Where the answer goes.
        reply: RpcReplyPort<Result<Option<Role>, ApiError>>,
    },
    /// Drop cached entries; answered once they are gone.
    Forget {
        /// Which entries.
        what: Forget,
        /// Acknowledgement.
        reply: RpcReplyPort<()>,
    },
    /// Stop if nothing asked for a while.
    IdleCheck,
    /// Panic, so tests can watch the supervisor restart the actor.
    Crash,
}

/// What a workspace actor is started with.
pub struct WorkspaceArgs {
    workspace: Uuid,
    db: Pool,
    feed_up: Arc<AtomicBool>,
    idle_after: Duration,
}

/// A workspace actor's state: its cache and what loading needs.
pub struct WorkspaceState {
    workspace: Uuid,
    db: Pool,
    /// User → role, stamped with the generation at load time.
    cache: Cache<Uuid, Stamped>,
    /// Bumped by every change before entries are dropped, so a load that
    /// read the database before the change and finishes after it is
    /// recognised and discarded. Shared with the load tasks.
    generation: Arc<AtomicU64>,
    /// The last lookup, for the idle stop.
    last_used: Instant,
    /// Stop after this long without a lookup.
    idle_after: Duration,
    /// The idle-check timer, stopped with the actor.
    ticker: Option<JoinHandle<()>>,
    /// Whether the change feed is up; while it is not, changes made on
    /// other instances go unseen, so every lookup reads the database.
    feed_up: Arc<AtomicBool>,
}

/// The per-workspace actor marker.
pub struct WorkspaceActor;

impl Actor for WorkspaceActor {
    type Msg = WorkspaceMsg;
    type State = WorkspaceState;
    type Arguments = WorkspaceArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<WorkspaceMsg>,
        args: WorkspaceArgs,
    ) -> Result<WorkspaceState, ActorProcessingErr> {
        Ok(WorkspaceState {
            workspace: args.workspace,
            db: args.db,
            cache: Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(CACHE_TTL)
                .build(),
            generation: Arc::new(AtomicU64::new(0)),
            last_used: Instant::now(),
            idle_after: args.idle_after,
            ticker: None,
            feed_up: args.feed_up,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<WorkspaceMsg>,
        state: &mut WorkspaceState,
    ) -> Result<(), ActorProcessingErr> {
        let every = IDLE_CHECK_EVERY
            .min(state.idle_after / 2)
            .max(Duration::from_millis(100));
        state.ticker = Some(myself.send_interval(every, || WorkspaceMsg::IdleCheck));
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<WorkspaceMsg>,
        state: &mut WorkspaceState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkspaceMsg>,
        msg: WorkspaceMsg,
        state: &mut WorkspaceState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkspaceMsg::Role { user, reply } => {
                state.last_used = Instant::now();
                let trusted = state.feed_up.load(Ordering::Acquire);
                let generation = state.generation.load(Ordering::Acquire);
                if trusted {
                    if let Some((stamp, role)) = state.cache.get(&user).await {
                        if stamp == generation {
                            crate::metrics::cache_hit("memberships");
                            let _ = reply.send(Ok(role));
                            return Ok(());
                        }
                    }
                }
                crate::metrics::cache_miss("memberships");
                // The database is slow next to a cache hit: load off the
                // mailbox so hits for other users keep flowing.
                let loader = Loader {
                    workspace: state.workspace,
                    db: state.db.clone(),
                    cache: state.cache.clone(),
                    generation: state.generation.clone(),
                };
                tokio::spawn(async move {
                    let answer = if trusted {
                        loader.role(user).await
                    } else {
                        loader.read(user).await
                    };
                    let _ = reply.send(answer);
                });
            }
            WorkspaceMsg::Forget { what, reply } => {
                state.generation.fetch_add(1, Ordering::AcqRel);
                match what {
                    Forget::User(user) => state.cache.invalidate(&user).await,
                    Forget::All => state.cache.invalidate_all(),
                }
                let _ = reply.send(());
            }
            WorkspaceMsg::IdleCheck => {
                if state.last_used.elapsed() >= state.idle_after {
                    tracing::debug!(workspace_id = %state.workspace, "membership actor idle; stopping");
                    myself.stop(Some("idle".to_owned()));
                }
            }
            WorkspaceMsg::Crash => panic!("membership actor asked to crash"),
        }
        Ok(())
    }
}

/// Everything a load task needs, cloned out of the actor's state.
struct Loader {
    workspace: Uuid,
    db: Pool,
    cache: Cache<Uuid, Stamped>,
    generation: Arc<AtomicU64>,
}

impl Loader {
    /// The role from the cache, loading a miss (or a stale entry) once for
    /// all concurrent askers.
    async fn role(&self, user: Uuid) -> Result<Option<Role>, ApiError> {
        for _ in 0..LOAD_ATTEMPTS {
            let (stamp, role) = self
                .cache
                .try_get_with(user, async {
                    let stamp = self.generation.load(Ordering::Acquire);
                    Ok::<_, ApiError>((stamp, self.read(user).await?))
                })
                .await
                .map_err(|e| unshare(&e))?;
            if stamp == self.generation.load(Ordering::Acquire) {
                return Ok(role);
            }
            // Read before a change that has since landed: drop it, read again.
            self.cache.invalidate(&user).await;
        }
        self.read(user).await
    }

    async fn read(&self, user: Uuid) -> Result<Option<Role>, ApiError> {
        let client = self.db.get().await?;
        db::members::role_of(&client, self.workspace, user).await
    }
}

/// An error shared by every caller of one coalesced load.
fn unshare(err: &ApiError) -> ApiError {
    match err {
        ApiError::Unavailable(cause) => ApiError::Unavailable(cause.clone()),
        other => ApiError::Internal(format!("loading a role: {other:?}")),
    }
}

/// Live workspace actors by workspace id. Only the supervisor writes it.
type Directory = Arc<RwLock<HashMap<Uuid, ActorRef<WorkspaceMsg>>>>;

/// Messages of the membership supervisor.
pub enum SupervisorMsg {
    /// The live actor of `workspace`, spawned if there is none.
    Get {
        /// The workspace.
        workspace: Uuid,
        /// An actor the caller found dead: replace it even if it does not
        /// look stopped yet.
        dead: Option<ActorId>,
        /// The actor, or why none could be started.
        reply: RpcReplyPort<Result<ActorRef<WorkspaceMsg>, String>>,
    },
}

/// What the supervisor is started with.
pub struct SupervisorArgs {
    db: Pool,
    idle_after: Duration,
    directory: Directory,
    restarts: Arc<AtomicU64>,
    feed_up: Arc<AtomicBool>,
}

/// The supervisor's state.
pub struct SupervisorState {
    args: SupervisorArgs,
    /// Which workspace each child serves, to tell events apart.
    children: HashMap<ActorId, Uuid>,
}

/// The supervisor of the workspace actors.
pub struct MembershipSupervisor;

impl MembershipSupervisor {
    async fn spawn_child(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        workspace: Uuid,
    ) -> Result<ActorRef<WorkspaceMsg>, ActorProcessingErr> {
        let (actor, _) = Actor::spawn_linked(
            None,
            WorkspaceActor,
            WorkspaceArgs {
                workspace,
                db: state.args.db.clone(),
                feed_up: state.args.feed_up.clone(),
                idle_after: state.args.idle_after,
            },
            myself.get_cell(),
        )
        .await?;
        state.children.insert(actor.get_id(), workspace);
        write(&state.args.directory).insert(workspace, actor.clone());
        Ok(actor)
    }

    /// Drops `id` from the directory if it is still the entry there.
    fn unlist(state: &mut SupervisorState, workspace: Uuid, id: ActorId) -> bool {
        let mut directory = write(&state.args.directory);
        if directory.get(&workspace).is_some_and(|a| a.get_id() == id) {
            directory.remove(&workspace);
            true
        } else {
            false
        }
    }
}

impl Actor for MembershipSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            args,
            children: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Get {
                workspace,
                dead,
                reply,
            } => {
                let listed = read(&state.args.directory).get(&workspace).cloned();
                if let Some(actor) = listed {
                    let alive =
                        actor.get_status() == ActorStatus::Running && Some(actor.get_id()) != dead;
                    if alive {
                        let _ = reply.send(Ok(actor));
                        return Ok(());
                    }
                    MembershipSupervisor::unlist(state, workspace, actor.get_id());
                }
                // A failure to spawn is the caller's 503, not the supervisor's death.
                let answer = MembershipSupervisor::spawn_child(&myself, state, workspace)
                    .await
                    .map_err(|e| e.to_string());
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(workspace) = state.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                state.args.restarts.fetch_add(1, Ordering::Relaxed);
                // Replaced already if a caller found it dead first.
                if MembershipSupervisor::unlist(state, workspace, cell.get_id()) {
                    tracing::error!(workspace_id = %workspace, error = %err, "membership actor failed; restarting it");
                    if let Err(e) =
                        MembershipSupervisor::spawn_child(&myself, state, workspace).await
                    {
                        // The next lookup tries again.
                        tracing::error!(workspace_id = %workspace, error = %e, "membership actor restart failed");
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(workspace) = state.children.remove(&cell.get_id()) {
                    MembershipSupervisor::unlist(state, workspace, cell.get_id());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn read(
    directory: &Directory,
) -> std::sync::RwLockReadGuard<'_, HashMap<Uuid, ActorRef<WorkspaceMsg>>> {
    directory.read().unwrap_or_else(|p| p.into_inner())
}

fn write(
    directory: &Directory,
) -> std::sync::RwLockWriteGuard<'_, HashMap<Uuid, ActorRef<WorkspaceMsg>>> {
    directory.write().unwrap_or_else(|p| p.into_inner())
}

/// The handle every request uses to ask "what role does this user have here?".
#[derive(Clone)]
pub struct Memberships {
    inner: Arc<Inner>,
}

struct Inner {
    /// Read on every lookup; written by the supervisor only.
    directory: Directory,
    supervisor: ActorRef<SupervisorMsg>,
    /// Workspace actors restarted after a failure.
    restarts: Arc<AtomicU64>,
    /// See [`Memberships::set_feed_up`].
    feed_up: Arc<AtomicBool>,
}

impl Drop for Inner {
    /// The last handle gone (the instance stopped): stop the supervisor,
    /// which takes its workspace actors with it.
    fn drop(&mut self) {
        self.supervisor.stop(None);
    }
}

impl Memberships {
    /// Starts the membership supervisor; workspace actors start on demand
    /// and stop after `idle_after` without a lookup.
    pub async fn start(db: Pool, idle_after: Duration) -> Result<Memberships, String> {
        let directory = Directory::default();
        let restarts = Arc::new(AtomicU64::new(0));
        let feed_up = Arc::new(AtomicBool::new(true));
        let (supervisor, _) = Actor::spawn(
            None,
            MembershipSupervisor,
            SupervisorArgs {
                db,
                idle_after,
                directory: directory.clone(),
                restarts: restarts.clone(),
                feed_up: feed_up.clone(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(Memberships {
            inner: Arc::new(Inner {
                directory,
                supervisor,
                restarts,
                feed_up,
            }),
        })
    }

    /// The user's role in the workspace, `None` when not a member (or no such workspace).
    pub async fn role(&self, workspace: Uuid, user: Uuid) -> Result<Option<Role>, ApiError> {
        let mut dead = None;
        // A second try covers an actor that stopped (idle, or crashed)
        // between being found and being called.
        for _ in 0..2 {
            let actor = match (dead, self.listed(workspace)) {
                (None, Some(actor)) => actor,
                _ => self.spawned(workspace, dead).await?,
            };
            match actor
                .call(
                    |reply| WorkspaceMsg::Role { user, reply },
                    Some(CALL_TIMEOUT),
                )
                .await
            {
                Ok(CallResult::Success(answer)) => return answer,
                Ok(CallResult::Timeout) => {
                    return Err(ApiError::Unavailable("membership lookup timed out".into()))
                }
                Ok(CallResult::SenderError) | Err(_) => dead = Some(actor.get_id()),
            }
        }
        Err(ApiError::Unavailable(
            "membership actor keeps stopping".into(),
        ))
    }

    /// Applies a change seen on the change feed or made here. Returns once
    /// the cache no longer holds what the change made stale.
    pub async fn on_change(&self, change: MembershipChange) {
        let (workspace, what) = match change {
            MembershipChange::Member { workspace, user } => (workspace, Forget::User(user)),
            MembershipChange::Workspace { workspace } => (workspace, Forget::All),
        };
        // No actor, no cache: the next lookup reads the database.
        if let Some(actor) = self.listed(workspace) {
            forget(&actor, what).await;
        }
    }

    /// Forgets everything cached (the change feed was lost: changes may have been missed).
    pub async fn clear_all(&self) {
        let actors: Vec<ActorRef<WorkspaceMsg>> =
            read(&self.inner.directory).values().cloned().collect();
        futures_util::future::join_all(actors.iter().map(|actor| forget(actor, Forget::All))).await;
    }

    /// Tells whether the change feed is up. While it is down, changes made
    /// on other instances go unseen, so lookups bypass the caches and read
    /// the database; call [`Memberships::clear_all`] before setting it up
    /// again. Up by default: caches start empty and the feed clears them
    /// when it connects.
    pub fn set_feed_up(&self, up: bool) {
        self.inner.feed_up.store(up, Ordering::Release);
    }

    /// How many workspace actors the supervisor restarted after a failure.
    pub fn restarts(&self) -> u64 {
        self.inner.restarts.load(Ordering::Relaxed)
    }

    /// Makes the actor of `workspace` (if running) panic, and waits until it
    /// has stopped. For the supervision tests only.
    #[doc(hidden)]
    pub async fn crash_for_test(&self, workspace: Uuid) {
        let Some(actor) = self.listed(workspace) else {
            return;
        };
        if actor.cast(WorkspaceMsg::Crash).is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while actor.get_status() != ActorStatus::Stopped && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Workspace actors running now (diagnostics, idle-stop tests).
    pub fn live_actors(&self) -> usize {
        read(&self.inner.directory).len()
    }

    fn listed(&self, workspace: Uuid) -> Option<ActorRef<WorkspaceMsg>> {
        read(&self.inner.directory).get(&workspace).cloned()
    }

    async fn spawned(
        &self,
        workspace: Uuid,
        dead: Option<ActorId>,
    ) -> Result<ActorRef<WorkspaceMsg>, ApiError> {
        match self
            .inner
            .supervisor
            .call(
                |reply| SupervisorMsg::Get {
                    workspace,
                    dead,
                    reply,
                },
                Some(CALL_TIMEOUT),
            )
            .await
        {
            Ok(CallResult::Success(Ok(actor))) => Ok(actor),
            Ok(CallResult::Success(Err(e))) => Err(ApiError::Unavailable(format!(
                "membership actor would not start: {e}"
            ))),
            Ok(CallResult::Timeout) => Err(ApiError::Unavailable(
                "membership supervisor timed out".into(),
            )),
            Ok(CallResult::SenderError) | Err(_) => Err(ApiError::Unavailable(
                "membership supervisor stopped".into(),
            )),
        }
    }
}

/// Asks `actor` to drop entries and waits (bounded) for it to confirm.
async fn forget(actor: &ActorRef<WorkspaceMsg>, what: Forget) {
    match actor
        .call(
            |reply| WorkspaceMsg::Forget { what, reply },
            Some(CHANGE_TIMEOUT),
        )
        .await
    {
        Ok(CallResult::Success(())) => {}
        // A stopped actor took its cache with it: nothing stale remains.
        Ok(CallResult::SenderError) | Err(_) => {}
        Ok(CallResult::Timeout) => {
            // Stuck: kill it, so its cache cannot be served after this change.
            tracing::warn!(
                ?what,
                "membership actor did not apply a change in time; killing it"
            );
            actor.kill();
        }
    }
}
