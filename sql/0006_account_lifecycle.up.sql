-- One-time tokens for e-mail verification and password reset. Like refresh
-- tokens, only the SHA-256 is stored: a token is 256 random bits, so a slow
-- hash adds nothing, and a leak of this table gives nothing usable. A token
-- is bound to one purpose, expires, and is spent by setting `used_at`.
CREATE TABLE one_time_tokens (
    token_hash  bytea       PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text        NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

CREATE INDEX one_time_tokens_user_idx ON one_time_tokens (user_id, purpose, created_at DESC);

-- Outgoing mail. A row is written in the transaction that makes the reason
-- for the mail (the token, the password change), so a crash never loses a
-- message; every instance drains the table, claiming rows with
-- FOR UPDATE SKIP LOCKED and a lease (`next_attempt_at`), so a row is sent by
-- one instance at a time and retried after a crash mid-send. `body` holds a
-- live link until the mail is out: it is erased once sent or given up.
CREATE TABLE mail_outbox (
    id               uuid        PRIMARY KEY,
    recipient        text        NOT NULL,
    subject          text        NOT NULL,
    body             text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    sent_at          timestamptz,
    failed_at        timestamptz
);

CREATE INDEX mail_outbox_pending_idx ON mail_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
