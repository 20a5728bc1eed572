-- Placeholder on the webauthn branch: the MFA issue's 0004_mfa.sql (TOTP, recovery codes,
-- mfa_token challenges) replaces this file when the branches merge. The passkey tables of 0005
-- keep bit 2 of this column in step with the user's credentials.
ALTER TABLE tb_user ADD COLUMN mfa_methods INTEGER NOT NULL DEFAULT 0;
