-- Dropping the table is not a DELETE: the triggers do not stop it.
DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
