//! Second factors on PostgreSQL: TOTP enrollments, recovery codes and login challenges.
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fraise_core::StoreError;
use fraise_core::mfa::MfaMethods;
use fraise_core::store::{MfaStore, TotpRecord};
use sqlx::Row;
use uuid::Uuid;

use super::PgStore;
use super::cache::Target;
use crate::errors::map;

#[async_trait]
impl MfaStore for PgStore {
    async fn put_pending_totp(&self, user: Uuid, sealed: &[u8], now: DateTime<Utc>) -> Result<bool, StoreError> {
        // Inserts, or replaces an unconfirmed row; a confirmed row is left alone (no row back).
        let done = sqlx::query(self.sql(
            "INSERT INTO {s}.tb_mfa_totp AS t (fk_user, secret_sealed, created_at) \
             SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM {s}.tb_user WHERE pk_user = $1) \
             ON CONFLICT (fk_user) DO UPDATE SET secret_sealed = EXCLUDED.secret_sealed, \
             created_at = EXCLUDED.created_at, last_step = -1 WHERE t.confirmed_at IS NULL",
        ))
        .bind(user)
        .bind(sealed)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }

    async fn totp(&self, user: Uuid) -> Result<Option<TotpRecord>, StoreError> {
        let row = sqlx::query(self.sql(
            "SELECT secret_sealed, confirmed_at IS NOT NULL AS confirmed, last_step FROM {s}.tb_mfa_totp WHERE fk_user = $1",
        ))
        .bind(user)
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
        let _after = self.cache.after_write(Target::User(user));
        let mut tx = self.pool.begin().await.map_err(map)?;
        let done = sqlx::query(self.sql(
            "UPDATE {s}.tb_mfa_totp SET confirmed_at = $3, last_step = $4 \
             WHERE fk_user = $1 AND secret_sealed = $2 AND confirmed_at IS NULL AND last_step < $4",
        ))
        .bind(user)
        .bind(sealed)
        .bind(now)
        .bind(step)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(self.sql("DELETE FROM {s}.tb_mfa_recovery_code WHERE fk_user = $1"))
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        for hash in recovery {
            sqlx::query(self.sql(
                "INSERT INTO {s}.tb_mfa_recovery_code (pk_mfa_recovery_code, fk_user, code_hash, created_at) \
                 VALUES ($1, $2, $3, $4)",
            ))
            .bind(Uuid::new_v4())
            .bind(user)
            .bind(&hash[..])
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
        sqlx::query(self.sql("UPDATE {s}.tb_user SET mfa_methods = mfa_methods | $2 WHERE pk_user = $1"))
            .bind(user)
            .bind(MfaMethods::TOTP)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    async fn use_totp_step(&self, user: Uuid, step: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql(
            "UPDATE {s}.tb_mfa_totp SET last_step = $2 \
             WHERE fk_user = $1 AND confirmed_at IS NOT NULL AND last_step < $2",
        ))
        .bind(user)
        .bind(step)
        .execute(&self.pool)
        .await
        .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }

    async fn use_recovery_code(&self, user: Uuid, hash: &[u8; 32], now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql(
            "UPDATE {s}.tb_mfa_recovery_code SET used_at = $3 \
             WHERE fk_user = $1 AND code_hash = $2 AND used_at IS NULL",
        ))
        .bind(user)
        .bind(&hash[..])
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }

    async fn recovery_codes_left(&self, user: Uuid) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar(
            self.sql("SELECT COUNT(*) FROM {s}.tb_mfa_recovery_code WHERE fk_user = $1 AND used_at IS NULL"),
        )
        .bind(user)
        .fetch_one(&self.pool)
        .await
        .map_err(map)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn remove_totp(&self, user: Uuid, _now: DateTime<Utc>) -> Result<bool, StoreError> {
        let _after = self.cache.after_write(Target::User(user));
        let mut tx = self.pool.begin().await.map_err(map)?;
        let removed = sqlx::query(
            self.sql("DELETE FROM {s}.tb_mfa_totp WHERE fk_user = $1 RETURNING confirmed_at IS NOT NULL AS confirmed"),
        )
        .bind(user)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
        let confirmed = match removed {
            Some(r) => r.try_get::<bool, _>("confirmed").map_err(map)?,
            None => false,
        };
        for template in [
            "DELETE FROM {s}.tb_mfa_recovery_code WHERE fk_user = $1",
            "DELETE FROM {s}.tb_mfa_challenge WHERE fk_user = $1",
        ] {
            sqlx::query(self.sql(template)).bind(user).execute(&mut *tx).await.map_err(map)?;
        }
        sqlx::query(self.sql("UPDATE {s}.tb_user SET mfa_methods = mfa_methods & ~$2::integer WHERE pk_user = $1"))
            .bind(user)
            .bind(MfaMethods::TOTP)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(confirmed)
    }

    async fn reset_mfa(&self, user: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let _after = self.cache.after_write(Target::User(user));
        let mut tx = self.pool.begin().await.map_err(map)?;
        let found = sqlx::query(self.sql("UPDATE {s}.tb_user SET mfa_methods = 0, updated_at = $2 WHERE pk_user = $1"))
            .bind(user)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        if found.rows_affected() != 1 {
            return Ok(false);
        }
        for template in [
            "DELETE FROM {s}.tb_mfa_totp WHERE fk_user = $1",
            "DELETE FROM {s}.tb_mfa_recovery_code WHERE fk_user = $1",
            "DELETE FROM {s}.tb_mfa_challenge WHERE fk_user = $1",
            "DELETE FROM {s}.tb_mfa_failure WHERE fk_user = $1",
            "DELETE FROM {s}.tb_webauthn_credential WHERE fk_user = $1",
            "DELETE FROM {s}.tb_webauthn_ceremony WHERE fk_user = $1",
        ] {
            sqlx::query(self.sql(template)).bind(user).execute(&mut *tx).await.map_err(map)?;
        }
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    async fn add_mfa_failure(&self, user: Uuid, now: DateTime<Utc>) -> Result<i64, StoreError> {
        let n: i32 = sqlx::query_scalar(self.sql(
            "INSERT INTO {s}.tb_mfa_failure AS f (fk_user, failures, last_failure_at) VALUES ($1, 1, $2) \
             ON CONFLICT (fk_user) DO UPDATE SET failures = f.failures + 1, last_failure_at = $2 RETURNING failures",
        ))
        .bind(user)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(map)?;
        Ok(i64::from(n))
    }

    async fn lock_mfa(&self, user: Uuid, until: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(self.sql("UPDATE {s}.tb_mfa_failure SET locked_until = $2 WHERE fk_user = $1"))
            .bind(user)
            .bind(until)
            .execute(&self.pool)
            .await
            .map_err(map)?;
        Ok(())
    }

    async fn mfa_locked_until(&self, user: Uuid, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query_scalar(
            self.sql("SELECT locked_until FROM {s}.tb_mfa_failure WHERE fk_user = $1 AND locked_until > $2"),
        )
        .bind(user)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)
    }

    async fn clear_mfa_failures(&self, user: Uuid) -> Result<(), StoreError> {
        sqlx::query(self.sql("DELETE FROM {s}.tb_mfa_failure WHERE fk_user = $1"))
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(map)?;
        Ok(())
    }

    async fn reseal_totp(&self, user: Uuid, old: &[u8], new: &[u8]) -> Result<bool, StoreError> {
        let done = sqlx::query(
            self.sql("UPDATE {s}.tb_mfa_totp SET secret_sealed = $3 WHERE fk_user = $1 AND secret_sealed = $2"),
        )
        .bind(user)
        .bind(old)
        .bind(new)
        .execute(&self.pool)
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
        sqlx::query(self.sql(
            "INSERT INTO {s}.tb_mfa_challenge (token_hash, fk_user, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        ))
        .bind(&hash[..])
        .bind(user)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
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
        sqlx::query_scalar(self.sql(
            "SELECT fk_user FROM {s}.tb_mfa_challenge \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 AND attempts < $3",
        ))
        .bind(&hash[..])
        .bind(now)
        .bind(max_attempts)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)
    }

    async fn take_mfa_attempt(
        &self,
        hash: &[u8; 32],
        now: DateTime<Utc>,
        max_attempts: i32,
    ) -> Result<Option<Uuid>, StoreError> {
        sqlx::query_scalar(self.sql(
            "UPDATE {s}.tb_mfa_challenge SET attempts = attempts + 1 \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 AND attempts < $3 RETURNING fk_user",
        ))
        .bind(&hash[..])
        .bind(now)
        .bind(max_attempts)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)
    }

    async fn consume_mfa_challenge(&self, hash: &[u8; 32], now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql(
            "UPDATE {s}.tb_mfa_challenge SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        ))
        .bind(&hash[..])
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }
}
