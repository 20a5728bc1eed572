//! The PostgreSQL backend.
//!
//! All tables of one tenant live in one schema. Queries name their tables schema-qualified
//! (`"tenant".tb_user`) instead of relying on `search_path`, so one connection pool can serve any
//! number of schemas. The schema name is the only text ever spliced into SQL, and only after
//! [`SchemaName::parse`] accepted it; every value travels as a bind parameter.
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fraise_core::mfa::MfaMethods;
use fraise_core::model::{AuditEvent, NewSession, NewUser, RevokeReason, Session, SessionId, User};
use fraise_core::store::{Liveness, SessionStore, StoreHealth, UserStore};
use fraise_core::{Email, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, PgPool, Row};
use uuid::Uuid;

use self::batch::{Batcher, Rotation};
use self::cache::{SessionCache, Target};
use crate::MigrationReport;
use crate::errors::map;

mod audit;
mod batch;
mod cache;
mod diagnose;
mod lockout;
mod mfa;
mod one_time;
mod tenants;
mod webauthn;

pub use tenants::PgTenants;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A PostgreSQL schema name that is safe to splice into SQL: `^[a-z_][a-z0-9_]{0,62}$`, not a
/// system schema (`pg_*`, `information_schema`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

impl SchemaName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !first_ok || !rest_ok || name.len() > 63 {
            return Err(format!(
                "invalid schema name {name:?}: use 1-63 characters of a-z, 0-9 and _, not starting with a digit"
            ));
        }
        if name.starts_with("pg_") || name == "information_schema" {
            return Err(format!("schema name {name:?} is reserved by PostgreSQL"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The double-quoted identifier. Safe because `parse` admits no quote or other special
    /// character.
    fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

/// The user columns of `uu`, aliased `u_*` so they never clash with a joined session's.
const USER_COLS: &str = "uu.pk_user AS u_pk_user, uu.email AS u_email, uu.password_hash AS u_password_hash, \
     uu.name AS u_name, uu.roles AS u_roles, uu.permissions AS u_permissions, uu.metadata AS u_metadata, \
     uu.is_active AS u_is_active, uu.email_verified AS u_email_verified, uu.mfa_methods AS u_mfa_methods, \
     uu.created_at AS u_created_at, uu.updated_at AS u_updated_at";

const SESSION_COLS: &str = "ss.pk_session, ss.fk_user, ss.token_family, ss.refresh_counter, ss.rotated_at, \
     ss.created_at, ss.last_active, ss.expires_at, ss.revoked_at, ss.revoked_reason, ss.user_agent, \
     host(ss.ip_address) AS ip_address";

fn user_from(row: &PgRow) -> Result<User, StoreError> {
    Ok(User {
        id: row.try_get("u_pk_user").map_err(map)?,
        email: row.try_get("u_email").map_err(map)?,
        password_hash: row.try_get("u_password_hash").map_err(map)?,
        name: row.try_get("u_name").map_err(map)?,
        roles: row.try_get("u_roles").map_err(map)?,
        permissions: row.try_get("u_permissions").map_err(map)?,
        metadata: row.try_get("u_metadata").map_err(map)?,
        is_active: row.try_get("u_is_active").map_err(map)?,
        email_verified: row.try_get("u_email_verified").map_err(map)?,
        mfa: MfaMethods(row.try_get("u_mfa_methods").map_err(map)?),
        created_at: row.try_get("u_created_at").map_err(map)?,
        updated_at: row.try_get("u_updated_at").map_err(map)?,
    })
}

fn session_from(row: &PgRow) -> Result<Session, StoreError> {
    Ok(Session {
        id: SessionId(row.try_get("pk_session").map_err(map)?),
        user_id: row.try_get("fk_user").map_err(map)?,
        token_family: row.try_get("token_family").map_err(map)?,
        refresh_counter: row.try_get("refresh_counter").map_err(map)?,
        rotated_at: row.try_get("rotated_at").map_err(map)?,
        created_at: row.try_get("created_at").map_err(map)?,
        last_active: row.try_get("last_active").map_err(map)?,
        expires_at: row.try_get("expires_at").map_err(map)?,
        revoked_at: row.try_get("revoked_at").map_err(map)?,
        revoked_reason: row.try_get("revoked_reason").map_err(map)?,
        user_agent: row.try_get("user_agent").map_err(map)?,
        ip_address: row.try_get("ip_address").map_err(map)?,
    })
}

/// SQL text by template (address, length), for one schema.
type SqlCache = RwLock<HashMap<(usize, usize), Arc<str>>>;

/// The PostgreSQL store for one schema. Clones share the pool. `Debug` omits the connect
/// options, which hold the password.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    options: PgConnectOptions,
    schema: SchemaName,
    /// `schema.quoted()`, computed once.
    q: String,
    /// SQL text per template, for this schema (see [`PgStore::sql`]).
    sql_cache: Arc<SqlCache>,
    /// The bearer path's cache, shared with the stores of the other schemas on this pool (off
    /// until [`PgStore::start_session_cache`]).
    cache: Arc<SessionCache>,
    /// Group commit for refresh rotations, shared like the cache (see `postgres/batch.rs`).
    batcher: Arc<Batcher>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("schema", &self.schema).finish_non_exhaustive()
    }
}

/// Pool sizing and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct PgPoolSettings {
    pub min_connections: u32,
    pub max_connections: u32,
    /// How long a request waits for a free connection before the store reports "unavailable".
    pub acquire_timeout: Duration,
}

/// A pooled connection idle at least this long is pinged before use (see `connect_lazy`).
pub(super) const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

impl Default for PgPoolSettings {
    fn default() -> Self {
        Self { min_connections: 1, max_connections: 10, acquire_timeout: Duration::from_secs(5) }
    }
}

impl PgStore {
    /// Connects a pool to `url`. The pool is lazy: the service starts even while the database is
    /// down, answers 503 meanwhile, and recovers by itself when it comes back.
    pub fn connect_lazy(url: &str, schema: SchemaName, pool: PgPoolSettings) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Other(Box::new(e)))?;
        let pg = PgPoolOptions::new()
            .min_connections(pool.min_connections)
            .max_connections(pool.max_connections.max(1))
            .acquire_timeout(pool.acquire_timeout)
            // By default sqlx pings every connection it hands out: one more round trip before
            // every query (it pings again on release, which no option turns off). A connection
            // that answered within the last second needs no proof of life; one idle longer (the
            // database may have restarted meanwhile) is still pinged, and replaced if dead.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options.clone());
        Ok(Self::with_pool(pg, options, schema))
    }

    /// A store over an existing pool (another schema of the same database, for instance).
    pub fn with_pool(pool: PgPool, options: PgConnectOptions, schema: SchemaName) -> Self {
        let q = schema.quoted();
        Self { pool, options, schema, q, sql_cache: Arc::default(), cache: Arc::default(), batcher: Arc::default() }
    }

    /// The store of another schema on this pool, sharing this store's session cache.
    pub(crate) fn sibling(&self, schema: SchemaName) -> Self {
        Self {
            cache: Arc::clone(&self.cache),
            batcher: Arc::clone(&self.batcher),
            ..Self::with_pool(self.pool.clone(), self.options.clone(), schema)
        }
    }

    /// Turns on the bearer path's session cache with room for `capacity` sessions (0: stays
    /// off): opens one more connection, which LISTENs for changes (see `postgres/cache.rs`).
    /// Must run inside a Tokio runtime; the background tasks end when the last store sharing the
    /// cache is dropped.
    pub fn start_session_cache(&self, capacity: usize) {
        self.cache.start(capacity, self.options.clone());
    }

    /// Test hook: `true` makes the session cache's listener stop applying notifications until
    /// `false`, as a stalled connection would (the cache stops answering within 2 s).
    #[doc(hidden)]
    pub fn hold_session_cache_listener(&self, hold: bool) {
        self.cache.hold(hold);
    }

    /// The server process id of the session cache's listening connection (`pg_stat_activity.pid`),
    /// while it is connected.
    pub fn session_cache_listener_pid(&self) -> Option<i32> {
        self.cache.listener_pid()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn schema(&self) -> &SchemaName {
        &self.schema
    }

    /// The one place SQL text is built at run time: `{s}` becomes the validated, quoted schema.
    /// Built once per (store, template) and shared: a profile showed the three `replace`s on
    /// every query as ~1.5% of a bearer request.
    pub(super) fn sql(&self, template: &'static str) -> AssertSqlSafe<Arc<str>> {
        // Keyed by the template's address and length: every template is a `'static` literal.
        // The length matters: the compiler may store a literal that is a prefix of another at
        // the same address (found in a release build, where one template's SQL answered for
        // another).
        let key = (template.as_ptr() as usize, template.len());
        if let Some(hit) = self.sql_cache.read().ok().and_then(|m| m.get(&key).cloned()) {
            return AssertSqlSafe(hit);
        }
        let built: Arc<str> = template
            .replace("{s}", &self.q)
            .replace("{user_cols}", USER_COLS)
            .replace("{session_cols}", SESSION_COLS)
            .into();
        if let Ok(mut m) = self.sql_cache.write() {
            m.insert(key, Arc::clone(&built));
        }
        AssertSqlSafe(built)
    }

    /// The answer of a rotation (`rotate_refresh`, `rotate_refresh_audited`): the rotated row, if
    /// one was. The session's cached copy is dropped either way: it would only lag (older
    /// counter, expiry and last_active), but reading the row again is cheaper than the re-check a
    /// lagging copy costs.
    fn rotated(&self, id: SessionId, row: Option<PgRow>) -> Result<Option<(Session, User)>, StoreError> {
        self.cache.forget(id.0);
        row.map(|r| Ok((session_from(&r)?, user_from(&r)?))).transpose()
    }

    /// Replaces a password hash (alone, or inside `set_password`'s transaction).
    async fn write_hash<'c, E>(&self, exec: E, id: Uuid, hash: &str, now: DateTime<Utc>) -> Result<(), StoreError>
    where
        E: sqlx::Executor<'c, Database = sqlx::Postgres>,
    {
        sqlx::query(self.sql("UPDATE {s}.tb_user SET password_hash = $2, updated_at = $3 WHERE pk_user = $1"))
            .bind(id)
            .bind(hash)
            .bind(now)
            .execute(exec)
            .await
            .map_err(map)?;
        Ok(())
    }

    /// Revokes every live session of `user` but `keep` (alone, or inside `set_password`'s
    /// transaction).
    async fn revoke_all<'c, E>(
        &self,
        exec: E,
        user: Uuid,
        keep: Option<SessionId>,
        reason: RevokeReason,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>
    where
        E: sqlx::Executor<'c, Database = sqlx::Postgres>,
    {
        let done = sqlx::query(self.sql(
            "UPDATE {s}.tb_session SET revoked_at = $2, revoked_reason = $3 \
             WHERE fk_user = $1 AND revoked_at IS NULL AND ($4::uuid IS NULL OR pk_session <> $4)",
        ))
        .bind(user)
        .bind(now)
        .bind(reason.as_str())
        .bind(keep.map(|k| k.0))
        .execute(exec)
        .await
        .map_err(map)?;
        Ok(done.rows_affected())
    }

    /// Creates the schema if needed and applies every pending migration inside it. Runs on a
    /// dedicated connection whose `search_path` is the schema, then closes it, so no pooled
    /// connection is left pointing elsewhere. Concurrent runs serialise on sqlx's advisory lock.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        // A private one-connection pool whose search_path is the schema: the migrations name no
        // schema, and sqlx's migrator keeps its version table in the first schema of the path.
        let options = self.options.clone().options([("search_path", self.schema.as_str())]);
        let pool = PgPoolOptions::new().max_connections(1).connect_with(options).await.map_err(map)?;
        let ran = async {
            sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {}", self.q)))
                .execute(&pool)
                .await
                .map_err(map)?;
            let before = self.applied_versions().await?.len();
            MIGRATOR.run(&pool).await.map_err(|e| StoreError::Other(Box::new(e)))?;
            let after = self.applied_versions().await?.len();
            Ok(MigrationReport { applied: after - before, known: MIGRATOR.iter().count() })
        }
        .await;
        pool.close().await;
        ran
    }

    /// Each known migration, applied or pending (`migrate status`).
    pub async fn migration_status(&self) -> Result<Vec<crate::MigrationState>, StoreError> {
        Ok(crate::migration_states(&MIGRATOR, &self.applied_versions().await?))
    }

    async fn applied_versions(&self) -> Result<Vec<i64>, StoreError> {
        let table: Option<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 AND table_name = '_sqlx_migrations'",
        )
        .bind(self.schema.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        if table.is_none() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(self.sql("SELECT version FROM {s}._sqlx_migrations WHERE success ORDER BY version"))
            .fetch_all(&self.pool)
            .await
            .map_err(map)
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn insert_user(&self, u: NewUser) -> Result<User, StoreError> {
        let row = sqlx::query(self.sql(
            "INSERT INTO {s}.tb_user AS uu (pk_user, email, password_hash, name, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING {user_cols}",
        ))
        .bind(u.id)
        .bind(u.email.as_str())
        .bind(&u.password_hash)
        .bind(&u.name)
        .bind(u.now)
        .fetch_one(&self.pool)
        .await
        .map_err(map)?;
        user_from(&row)
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(self.sql("SELECT {user_cols} FROM {s}.tb_user uu WHERE lower(uu.email) = lower($1)"))
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(self.sql("SELECT {user_cols} FROM {s}.tb_user uu WHERE uu.pk_user = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn set_password_hash(&self, id: Uuid, hash: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let _after = self.cache.after_write(Target::User(id));
        self.write_hash(&self.pool, id, hash, now).await
    }

    async fn set_active(&self, id: Uuid, active: bool, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let _after = self.cache.after_write(Target::User(id));
        let done = sqlx::query(self.sql("UPDATE {s}.tb_user SET is_active = $2, updated_at = $3 WHERE pk_user = $1"))
            .bind(id)
            .bind(active)
            .bind(now)
            .execute(&self.pool)
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
        let _after = self.cache.after_write(Target::User(id));
        let mut tx = self.pool.begin().await.map_err(map)?;
        self.write_hash(&mut *tx, id, hash, now).await?;
        let revoked = self.revoke_all(&mut *tx, id, keep, reason, now).await?;
        // A reset link mailed before this change must not undo it.
        sqlx::query(self.sql("UPDATE {s}.tb_password_reset SET used_at = $2 WHERE fk_user = $1 AND used_at IS NULL"))
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        // Nor may a login started with the old password be finished, and the second-factor lock
        // (a password holder guessing codes) ends with the password.
        for template in
            ["DELETE FROM {s}.tb_mfa_challenge WHERE fk_user = $1", "DELETE FROM {s}.tb_mfa_failure WHERE fk_user = $1"]
        {
            sqlx::query(self.sql(template)).bind(id).execute(&mut *tx).await.map_err(map)?;
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
        let _after = self.cache.after_write(Target::User(id));
        let row = sqlx::query(self.sql(
            "UPDATE {s}.tb_user AS uu SET name = CASE WHEN $2 THEN $3 ELSE uu.name END, \
             metadata = COALESCE($4, uu.metadata), updated_at = $5 WHERE uu.pk_user = $1 RETURNING {user_cols}",
        ))
        .bind(id)
        .bind(name.is_some())
        .bind(name.flatten())
        .bind(metadata)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn set_email_verified(&self, id: Uuid, now: DateTime<Utc>) -> Result<Option<User>, StoreError> {
        let _after = self.cache.after_write(Target::User(id));
        let row = sqlx::query(self.sql(
            "UPDATE {s}.tb_user AS uu SET email_verified = TRUE, updated_at = $2 WHERE uu.pk_user = $1 RETURNING {user_cols}",
        ))
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn set_roles(&self, id: Uuid, roles: &[String], now: DateTime<Utc>) -> Result<Option<User>, StoreError> {
        let _after = self.cache.after_write(Target::User(id));
        let row = sqlx::query(self.sql(
            "UPDATE {s}.tb_user AS uu SET roles = $2, updated_at = $3 WHERE uu.pk_user = $1 RETURNING {user_cols}",
        ))
        .bind(id)
        .bind(roles)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn list_users(&self, limit: u32, offset: u32) -> Result<Vec<User>, StoreError> {
        let rows =
            sqlx::query(self.sql("SELECT {user_cols} FROM {s}.tb_user AS uu ORDER BY uu.email LIMIT $1 OFFSET $2"))
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await
                .map_err(map)?;
        rows.iter().map(user_from).collect()
    }
}

/// The compare-and-swap of a refresh rotation (`rotate_refresh`, `rotate_refresh_audited`):
/// binds $1 session, $2 presented counter, $3 now, $4 new expiry, $5 idle cutoff, $6 created cutoff.
macro_rules! rotate_update {
    () => {
        "UPDATE {s}.tb_session AS ss SET refresh_counter = ss.refresh_counter + 1, rotated_at = $3, \
         last_active = $3, expires_at = $4 \
         FROM {s}.tb_user AS uu \
         WHERE ss.pk_session = $1 AND ss.refresh_counter = $2 AND ss.revoked_at IS NULL AND ss.expires_at > $3 \
           AND ($5::timestamptz IS NULL OR ss.last_active >= $5) \
           AND ($6::timestamptz IS NULL OR ss.created_at >= $6) \
           AND uu.pk_user = ss.fk_user AND uu.is_active"
    };
}

#[async_trait]
impl SessionStore for PgStore {
    async fn insert_session(&self, s: NewSession) -> Result<Session, StoreError> {
        let row = sqlx::query(self.sql(
            "INSERT INTO {s}.tb_session AS ss (pk_session, fk_user, token_family, refresh_counter, rotated_at, \
             created_at, last_active, expires_at, user_agent, ip_address) \
             VALUES ($1, $2, $3, 0, $4, $4, $4, $5, $6, $7::inet) RETURNING {session_cols}",
        ))
        .bind(s.id.0)
        .bind(s.user_id)
        .bind(s.token_family)
        .bind(s.now)
        .bind(s.expires_at)
        .bind(&s.user_agent)
        .bind(&s.ip_address)
        .fetch_one(&self.pool)
        .await
        .map_err(map)?;
        session_from(&row)
    }

    async fn session_with_user(&self, id: SessionId) -> Result<Option<(Session, User)>, StoreError> {
        // Noted before the read: an invalidation that lands meanwhile keeps this answer out.
        let ticket = self.cache.ticket(self.schema.as_str());
        let row = sqlx::query(self.sql(
            "SELECT {session_cols}, {user_cols} FROM {s}.tb_session ss JOIN {s}.tb_user uu ON uu.pk_user = ss.fk_user \
             WHERE ss.pk_session = $1",
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        let Some(row) = row else { return Ok(None) };
        let (session, user) = (session_from(&row)?, user_from(&row)?);
        if let Some(epoch) = ticket {
            self.cache.insert(self.schema.as_str(), epoch, session.clone(), user.clone());
        }
        Ok(Some((session, user)))
    }

    async fn session_for_bearer(&self, id: SessionId) -> Result<Option<(Session, User, bool)>, StoreError> {
        if let Some((session, user)) = self.cache.get(self.schema.as_str(), id.0) {
            return Ok(Some((session, user, true)));
        }
        Ok(self.session_with_user(id).await?.map(|(s, u)| (s, u, false)))
    }

    async fn rotate_refresh(
        &self,
        id: SessionId,
        presented: i64,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        live: Liveness,
    ) -> Result<Option<(Session, User)>, StoreError> {
        // One statement, one round trip. Concurrent presenters of the same counter queue on the
        // row lock; after the first commits, PostgreSQL re-checks `refresh_counter = $2` for the
        // others, which then match nothing: exactly one rotation per counter.
        let row = sqlx::query(self.sql(concat!(rotate_update!(), " RETURNING {session_cols}, {user_cols}")))
            .bind(id.0)
            .bind(presented)
            .bind(now)
            .bind(expires_at)
            .bind(live.idle_cutoff)
            .bind(live.created_cutoff)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?;
        self.rotated(id, row)
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
        // The rotation and its audit row in one statement (a data-modifying CTE), committed
        // together with the other rotations queued at the same moment (`postgres/batch.rs`).
        // Handed back (its batch failed), it runs alone on the shared pool.
        let rotation = Arc::new(Rotation { id: id.0, presented, now, expires_at, live, audit });
        let sql = self.sql(batch::ROTATE_SQL).0;
        let row = match self.batcher.submit(&self.options, Arc::clone(&sql), Arc::clone(&rotation)).await {
            Some(outcome) => outcome,
            None => batch::run(&self.pool, &sql, &[&*rotation]).await?.pop().flatten(),
        };
        self.rotated(id, row)
    }

    async fn live_sessions(&self, user: Uuid, now: DateTime<Utc>) -> Result<Vec<Session>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT {session_cols} FROM {s}.tb_session ss \
             WHERE ss.fk_user = $1 AND ss.revoked_at IS NULL AND ss.expires_at > $2 \
             ORDER BY ss.last_active DESC, ss.created_at DESC",
        ))
        .bind(user)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        rows.iter().map(session_from).collect()
    }

    async fn touch_session(
        &self,
        id: SessionId,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            self.sql("UPDATE {s}.tb_session SET last_active = $2 WHERE pk_session = $1 AND last_active < $3"),
        )
        .bind(id.0)
        .bind(now)
        .bind(stale_before)
        .execute(&self.pool)
        .await
        .map_err(map)?;
        if done.rows_affected() == 1 {
            self.cache.touched(id.0, now);
        } else {
            // Someone else moved it (another node, a rotation): read it again next time.
            self.cache.forget(id.0);
        }
        Ok(())
    }

    async fn revoke_user_session(
        &self,
        user: Uuid,
        id: SessionId,
        reason: RevokeReason,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _after = self.cache.after_write(Target::Session(id.0));
        let done = sqlx::query(self.sql(
            "UPDATE {s}.tb_session SET revoked_at = $3, revoked_reason = $4 \
             WHERE pk_session = $1 AND fk_user = $2 AND revoked_at IS NULL AND expires_at > $3",
        ))
        .bind(id.0)
        .bind(user)
        .bind(now)
        .bind(reason.as_str())
        .execute(&self.pool)
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
        let _after = self.cache.after_write(Target::Session(id.0));
        let done = sqlx::query(self.sql(
            "UPDATE {s}.tb_session SET revoked_at = $2, revoked_reason = $3 WHERE pk_session = $1 AND revoked_at IS NULL",
        ))
        .bind(id.0)
        .bind(now)
        .bind(reason.as_str())
        .execute(&self.pool)
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
        let _after = self.cache.after_write(Target::User(user));
        self.revoke_all(&self.pool, user, keep, reason, now).await
    }
}

#[async_trait]
impl StoreHealth for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map)?;
        Ok(())
    }

    async fn migrations_current(&self) -> Result<bool, StoreError> {
        let applied = self.applied_versions().await?;
        Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn pool_usage(&self) -> fraise_core::store::PoolUsage {
        fraise_core::store::PoolUsage {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    fn session_cache(&self) -> Option<fraise_core::store::SessionCacheStats> {
        Some(self.cache.stats())
    }

    fn rotation_batches(&self) -> Option<fraise_core::store::RotationBatchStats> {
        Some(self.batcher.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_validated_before_they_reach_sql() {
        for ok in ["public", "tenant_1", "_x", "a"] {
            assert!(SchemaName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1abc", "Public", "a-b", "a\"b", "a;drop", "pg_catalog", "information_schema", &"a".repeat(64)]
        {
            assert!(SchemaName::parse(bad).is_err(), "{bad}");
        }
    }
}
