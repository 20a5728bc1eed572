//! The audit trail and the cleanup job on SQLite.
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fraise_core::StoreError;
use fraise_core::model::AuditEvent;
use fraise_core::store::{AuditFilter, AuditStore, CleanupReport, Maintenance};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, parse_ts, parse_uuid, ts};
use crate::errors::{decode, map};

fn event_from(row: &SqliteRow) -> Result<AuditEvent, StoreError> {
    let opt_uuid = |c: &str| -> Result<_, StoreError> {
        row.try_get::<Option<String>, _>(c).map_err(map)?.as_deref().map(parse_uuid).transpose()
    };
    let details: String = row.try_get("details").map_err(map)?;
    Ok(AuditEvent {
        id: parse_uuid(&row.try_get::<String, _>("pk_auth_audit").map_err(map)?)?,
        at: parse_ts(&row.try_get::<String, _>("created_at").map_err(map)?)?,
        kind: row.try_get("event_type").map_err(map)?,
        user_id: opt_uuid("fk_user")?,
        session_id: opt_uuid("fk_session")?,
        ip_address: row.try_get("ip_address").map_err(map)?,
        user_agent: row.try_get("user_agent").map_err(map)?,
        details: serde_json::from_str(&details).map_err(|_| decode("audit details"))?,
    })
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record(&self, e: AuditEvent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tb_auth_audit (pk_auth_audit, event_type, fk_user, fk_session, ip_address, user_agent, \
             details, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(e.id.to_string())
        .bind(&e.kind)
        .bind(e.user_id.map(|u| u.to_string()))
        .bind(e.session_id.map(|s| s.to_string()))
        .bind(&e.ip_address)
        .bind(&e.user_agent)
        .bind(e.details.to_string())
        .bind(ts(e.at))
        .execute(&self.writer)
        .await
        .map_err(map)?;
        Ok(())
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT pk_auth_audit, event_type, fk_user, fk_session, ip_address, user_agent, details, created_at \
             FROM tb_auth_audit WHERE (?1 IS NULL OR fk_user = ?1) AND (?2 IS NULL OR event_type = ?2) \
             AND (?3 IS NULL OR created_at >= ?3) ORDER BY created_at DESC LIMIT ?4",
        )
        .bind(f.user.map(|u| u.to_string()))
        .bind(&f.kind)
        .bind(f.since.map(ts))
        .bind(i64::from(f.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        rows.iter().map(event_from).collect()
    }
}

/// Deletes in batches until a batch comes back short.
async fn drain(store: &SqliteStore, sql: &'static str, cutoff: String, batch: u32) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = sqlx::query(sql).bind(&cutoff).bind(i64::from(batch)).execute(&store.writer).await.map_err(map)?;
        total += n.rows_affected();
        if n.rows_affected() < u64::from(batch) {
            return Ok(total);
        }
    }
}

#[async_trait]
impl Maintenance for SqliteStore {
    async fn cleanup(
        &self,
        now: DateTime<Utc>,
        sessions_before: DateTime<Utc>,
        audit_before: DateTime<Utc>,
        batch: u32,
    ) -> Result<CleanupReport, StoreError> {
        let batch = batch.max(1);
        let sessions = drain(
            self,
            "DELETE FROM tb_session WHERE pk_session IN (SELECT pk_session FROM tb_session \
             WHERE revoked_at < ?1 OR expires_at < ?1 LIMIT ?2)",
            ts(sessions_before),
            batch,
        )
        .await?;
        let resets = drain(
            self,
            "DELETE FROM tb_password_reset WHERE pk_password_reset IN (SELECT pk_password_reset \
             FROM tb_password_reset WHERE expires_at < ?1 LIMIT ?2)",
            ts(now),
            batch,
        )
        .await?;
        let verifications = drain(
            self,
            "DELETE FROM tb_email_verification WHERE pk_email_verification IN (SELECT pk_email_verification \
             FROM tb_email_verification WHERE expires_at < ?1 LIMIT ?2)",
            ts(now),
            batch,
        )
        .await?;
        let challenges = drain(
            self,
            "DELETE FROM tb_mfa_challenge WHERE token_hash IN (SELECT token_hash \
             FROM tb_mfa_challenge WHERE expires_at < ?1 LIMIT ?2)",
            ts(now),
            batch,
        )
        .await?;
        let audit_rows = drain(
            self,
            "DELETE FROM tb_auth_audit WHERE pk_auth_audit IN (SELECT pk_auth_audit FROM tb_auth_audit \
             WHERE created_at < ?1 LIMIT ?2)",
            ts(audit_before),
            batch,
        )
        .await?;
        // Counters whose last failure is a day old and that hold no lock in force.
        sqlx::query(
            "DELETE FROM tb_login_failure WHERE last_failure_at < ?1 AND (locked_until IS NULL OR locked_until < ?2)",
        )
        .bind(ts(now - chrono::Duration::days(1)))
        .bind(ts(now))
        .execute(&self.writer)
        .await
        .map_err(map)?;
        Ok(CleanupReport { sessions, one_time_tokens: resets + verifications + challenges, audit_rows })
    }
}
