//! The SQLite backend: the embedded default (`DATA_DIR/fraise-auth.db`).
//!
//! WAL journal (readers never block the writer), foreign keys on. Every write goes through one
//! connection of its own ([`SqliteStore::writer`]), so this process's writers queue in order for
//! it instead of meeting in SQLite's busy handler, which sleeps with backoff (1, 2, 5 ... 100 ms)
//! and gave refreshes at 8 connections a p99 of 135-230 ms. The busy timeout stays, for writers
//! in other processes (the CLI). Values are stored as text in fixed formats (see the
//! migration's header) so the file stays readable with the `sqlite3` shell.
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use fraise_core::mfa::MfaMethods;
use fraise_core::model::{AuditEvent, NewSession, NewUser, RevokeReason, Session, SessionId, User};
use fraise_core::store::{Liveness, SessionStore, StoreHealth, UserStore};
use fraise_core::{Email, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use crate::MigrationReport;
use crate::errors::{decode, map};

mod audit;
mod diagnose;
mod lockout;
mod mfa;
mod one_time;
mod tenants;
mod webauthn;

pub use tenants::SqliteTenants;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const TS_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.format(TS_FORMAT).to_string()
}

pub(super) fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    NaiveDateTime::parse_from_str(s, TS_FORMAT).map(|n| n.and_utc()).map_err(|_| decode("timestamp"))
}

pub(super) fn parse_opt_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    s.as_deref().map(parse_ts).transpose()
}

pub(super) fn parse_uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|_| decode("uuid"))
}

/// The user columns, aliased `u_*` so they never clash with a joined session's (macros, so that
/// every query stays a `&'static str` that sqlx accepts without an injection audit).
macro_rules! user_cols {
    ($t:literal) => {
        concat!(
            $t,
            "pk_user AS u_pk_user, ",
            $t,
            "email AS u_email, ",
            $t,
            "password_hash AS u_password_hash, ",
            $t,
            "name AS u_name, ",
            $t,
            "roles AS u_roles, ",
            $t,
            "permissions AS u_permissions, ",
            $t,
            "metadata AS u_metadata, ",
            $t,
            "is_active AS u_is_active, ",
            $t,
            "email_verified AS u_email_verified, ",
            $t,
            "mfa_methods AS u_mfa_methods, ",
            $t,
            "created_at AS u_created_at, ",
            $t,
            "updated_at AS u_updated_at"
        )
    };
}

macro_rules! session_cols {
    ($t:literal) => {
        concat!(
            $t,
            "pk_session, ",
            $t,
            "fk_user, ",
            $t,
            "token_family, ",
            $t,
            "refresh_counter, ",
            $t,
            "rotated_at, ",
            $t,
            "created_at, ",
            $t,
            "last_active, ",
            $t,
            "expires_at, ",
            $t,
            "revoked_at, ",
            $t,
            "revoked_reason, ",
            $t,
            "user_agent, ",
            $t,
            "ip_address"
        )
    };
}

fn user_from(row: &SqliteRow) -> Result<User, StoreError> {
    let get = |c: &str| row.try_get::<String, _>(c).map_err(map);
    let list = |c: &str| -> Result<Vec<String>, StoreError> {
        serde_json::from_str(&get(c)?).map_err(|_| decode("string list"))
    };
    Ok(User {
        id: parse_uuid(&get("u_pk_user")?)?,
        email: get("u_email")?,
        password_hash: get("u_password_hash")?,
        name: row.try_get("u_name").map_err(map)?,
        roles: list("u_roles")?,
        permissions: list("u_permissions")?,
        metadata: serde_json::from_str(&get("u_metadata")?).map_err(|_| decode("metadata"))?,
        is_active: row.try_get("u_is_active").map_err(map)?,
        email_verified: row.try_get("u_email_verified").map_err(map)?,
        mfa: MfaMethods(row.try_get("u_mfa_methods").map_err(map)?),
        created_at: parse_ts(&get("u_created_at")?)?,
        updated_at: parse_ts(&get("u_updated_at")?)?,
    })
}

fn session_from(row: &SqliteRow) -> Result<Session, StoreError> {
    let get = |c: &str| row.try_get::<String, _>(c).map_err(map);
    Ok(Session {
        id: SessionId(parse_uuid(&get("pk_session")?)?),
        user_id: parse_uuid(&get("fk_user")?)?,
        token_family: parse_uuid(&get("token_family")?)?,
        refresh_counter: row.try_get("refresh_counter").map_err(map)?,
        rotated_at: parse_ts(&get("rotated_at")?)?,
        created_at: parse_ts(&get("created_at")?)?,
        last_active: parse_ts(&get("last_active")?)?,
        expires_at: parse_ts(&get("expires_at")?)?,
        revoked_at: parse_opt_ts(row.try_get("revoked_at").map_err(map)?)?,
        revoked_reason: row.try_get("revoked_reason").map_err(map)?,
        user_agent: row.try_get("user_agent").map_err(map)?,
        ip_address: row.try_get("ip_address").map_err(map)?,
    })
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn create_private(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Replaces a password hash (alone, or inside `set_password`'s transaction).
async fn write_hash<'c, E>(exec: E, id: Uuid, hash: &str, now: DateTime<Utc>) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query("UPDATE tb_user SET password_hash = ?2, updated_at = ?3 WHERE pk_user = ?1")
        .bind(id.to_string())
        .bind(hash)
        .bind(ts(now))
        .execute(exec)
        .await
        .map_err(map)?;
    Ok(())
}

/// Revokes every live session of `user` but `keep` (alone, or inside `set_password`'s transaction).
async fn revoke_all<'c, E>(
    exec: E,
    user: Uuid,
    keep: Option<SessionId>,
    reason: RevokeReason,
    now: DateTime<Utc>,
) -> Result<u64, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    let done = sqlx::query(
        "UPDATE tb_session SET revoked_at = ?2, revoked_reason = ?3 \
         WHERE fk_user = ?1 AND revoked_at IS NULL AND (?4 IS NULL OR pk_session <> ?4)",
    )
    .bind(user.to_string())
    .bind(ts(now))
    .bind(reason.as_str())
    .bind(keep.map(|k| k.0.to_string()))
    .execute(exec)
    .await
    .map_err(map)?;
    Ok(done.rows_affected())
}

/// The readers' pool for a store allowed `max_connections` in all: one of them is the writer's,
/// but there is always at least one reader (so a maximum of 1 opens 2).
fn readers(max_connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new().max_connections(max_connections.saturating_sub(1).max(1))
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Writes: one connection. SQLite admits one writer at a time anyway; queueing for this pool
    /// (first come, first served, no sleeping) replaces contention in the busy handler.
    /// `bench/refresh_probe.py`, SQLite, 8 connections: p99 135-172 ms with writes spread over
    /// the pool, 8.0-8.6 ms with this writer, and 8-12 % more refreshes/s.
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`. A new file is created readable by
    /// its owner only (it holds password hashes); SQLite gives its -wal and -shm files the same
    /// mode.
    pub async fn open(path: &Path, max_connections: u32) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        }
        create_private(path).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Self::connect(path, readers(max_connections), SqlitePoolOptions::new()).await
    }

    /// Opens the existing database file at `path` (a tenant's): never creates one, and keeps no
    /// idle connection for long, so a tenant that goes quiet holds no file open.
    pub async fn open_existing(path: &Path, max_connections: u32) -> Result<Self, StoreError> {
        let quiet = |p: SqlitePoolOptions| p.min_connections(0).idle_timeout(Duration::from_secs(60));
        Self::connect(path, quiet(readers(max_connections)), quiet(SqlitePoolOptions::new())).await
    }

    async fn connect(path: &Path, pool: SqlitePoolOptions, writer: SqlitePoolOptions) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(map)?
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = writer
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(map)?;
        let pool = pool.acquire_timeout(Duration::from_secs(10)).connect_with(options).await.map_err(map)?;
        Ok(Self { pool, writer })
    }

    /// Applies every pending migration; re-running is a no-op.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let before = self.applied_versions().await?.len();
        MIGRATOR.run(&self.writer).await.map_err(|e| StoreError::Other(Box::new(e)))?;
        let after = self.applied_versions().await?.len();
        Ok(MigrationReport { applied: after - before, known: MIGRATOR.iter().count() })
    }

    /// Each known migration, applied or pending (`migrate status`).
    pub async fn migration_status(&self) -> Result<Vec<crate::MigrationState>, StoreError> {
        Ok(crate::migration_states(&MIGRATOR, &self.applied_versions().await?))
    }

    async fn applied_versions(&self) -> Result<Vec<i64>, StoreError> {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
                .fetch_optional(&self.pool)
                .await
                .map_err(map)?;
        if exists.is_none() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.pool)
            .await
            .map_err(map)
    }

    /// The readers' pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The one connection every write of this store goes through.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Closes both pools (waits for connections in use to come back).
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn insert_user(&self, u: NewUser) -> Result<User, StoreError> {
        let sql = concat!(
            "INSERT INTO tb_user (pk_user, email, password_hash, name, created_at, updated_at) ",
            "VALUES (?1, ?2, ?3, ?4, ?5, ?5) RETURNING ",
            user_cols!("")
        );
        let row = sqlx::query(sql)
            .bind(u.id.to_string())
            .bind(u.email.as_str())
            .bind(&u.password_hash)
            .bind(&u.name)
            .bind(ts(u.now))
            .fetch_one(&self.writer)
            .await
            .map_err(map)?;
        user_from(&row)
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        let sql = concat!("SELECT ", user_cols!("u."), " FROM tb_user u WHERE lower(u.email) = lower(?1)");
        let row = sqlx::query(sql).bind(email.as_str()).fetch_optional(&self.pool).await.map_err(map)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let sql = concat!("SELECT ", user_cols!("u."), " FROM tb_user u WHERE u.pk_user = ?1");
        let row = sqlx::query(sql).bind(id.to_string()).fetch_optional(&self.pool).await.map_err(map)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn set_password_hash(&self, id: Uuid, hash: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        write_hash(&self.writer, id, hash, now).await
    }

    async fn set_active(&self, id: Uuid, active: bool, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE tb_user SET is_active = ?2, updated_at = ?3 WHERE pk_user = ?1")
            .bind(id.to_string())
            .bind(active)
            .bind(ts(now))
            .execute(&self.writer)
            .await
            .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_password(
        &self,
        id: Uuid,
        hash: &str,
        keep: Option<SessionId>,
        reason: RevokeReason,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // IMMEDIATE: take the write lock up front, so the transaction cannot fail half-way on a
        // read-to-write upgrade.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map)?;
        write_hash(&mut *tx, id, hash, now).await?;
        let revoked = revoke_all(&mut *tx, id, keep, reason, now).await?;
        // A reset link mailed before this change must not undo it.
        sqlx::query("UPDATE tb_password_reset SET used_at = ?2 WHERE fk_user = ?1 AND used_at IS NULL")
            .bind(id.to_string())
            .bind(ts(now))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        // Nor may a login started with the old password be finished; the second-factor lock ends
        // with the password.
        for statement in
            ["DELETE FROM tb_mfa_challenge WHERE fk_user = ?1", "DELETE FROM tb_mfa_failure WHERE fk_user = ?1"]
        {
            sqlx::query(statement).bind(id.to_string()).execute(&mut *tx).await.map_err(map)?;
        }
        tx.commit().await.map_err(map)?;
        Ok(revoked)
    }

    async fn update_profile(
        &self,
        id: Uuid,
        name: Option<Option<String>>,
        metadata: Option<serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError> {
        let sql = concat!(
            "UPDATE tb_user SET name = CASE WHEN ?2 THEN ?3 ELSE name END, ",
            "metadata = COALESCE(?4, metadata), updated_at = ?5 WHERE pk_user = ?1 RETURNING ",
            user_cols!("")
        );
        let row = sqlx::query(sql)
            .bind(id.to_string())
            .bind(name.is_some())
            .bind(name.flatten())
            .bind(metadata.map(|m| m.to_string()))
            .bind(ts(now))
            .fetch_optional(&self.writer)
            .await
            .map_err(map)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn set_email_verified(&self, id: Uuid, now: DateTime<Utc>) -> Result<Option<User>, StoreError> {
        let sql = concat!(
            "UPDATE tb_user SET email_verified = 1, updated_at = ?2 WHERE pk_user = ?1 RETURNING ",
            user_cols!("")
        );
        let row =
            sqlx::query(sql).bind(id.to_string()).bind(ts(now)).fetch_optional(&self.writer).await.map_err(map)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn set_roles(&self, id: Uuid, roles: &[String], now: DateTime<Utc>) -> Result<Option<User>, StoreError> {
        let sql =
            concat!("UPDATE tb_user SET roles = ?2, updated_at = ?3 WHERE pk_user = ?1 RETURNING ", user_cols!(""));
        let roles = serde_json::to_string(roles).map_err(|e| StoreError::Other(Box::new(e)))?;
        let row = sqlx::query(sql)
            .bind(id.to_string())
            .bind(roles)
            .bind(ts(now))
            .fetch_optional(&self.writer)
            .await
            .map_err(map)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn list_users(&self, limit: u32, offset: u32) -> Result<Vec<User>, StoreError> {
        let sql = concat!("SELECT ", user_cols!(""), " FROM tb_user ORDER BY email LIMIT ?1 OFFSET ?2");
        let rows =
            sqlx::query(sql).bind(i64::from(limit)).bind(i64::from(offset)).fetch_all(&self.pool).await.map_err(map)?;
        rows.iter().map(user_from).collect()
    }
}

/// The compare-and-swap of a refresh rotation: one statement, atomic under SQLite's
/// single-writer lock, so concurrent presenters of one token cannot both win. `true` if it
/// rotated.
async fn rotate<'c, E>(
    exec: E,
    id: SessionId,
    presented: i64,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    live: Liveness,
) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    let rotated = sqlx::query(
        "UPDATE tb_session SET refresh_counter = refresh_counter + 1, rotated_at = ?3, last_active = ?3, \
         expires_at = ?4 \
         WHERE pk_session = ?1 AND refresh_counter = ?2 AND revoked_at IS NULL AND expires_at > ?3 \
           AND (?5 IS NULL OR last_active >= ?5) AND (?6 IS NULL OR created_at >= ?6) \
           AND EXISTS (SELECT 1 FROM tb_user u WHERE u.pk_user = tb_session.fk_user AND u.is_active = 1)",
    )
    .bind(id.0.to_string())
    .bind(presented)
    .bind(ts(now))
    .bind(ts(expires_at))
    .bind(live.idle_cutoff.map(ts))
    .bind(live.created_cutoff.map(ts))
    .execute(exec)
    .await
    .map_err(map)?;
    Ok(rotated.rows_affected() == 1)
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn insert_session(&self, s: NewSession) -> Result<Session, StoreError> {
        let sql = concat!(
            "INSERT INTO tb_session (pk_session, fk_user, token_family, refresh_counter, rotated_at, created_at, ",
            "last_active, expires_at, user_agent, ip_address) VALUES (?1, ?2, ?3, 0, ?4, ?4, ?4, ?5, ?6, ?7) ",
            "RETURNING ",
            session_cols!("")
        );
        let row = sqlx::query(sql)
            .bind(s.id.0.to_string())
            .bind(s.user_id.to_string())
            .bind(s.token_family.to_string())
            .bind(ts(s.now))
            .bind(ts(s.expires_at))
            .bind(&s.user_agent)
            .bind(&s.ip_address)
            .fetch_one(&self.writer)
            .await
            .map_err(map)?;
        session_from(&row)
    }

    async fn session_with_user(&self, id: SessionId) -> Result<Option<(Session, User)>, StoreError> {
        let sql = concat!(
            "SELECT ",
            session_cols!("s."),
            ", ",
            user_cols!("u."),
            " FROM tb_session s JOIN tb_user u ON u.pk_user = s.fk_user WHERE s.pk_session = ?1"
        );
        let row = sqlx::query(sql).bind(id.0.to_string()).fetch_optional(&self.pool).await.map_err(map)?;
        row.map(|r| Ok((session_from(&r)?, user_from(&r)?))).transpose()
    }

    async fn rotate_refresh(
        &self,
        id: SessionId,
        presented: i64,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        live: Liveness,
    ) -> Result<Option<(Session, User)>, StoreError> {
        if !rotate(&self.writer, id, presented, now, expires_at, live).await? {
            return Ok(None);
        }
        // SQLite's RETURNING cannot reach the joined user row; a second read is cheap in-process.
        self.session_with_user(id).await
    }

    async fn rotate_refresh_audited(
        &self,
        id: SessionId,
        presented: i64,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        live: Liveness,
        audit: AuditEvent,
    ) -> Result<Option<(Session, User)>, StoreError> {
        // The rotation and its audit row in one transaction: one commit instead of two. The
        // UPDATE comes first, so the transaction takes the write lock at once (no read-to-write
        // upgrade that could fail with SQLITE_BUSY).
        let mut tx = self.writer.begin().await.map_err(map)?;
        if !rotate(&mut *tx, id, presented, now, expires_at, live).await? {
            return Ok(None); // dropping the transaction rolls it back (it changed nothing)
        }
        sqlx::query(
            "INSERT INTO tb_auth_audit (pk_auth_audit, event_type, fk_user, fk_session, ip_address, user_agent, \
             details, created_at) SELECT ?1, ?2, fk_user, pk_session, ?3, ?4, ?5, ?6 FROM tb_session \
             WHERE pk_session = ?7",
        )
        .bind(audit.id.to_string())
        .bind(&audit.kind)
        .bind(&audit.ip_address)
        .bind(&audit.user_agent)
        .bind(audit.details.to_string())
        .bind(ts(audit.at))
        .bind(id.0.to_string())
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)?;
        // SQLite's RETURNING cannot reach the joined user row; a second read is cheap in-process.
        self.session_with_user(id).await
    }

    async fn live_sessions(&self, user: Uuid, now: DateTime<Utc>) -> Result<Vec<Session>, StoreError> {
        let sql = concat!(
            "SELECT ",
            session_cols!(""),
            " FROM tb_session WHERE fk_user = ?1 AND revoked_at IS NULL AND expires_at > ?2 ",
            "ORDER BY last_active DESC, created_at DESC"
        );
        let rows = sqlx::query(sql).bind(user.to_string()).bind(ts(now)).fetch_all(&self.pool).await.map_err(map)?;
        rows.iter().map(session_from).collect()
    }

    async fn touch_session(
        &self,
        id: SessionId,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tb_session SET last_active = ?2 WHERE pk_session = ?1 AND last_active < ?3")
            .bind(id.0.to_string())
            .bind(ts(now))
            .bind(ts(stale_before))
            .execute(&self.writer)
            .await
            .map_err(map)?;
        Ok(())
    }

    async fn revoke_user_session(
        &self,
        user: Uuid,
        id: SessionId,
        reason: RevokeReason,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tb_session SET revoked_at = ?3, revoked_reason = ?4 \
             WHERE pk_session = ?1 AND fk_user = ?2 AND revoked_at IS NULL AND expires_at > ?3",
        )
        .bind(id.0.to_string())
        .bind(user.to_string())
        .bind(ts(now))
        .bind(reason.as_str())
        .execute(&self.writer)
        .await
        .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_session(
        &self,
        id: SessionId,
        reason: RevokeReason,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tb_session SET revoked_at = ?2, revoked_reason = ?3 WHERE pk_session = ?1 AND revoked_at IS NULL",
        )
        .bind(id.0.to_string())
        .bind(ts(now))
        .bind(reason.as_str())
        .execute(&self.writer)
        .await
        .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_user_sessions(
        &self,
        user: Uuid,
        keep: Option<SessionId>,
        reason: RevokeReason,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        revoke_all(&self.writer, user, keep, reason, now).await
    }
}

#[async_trait]
impl StoreHealth for SqliteStore {
    /// The readers, and the writer too: a store whose readers answer but whose one writer is
    /// closed or cannot open its connection can log nobody in, so it is not ready. The check
    /// never queues behind writes: a writer whose connection is in use is writing, so alive, and
    /// a probe (which skips the rate limits) must not take a turn on it ahead of logins.
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map)?;
        if self.writer.is_closed() {
            return Err(map(sqlx::Error::PoolClosed));
        }
        match self.writer.try_acquire() {
            Some(mut idle) => {
                sqlx::query("SELECT 1").execute(&mut *idle).await.map_err(map)?;
            }
            // In use: a write is running on it.
            None if self.writer.size() > 0 => {}
            // Nothing open (never opened, or lost): opening one is the check.
            None => {
                sqlx::query("SELECT 1").execute(&self.writer).await.map_err(map)?;
            }
        }
        Ok(())
    }

    async fn migrations_current(&self) -> Result<bool, StoreError> {
        let applied = self.applied_versions().await?;
        Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn pool_usage(&self) -> fraise_core::store::PoolUsage {
        let idle = self.pool.num_idle() + self.writer.num_idle();
        fraise_core::store::PoolUsage {
            open: self.pool.size() + self.writer.size(),
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections() + self.writer.options().get_max_connections(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Holding the writer's one connection holds up this store's writes (they queue, none
    /// fails), not its reads; and the store opens no more connections than it was allowed.
    #[tokio::test]
    async fn writes_queue_for_the_one_writer_while_reads_go_on() {
        let dir = std::env::temp_dir().join(format!("fraise-writer-{}", Uuid::new_v4()));
        let store = SqliteStore::open(&dir.join("t.db"), 4).await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.writer().options().get_max_connections(), 1);
        assert_eq!(store.pool().options().get_max_connections(), 3, "the writer counts towards the 4");
        let email = Email::parse("queued@example.com").unwrap();
        // Holds the writer's connection without taking SQLite's write lock (a deferred BEGIN that
        // has run nothing): a second writer connection would insert at once, and fail the
        // `is_finished` check below.
        let held = store.writer().begin().await.unwrap();
        let (s, e) = (store.clone(), email.clone());
        let write = tokio::spawn(async move {
            let user = NewUser { id: Uuid::new_v4(), email: e, password_hash: "x".into(), name: None, now: Utc::now() };
            s.insert_user(user).await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!write.is_finished(), "the write waits for the writer");
        assert!(store.user_by_email(&email).await.unwrap().is_none(), "a read does not wait");
        drop(held);
        write.await.unwrap().unwrap();
        assert!(store.user_by_email(&email).await.unwrap().is_some(), "the queued write landed");
        assert!(store.pool_usage().open <= 4);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The health ping asks the writer too, without waiting behind a write: readers that
    /// answer do not make a store ready whose writer is gone, and a busy writer is alive.
    #[tokio::test]
    async fn the_ping_fails_when_only_the_writer_is_gone() {
        let dir = std::env::temp_dir().join(format!("fraise-ping-{}", Uuid::new_v4()));
        let store = SqliteStore::open(&dir.join("t.db"), 4).await.unwrap();
        store.migrate().await.unwrap();
        assert!(store.ping().await.is_ok());
        let held = store.writer().begin().await.unwrap();
        let busy = tokio::time::timeout(Duration::from_secs(1), store.ping()).await;
        assert!(matches!(busy, Ok(Ok(()))), "a writer in use is alive, and the ping does not queue for it");
        drop(held);
        store.writer().close().await;
        assert!(store.pool().acquire().await.is_ok(), "the readers still answer");
        assert!(store.ping().await.is_err());
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn timestamps_are_fixed_width_and_round_trip() {
        let t = DateTime::from_timestamp_millis(1_700_000_000_007).unwrap_or_default();
        let s = ts(t);
        assert_eq!(s, "2023-11-14T22:13:20.007Z");
        assert_eq!(parse_ts(&s).ok(), Some(t));
        let whole = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        assert_eq!(ts(whole).len(), s.len());
    }
}
