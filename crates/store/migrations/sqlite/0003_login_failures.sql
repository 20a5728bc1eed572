-- Failed-login counters for lockout (see the PostgreSQL migration for the design).
CREATE TABLE tb_login_failure (
    email           TEXT NOT NULL,
    client_key      TEXT NOT NULL,
    failures        INTEGER NOT NULL,
    last_failure_at TEXT NOT NULL,
    locked_until    TEXT,
    PRIMARY KEY (email, client_key)
) STRICT;
CREATE INDEX ix_tb_login_failure_last ON tb_login_failure (last_failure_at);
