-- Login sessions (the `sid` claim) and their refresh tokens. A refresh token
-- is stored only as its SHA-256: it is 256 random bits, so a slow hash adds
-- nothing, and a leak of this table gives nothing usable.
CREATE TABLE sessions (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    ip            text,
    user_agent    text,
    revoked_at    timestamptz,
    revoked_reason text
);

CREATE INDEX sessions_user_idx ON sessions (user_id, created_at DESC);

CREATE TABLE refresh_tokens (
    token_hash  bytea       PRIMARY KEY,
    session_id  uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz
);

CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
