//! Passkeys and WebAuthn ceremony state on SQLite.
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fraise_core::StoreError;
use fraise_core::mfa::MfaMethods;
use fraise_core::store::{CeremonyKind, PasskeyRecord, PasskeyStore};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::{SqliteStore, parse_opt_ts, parse_ts, parse_uuid, ts};
use crate::errors::map;

const COLS: &str =
    "pk_webauthn_credential, fk_user, credential_id, passkey, name, sign_count, created_at, last_used_at";

fn passkey_from(row: &SqliteRow) -> Result<PasskeyRecord, StoreError> {
    let get = |c: &str| row.try_get::<String, _>(c).map_err(map);
    Ok(PasskeyRecord {
        id: parse_uuid(&get("pk_webauthn_credential")?)?,
        user_id: parse_uuid(&get("fk_user")?)?,
        credential_id: row.try_get("credential_id").map_err(map)?,
        passkey: get("passkey")?,
        name: get("name")?,
        sign_count: row.try_get("sign_count").map_err(map)?,
        created_at: parse_ts(&get("created_at")?)?,
        last_used_at: parse_opt_ts(row.try_get("last_used_at").map_err(map)?)?,
    })
}

/// Sets or clears the passkey bit of `user` to match whether a passkey row exists (inside the
/// transaction that changed the rows).
async fn sync_bit(tx: &mut sqlx::SqliteConnection, user: Uuid, now: DateTime<Utc>) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE tb_user SET mfa_methods = CASE \
           WHEN EXISTS (SELECT 1 FROM tb_webauthn_credential WHERE fk_user = ?1) THEN (mfa_methods | ?2) \
           ELSE (mfa_methods & ~?2) END, updated_at = ?3 \
         WHERE pk_user = ?1",
    )
    .bind(user.to_string())
    .bind(MfaMethods::WEBAUTHN)
    .bind(ts(now))
    .execute(&mut *tx)
    .await
    .map_err(map)?;
    Ok(())
}

#[async_trait]
impl PasskeyStore for SqliteStore {
    async fn insert_passkey(&self, p: PasskeyRecord) -> Result<(), StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map)?;
        sqlx::query(
            "INSERT INTO tb_webauthn_credential \
             (pk_webauthn_credential, fk_user, credential_id, passkey, name, sign_count, created_at, last_used_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(p.id.to_string())
        .bind(p.user_id.to_string())
        .bind(&p.credential_id)
        .bind(&p.passkey)
        .bind(&p.name)
        .bind(p.sign_count)
        .bind(ts(p.created_at))
        .bind(p.last_used_at.map(ts))
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        sync_bit(&mut tx, p.user_id, p.created_at).await?;
        tx.commit().await.map_err(map)
    }

    async fn passkeys(&self, user: Uuid) -> Result<Vec<PasskeyRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM tb_webauthn_credential WHERE fk_user = ?1 ORDER BY created_at, pk_webauthn_credential"
        )))
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        rows.iter().map(passkey_from).collect()
    }

    async fn passkey_by_credential_id(&self, credential_id: &[u8]) -> Result<Option<PasskeyRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM tb_webauthn_credential WHERE credential_id = ?1"
        )))
        .bind(credential_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.as_ref().map(passkey_from).transpose()
    }

    async fn delete_passkey(&self, user: Uuid, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map)?;
        let done = sqlx::query("DELETE FROM tb_webauthn_credential WHERE pk_webauthn_credential = ?1 AND fk_user = ?2")
            .bind(id.to_string())
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sync_bit(&mut tx, user, now).await?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    async fn record_passkey_use(
        &self,
        id: Uuid,
        passkey: &str,
        seen_count: i64,
        sign_count: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tb_webauthn_credential SET passkey = ?2, sign_count = ?4, last_used_at = ?5 \
             WHERE pk_webauthn_credential = ?1 AND sign_count = ?3",
        )
        .bind(id.to_string())
        .bind(passkey)
        .bind(seen_count)
        .bind(sign_count)
        .bind(ts(now))
        .execute(&self.writer)
        .await
        .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_ceremony(
        &self,
        id: Uuid,
        kind: CeremonyKind,
        user: Option<Uuid>,
        state: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // Abandoned ceremonies go here rather than in the cleanup job: they are small, and each
        // start is a natural moment to forget the expired ones.
        sqlx::query("DELETE FROM tb_webauthn_ceremony WHERE expires_at <= ?1")
            .bind(ts(now))
            .execute(&self.writer)
            .await
            .map_err(map)?;
        sqlx::query(
            "INSERT INTO tb_webauthn_ceremony (pk_webauthn_ceremony, kind, fk_user, state, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(id.to_string())
        .bind(kind.as_str())
        .bind(user.map(|u| u.to_string()))
        .bind(state)
        .bind(ts(now))
        .bind(ts(expires_at))
        .execute(&self.writer)
        .await
        .map_err(map)?;
        Ok(())
    }

    async fn take_ceremony(
        &self,
        id: Uuid,
        kind: CeremonyKind,
        now: DateTime<Utc>,
    ) -> Result<Option<(Option<Uuid>, String)>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM tb_webauthn_ceremony WHERE pk_webauthn_ceremony = ?1 AND kind = ?2 AND expires_at > ?3 \
             RETURNING fk_user, state",
        )
        .bind(id.to_string())
        .bind(kind.as_str())
        .bind(ts(now))
        .fetch_optional(&self.writer)
        .await
        .map_err(map)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user: Option<String> = row.try_get("fk_user").map_err(map)?;
        let state: String = row.try_get("state").map_err(map)?;
        Ok(Some((user.as_deref().map(parse_uuid).transpose()?, state)))
    }
}
