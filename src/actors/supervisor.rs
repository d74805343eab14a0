//! The root supervisor: starts every long-lived actor and restarts any that
//! fails (ractor's default would stop the supervisor with it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::hasher::{HasherArgs, HasherMsg, HasherPool};
use super::tokens::{TokenActor, TokenArgs, TokenMsg};
use super::ActorSlot;

/// Which child an actor id belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Child {
    Hasher,
    Tokens,
}

/// Everything the supervisor needs to (re)start its children.
#[derive(Clone)]
pub struct SupervisorArgs {
    /// Hashing pool arguments.
    pub hasher: HasherArgs,
    /// Where the live hashing pool is published.
    pub hasher_slot: ActorSlot<HasherMsg>,
    /// Token actor arguments.
    pub tokens: TokenArgs,
    /// Where the live token actor is published.
    pub tokens_slot: ActorSlot<TokenMsg>,
    /// Restarts so far, for the metrics.
    pub restarts: Arc<AtomicU64>,
}

/// The supervisor's state: its arguments and which id is which child.
pub struct SupervisorState {
    args: SupervisorArgs,
    children: HashMap<ActorId, Child>,
}

/// The actor marker.
pub struct Supervisor;

impl Supervisor {
    async fn start_child(
        myself: &ActorCell,
        state: &mut SupervisorState,
        child: Child,
    ) -> Result<(), ActorProcessingErr> {
        let id = match child {
            Child::Hasher => {
                let (actor, _) = Actor::spawn_linked(
                    None,
                    HasherPool,
                    state.args.hasher.clone(),
                    myself.clone(),
                )
                .await?;
                let id = actor.get_id();
                state.args.hasher_slot.set(Some(actor));
                id
            }
            Child::Tokens => {
                let (actor, _) = Actor::spawn_linked(
                    None,
                    TokenActor,
                    state.args.tokens.clone(),
                    myself.clone(),
                )
                .await?;
                let id = actor.get_id();
                state.args.tokens_slot.set(Some(actor));
                id
            }
        };
        state.children.insert(id, child);
        Ok(())
    }
}

impl Actor for Supervisor {
    type Msg = ();
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut state = SupervisorState {
            args,
            children: HashMap::new(),
        };
        for child in [Child::Tokens, Child::Hasher] {
            Supervisor::start_child(&myself.get_cell(), &mut state, child).await?;
        }
        Ok(state)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // A panic or an error is a failure; a kill (someone, or something,
        // tore it down) is too. Only our own shutdown stops children cleanly,
        // and then this supervisor is stopping as well.
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, Some(reason)) if reason == "killed" => {
                (cell, reason)
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(child) = state.children.remove(&cell.get_id()) {
                    state.clear(child);
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        let Some(child) = state.children.remove(&cell.get_id()) else {
            return Ok(());
        };
        tracing::error!(?child, error = %why, "actor failed; restarting it");
        state.args.restarts.fetch_add(1, Ordering::Relaxed);
        state.clear(child);
        Supervisor::start_child(&myself.get_cell(), state, child).await?;
        Ok(())
    }
}

impl SupervisorState {
    /// Until the replacement is up, callers get 503 instead of a dead ref.
    fn clear(&self, child: Child) {
        match child {
            Child::Hasher => self.args.hasher_slot.set(None),
            Child::Tokens => self.args.tokens_slot.set(None),
        }
    }
}
