-- EdDSA signing keys shared by every instance (JWT_ALGORITHM=EdDSA). The
-- private key is stored encrypted under a key derived from SECRET_KEY. The
-- newest unretired key signs; retired keys keep verifying until the tokens
-- they signed have expired.
CREATE TABLE signing_keys (
    kid          text        PRIMARY KEY,
    algorithm    text        NOT NULL CHECK (algorithm = 'EdDSA'),
    private_key  bytea       NOT NULL,
    public_key   bytea       NOT NULL CHECK (octet_length(public_key) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz
);

-- At most one key signs at a time.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;
