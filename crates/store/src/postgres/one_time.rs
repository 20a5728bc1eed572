//! Single-use emailed tokens on PostgreSQL.
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fraise_core::StoreError;
use fraise_core::store::{OneTimeKind, OneTimeTokenStore};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::PgStore;
use crate::errors::map;
use crate::one_time::table;

impl PgStore {
    /// `{s}` (schema), `{t}` (table) and `{pk}` of `kind` substituted: all validated or static.
    fn sql_kind(&self, kind: OneTimeKind, template: &'static str) -> AssertSqlSafe<String> {
        let (t, pk) = table(kind);
        AssertSqlSafe(self.sql(template).0.replace("{t}", t).replace("{pk}", pk))
    }
}

#[async_trait]
impl OneTimeTokenStore for PgStore {
    async fn issue_one_time(
        &self,
        kind: OneTimeKind,
        user: Uuid,
        hash: &[u8; 32],
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        throttle_since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map)?;
        // The user's row lock serialises issuers for this user: at READ COMMITTED the throttle
        // check and "void the older ones" would otherwise race.
        let exists: Option<i32> =
            sqlx::query_scalar(self.sql("SELECT 1 FROM {s}.tb_user WHERE pk_user = $1 FOR UPDATE"))
                .bind(user)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map)?;
        if exists.is_none() {
            return Ok(false);
        }
        let recent: Option<DateTime<Utc>> =
            sqlx::query_scalar(self.sql_kind(kind, "SELECT MAX(created_at) FROM {s}.{t} WHERE fk_user = $1"))
                .bind(user)
                .fetch_one(&mut *tx)
                .await
                .map_err(map)?;
        if recent.is_some_and(|at| at >= throttle_since) {
            return Ok(false);
        }
        sqlx::query(self.sql_kind(kind, "UPDATE {s}.{t} SET used_at = $2 WHERE fk_user = $1 AND used_at IS NULL"))
            .bind(user)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        sqlx::query(self.sql_kind(
            kind,
            "INSERT INTO {s}.{t} ({pk}, fk_user, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        ))
        .bind(Uuid::new_v4())
        .bind(user)
        .bind(&hash[..])
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    async fn peek_one_time(
        &self,
        kind: OneTimeKind,
        hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Uuid>, StoreError> {
        sqlx::query_scalar(self.sql_kind(
            kind,
            "SELECT fk_user FROM {s}.{t} WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        ))
        .bind(&hash[..])
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)
    }

    async fn consume_one_time(
        &self,
        kind: OneTimeKind,
        hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Uuid>, StoreError> {
        sqlx::query_scalar(self.sql_kind(
            kind,
            "UPDATE {s}.{t} SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING fk_user",
        ))
        .bind(&hash[..])
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)
    }
}
