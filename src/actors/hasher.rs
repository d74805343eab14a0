//! The hashing pool: Argon2id off the tokio reactor.
//!
//! The actor owns a bounded job queue and a fixed set of OS threads. Each
//! thread owns one Argon2 memory block and reuses it for every hash, so the
//! resident memory stays flat however many hashes run (a fresh 19 MiB
//! allocation per hash fragments the allocator and grows the heap for good).
//! A full queue answers at once (`Busy` → 503): under overload the excess is
//! shed in microseconds instead of piling up behind the cores.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::config::Argon2Params;
use crate::domain::Secret;

/// How long a queued request may wait at full speed before the queue counts
/// as full, when the queue bound is not configured. With the hash itself
/// (~40 ms) and a busy machine's slowdown on top, this keeps an accepted
/// login under 300 ms at p95 while the excess is shed.
const TARGET_QUEUE_WAIT: Duration = Duration::from_millis(200);
/// Nice value of the hashing threads: under saturation the reactor threads
/// win the CPU, so token checks stay fast while Argon2 soaks up the rest.
const HASH_THREAD_NICE: libc::c_int = 10;
/// A queue wait above this is logged: the pool is saturated.
const SLOW_QUEUE_WAIT: Duration = Duration::from_millis(500);
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// Why a hashing request did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashError {
    /// The queue is full: shed this request.
    Busy,
    /// The pool is stopping or restarting.
    Unavailable,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The password matches the stored hash.
    pub ok: bool,
    /// The stored hash used other parameters than the current ones and
    /// should be replaced (only meaningful when `ok`).
    pub needs_rehash: bool,
}

/// Counters shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct HasherStats {
    /// Jobs waiting for a thread.
    pub queued: AtomicUsize,
    /// Jobs being hashed now.
    pub running: AtomicUsize,
    /// Jobs finished.
    pub completed: AtomicU64,
    /// Jobs refused because the queue was full.
    pub rejected: AtomicU64,
    /// Sum of queue waits, in microseconds.
    pub wait_micros: AtomicU64,
}

/// Startup arguments; cloned for every restart.
#[derive(Clone)]
pub struct HasherArgs {
    /// Argon2id cost of new hashes.
    pub params: Argon2Params,
    /// Hashing threads.
    pub workers: usize,
    /// Queue bound; `None` = measured at start.
    pub queue_bound: Option<usize>,
    /// Counters, shared across restarts.
    pub stats: Arc<HasherStats>,
}

/// Messages of the hashing pool.
pub enum HasherMsg {
    /// Hash a new password into a PHC string.
    Hash {
        /// The password.
        password: Secret,
        /// Where the PHC string goes.
        reply: RpcReplyPort<Result<String, HashError>>,
    },
    /// Check a password against a stored PHC string, or against the dummy
    /// hash when there is none (unknown user: same cost, always false).
    Verify {
        /// The password to check.
        password: Secret,
        /// The stored hash, if the user exists.
        phc: Option<String>,
        /// Where the outcome goes.
        reply: RpcReplyPort<Result<Verified, HashError>>,
    },
}

/// The actor marker.
pub struct HasherPool;

/// Live state: the sending side of the job queue. Dropping it (actor stop or
/// restart) closes the queue, and the threads exit when it is drained.
pub struct HasherState {
    jobs: SyncSender<Job>,
    stats: Arc<HasherStats>,
}

struct Job {
    msg: HasherMsg,
    queued_at: Instant,
}

/// What every worker thread shares: the hasher and the dummy hash.
struct HashEngine {
    argon2: Argon2<'static>,
    params: Params,
    dummy_phc: String,
}

impl Actor for HasherPool {
    type Msg = HasherMsg;
    type State = HasherState;
    type Arguments = HasherArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: HasherArgs,
    ) -> Result<HasherState, ActorProcessingErr> {
        let params = Params::new(
            args.params.memory_kib,
            args.params.iterations,
            args.params.parallelism,
            Some(HASH_LEN),
        )
        .map_err(|e| format!("invalid Argon2 parameters: {e}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        // The dummy hash doubles as a calibration: its time sizes the queue.
        let (dummy_phc, one_hash) = tokio::task::spawn_blocking({
            let argon2 = argon2.clone();
            move || {
                let started = Instant::now();
                let mut memory = vec![Block::default(); argon2.params().block_count()];
                let mut dummy = [0u8; 24];
                rand::thread_rng().fill_bytes(&mut dummy);
                let phc = hash_into(&argon2, &dummy, &mut memory);
                (phc, started.elapsed())
            }
        })
        .await?;
        let workers = args.workers.max(1);
        let bound = args.queue_bound.unwrap_or_else(|| {
            let per_second = workers as f64 / one_hash.as_secs_f64().max(1e-6);
            (per_second * TARGET_QUEUE_WAIT.as_secs_f64()).ceil() as usize
        });
        tracing::info!(
            workers,
            queue_bound = bound,
            hash_ms = one_hash.as_millis() as u64,
            "hashing pool started"
        );
        let engine = Arc::new(HashEngine {
            argon2,
            params,
            dummy_phc,
        });
        let (jobs, rx) = mpsc::sync_channel::<Job>(bound);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..workers {
            let (engine, rx, stats) = (engine.clone(), rx.clone(), args.stats.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || worker(&engine, &rx, &stats))
                .map_err(|e| format!("cannot start hashing thread: {e}"))?;
        }
        Ok(HasherState {
            jobs,
            stats: args.stats,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: HasherMsg,
        state: &mut HasherState,
    ) -> Result<(), ActorProcessingErr> {
        let job = Job {
            msg,
            queued_at: Instant::now(),
        };
        state.stats.queued.fetch_add(1, Ordering::Relaxed);
        match state.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                state.stats.queued.fetch_sub(1, Ordering::Relaxed);
                state.stats.rejected.fetch_add(1, Ordering::Relaxed);
                job.msg.refuse(HashError::Busy);
            }
            Err(TrySendError::Disconnected(job)) => {
                state.stats.queued.fetch_sub(1, Ordering::Relaxed);
                job.msg.refuse(HashError::Unavailable);
                return Err("hashing threads are gone".into());
            }
        }
        Ok(())
    }
}

impl HasherMsg {
    fn refuse(self, why: HashError) {
        // The caller may have given up already; nothing to do then.
        match self {
            HasherMsg::Hash { reply, .. } => drop(reply.send(Err(why))),
            HasherMsg::Verify { reply, .. } => drop(reply.send(Err(why))),
        }
    }
}

fn worker(engine: &HashEngine, rx: &Mutex<Receiver<Job>>, stats: &HasherStats) {
    // SAFETY: on Linux, PRIO_PROCESS with who = 0 sets the calling
    // thread's nice value only. Failure leaves the default priority.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, HASH_THREAD_NICE);
    }
    let mut memory = vec![Block::default(); engine.params.block_count()];
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        let waited = job.queued_at.elapsed();
        stats
            .wait_micros
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        if waited > SLOW_QUEUE_WAIT {
            tracing::warn!(
                wait_ms = waited.as_millis() as u64,
                "hashing queue wait is high"
            );
        }
        stats.running.fetch_add(1, Ordering::Relaxed);
        match job.msg {
            HasherMsg::Hash { password, reply } => {
                let phc = hash_into(&engine.argon2, password.expose().as_bytes(), &mut memory);
                drop(reply.send(Ok(phc)));
            }
            HasherMsg::Verify {
                password,
                phc,
                reply,
            } => {
                let outcome = match &phc {
                    Some(phc) => verify(engine, password.expose().as_bytes(), phc, &mut memory),
                    None => {
                        // Unknown user: pay the same price, answer no.
                        verify(
                            engine,
                            password.expose().as_bytes(),
                            &engine.dummy_phc,
                            &mut memory,
                        );
                        Verified {
                            ok: false,
                            needs_rehash: false,
                        }
                    }
                };
                drop(reply.send(Ok(outcome)));
            }
        }
        stats.running.fetch_sub(1, Ordering::Relaxed);
        stats.completed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Hashes `password` with a fresh salt into `memory`; returns a PHC string.
fn hash_into(argon2: &Argon2<'_>, password: &[u8], memory: &mut [Block]) -> String {
    let mut salt = [0u8; SALT_LEN];
    rand::thread_rng().fill_bytes(&mut salt);
    let mut out = [0u8; HASH_LEN];
    // Inputs are bounded (password ≤ 4 KiB, fixed salt and output sizes) and
    // the memory matches the parameters, so this cannot fail.
    if let Err(e) = argon2.hash_password_into_with_memory(password, &salt, &mut out, memory) {
        tracing::error!(error = %e, "argon2 refused its inputs");
    }
    let p = argon2.params();
    format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        p.m_cost(),
        p.t_cost(),
        p.p_cost(),
        B64.encode(salt),
        B64.encode(out)
    )
}

/// Verifies in constant time; a malformed stored hash never matches.
fn verify(engine: &HashEngine, password: &[u8], phc: &str, memory: &mut Vec<Block>) -> Verified {
    let no = Verified {
        ok: false,
        needs_rehash: false,
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return no;
    };
    let (Ok(params), Some(salt), Some(expected)) =
        (Params::try_from(&parsed), parsed.salt, parsed.hash)
    else {
        return no;
    };
    let algorithm = match parsed.algorithm.as_str() {
        "argon2id" => Algorithm::Argon2id,
        "argon2i" => Algorithm::Argon2i,
        "argon2d" => Algorithm::Argon2d,
        _ => return no,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return no;
    };
    let expected = expected.as_bytes();
    let mut out = vec![0u8; expected.len()];
    let needed = params.block_count();
    if memory.len() < needed {
        // Stored with a larger cost than today's: grow once, then keep it.
        memory.resize(needed, Block::default());
    }
    let argon2 = Argon2::new(algorithm, Version::V0x13, params.clone());
    if argon2
        .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..needed])
        .is_err()
    {
        return no;
    }
    let ok: bool = out.ct_eq(expected).into();
    Verified {
        ok,
        needs_rehash: ok && (params != engine.params || algorithm != Algorithm::Argon2id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap_engine() -> HashEngine {
        let params = Params::new(64, 1, 1, Some(HASH_LEN)).expect("params");
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut memory = vec![Block::default(); params.block_count()];
        let dummy_phc = hash_into(&argon2, b"dummy", &mut memory);
        HashEngine {
            argon2,
            params,
            dummy_phc,
        }
    }

    #[test]
    fn hash_then_verify_roundtrip_and_reject_wrong_password() {
        let engine = cheap_engine();
        let mut memory = vec![Block::default(); engine.params.block_count()];
        let phc = hash_into(&engine.argon2, "correct horse".as_bytes(), &mut memory);
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(verify(&engine, b"correct horse", &phc, &mut memory).ok);
        assert!(!verify(&engine, b"correct hors", &phc, &mut memory).ok);
        // A fresh salt each time.
        let again = hash_into(&engine.argon2, "correct horse".as_bytes(), &mut memory);
        assert_ne!(phc, again);
    }

    #[test]
    fn a_hash_made_with_other_parameters_verifies_and_asks_for_a_rehash() {
        let engine = cheap_engine();
        let old = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(32, 1, 1, Some(HASH_LEN)).expect("params"),
        );
        let mut memory = vec![Block::default(); 32];
        let phc = hash_into(&old, b"pw-123456", &mut memory);
        let mut memory = vec![Block::default(); engine.params.block_count()];
        let outcome = verify(&engine, b"pw-123456", &phc, &mut memory);
        assert_eq!(
            outcome,
            Verified {
                ok: true,
                needs_rehash: true
            }
        );
        let current = hash_into(&engine.argon2, b"pw-123456", &mut memory);
        assert!(!verify(&engine, b"pw-123456", &current, &mut memory).needs_rehash);
    }

    #[test]
    fn a_larger_stored_cost_grows_the_block_instead_of_failing() {
        let engine = cheap_engine();
        let big = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(256, 1, 1, Some(HASH_LEN)).expect("params"),
        );
        let mut big_memory = vec![Block::default(); 256];
        let phc = hash_into(&big, b"pw-123456", &mut big_memory);
        let mut memory = vec![Block::default(); engine.params.block_count()];
        assert!(verify(&engine, b"pw-123456", &phc, &mut memory).ok);
        assert!(memory.len() >= 256);
    }

    #[test]
    fn malformed_stored_hashes_never_match() {
        let engine = cheap_engine();
        let mut memory = vec![Block::default(); engine.params.block_count()];
        for phc in [
            "",
            "plain",
            "$argon2id$v=19$m=64,t=1,p=1$$",
            "$bcrypt$xyz",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ",
        ] {
            assert!(!verify(&engine, b"x", phc, &mut memory).ok, "{phc}");
        }
    }
}
