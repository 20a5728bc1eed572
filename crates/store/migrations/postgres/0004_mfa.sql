-- Second factors. tb_user.mfa_methods is a bit set (1 = TOTP, 2 = passkeys) kept in step with the
-- tables below in the same transaction, so the bearer path learns a user's MFA state from the
-- row it already reads.
ALTER TABLE tb_user ADD COLUMN mfa_methods INTEGER NOT NULL DEFAULT 0;

-- One TOTP enrollment per user. The secret is sealed (XChaCha20-Poly1305, key from
-- MFA_ENCRYPTION_KEY or the server secret, the user id as associated data): a dump alone does not
-- reveal it. last_step is the replay guard: a code is accepted only for a later step.
CREATE TABLE tb_mfa_totp (
    fk_user       UUID PRIMARY KEY REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    secret_sealed BYTEA NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    confirmed_at  TIMESTAMPTZ,
    last_step     BIGINT NOT NULL DEFAULT -1
);

-- Recovery codes, SHA-256 only (80 random bits each), single use.
CREATE TABLE tb_mfa_recovery_code (
    pk_mfa_recovery_code UUID PRIMARY KEY,
    fk_user              UUID NOT NULL REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    code_hash            BYTEA NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL,
    used_at              TIMESTAMPTZ,
    CONSTRAINT uq_tb_mfa_recovery_code UNIQUE (fk_user, code_hash)
);

-- The second step of a login: the mfa_token (SHA-256 only), its tries and its single use.
CREATE TABLE tb_mfa_challenge (
    token_hash BYTEA PRIMARY KEY,
    fk_user    UUID NOT NULL REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    used_at    TIMESTAMPTZ
);
CREATE INDEX ix_tb_mfa_challenge_fk_user ON tb_mfa_challenge (fk_user);
CREATE INDEX ix_tb_mfa_challenge_expires_at ON tb_mfa_challenge (expires_at);

-- Consecutive wrong second factors per user, whatever the client: the mfa_token's five tries
-- bound one login, this bounds them all (a password holder could otherwise mint tokens from
-- many addresses). Cleared by a right second factor and by a password change.
CREATE TABLE tb_mfa_failure (
    fk_user         UUID PRIMARY KEY REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    failures        INTEGER NOT NULL,
    last_failure_at TIMESTAMPTZ NOT NULL,
    locked_until    TIMESTAMPTZ
);
