-- The audit log: security events, append-only. No foreign keys on the ids:
-- the history of a workspace or a user outlives them.
CREATE TABLE audit_events (
    id            uuid        PRIMARY KEY,                -- v7: ordered by time
    at            timestamptz NOT NULL DEFAULT now(),
    actor_id      uuid,                                   -- who did it, when known
    workspace_id  uuid,                                   -- whose workspace feed shows it
    user_id       uuid,                                   -- whose account feed shows it
    action        text        NOT NULL,
    target        text,
    ip            text,
    outcome       text        NOT NULL CHECK (outcome IN ('success', 'failure', 'denied'))
);

-- The two feeds, newest first, keyset-paged on (at, id).
CREATE INDEX audit_events_workspace_idx ON audit_events (workspace_id, at DESC, id DESC)
    WHERE workspace_id IS NOT NULL;
CREATE INDEX audit_events_user_idx ON audit_events (user_id, at DESC, id DESC)
    WHERE user_id IS NOT NULL;

-- Append-only, whoever asks: the trigger stops even the table's owner (the
-- REVOKE alone would not), so a bug or a stolen service login cannot
-- rewrite history.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM PUBLIC;
