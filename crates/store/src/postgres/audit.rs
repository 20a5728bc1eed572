//! The audit trail and the cleanup job on PostgreSQL.
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fraise_core::StoreError;
use fraise_core::model::AuditEvent;
use fraise_core::store::{AuditFilter, AuditStore, CleanupReport, Maintenance};
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::PgStore;
use crate::errors::map;

fn event_from(row: &PgRow) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: row.try_get("pk_auth_audit").map_err(map)?,
        at: row.try_get("created_at").map_err(map)?,
        kind: row.try_get("event_type").map_err(map)?,
        user_id: row.try_get("fk_user").map_err(map)?,
        session_id: row.try_get("fk_session").map_err(map)?,
        ip_address: row.try_get("ip_address").map_err(map)?,
        user_agent: row.try_get("user_agent").map_err(map)?,
        details: row.try_get("details").map_err(map)?,
    })
}

#[async_trait]
impl AuditStore for PgStore {
    async fn record(&self, e: AuditEvent) -> Result<(), StoreError> {
        sqlx::query(self.sql(
            "INSERT INTO {s}.tb_auth_audit (pk_auth_audit, event_type, fk_user, fk_session, ip_address, user_agent, \
             details, created_at) VALUES ($1, $2, $3, $4, $5::inet, $6, $7, $8)",
        ))
        .bind(e.id)
        .bind(&e.kind)
        .bind(e.user_id)
        .bind(e.session_id)
        .bind(&e.ip_address)
        .bind(&e.user_agent)
        .bind(&e.details)
        .bind(e.at)
        .execute(&self.pool)
        .await
        .map_err(map)?;
        Ok(())
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT pk_auth_audit, event_type, fk_user, fk_session, host(ip_address) AS ip_address, user_agent, \
             details, created_at FROM {s}.tb_auth_audit \
             WHERE ($1::uuid IS NULL OR fk_user = $1) AND ($2::text IS NULL OR event_type = $2) \
             AND ($3::timestamptz IS NULL OR created_at >= $3) ORDER BY created_at DESC LIMIT $4",
        ))
        .bind(f.user)
        .bind(&f.kind)
        .bind(f.since)
        .bind(i64::from(f.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        rows.iter().map(event_from).collect()
    }
}

impl PgStore {
    /// Deletes sessions revoked or expired before `cutoff`, in batches that walk the primary key:
    /// `expires_at` has no index (migration 0007 keeps rotations heap-only), so each batch
    /// starts where the last one stopped and one cleanup reads the table once, not once per
    /// batch. Rows another node holds (`SKIP LOCKED`) are left for the next cleanup.
    async fn drain_sessions(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        let sql = self.sql(
            "WITH d AS (DELETE FROM {s}.tb_session WHERE pk_session IN (SELECT pk_session FROM {s}.tb_session \
             WHERE pk_session > $3 AND (revoked_at < $1 OR expires_at < $1) ORDER BY pk_session LIMIT $2 \
             FOR UPDATE SKIP LOCKED) RETURNING pk_session) \
             SELECT (SELECT COUNT(*) FROM d), (SELECT pk_session FROM d ORDER BY pk_session DESC LIMIT 1)",
        );
        let (mut total, mut after) = (0, Uuid::nil());
        loop {
            let (n, last): (i64, Option<Uuid>) = sqlx::query_as(sqlx::AssertSqlSafe(sql.0.clone()))
                .bind(cutoff)
                .bind(i64::from(batch))
                .bind(after)
                .fetch_one(&self.pool)
                .await
                .map_err(map)?;
            total += u64::try_from(n).unwrap_or(0);
            match last {
                Some(last) if n >= i64::from(batch) => after = last,
                _ => return Ok(total),
            }
        }
    }

    /// Deletes in batches until a batch comes back short. `SKIP LOCKED`: a node never waits for
    /// rows another node is deleting.
    async fn drain(&self, template: &'static str, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        let sql = self.sql(template);
        let mut total = 0;
        loop {
            let n = sqlx::query(sqlx::AssertSqlSafe(sql.0.clone()))
                .bind(cutoff)
                .bind(i64::from(batch))
                .execute(&self.pool)
                .await
                .map_err(map)?;
            total += n.rows_affected();
            if n.rows_affected() < u64::from(batch) {
                return Ok(total);
            }
        }
    }
}

#[async_trait]
impl Maintenance for PgStore {
    async fn cleanup(
        &self,
        now: DateTime<Utc>,
        sessions_before: DateTime<Utc>,
        audit_before: DateTime<Utc>,
        batch: u32,
    ) -> Result<CleanupReport, StoreError> {
        let batch = batch.max(1);
        let sessions = self.drain_sessions(sessions_before, batch).await?;
        let resets = self
            .drain(
                "DELETE FROM {s}.tb_password_reset WHERE pk_password_reset IN (SELECT pk_password_reset \
                 FROM {s}.tb_password_reset WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                now,
                batch,
            )
            .await?;
        let verifications = self
            .drain(
                "DELETE FROM {s}.tb_email_verification WHERE pk_email_verification IN (SELECT pk_email_verification \
                 FROM {s}.tb_email_verification WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                now,
                batch,
            )
            .await?;
        let challenges = self
            .drain(
                "DELETE FROM {s}.tb_mfa_challenge WHERE token_hash IN (SELECT token_hash \
                 FROM {s}.tb_mfa_challenge WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                now,
                batch,
            )
            .await?;
        let audit_rows = self
            .drain(
                "DELETE FROM {s}.tb_auth_audit WHERE pk_auth_audit IN (SELECT pk_auth_audit FROM {s}.tb_auth_audit \
                 WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                audit_before,
                batch,
            )
            .await?;
        // Counters whose last failure is a day old and that hold no lock in force.
        sqlx::query(self.sql(
            "DELETE FROM {s}.tb_login_failure WHERE last_failure_at < $1 AND (locked_until IS NULL OR locked_until < $2)",
        ))
        .bind(now - chrono::Duration::days(1))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(map)?;
        Ok(CleanupReport { sessions, one_time_tokens: resets + verifications + challenges, audit_rows })
    }
}
