-- Passkeys (WebAuthn). Every statement is schema-relative, like the others: the migrator runs it
-- with search_path set to the tenant's schema.

-- One row per registered passkey. `passkey` is webauthn-rs's serialized credential (public key,
-- algorithm, flags, counter) as JSON text: opaque to SQL, read back whole by the service.
-- `credential_id` is the authenticator's raw credential id, unique so that one authenticator
-- credential can never answer for two accounts. Changing the set of a user's passkeys also sets
-- or clears bit 2 of tb_user.mfa_methods, in the same transaction.
CREATE TABLE tb_webauthn_credential (
    pk_webauthn_credential UUID PRIMARY KEY,
    fk_user                UUID NOT NULL REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    credential_id          BYTEA NOT NULL,
    passkey                TEXT NOT NULL,
    name                   TEXT NOT NULL,
    sign_count             BIGINT NOT NULL DEFAULT 0,
    created_at             TIMESTAMPTZ NOT NULL,
    last_used_at           TIMESTAMPTZ,
    CONSTRAINT uq_tb_webauthn_credential_id UNIQUE (credential_id)
);
CREATE INDEX ix_tb_webauthn_credential_fk_user ON tb_webauthn_credential (fk_user);

-- A ceremony between its start and its finish: the server-side state webauthn-rs needs (the
-- challenge among it). Single use (taken with DELETE ... RETURNING), short-lived. fk_user is NULL
-- for a passwordless login, whose user is known only from the assertion.
CREATE TABLE tb_webauthn_ceremony (
    pk_webauthn_ceremony UUID PRIMARY KEY,
    kind                 TEXT NOT NULL CHECK (kind IN ('register', 'login', 'passwordless')),
    fk_user              UUID REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    state                TEXT NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL,
    expires_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX ix_tb_webauthn_ceremony_expires_at ON tb_webauthn_ceremony (expires_at);
