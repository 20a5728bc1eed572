//! Single-use emailed tokens on SQLite.
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fraise_core::StoreError;
use fraise_core::store::{OneTimeKind, OneTimeTokenStore};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{SqliteStore, parse_ts, parse_uuid, ts};
use crate::errors::map;
use crate::one_time::table;

#[async_trait]
impl OneTimeTokenStore for SqliteStore {
    async fn issue_one_time(
        &self,
        kind: OneTimeKind,
        user: Uuid,
        hash: &[u8; 32],
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        throttle_since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (t, pk) = table(kind);
        // IMMEDIATE takes SQLite's single write lock first: the check below and the writes after it
        // cannot interleave with another issuer.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map)?;
        // Table names come from `table`, never from input.
        let recent: Option<String> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT MAX(created_at) FROM {t} WHERE fk_user = ?1")))
                .bind(user.to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err(map)?;
        if recent.as_deref().map(parse_ts).transpose()?.is_some_and(|at| at >= throttle_since) {
            return Ok(false);
        }
        sqlx::query(AssertSqlSafe(format!("UPDATE {t} SET used_at = ?2 WHERE fk_user = ?1 AND used_at IS NULL")))
            .bind(user.to_string())
            .bind(ts(now))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {t} ({pk}, fk_user, token_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)"
        )))
        .bind(Uuid::new_v4().to_string())
        .bind(user.to_string())
        .bind(&hash[..])
        .bind(ts(now))
        .bind(ts(expires_at))
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
        let (t, _) = table(kind);
        let user: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT fk_user FROM {t} WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2"
        )))
        .bind(&hash[..])
        .bind(ts(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        user.as_deref().map(parse_uuid).transpose()
    }

    async fn consume_one_time(
        &self,
        kind: OneTimeKind,
        hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Uuid>, StoreError> {
        let (t, _) = table(kind);
        let user: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "UPDATE {t} SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2 RETURNING fk_user"
        )))
        .bind(&hash[..])
        .bind(ts(now))
        .fetch_optional(&self.writer)
        .await
        .map_err(map)?;
        user.as_deref().map(parse_uuid).transpose()
    }
}
