-- Accounts. E-mails are stored trimmed and lower-cased by the service; the
-- unique index on lower(email) makes uniqueness case-insensitive even for a
-- row written by hand, and it is what registration relies on (one INSERT, a
-- unique violation is the 409).
CREATE TABLE users (
    id             uuid        PRIMARY KEY,
    email          text        NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    password_hash  text        NOT NULL,
    is_active      boolean     NOT NULL DEFAULT true,
    is_verified    boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email_key ON users (lower(email));
