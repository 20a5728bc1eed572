//! Assembly: from a validated [`Config`] to a running service.
use std::sync::Arc;

use anyhow::Context as _;
use chrono::Duration;
use fraise_core::mail::Mailer;
use fraise_core::mfa::SecretSealer;
use fraise_core::password::{HashPool, PasswordHasher};
use fraise_core::service::Components;
use fraise_core::store::Store;
use fraise_core::tenant::Tenants;
use fraise_core::tokens::{AccessTokens, JwtSettings, RefreshTokens};
use fraise_core::{AuthService, Clock, Settings};
use fraise_http::tenancy::TenantResolution;
use fraise_http::{AppState, HttpConfig};
use fraise_store::{
    MigrationReport, PgPoolSettings, PgStore, PgTenants, SchemaName, SqliteStore, SqliteTenants, TenantAdmin,
};
use secrecy::ExposeSecret;

use crate::config::{Config, Database};

/// An opened backend, before it is type-erased into `Arc<dyn Store>`.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqliteStore),
    /// Boxed: the PostgreSQL store carries its connect options and is much larger.
    Postgres(Box<PgStore>),
}

impl Db {
    /// Opens the configured database. PostgreSQL pools connect lazily, so a database that is
    /// down at start-up yields 503s until it is back, not a crash.
    pub async fn open(cfg: &Config) -> anyhow::Result<Self> {
        Ok(match &cfg.database {
            Database::Sqlite(path) => Db::Sqlite(
                SqliteStore::open(path, cfg.pool_max.max(2))
                    .await
                    .with_context(|| format!("cannot open SQLite database {}", path.display()))?,
            ),
            Database::Postgres { url, schema } => {
                let schema = SchemaName::parse(schema).map_err(anyhow::Error::msg)?;
                let pool = PgPoolSettings {
                    min_connections: cfg.pool_min,
                    max_connections: cfg.pool_max,
                    acquire_timeout: std::time::Duration::from_secs(cfg.pool_timeout_seconds),
                };
                Db::Postgres(Box::new(
                    PgStore::connect_lazy(url.expose_secret(), schema, pool).context("invalid DATABASE_URL")?,
                ))
            }
        })
    }

    /// Like [`Db::open`], but an SQLite file that does not exist is an error rather than created:
    /// for diagnostics, which must change nothing.
    pub async fn open_existing(cfg: &Config) -> anyhow::Result<Self> {
        match &cfg.database {
            Database::Sqlite(path) if !path.is_file() => Err(anyhow::anyhow!(
                "SQLite database {} does not exist. Fix: fraise-auth migrate (or serve, which creates it)",
                path.display()
            )),
            Database::Sqlite(path) => Ok(Db::Sqlite(
                SqliteStore::open_existing(path, 2)
                    .await
                    .with_context(|| format!("cannot open SQLite database {}", path.display()))?,
            )),
            Database::Postgres { .. } => Self::open(cfg).await,
        }
    }

    /// Each known migration, applied or pending.
    pub async fn migration_status(&self) -> anyhow::Result<Vec<fraise_store::MigrationState>> {
        let v = match self {
            Db::Sqlite(s) => s.migration_status().await,
            Db::Postgres(s) => s.migration_status().await,
        };
        v.map_err(|e| anyhow::Error::new(e).context("cannot read the migration table"))
    }

    /// The database server's (or SQLite library's) version.
    pub async fn server_version(&self) -> anyhow::Result<String> {
        let v = match self {
            Db::Sqlite(s) => s.server_version().await,
            Db::Postgres(s) => s.server_version().await,
        };
        v.map_err(|e| anyhow::Error::new(e).context("query failed"))
    }

    /// Proves the tables can be read and written, changing nothing (rolled back).
    pub async fn check_read_write(&self) -> Result<(), String> {
        match self {
            Db::Sqlite(s) => s.check_read_write().await,
            Db::Postgres(s) => s.check_read_write().await,
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<MigrationReport> {
        let report = match self {
            Db::Sqlite(s) => s.migrate().await,
            Db::Postgres(s) => s.migrate().await,
        };
        report.map_err(|e| anyhow::Error::new(e).context("migration failed"))
    }

    /// The tenants beside this database: schemas of the same PostgreSQL database (served by this
    /// store's pool, registered in its schema), or SQLite files under `DATA_DIR/tenants`.
    pub fn tenants(&self, cfg: &Config) -> Arc<dyn TenantAdmin> {
        match self {
            // A few connections per tenant file: SQLite has one writer at a time anyway.
            Db::Sqlite(_) => Arc::new(SqliteTenants::new(cfg.data_dir.join("tenants"), cfg.pool_max.min(4))),
            Db::Postgres(s) => Arc::new(PgTenants::new(PgStore::clone(s))),
        }
    }

    /// Turns on the PostgreSQL session cache (`SESSION_CACHE_SIZE`; nothing on SQLite, which has
    /// no cross-process change notifications and is read in-process anyway). For `serve`, after
    /// migrating: the cache relies on migration 0006's triggers.
    pub fn start_session_cache(&self, cfg: &Config) {
        if let Db::Postgres(s) = self {
            s.start_session_cache(cfg.session_cache_size);
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Db::Sqlite(s) => Arc::new(s.clone()),
            Db::Postgres(s) => Arc::new(PgStore::clone(s)),
        }
    }
}

/// Builds the auth service over `store` with `secret` and `clock` (injected so tests control time).
/// With EdDSA/RS256 and an empty key directory, development generates the first key here (see
/// [`crate::keys::access_keys`]); production refuses.
pub fn service(
    cfg: &Config,
    store: Arc<dyn Store>,
    secret: &[u8],
    clock: Arc<dyn Clock>,
) -> anyhow::Result<AuthService> {
    let hasher = PasswordHasher::new(cfg.argon2).map_err(anyhow::Error::msg)?;
    let pool = HashPool::new(cfg.hash_concurrency, cfg.hash_queue).context("cannot start hashing threads")?;
    let jwt = JwtSettings {
        ttl: Duration::minutes(cfg.access_ttl_minutes),
        issuer: cfg.jwt_issuer.clone(),
        audience: cfg.jwt_audience.clone(),
        leeway: Duration::zero(),
    };
    let keys = crate::keys::access_keys(cfg, secret, crate::keys::FirstKey::GenerateInDevelopment)?;
    tracing::debug!(alg = %keys.alg(), kid = keys.signing_kid(), "access-token signing key");
    let access = AccessTokens::new(keys, jwt);
    let mailer = mailer(cfg)?;
    let settings = Settings {
        refresh_ttl: Duration::days(cfg.refresh_ttl_days),
        reuse_grace: Duration::seconds(cfg.reuse_grace_seconds),
        theft_scope: cfg.theft_scope,
        require_verified_email: cfg.require_verified_email,
        policy: cfg.policy.clone(),
        tenant: None,
        max_sessions_per_user: cfg.max_sessions_per_user,
        idle_timeout: (cfg.idle_timeout_minutes > 0).then(|| Duration::minutes(cfg.idle_timeout_minutes)),
        absolute_lifetime: (cfg.absolute_lifetime_hours > 0).then(|| Duration::hours(cfg.absolute_lifetime_hours)),
        touch_interval: Duration::minutes(1),
        reset_ttl: Duration::minutes(cfg.reset_ttl_minutes),
        verification_ttl: Duration::hours(cfg.verification_ttl_hours),
        reset_throttle: Duration::minutes(1),
        forgot_per_client_per_hour: cfg.forgot_per_client_per_hour,
        lockout: cfg.lockout.clone(),
        session_retention: Duration::days(cfg.session_retention_days),
        audit_retention: Duration::days(cfg.audit_retention_days),
        links: cfg.links.clone(),
        passkeys: cfg.passkeys.clone(),
        require_mfa: cfg.require_mfa,
        totp_issuer: cfg.totp_issuer.clone(),
    };
    let components = Components {
        store,
        clock,
        hasher: Arc::new(hasher),
        pool,
        access,
        refresh: RefreshTokens::from_secret(secret),
        mailer,
        sealer: sealer(cfg, secret),
    };
    Ok(AuthService::new(components, settings))
}

/// The key that seals TOTP secrets: `MFA_ENCRYPTION_KEY`, else the JWT secret. Former keys
/// still open what they sealed: `MFA_PREVIOUS_ENCRYPTION_KEYS`, the former JWT secrets, and the
/// JWT secret itself once an explicit key replaces it.
fn sealer(cfg: &Config, secret: &[u8]) -> SecretSealer {
    let mut previous: Vec<&[u8]> = cfg.mfa_previous_keys.iter().map(|k| k.expose_secret().as_bytes()).collect();
    previous.extend(cfg.jwt_previous_secrets.iter().map(|k| k.expose_secret().as_bytes()));
    match &cfg.mfa_key {
        Some(key) => {
            previous.push(secret);
            SecretSealer::new(key.expose_secret().as_bytes(), &previous)
        }
        None => SecretSealer::new(secret, &previous),
    }
}

/// SMTP when `SMTP_URL` is set, else the outbox folder `DATA_DIR/outbox`.
pub fn mailer(cfg: &Config) -> anyhow::Result<Arc<dyn Mailer>> {
    let from = fraise_mail::parse_mailbox(&cfg.mail_from).map_err(anyhow::Error::msg)?;
    Ok(match &cfg.smtp_url {
        Some(url) => Arc::new(fraise_mail::Smtp::from_url(url.expose_secret(), from).map_err(anyhow::Error::msg)?),
        None => Arc::new(
            fraise_mail::Outbox::new(cfg.data_dir.join("outbox"), from)
                .with_context(|| format!("cannot create the outbox in {}", cfg.data_dir.display()))?,
        ),
    })
}

/// The tenant resolver when `TENANT_RESOLUTION_METHOD` is not `none`.
pub fn tenants(cfg: &Config, db: &Db, auth: &AuthService) -> Option<Arc<Tenants>> {
    (cfg.tenancy != TenantResolution::None)
        .then(|| Arc::new(Tenants::new(auth.clone(), db.tenants(cfg), cfg.tenant_max_open)))
}

/// The router's state for `cfg`.
pub fn state(cfg: &Config, auth: AuthService, tenants: Option<Arc<Tenants>>) -> anyhow::Result<AppState> {
    let state = AppState::new(
        auth,
        HttpConfig {
            auth_prefix: cfg.auth_prefix.clone(),
            body_limit: cfg.max_body_bytes,
            request_timeout: std::time::Duration::from_secs(cfg.request_timeout_seconds),
            protection: cfg.protection.clone(),
            limits: cfg.limits.clone(),
            token_transport: cfg.token_transport,
            csrf: cfg.csrf,
            refresh_cookie_max_age: cfg.refresh_ttl_days * 86_400,
            max_concurrent_requests: cfg.max_concurrent_requests,
            tenancy: cfg.tenancy.clone(),
            metrics_route: cfg.metrics_enabled && cfg.metrics_bind.is_none(),
            metrics_token: cfg.metrics_token.as_ref().map(|t| fraise_http::MetricsToken(t.expose_secret().to_owned())),
            docs: cfg.docs_enabled,
            ui: cfg.ui_enabled,
        },
    )
    .map_err(anyhow::Error::msg)?;
    Ok(match tenants {
        Some(t) => state.with_tenants(t),
        None => state,
    })
}

/// Runs the cleanup every `interval` until the process ends, on the service's own store and on
/// every tenant's. Safe on every node at once.
pub fn spawn_cleanup(auth: AuthService, tenants: Option<Arc<Tenants>>, interval: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate: start-up has enough to do
        loop {
            tick.tick().await;
            cleanup_one(&auth).await;
            if let Some(tenants) = &tenants {
                let swept = tenants
                    .for_each(|service| async move {
                        cleanup_one(&service).await;
                        Ok(())
                    })
                    .await;
                if let Err(e) = swept {
                    tracing::warn!(error = ?e, "cannot list tenants for cleanup; will retry at the next interval");
                }
            }
        }
    });
}

async fn cleanup_one(auth: &AuthService) {
    let tenant = auth.tenant_name().unwrap_or("-");
    match auth.cleanup().await {
        Ok(r) => tracing::info!(
            tenant,
            sessions = r.sessions,
            tokens = r.one_time_tokens,
            audit = r.audit_rows,
            "cleanup done"
        ),
        Err(e) => tracing::warn!(tenant, error = ?e, "cleanup failed; will retry at the next interval"),
    }
}
