-- Passkeys (WebAuthn); see the PostgreSQL migration for the design.
CREATE TABLE tb_webauthn_credential (
    pk_webauthn_credential TEXT PRIMARY KEY NOT NULL,
    fk_user                TEXT NOT NULL REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    credential_id          BLOB NOT NULL UNIQUE,
    passkey                TEXT NOT NULL,
    name                   TEXT NOT NULL,
    sign_count             INTEGER NOT NULL DEFAULT 0,
    created_at             TEXT NOT NULL,
    last_used_at           TEXT
) STRICT;
CREATE INDEX ix_tb_webauthn_credential_fk_user ON tb_webauthn_credential (fk_user);

CREATE TABLE tb_webauthn_ceremony (
    pk_webauthn_ceremony TEXT PRIMARY KEY NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('register', 'login', 'passwordless')),
    fk_user              TEXT REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    state                TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    expires_at           TEXT NOT NULL
) STRICT;
CREATE INDEX ix_tb_webauthn_ceremony_expires_at ON tb_webauthn_ceremony (expires_at);
