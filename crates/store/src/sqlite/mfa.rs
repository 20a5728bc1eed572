//! Second factors on SQLite (see the PostgreSQL backend; same statements, SQLite's types).
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fraise_core::StoreError;
use fraise_core::mfa::MfaMethods;
use fraise_core::store::{MfaStore, TotpRecord};
use sqlx::Row;
use uuid::Uuid;

use super::{SqliteStore, parse_ts, parse_uuid, ts};
use crate::errors::map;

#[async_trait]
impl MfaStore for SqliteStore {
    async fn put_pending_totp(&self, user: Uuid, sealed: &[u8], now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO tb_mfa_totp AS t (fk_user, secret_sealed, created_at) \
             SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM tb_user WHERE pk_user = ?1) \
             ON CONFLICT (fk_user) DO UPDATE SET secret_sealed = excluded.secret_sealed, \
             created_at = excluded.created_at, last_step = -1 WHERE t.confirmed_at IS NULL",
        )
        .bind(user.to_string())
        .bind(sealed)
        .bind(ts(now))
        .execute(&self.writer)
        .await
        .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }

    async fn totp(&self, user: Uuid) -> Result<Option<TotpRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT secret_sealed, confirmed_at IS NOT NULL AS confirmed, last_step FROM tb_mfa_totp WHERE fk_user = ?1",
        )
        .bind(user.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.map(|r| {
            Ok(TotpRecord {
                sealed_secret: r.try_get("secret_sealed").map_err(map)?,
                confirmed: r.try_get("confirmed").map_err(map)?,
                last_step: r.try_get("last_step").map_err(map)?,
            })
        })
        .transpose()
    }

    async fn confirm_totp(
        &self,
        user: Uuid,
        sealed: &[u8],
        step: i64,
        recovery: &[[u8; 32]],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = user.to_string();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map)?;
        let done = sqlx::query(
            "UPDATE tb_mfa_totp SET confirmed_at = ?3, last_step = ?4 \
             WHERE fk_user = ?1 AND secret_sealed = ?2 AND confirmed_at IS NULL AND last_step < ?4",
        )
        .bind(&id)
        .bind(sealed)
        .bind(ts(now))
        .bind(step)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM tb_mfa_recovery_code WHERE fk_user = ?1")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        for hash in recovery {
            sqlx::query(
                "INSERT INTO tb_mfa_recovery_code (pk_mfa_recovery_code, fk_user, code_hash, created_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .bind(Uuid::new_v4().to_string())
            .bind(&id)
            .bind(&hash[..])
            .bind(ts(now))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
        sqlx::query("UPDATE tb_user SET mfa_methods = mfa_methods | ?2 WHERE pk_user = ?1")
            .bind(&id)
            .bind(MfaMethods::TOTP)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    async fn use_totp_step(&self, user: Uuid, step: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tb_mfa_totp SET last_step = ?2 WHERE fk_user = ?1 AND confirmed_at IS NOT NULL AND last_step < ?2",
        )
        .bind(user.to_string())
        .bind(step)
        .execute(&self.writer)
        .await
        .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }

    async fn use_recovery_code(&self, user: Uuid, hash: &[u8; 32], now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tb_mfa_recovery_code SET used_at = ?3 WHERE fk_user = ?1 AND code_hash = ?2 AND used_at IS NULL",
        )
        .bind(user.to_string())
        .bind(&hash[..])
        .bind(ts(now))
        .execute(&self.writer)
        .await
        .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }

    async fn recovery_codes_left(&self, user: Uuid) -> Result<u32, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tb_mfa_recovery_code WHERE fk_user = ?1 AND used_at IS NULL")
                .bind(user.to_string())
                .fetch_one(&self.pool)
                .await
                .map_err(map)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn remove_totp(&self, user: Uuid, _now: DateTime<Utc>) -> Result<bool, StoreError> {
        let id = user.to_string();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map)?;
        let confirmed: Option<bool> =
            sqlx::query_scalar("DELETE FROM tb_mfa_totp WHERE fk_user = ?1 RETURNING confirmed_at IS NOT NULL")
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map)?;
        for statement in
            ["DELETE FROM tb_mfa_recovery_code WHERE fk_user = ?1", "DELETE FROM tb_mfa_challenge WHERE fk_user = ?1"]
        {
            sqlx::query(statement).bind(&id).execute(&mut *tx).await.map_err(map)?;
        }
        sqlx::query("UPDATE tb_user SET mfa_methods = mfa_methods & ~?2 WHERE pk_user = ?1")
            .bind(&id)
            .bind(MfaMethods::TOTP)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(confirmed.unwrap_or(false))
    }

    async fn reset_mfa(&self, user: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let id = user.to_string();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map)?;
        let found = sqlx::query("UPDATE tb_user SET mfa_methods = 0, updated_at = ?2 WHERE pk_user = ?1")
            .bind(&id)
            .bind(ts(now))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        if found.rows_affected() != 1 {
            return Ok(false);
        }
        for statement in [
            "DELETE FROM tb_mfa_totp WHERE fk_user = ?1",
            "DELETE FROM tb_mfa_recovery_code WHERE fk_user = ?1",
            "DELETE FROM tb_mfa_challenge WHERE fk_user = ?1",
            "DELETE FROM tb_mfa_failure WHERE fk_user = ?1",
            "DELETE FROM tb_webauthn_credential WHERE fk_user = ?1",
            "DELETE FROM tb_webauthn_ceremony WHERE fk_user = ?1",
        ] {
            sqlx::query(statement).bind(&id).execute(&mut *tx).await.map_err(map)?;
        }
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    async fn add_mfa_failure(&self, user: Uuid, now: DateTime<Utc>) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "INSERT INTO tb_mfa_failure AS f (fk_user, failures, last_failure_at) VALUES (?1, 1, ?2) \
             ON CONFLICT (fk_user) DO UPDATE SET failures = f.failures + 1, last_failure_at = ?2 RETURNING failures",
        )
        .bind(user.to_string())
        .bind(ts(now))
        .fetch_one(&self.writer)
        .await
        .map_err(map)
    }

    async fn lock_mfa(&self, user: Uuid, until: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE tb_mfa_failure SET locked_until = ?2 WHERE fk_user = ?1")
            .bind(user.to_string())
            .bind(ts(until))
            .execute(&self.writer)
            .await
            .map_err(map)?;
        Ok(())
    }

    async fn mfa_locked_until(&self, user: Uuid, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let until: Option<String> =
            sqlx::query_scalar("SELECT locked_until FROM tb_mfa_failure WHERE fk_user = ?1 AND locked_until > ?2")
                .bind(user.to_string())
                .bind(ts(now))
                .fetch_optional(&self.pool)
                .await
                .map_err(map)?;
        until.as_deref().map(parse_ts).transpose()
    }

    async fn clear_mfa_failures(&self, user: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM tb_mfa_failure WHERE fk_user = ?1")
            .bind(user.to_string())
            .execute(&self.writer)
            .await
            .map_err(map)?;
        Ok(())
    }

    async fn reseal_totp(&self, user: Uuid, old: &[u8], new: &[u8]) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE tb_mfa_totp SET secret_sealed = ?3 WHERE fk_user = ?1 AND secret_sealed = ?2")
            .bind(user.to_string())
            .bind(old)
            .bind(new)
            .execute(&self.writer)
            .await
            .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_mfa_challenge(
        &self,
        hash: &[u8; 32],
        user: Uuid,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tb_mfa_challenge (token_hash, fk_user, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&hash[..])
        .bind(user.to_string())
        .bind(ts(now))
        .bind(ts(expires_at))
        .execute(&self.writer)
        .await
        .map_err(map)?;
        Ok(())
    }

    async fn peek_mfa_challenge(
        &self,
        hash: &[u8; 32],
        now: DateTime<Utc>,
        max_attempts: i32,
    ) -> Result<Option<Uuid>, StoreError> {
        let user: Option<String> = sqlx::query_scalar(
            "SELECT fk_user FROM tb_mfa_challenge \
             WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2 AND attempts < ?3",
        )
        .bind(&hash[..])
        .bind(ts(now))
        .bind(max_attempts)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        user.as_deref().map(parse_uuid).transpose()
    }

    async fn take_mfa_attempt(
        &self,
        hash: &[u8; 32],
        now: DateTime<Utc>,
        max_attempts: i32,
    ) -> Result<Option<Uuid>, StoreError> {
        let user: Option<String> = sqlx::query_scalar(
            "UPDATE tb_mfa_challenge SET attempts = attempts + 1 \
             WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2 AND attempts < ?3 RETURNING fk_user",
        )
        .bind(&hash[..])
        .bind(ts(now))
        .bind(max_attempts)
        .fetch_optional(&self.writer)
        .await
        .map_err(map)?;
        user.as_deref().map(parse_uuid).transpose()
    }

    async fn consume_mfa_challenge(&self, hash: &[u8; 32], now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tb_mfa_challenge SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
        )
        .bind(&hash[..])
        .bind(ts(now))
        .execute(&self.writer)
        .await
        .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }
}
