-- Failed logins per submitted e-mail (whether or not such an account
-- exists, so a lock reveals nothing), and the lock they lead to. Shared by
-- every instance; a row is removed by the next successful login.
CREATE TABLE login_throttle (
    email             text        PRIMARY KEY,
    failures          integer     NOT NULL,
    first_failure_at  timestamptz NOT NULL DEFAULT now(),
    locked_until      timestamptz
);
