-- Second factors (see the PostgreSQL migration for the design). mfa_methods: 1 = TOTP,
-- 2 = passkeys.
ALTER TABLE tb_user ADD COLUMN mfa_methods INTEGER NOT NULL DEFAULT 0;

CREATE TABLE tb_mfa_totp (
    fk_user       TEXT PRIMARY KEY NOT NULL REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    secret_sealed BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    confirmed_at  TEXT,
    last_step     INTEGER NOT NULL DEFAULT -1
) STRICT;

CREATE TABLE tb_mfa_recovery_code (
    pk_mfa_recovery_code TEXT PRIMARY KEY NOT NULL,
    fk_user              TEXT NOT NULL REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    code_hash            BLOB NOT NULL,
    created_at           TEXT NOT NULL,
    used_at              TEXT,
    UNIQUE (fk_user, code_hash)
) STRICT;

CREATE TABLE tb_mfa_challenge (
    token_hash BLOB PRIMARY KEY NOT NULL,
    fk_user    TEXT NOT NULL REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    used_at    TEXT
) STRICT;
CREATE INDEX ix_tb_mfa_challenge_fk_user ON tb_mfa_challenge (fk_user);
CREATE INDEX ix_tb_mfa_challenge_expires_at ON tb_mfa_challenge (expires_at);

-- Consecutive wrong second factors per user, whatever the client: the mfa_token's five tries
-- bound one login, this bounds them all (a password holder could otherwise mint tokens from
-- many addresses). Cleared by a right second factor and by a password change.
CREATE TABLE tb_mfa_failure (
    fk_user         TEXT PRIMARY KEY NOT NULL REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    failures        INTEGER NOT NULL,
    last_failure_at TEXT NOT NULL,
    locked_until    TEXT
) STRICT;
