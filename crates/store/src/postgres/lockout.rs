//! Failed-login counters on PostgreSQL.
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fraise_core::StoreError;
use fraise_core::store::LoginFailureStore;

use super::PgStore;
use crate::errors::map;

#[async_trait]
impl LoginFailureStore for PgStore {
    async fn lock_until(
        &self,
        email: &str,
        keys: &[&str],
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        sqlx::query_scalar(self.sql(
            "SELECT MAX(locked_until) FROM {s}.tb_login_failure \
             WHERE email = $1 AND client_key = ANY($2) AND locked_until > $3",
        ))
        .bind(email)
        .bind(keys)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(map)
    }

    async fn add_failure(
        &self,
        email: &str,
        client: &str,
        now: DateTime<Utc>,
        window_start: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let n: i32 = sqlx::query_scalar(self.sql(
            "INSERT INTO {s}.tb_login_failure AS f (email, client_key, failures, last_failure_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (email, client_key) DO UPDATE SET \
             failures = CASE WHEN f.last_failure_at < $4 THEN 1 ELSE f.failures + 1 END, \
             last_failure_at = $3 RETURNING failures",
        ))
        .bind(email)
        .bind(client)
        .bind(now)
        .bind(window_start)
        .fetch_one(&self.pool)
        .await
        .map_err(map)?;
        Ok(i64::from(n))
    }

    async fn set_lock(&self, email: &str, client: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(self.sql("UPDATE {s}.tb_login_failure SET locked_until = $3 WHERE email = $1 AND client_key = $2"))
            .bind(email)
            .bind(client)
            .bind(until)
            .execute(&self.pool)
            .await
            .map_err(map)?;
        Ok(())
    }

    async fn clear_failures(&self, email: &str, client: Option<&str>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let locked: i64 = sqlx::query_scalar(self.sql(
            "WITH gone AS (DELETE FROM {s}.tb_login_failure \
             WHERE email = $1 AND ($2::text IS NULL OR client_key IN ($2, '*')) RETURNING locked_until) \
             SELECT COUNT(*) FROM gone WHERE locked_until > $3",
        ))
        .bind(email)
        .bind(client)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(map)?;
        Ok(u64::try_from(locked).unwrap_or(0))
    }
}
