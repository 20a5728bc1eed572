-- Email verification tokens (single use, stored as SHA-256), and indexes for the cleanup job.
CREATE TABLE tb_email_verification (
    pk_email_verification UUID PRIMARY KEY,
    fk_user               UUID NOT NULL REFERENCES tb_user (pk_user) ON DELETE CASCADE,
    token_hash            BYTEA NOT NULL UNIQUE,
    created_at            TIMESTAMPTZ NOT NULL,
    expires_at            TIMESTAMPTZ NOT NULL,
    used_at               TIMESTAMPTZ
);
CREATE INDEX ix_tb_email_verification_fk_user ON tb_email_verification (fk_user);
CREATE INDEX ix_tb_session_expires_at ON tb_session (expires_at);
CREATE INDEX ix_tb_session_revoked_at ON tb_session (revoked_at) WHERE revoked_at IS NOT NULL;
