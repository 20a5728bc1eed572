//! Failed-login counters on SQLite.
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fraise_core::StoreError;
use fraise_core::store::LoginFailureStore;

use super::{SqliteStore, parse_ts, ts};
use crate::errors::map;

#[async_trait]
impl LoginFailureStore for SqliteStore {
    async fn lock_until(
        &self,
        email: &str,
        keys: &[&str],
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut latest: Option<DateTime<Utc>> = None;
        for key in keys {
            let until: Option<String> = sqlx::query_scalar(
                "SELECT locked_until FROM tb_login_failure WHERE email = ?1 AND client_key = ?2 AND locked_until > ?3",
            )
            .bind(email)
            .bind(*key)
            .bind(ts(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?
            .flatten();
            if let Some(t) = until.as_deref().map(parse_ts).transpose()? {
                latest = latest.max(Some(t));
            }
        }
        Ok(latest)
    }

    async fn add_failure(
        &self,
        email: &str,
        client: &str,
        now: DateTime<Utc>,
        window_start: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "INSERT INTO tb_login_failure (email, client_key, failures, last_failure_at) VALUES (?1, ?2, 1, ?3) \
             ON CONFLICT (email, client_key) DO UPDATE SET \
             failures = CASE WHEN tb_login_failure.last_failure_at < ?4 THEN 1 ELSE tb_login_failure.failures + 1 END, \
             last_failure_at = ?3 RETURNING failures",
        )
        .bind(email)
        .bind(client)
        .bind(ts(now))
        .bind(ts(window_start))
        .fetch_one(&self.writer)
        .await
        .map_err(map)
    }

    async fn set_lock(&self, email: &str, client: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE tb_login_failure SET locked_until = ?3 WHERE email = ?1 AND client_key = ?2")
            .bind(email)
            .bind(client)
            .bind(ts(until))
            .execute(&self.writer)
            .await
            .map_err(map)?;
        Ok(())
    }

    async fn clear_failures(&self, email: &str, client: Option<&str>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let locked: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tb_login_failure WHERE email = ?1 AND (?2 IS NULL OR client_key IN (?2, '*')) \
             AND locked_until > ?3",
        )
        .bind(email)
        .bind(client)
        .bind(ts(now))
        .fetch_one(&self.pool)
        .await
        .map_err(map)?;
        sqlx::query("DELETE FROM tb_login_failure WHERE email = ?1 AND (?2 IS NULL OR client_key IN (?2, '*'))")
            .bind(email)
            .bind(client)
            .execute(&self.writer)
            .await
            .map_err(map)?;
        Ok(u64::try_from(locked).unwrap_or(0))
    }
}
