-- fraise-auth core schema (SQLite). Same tables and columns as the PostgreSQL schema; types
-- mapped: UUID -> TEXT (hyphenated), TIMESTAMPTZ -> TEXT 'YYYY-MM-DDTHH:MM:SS.mmmZ' (fixed width,
-- so text order is time order), arrays and JSONB -> TEXT holding JSON, BOOLEAN -> INTEGER 0/1.

CREATE TABLE tb_user (
    pk_user        TEXT PRIMARY KEY NOT NULL,
    email          TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    name           TEXT,
    roles          TEXT NOT NULL DEFAULT '[]' CHECK (json_type(roles) = 'array'),
    permissions    TEXT NOT NULL DEFAULT '[]' CHECK (json_type(permissions) = 'array'),
    metadata       TEXT NOT NULL DEFAULT '{}' CHECK (json_type(metadata) = 'object'),
    is_active      INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    email_verified INTEGER NOT NULL DEFAULT 0 CHECK (email_verified IN (0, 1)),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
) STRICT;
-- lower() folds ASCII only in SQLite; emails are stored already lower-cased by the service.
CREATE UNIQUE INDEX uq_tb_user_email_ci ON tb_user (lower(email));

CREATE TABLE tb_session (
    pk_session      TEXT PRIMARY KEY NOT NULL,
    fk_user         TEXT NOT NULL REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    token_family    TEXT NOT NULL,
    refresh_counter INTEGER NOT NULL DEFAULT 0,
    rotated_at      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    last_active     TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    revoked_at      TEXT,
    revoked_reason  TEXT,
    user_agent      TEXT,
    ip_address      TEXT
) STRICT;
CREATE INDEX ix_tb_session_fk_user ON tb_session (fk_user);

CREATE TABLE tb_password_reset (
    pk_password_reset TEXT PRIMARY KEY NOT NULL,
    fk_user           TEXT NOT NULL REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    token_hash        BLOB NOT NULL UNIQUE,
    created_at        TEXT NOT NULL,
    expires_at        TEXT NOT NULL,
    used_at           TEXT
) STRICT;
CREATE INDEX ix_tb_password_reset_fk_user ON tb_password_reset (fk_user);

CREATE TABLE tb_auth_audit (
    pk_auth_audit TEXT PRIMARY KEY NOT NULL,
    event_type    TEXT NOT NULL,
    fk_user       TEXT,
    fk_session    TEXT,
    ip_address    TEXT,
    user_agent    TEXT,
    details       TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL
) STRICT;
CREATE INDEX ix_tb_auth_audit_fk_user ON tb_auth_audit (fk_user, created_at);
CREATE INDEX ix_tb_auth_audit_created_at ON tb_auth_audit (created_at);
