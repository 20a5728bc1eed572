-- Failed-login counters for lockout: one row per (email, client), and one per email with
-- client_key '*' for the account as a whole. Keyed by the email as typed (normalised), not by
-- user id, so unknown emails behave exactly like known ones.
CREATE TABLE tb_login_failure (
    email           TEXT NOT NULL,
    client_key      TEXT NOT NULL,
    failures        INTEGER NOT NULL,
    last_failure_at TIMESTAMPTZ NOT NULL,
    locked_until    TIMESTAMPTZ,
    PRIMARY KEY (email, client_key)
);
CREATE INDEX ix_tb_login_failure_last ON tb_login_failure (last_failure_at);
