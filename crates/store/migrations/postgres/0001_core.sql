-- fraise-auth core schema (PostgreSQL). Table and column names follow FraiseQL's native auth,
-- so an existing FraiseQL database is importable and the troubleshooting guide's SQL runs as is.
-- Every statement is schema-relative: the migrator runs it with search_path set to the tenant's
-- schema.

CREATE TABLE tb_user (
    pk_user        UUID PRIMARY KEY,
    email          TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    name           TEXT,
    roles          TEXT[] NOT NULL DEFAULT '{}',
    permissions    TEXT[] NOT NULL DEFAULT '{}',
    metadata       JSONB NOT NULL DEFAULT '{}'::jsonb,
    is_active      BOOLEAN NOT NULL DEFAULT TRUE,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT ck_tb_user_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
-- Case-insensitive uniqueness enforced by the database, not only by the application.
CREATE UNIQUE INDEX uq_tb_user_email_ci ON tb_user (lower(email));

CREATE TABLE tb_session (
    pk_session      UUID PRIMARY KEY,
    fk_user         UUID NOT NULL REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    token_family    UUID NOT NULL,
    -- The refresh-token chain: the current token is MAC(pk_session, refresh_counter).
    refresh_counter BIGINT NOT NULL DEFAULT 0,
    rotated_at      TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    last_active     TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ,
    revoked_reason  TEXT,
    user_agent      TEXT,
    ip_address      INET
);
CREATE INDEX ix_tb_session_fk_user ON tb_session (fk_user);

CREATE TABLE tb_password_reset (
    pk_password_reset UUID PRIMARY KEY,
    fk_user           UUID NOT NULL REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    -- SHA-256 of the token: the token itself is never stored.
    token_hash        BYTEA NOT NULL UNIQUE,
    created_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL,
    used_at           TIMESTAMPTZ
);
CREATE INDEX ix_tb_password_reset_fk_user ON tb_password_reset (fk_user);

-- The audit trail outlives the rows it mentions: no foreign keys.
CREATE TABLE tb_auth_audit (
    pk_auth_audit UUID PRIMARY KEY,
    event_type    TEXT NOT NULL,
    fk_user       UUID,
    fk_session    UUID,
    ip_address    INET,
    user_agent    TEXT,
    details       JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX ix_tb_auth_audit_fk_user ON tb_auth_audit (fk_user, created_at);
CREATE INDEX ix_tb_auth_audit_created_at ON tb_auth_audit (created_at);
