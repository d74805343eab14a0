//! The actors, their supervisor, and the handles request handlers use.
//!
//! Handlers never hold an `ActorRef` of their own: a child restarted by the
//! supervisor gets a new one. They go through an [`ActorSlot`], which the
//! supervisor keeps pointing at the live child, and every call has a timeout,
//! so a dead or restarting actor makes a request fail with 503, never hang.

pub mod hasher;
pub mod mailer;
pub mod membership;
pub mod supervisor;
pub mod tokens;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

use crate::domain::Secret;
use crate::error::ApiError;
use hasher::{HashError, HasherMsg, Verified};

/// Where the live instance of a supervised actor can be found.
pub struct ActorSlot<M: Message>(Arc<RwLock<Option<ActorRef<M>>>>);

impl<M: Message> Clone for ActorSlot<M> {
    fn clone(&self) -> Self {
        ActorSlot(self.0.clone())
    }
}

impl<M: Message> Default for ActorSlot<M> {
    fn default() -> Self {
        ActorSlot(Arc::new(RwLock::new(None)))
    }
}

impl<M: Message> ActorSlot<M> {
    /// The live actor, if one is running.
    pub fn get(&self) -> Option<ActorRef<M>> {
        match self.0.read() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn set(&self, actor: Option<ActorRef<M>>) {
        match self.0.write() {
            Ok(mut slot) => *slot = actor,
            Err(poisoned) => *poisoned.into_inner() = actor,
        }
    }

    /// Sends a request and waits for the answer at most `timeout`.
    pub async fn call<R: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<R>) -> M,
        timeout: Duration,
        what: &str,
    ) -> Result<R, ApiError> {
        let actor = self
            .get()
            .ok_or_else(|| ApiError::Unavailable(format!("{what}: actor is restarting")))?;
        match actor.call(build, Some(timeout)).await {
            Ok(CallResult::Success(reply)) => Ok(reply),
            Ok(CallResult::Timeout) => Err(ApiError::Unavailable(format!("{what}: timed out"))),
            Ok(CallResult::SenderError) | Err(_) => {
                Err(ApiError::Unavailable(format!("{what}: actor stopped")))
            }
        }
    }
}

/// Hashing requests wait at most this long (queue wait is bounded far below).
const HASH_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The request handlers' view of the hashing pool.
#[derive(Clone)]
pub struct Hasher {
    slot: ActorSlot<HasherMsg>,
}

impl Hasher {
    /// A handle on the pool the supervisor keeps in `slot`.
    pub fn new(slot: ActorSlot<HasherMsg>) -> Hasher {
        Hasher { slot }
    }

    /// The live pool actor, if one is running (diagnostics, supervision tests).
    pub fn actor(&self) -> Option<ActorRef<HasherMsg>> {
        self.slot.get()
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: Secret) -> Result<String, ApiError> {
        let answer = self
            .slot
            .call(
                |reply| HasherMsg::Hash { password, reply },
                HASH_CALL_TIMEOUT,
                "hash",
            )
            .await?;
        answer.map_err(busy)
    }

    /// Verifies `password` against `phc`, or against the dummy hash if `None`.
    pub async fn verify(
        &self,
        password: Secret,
        phc: Option<String>,
    ) -> Result<Verified, ApiError> {
        let answer = self
            .slot
            .call(
                |reply| HasherMsg::Verify {
                    password,
                    phc,
                    reply,
                },
                HASH_CALL_TIMEOUT,
                "verify",
            )
            .await?;
        answer.map_err(busy)
    }
}

fn busy(err: HashError) -> ApiError {
    match err {
        HashError::Busy => ApiError::Unavailable("hashing queue is full".into()),
        HashError::Unavailable => ApiError::Unavailable("hashing pool is restarting".into()),
    }
}
