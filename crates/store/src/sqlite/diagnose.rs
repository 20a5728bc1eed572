//! What `fraise-auth doctor` asks of SQLite: the library's version, and whether the file can be
//! read and written (proved inside a transaction that is rolled back).
use chrono::Utc;
use fraise_core::StoreError;
use uuid::Uuid;

use super::{SqliteStore, ts};
use crate::errors::map;

impl SqliteStore {
    /// `SQLite 3.x.y`.
    pub async fn server_version(&self) -> Result<String, StoreError> {
        let v: String = sqlx::query_scalar("SELECT sqlite_version()").fetch_one(&self.pool).await.map_err(map)?;
        Ok(format!("SQLite {v}"))
    }

    /// Writes, reads and deletes a throw-away user, session and audit row, reads the lockout
    /// table, then rolls everything back. `Err` names the step that failed and why.
    pub async fn check_read_write(&self) -> Result<(), String> {
        let mut tx = self.writer.begin().await.map_err(|e| format!("begin: {e}"))?;
        let (user, now) = (Uuid::new_v4().to_string(), ts(Utc::now()));
        let step = |what: &'static str| move |e: sqlx::Error| format!("{what}: {e}");
        sqlx::query(
            "INSERT INTO tb_user (pk_user, email, password_hash, created_at, updated_at) VALUES (?1, ?2, 'x', ?3, ?3)",
        )
        .bind(&user)
        .bind(format!("doctor-{user}@doctor.invalid"))
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(step("insert into tb_user"))?;
        sqlx::query(
            "INSERT INTO tb_session (pk_session, fk_user, token_family, rotated_at, created_at, last_active, \
             expires_at) VALUES (?1, ?1, ?1, ?2, ?2, ?2, ?2)",
        )
        .bind(&user)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(step("insert into tb_session"))?;
        sqlx::query(
            "INSERT INTO tb_auth_audit (pk_auth_audit, event_type, fk_user, created_at) VALUES (?1, 'doctor', ?1, ?2)",
        )
        .bind(&user)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(step("insert into tb_auth_audit"))?;
        let sessions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tb_user uu JOIN tb_session ss ON ss.fk_user = uu.pk_user WHERE uu.pk_user = ?1",
        )
        .bind(&user)
        .fetch_one(&mut *tx)
        .await
        .map_err(step("read tb_user and tb_session"))?;
        if sessions != 1 {
            return Err(format!("read back {sessions} session(s) instead of the 1 written"));
        }
        sqlx::query("SELECT count(*) FROM tb_login_failure")
            .execute(&mut *tx)
            .await
            .map_err(step("read tb_login_failure"))?;
        sqlx::query("DELETE FROM tb_user WHERE pk_user = ?1")
            .bind(&user)
            .execute(&mut *tx)
            .await
            .map_err(step("delete from tb_user"))?;
        tx.rollback().await.map_err(step("rollback"))
    }
}
