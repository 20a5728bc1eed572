//! Passkeys and WebAuthn ceremony state on PostgreSQL.
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fraise_core::StoreError;
use fraise_core::mfa::MfaMethods;
use fraise_core::store::{CeremonyKind, PasskeyRecord, PasskeyStore};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::PgStore;
use super::cache::Target;
use crate::errors::map;

fn passkey_from(row: &PgRow) -> Result<PasskeyRecord, StoreError> {
    Ok(PasskeyRecord {
        id: row.try_get("pk_webauthn_credential").map_err(map)?,
        user_id: row.try_get("fk_user").map_err(map)?,
        credential_id: row.try_get("credential_id").map_err(map)?,
        passkey: row.try_get("passkey").map_err(map)?,
        name: row.try_get("name").map_err(map)?,
        sign_count: row.try_get("sign_count").map_err(map)?,
        created_at: row.try_get("created_at").map_err(map)?,
        last_used_at: row.try_get("last_used_at").map_err(map)?,
    })
}

impl PgStore {
    /// Sets or clears the passkey bit of `user` to match whether a passkey row exists (inside the
    /// transaction that changed the rows, which holds the user's row lock).
    async fn sync_webauthn_bit(
        &self,
        tx: &mut sqlx::PgConnection,
        user: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(self.sql(
            "UPDATE {s}.tb_user SET mfa_methods = CASE \
               WHEN EXISTS (SELECT 1 FROM {s}.tb_webauthn_credential WHERE fk_user = $1) THEN (mfa_methods | $2) \
               ELSE (mfa_methods & ~$2) END, updated_at = $3 \
             WHERE pk_user = $1",
        ))
        .bind(user)
        .bind(MfaMethods::WEBAUTHN)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        Ok(())
    }

    /// Locks the user's row: inserts and deletes of one user's passkeys take turns, so the bit
    /// computed at the end of each is right (two deletes of the last two passkeys cannot both see
    /// the other's row still there).
    async fn lock_user(&self, tx: &mut sqlx::PgConnection, user: Uuid) -> Result<bool, StoreError> {
        let found: Option<i32> =
            sqlx::query_scalar(self.sql("SELECT 1 FROM {s}.tb_user WHERE pk_user = $1 FOR UPDATE"))
                .bind(user)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map)?;
        Ok(found.is_some())
    }
}

#[async_trait]
impl PasskeyStore for PgStore {
    async fn insert_passkey(&self, p: PasskeyRecord) -> Result<(), StoreError> {
        let _after = self.cache.after_write(Target::User(p.user_id));
        let mut tx = self.pool.begin().await.map_err(map)?;
        // No user row: the INSERT's foreign key refuses it below.
        self.lock_user(&mut tx, p.user_id).await?;
        sqlx::query(self.sql(
            "INSERT INTO {s}.tb_webauthn_credential \
             (pk_webauthn_credential, fk_user, credential_id, passkey, name, sign_count, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        ))
        .bind(p.id)
        .bind(p.user_id)
        .bind(&p.credential_id)
        .bind(&p.passkey)
        .bind(&p.name)
        .bind(p.sign_count)
        .bind(p.created_at)
        .bind(p.last_used_at)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        self.sync_webauthn_bit(&mut tx, p.user_id, p.created_at).await?;
        tx.commit().await.map_err(map)
    }

    async fn passkeys(&self, user: Uuid) -> Result<Vec<PasskeyRecord>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT pk_webauthn_credential, fk_user, credential_id, passkey, name, sign_count, created_at, last_used_at \
             FROM {s}.tb_webauthn_credential WHERE fk_user = $1 ORDER BY created_at, pk_webauthn_credential",
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        rows.iter().map(passkey_from).collect()
    }

    async fn passkey_by_credential_id(&self, credential_id: &[u8]) -> Result<Option<PasskeyRecord>, StoreError> {
        let row = sqlx::query(self.sql(
            "SELECT pk_webauthn_credential, fk_user, credential_id, passkey, name, sign_count, created_at, last_used_at \
             FROM {s}.tb_webauthn_credential WHERE credential_id = $1",
        ))
        .bind(credential_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.as_ref().map(passkey_from).transpose()
    }

    async fn delete_passkey(&self, user: Uuid, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let _after = self.cache.after_write(Target::User(user));
        let mut tx = self.pool.begin().await.map_err(map)?;
        if !self.lock_user(&mut tx, user).await? {
            return Ok(false);
        }
        let done = sqlx::query(
            self.sql("DELETE FROM {s}.tb_webauthn_credential WHERE pk_webauthn_credential = $1 AND fk_user = $2"),
        )
        .bind(id)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.sync_webauthn_bit(&mut tx, user, now).await?;
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
        let done = sqlx::query(self.sql(
            "UPDATE {s}.tb_webauthn_credential SET passkey = $2, sign_count = $4, last_used_at = $5 \
             WHERE pk_webauthn_credential = $1 AND sign_count = $3",
        ))
        .bind(id)
        .bind(passkey)
        .bind(seen_count)
        .bind(sign_count)
        .bind(now)
        .execute(&self.pool)
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
        sqlx::query(self.sql("DELETE FROM {s}.tb_webauthn_ceremony WHERE expires_at <= $1"))
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(map)?;
        sqlx::query(self.sql(
            "INSERT INTO {s}.tb_webauthn_ceremony (pk_webauthn_ceremony, kind, fk_user, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        ))
        .bind(id)
        .bind(kind.as_str())
        .bind(user)
        .bind(state)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
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
        let row = sqlx::query(self.sql(
            "DELETE FROM {s}.tb_webauthn_ceremony WHERE pk_webauthn_ceremony = $1 AND kind = $2 AND expires_at > $3 \
             RETURNING fk_user, state",
        ))
        .bind(id)
        .bind(kind.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some((row.try_get("fk_user").map_err(map)?, row.try_get("state").map_err(map)?)))
    }
}
