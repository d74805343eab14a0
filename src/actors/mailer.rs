//! The mailer: a durable outbox in PostgreSQL drained over SMTP.
//!
//! Handlers write a mail into `mail_outbox` in the same transaction as its
//! reason (the one-time token, the new password), then [`Mailer::wake`] the
//! drainer. The drainer is an actor under its own small supervisor: it
//! claims due rows (`FOR UPDATE SKIP LOCKED` plus a lease, so several
//! instances share the table), sends each over SMTP, and records the
//! outcome per mail. A failed mail is retried with exponential backoff and
//! marked failed after `MAIL_MAX_ATTEMPTS`; one bad mail never holds up the
//! others. A timer wakes the drainer every few seconds as a safety net (a
//! mail queued by another instance, a retry coming due).
//!
//! Without `SMTP_URL` a mail is "sent" to the log: recipient and subject,
//! never the body, whose link is a secret.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{GenericClient, Pool};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::ActorSlot;
use crate::config::Config;
use crate::db;
use crate::db::outbox::OutboxRow;
use crate::error::ApiError;

/// The safety-net poll.
const POLL: Duration = Duration::from_secs(3);
/// Mails claimed per round trip.
const BATCH: i64 = 20;
/// How long a claimed mail is hidden from other instances; longer than a
/// send can take, so only a crash mid-send lets it reappear (and retry).
const LEASE: Duration = Duration::from_secs(120);
/// One SMTP command's timeout (lettre's, per command).
const SMTP_COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// A whole delivery's timeout.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// First retry delay; doubled per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// `last_error` is for operators; a server's reply can be long.
const MAX_ERROR_CHARS: usize = 500;

/// What a mail is about; the text and link are made here.
pub enum Template<'a> {
    /// The e-mail verification link.
    VerifyEmail {
        /// The one-time token.
        token: &'a str,
    },
    /// The password reset link.
    PasswordReset {
        /// The one-time token.
        token: &'a str,
    },
    /// Notice: the password was changed (by someone who knew the old one).
    PasswordChanged,
    /// Notice: the password was reset through a reset link.
    PasswordWasReset,
}

/// The handle that queues mail.
#[derive(Clone)]
pub struct Mailer {
    slot: ActorSlot<MailerMsg>,
    /// A wake-up is already queued: later ones until it runs add nothing.
    wake_pending: Arc<AtomicBool>,
    /// `PUBLIC_BASE_URL`, the base of every link.
    base_url: String,
}

impl Mailer {
    /// Starts the outbox drainer under its supervisor.
    pub async fn start(db: Pool, config: &Config) -> Result<Mailer, String> {
        let from = config
            .mail_from
            .parse::<Mailbox>()
            .map_err(|e| format!("MAIL_FROM: {e}"))?;
        let transport = match &config.smtp_url {
            None => {
                tracing::warn!(
                    "SMTP_URL not set: mails are logged (recipient and subject), not sent"
                );
                None
            }
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    // Never echo lettre's error: the URL may carry a password.
                    .map_err(|_| "SMTP_URL cannot be used".to_owned())?
                    .timeout(Some(SMTP_COMMAND_TIMEOUT))
                    .build(),
            ),
        };
        let slot = ActorSlot::default();
        let wake_pending = Arc::new(AtomicBool::new(false));
        let args = DrainerArgs {
            db,
            transport,
            from,
            max_attempts: i32::try_from(config.mail_max_attempts).unwrap_or(i32::MAX),
            wake_pending: wake_pending.clone(),
        };
        Actor::spawn(
            None,
            MailSupervisor,
            MailSupervisorArgs {
                drainer: args,
                slot: slot.clone(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(Mailer {
            slot,
            wake_pending,
            base_url: config.public_base_url.clone(),
        })
    }

    /// Queues a mail to `to`. Call it inside the transaction that makes the
    /// reason for the mail, and [`Mailer::wake`] once it has committed.
    pub async fn queue(
        &self,
        db: &impl GenericClient,
        to: &str,
        template: Template<'_>,
    ) -> Result<(), ApiError> {
        let (subject, body) = self.compose(template);
        db::outbox::insert(db, to, subject, &body).await?;
        Ok(())
    }

    /// Tells the drainer there is mail. Never blocks; when the drainer is
    /// restarting, its next poll finds the mail.
    pub fn wake(&self) {
        if self.wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        match self.slot.get() {
            Some(actor) if actor.cast(MailerMsg::Wake).is_ok() => {}
            _ => self.wake_pending.store(false, Ordering::Release),
        }
    }

    fn compose(&self, template: Template<'_>) -> (&'static str, String) {
        let base = &self.base_url;
        let unexpected = "If this was not you, reset your password right away:";
        match template {
            Template::VerifyEmail { token } => (
                "Verify your e-mail address",
                format!(
                    "Please confirm the e-mail address of your account by opening this link:\r\n\r\n\
                     {base}/verify-email?token={token}\r\n\r\n\
                     The link works once and expires in 24 hours. \
                     If you did not ask for it, ignore this message.\r\n"
                ),
            ),
            Template::PasswordReset { token } => (
                "Reset your password",
                format!(
                    "Someone asked to reset the password of your account. To choose a new one, open this link:\r\n\r\n\
                     {base}/reset-password?token={token}\r\n\r\n\
                     The link works once and expires in 1 hour. \
                     If you did not ask for it, ignore this message: your password stays as it is.\r\n"
                ),
            ),
            Template::PasswordChanged => (
                "Your password was changed",
                format!(
                    "The password of your account was just changed, and every other session was signed out.\r\n\r\n\
                     {unexpected}\r\n\r\n{base}/reset-password\r\n"
                ),
            ),
            Template::PasswordWasReset => (
                "Your password was reset",
                format!(
                    "The password of your account was just reset through a reset link, and every session was signed out.\r\n\r\n\
                     {unexpected}\r\n\r\n{base}/reset-password\r\n"
                ),
            ),
        }
    }
}

/// Messages to the drainer.
#[derive(Debug)]
pub enum MailerMsg {
    /// Mail was queued: drain now.
    Wake,
    /// The safety-net timer.
    Tick,
}

/// What the drainer is (re)started with.
#[derive(Clone)]
struct DrainerArgs {
    db: Pool,
    /// `None`: log instead of sending.
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    max_attempts: i32,
    wake_pending: Arc<AtomicBool>,
}

struct DrainerState {
    args: DrainerArgs,
    last_drain: Option<Instant>,
}

/// The actor that sends queued mail.
struct Drainer;

/// How one delivery ended.
enum Outcome {
    Sent,
    /// Worth another attempt (connection refused, 4xx, timeout).
    Retry(String),
    /// Never going to work (5xx, an address lettre cannot parse).
    Permanent(String),
}

impl Actor for Drainer {
    type Msg = MailerMsg;
    type State = DrainerState;
    type Arguments = DrainerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<MailerMsg>,
        args: DrainerArgs,
    ) -> Result<DrainerState, ActorProcessingErr> {
        myself.send_interval(POLL, || MailerMsg::Tick);
        // Whatever was queued before this (re)start goes out now.
        myself.cast(MailerMsg::Wake)?;
        Ok(DrainerState {
            args,
            last_drain: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<MailerMsg>,
        msg: MailerMsg,
        state: &mut DrainerState,
    ) -> Result<(), ActorProcessingErr> {
        if state.args.db.is_closed() {
            // The instance is shutting down: nothing left to send with.
            myself.stop(None);
            return Ok(());
        }
        match msg {
            MailerMsg::Wake => state.args.wake_pending.store(false, Ordering::Release),
            // Ticks that piled up behind a slow send add nothing.
            MailerMsg::Tick if state.last_drain.is_some_and(|at| at.elapsed() < POLL / 2) => {
                return Ok(())
            }
            MailerMsg::Tick => {}
        }
        drain(&state.args).await;
        state.last_drain = Some(Instant::now());
        Ok(())
    }
}

/// Sends every due mail. Database trouble ends the round quietly; the next
/// wake or tick tries again.
async fn drain(args: &DrainerArgs) {
    let mut first = true;
    loop {
        let batch = match claim(args, first).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "mail outbox unavailable; will retry");
                return;
            }
        };
        first = false;
        let full = batch.len() as i64 == BATCH;
        for mail in batch {
            let outcome = deliver(args, &mail).await;
            if let Err(e) = record(args, &mail, outcome).await {
                // The lease runs out and the mail is tried again: sent twice
                // at worst, never lost.
                tracing::warn!(mail_id = %mail.id, error = %e, "could not record a mail's outcome");
            }
        }
        if !full {
            return;
        }
    }
}

async fn claim(args: &DrainerArgs, sweep: bool) -> Result<Vec<OutboxRow>, ApiError> {
    let client = args.db.get().await?;
    if sweep {
        let given_up = db::outbox::fail_exhausted(&client, args.max_attempts).await?;
        if given_up > 0 {
            tracing::error!(mails = given_up, "mails given up after their last attempt");
        }
    }
    db::outbox::claim(&client, BATCH, LEASE, args.max_attempts).await
}

async fn deliver(args: &DrainerArgs, mail: &OutboxRow) -> Outcome {
    let Some(transport) = &args.transport else {
        tracing::info!(to = %mail.recipient, subject = %mail.subject, "mail logged, not sent (no SMTP_URL)");
        return Outcome::Sent;
    };
    let to = match mail.recipient.parse::<Mailbox>() {
        Ok(to) => to,
        Err(e) => return Outcome::Permanent(format!("recipient: {e}")),
    };
    let message = Message::builder()
        .from(args.from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .message_id(None)
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body.clone());
    let message = match message {
        Ok(message) => message,
        Err(e) => return Outcome::Permanent(format!("message: {e}")),
    };
    match tokio::time::timeout(SEND_TIMEOUT, transport.send(message)).await {
        Ok(Ok(_)) => Outcome::Sent,
        Ok(Err(e)) if e.is_permanent() => Outcome::Permanent(e.to_string()),
        Ok(Err(e)) => Outcome::Retry(e.to_string()),
        Err(_) => Outcome::Retry("timed out".into()),
    }
}

async fn record(args: &DrainerArgs, mail: &OutboxRow, outcome: Outcome) -> Result<(), ApiError> {
    let client = args.db.get().await?;
    let (error, give_up) = match outcome {
        Outcome::Sent => {
            tracing::info!(mail_id = %mail.id, attempt = mail.attempts, "mail sent");
            return db::outbox::mark_sent(&client, mail.id).await;
        }
        Outcome::Retry(error) => (error, mail.attempts >= args.max_attempts),
        Outcome::Permanent(error) => (error, true),
    };
    let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
    let retry_in = backoff(mail.attempts);
    if give_up {
        tracing::error!(mail_id = %mail.id, attempt = mail.attempts, %error, "mail failed; giving up");
    } else {
        tracing::warn!(mail_id = %mail.id, attempt = mail.attempts, %error, retry_in_s = retry_in.as_secs(), "mail failed; will retry");
    }
    db::outbox::mark_attempt_failed(&client, mail.id, &error, retry_in, give_up).await
}

/// The wait after failed attempt number `attempts` (1-based).
fn backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    BASE_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// Restarts the drainer when it fails (a panic in a send, say); ractor's
/// default would leave the outbox undrained.
struct MailSupervisor;

#[derive(Clone)]
struct MailSupervisorArgs {
    drainer: DrainerArgs,
    slot: ActorSlot<MailerMsg>,
}

impl MailSupervisor {
    async fn start_drainer(
        myself: &ActorRef<()>,
        args: &MailSupervisorArgs,
    ) -> Result<(), ActorProcessingErr> {
        let (drainer, _) =
            Actor::spawn_linked(None, Drainer, args.drainer.clone(), myself.get_cell()).await?;
        args.slot.set(Some(drainer));
        Ok(())
    }
}

impl Actor for MailSupervisor {
    type Msg = ();
    type State = MailSupervisorArgs;
    type Arguments = MailSupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        args: MailSupervisorArgs,
    ) -> Result<MailSupervisorArgs, ActorProcessingErr> {
        MailSupervisor::start_drainer(&myself, &args).await?;
        Ok(args)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut MailSupervisorArgs,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(_, err) if !state.drainer.db.is_closed() => {
                tracing::error!(error = %err, "mail drainer failed; restarting it");
                state.slot.set(None);
                state.drainer.wake_pending.store(false, Ordering::Release);
                MailSupervisor::start_drainer(&myself, state).await?;
            }
            SupervisionEvent::ActorFailed(..) | SupervisionEvent::ActorTerminated(..) => {
                // The drainer stops only when the instance shuts down.
                state.slot.set(None);
                myself.stop(None);
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_levels_off() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(50), MAX_BACKOFF);
        assert_eq!(backoff(0), Duration::from_secs(2));
    }
}
