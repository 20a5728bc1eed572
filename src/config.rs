//! Configuration: typed, validated once at start-up, every error saying how to fix it.
//!
//! Sources, highest precedence first: command-line flags, environment variables, the optional
//! config file (TOML, same key names as the environment, `--config FILE` or `FRAISE_CONFIG`),
//! defaults. Unknown keys in the file are errors. Secrets are `SecretString`s: redacted in `Debug`
//! and never logged.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use fraise_core::TheftScope;
use fraise_core::password::{Argon2Params, PasswordPolicy};
use secrecy::{ExposeSecret, SecretString};

/// Every key this version understands, with its default ("" = unset) and one line of help.
/// The README's configuration table is this list.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("HOST", "127.0.0.1", "address to bind (`--host`)"),
    ("PORT", "8000", "TCP port to bind (`--port`)"),
    ("DATA_DIR", "./data", "folder for the SQLite database, the generated secret and (later) the outbox"),
    (
        "DATABASE_URL",
        "",
        "`postgres://user:pass@host:5432/db` for PostgreSQL; unset or `sqlite://PATH` for SQLite (default `DATA_DIR/fraise-auth.db`)",
    ),
    ("DATABASE_POOL_MIN_SIZE", "1", "connections kept open"),
    ("DATABASE_POOL_MAX_SIZE", "10", "most connections open at once"),
    ("DATABASE_POOL_TIMEOUT_SECONDS", "5", "wait for a free connection before answering 503"),
    ("DEFAULT_SCHEMA", "public", "PostgreSQL schema holding the tables"),
    (
        "SESSION_CACHE_SIZE",
        "10000",
        "PostgreSQL: sessions each node keeps in memory for the bearer check, invalidated via LISTEN/NOTIFY (0 = off; one more connection)",
    ),
    (
        "TENANT_RESOLUTION_METHOD",
        "none",
        "`none` (one tenant: DEFAULT_SCHEMA / the SQLite file), `header` (`X-Tenant-ID`) or `subdomain` (`<tenant>.TENANT_BASE_DOMAIN`)",
    ),
    (
        "TENANT_BASE_DOMAIN",
        "",
        "with `subdomain`: the domain under which each tenant has its label, e.g. `auth.example.com`",
    ),
    (
        "TENANT_MAX_OPEN",
        "64",
        "tenants held open at once (least recently used closed first); bounds SQLite files open, not PostgreSQL connections (one pool serves all)",
    ),
    (
        "AUTO_MIGRATE",
        "true",
        "`serve` applies pending migrations at start, to every tenant too (`--no-migrate` turns it off)",
    ),
    ("ENVIRONMENT", "development", "`production` makes a missing or short JWT secret fatal"),
    (
        "JWT_SECRET_KEY",
        "",
        "HS256 secret, 32+ bytes; also keys the refresh-token MAC, so it is required with EdDSA/RS256 too; generated into DATA_DIR on the SQLite default when unset",
    ),
    (
        "JWT_ALGORITHM",
        "HS256",
        "access-token signature: `HS256` (JWT_SECRET_KEY), `EdDSA` or `RS256` (key files in JWT_KEY_DIR, public keys at /.well-known/jwks.json)",
    ),
    (
        "JWT_KEY_DIR",
        "",
        "EdDSA/RS256 key directory (default `DATA_DIR/keys`): `<kid>.pem` private keys (mode 0600) and `current`, the kid that signs",
    ),
    (
        "JWT_PREVIOUS_SECRET_KEYS",
        "",
        "HS256: comma-separated former secrets whose tokens still verify (never sign) after JWT_SECRET_KEY changed",
    ),
    ("JWT_RSA_KEY_BITS", "2048", "size of RS256 keys made by `keys generate`/`keys rotate`: 2048, 3072 or 4096"),
    ("JWT_ISSUER", "", "`iss` claim to issue and require"),
    ("JWT_AUDIENCE", "", "`aud` claim to issue and require"),
    ("ACCESS_TOKEN_TTL_MINUTES", "15", "access-token lifetime"),
    ("REFRESH_TOKEN_TTL_DAYS", "30", "refresh-token lifetime (renewed at each rotation)"),
    ("REFRESH_REUSE_GRACE_SECONDS", "10", "how long the previous refresh token returns the current one"),
    ("THEFT_REVOKE_SCOPE", "user", "`user` (every session of the user) or `session`, on refresh-token reuse"),
    ("ARGON2_MEMORY_COST", "102400", "Argon2id memory, KiB"),
    ("ARGON2_TIME_COST", "2", "Argon2id passes"),
    ("ARGON2_PARALLELISM", "8", "Argon2id lanes"),
    ("HASH_CONCURRENCY", "", "hashes computed at once (default: CPU count)"),
    ("HASH_QUEUE_SIZE", "64", "hashes waiting before 503 SERVICE_UNAVAILABLE"),
    ("PASSWORD_MIN_LENGTH", "8", "minimum password length, characters"),
    ("PASSWORD_REQUIRE_UPPERCASE", "true", "policy: an uppercase letter"),
    ("PASSWORD_REQUIRE_LOWERCASE", "true", "policy: a lowercase letter"),
    ("PASSWORD_REQUIRE_DIGIT", "true", "policy: a digit"),
    ("PASSWORD_REQUIRE_SPECIAL", "true", "policy: a character that is not a letter or digit"),
    ("MAX_SESSIONS_PER_USER", "10", "a login beyond this many live sessions revokes the least recently active"),
    ("SESSION_IDLE_TIMEOUT_MINUTES", "0", "end sessions unused this long (0 = off)"),
    ("SESSION_ABSOLUTE_LIFETIME_HOURS", "0", "end sessions this old, however active (0 = off)"),
    ("PASSWORD_RESET_TTL_MINUTES", "60", "lifetime of a password-reset link"),
    ("EMAIL_VERIFICATION_TTL_HOURS", "24", "lifetime of an email-verification link"),
    ("APP_BASE_URL", "http://localhost:8000", "base of the links in emails"),
    ("RESET_URL_TEMPLATE", "", "reset link with `{token}` (default `APP_BASE_URL/reset-password?token={token}`)"),
    ("VERIFY_URL_TEMPLATE", "", "verification link with `{token}` (default `APP_BASE_URL/verify-email?token={token}`)"),
    (
        "SMTP_URL",
        "",
        "`smtp://user:pass@host:587` (STARTTLS), `smtps://…:465`, `smtp://host:25?tls=none`; unset = outbox files in DATA_DIR/outbox",
    ),
    ("MAIL_FROM", "fraise-auth <noreply@localhost>", "sender of the emails"),
    ("FORGOT_PASSWORD_PER_CLIENT_PER_HOUR", "10", "forgot-password requests per client IP per hour (429 beyond)"),
    ("SESSION_RETENTION_DAYS", "7", "ended sessions are deleted this long after they ended"),
    ("AUDIT_RETENTION_DAYS", "90", "audit rows are deleted at this age"),
    ("CLEANUP_INTERVAL_MINUTES", "60", "how often `serve` runs the cleanup (0 = never)"),
    ("REQUIRE_EMAIL_VERIFICATION", "false", "refuse logins of unverified emails (403 EMAIL_NOT_VERIFIED)"),
    (
        "REQUIRE_MFA",
        "false",
        "every bearer route but MFA enrollment and logout answers 403 MFA_REQUIRED until the user has a second factor",
    ),
    ("MFA_TOTP_ISSUER", "fraise-auth", "issuer name authenticator apps show next to the TOTP code"),
    (
        "MFA_ENCRYPTION_KEY",
        "",
        "key sealing TOTP secrets at rest (32+ bytes); unset: derived from JWT_SECRET_KEY (former JWT secrets still open)",
    ),
    (
        "MFA_PREVIOUS_ENCRYPTION_KEYS",
        "",
        "comma-separated former MFA_ENCRYPTION_KEYs: still open sealed TOTP secrets, never seal",
    ),
    ("AUTH_PREFIX", "/auth", "path prefix of the auth routes"),
    ("MAX_BODY_BYTES", "65536", "largest request body (413 above)"),
    ("REQUEST_TIMEOUT_SECONDS", "30", "longest a request may take (408 after)"),
    (
        "HEADER_READ_TIMEOUT_SECONDS",
        "30",
        "longest wait for a request's line and headers, idle keep-alive included; the connection is closed after it",
    ),
    ("MAX_CONCURRENT_REQUESTS", "1024", "requests handled at once; more get 503 at once"),
    ("ENABLE_RATE_LIMITING", "true", "GCRA limits per client IP (in memory, per node)"),
    ("RATE_LIMIT_REQUESTS_PER_MINUTE", "60", "general bucket: every route but health probes"),
    (
        "RATE_LIMIT_AUTH_REQUESTS_PER_MINUTE",
        "5",
        "auth bucket: POST login, register, forgot/reset/change-password, mfa/verify, DELETE mfa/totp",
    ),
    ("RATE_LIMIT_ALLOWLIST", "", "comma-separated CIDRs exempt from rate limits"),
    ("REDIS_URL", "", "`redis://host:6379/0`: rate limits shared by every node (unset: in memory, per node)"),
    ("RATE_LIMIT_REDIS_FAILURE", "open", "`open` (let requests through) or `closed` (503) while Redis is unreachable"),
    ("RATE_LIMIT_REDIS_PREFIX", "fraise:rl:", "prefix of the rate-limit keys in Redis"),
    (
        "LOCKOUT_CLIENT_THRESHOLD",
        "5",
        "failed logins on one account from one client before that client is locked out of it (1 min, doubling, max 1 h)",
    ),
    (
        "LOCKOUT_ACCOUNT_THRESHOLD",
        "50",
        "failed logins on one account from anywhere before it is slowed down for everyone (30 s, doubling, max 15 min)",
    ),
    ("LOCKOUT_WINDOW_MINUTES", "15", "failures further apart than this start the count again"),
    ("TOKEN_TRANSPORT", "json", "`json`, `cookie` (refresh token only in an HttpOnly cookie) or `both`"),
    (
        "ENABLE_CSRF_PROTECTION",
        "false",
        "double-submit CSRF check (`csrf_token` cookie = `X-CSRF-Token` header) on state changes that carry the refresh cookie",
    ),
    ("TRUSTED_PROXIES", "", "comma-separated CIDRs of proxies whose X-Forwarded-For/-Proto are believed"),
    (
        "ENABLE_SECURITY_HEADERS",
        "true",
        "nosniff, DENY, XSS, Referrer-Policy, CSP (and HSTS over HTTPS) on every response",
    ),
    ("CSP_POLICY", "default-src 'none'; frame-ancestors 'none'", "Content-Security-Policy value"),
    ("HSTS_ALWAYS", "false", "send HSTS on every response, not only those a trusted proxy says came over HTTPS"),
    ("CORS_ALLOWED_ORIGINS", "", "comma-separated origins allowed cross-origin, with credentials (`*` is refused)"),
    ("CORS_ALLOWED_METHODS", "GET,POST,PUT,PATCH,DELETE,OPTIONS", "methods allowed cross-origin"),
    (
        "CORS_ALLOWED_HEADERS",
        "Authorization,Content-Type,X-CSRF-Token,X-Request-Id",
        "request headers allowed cross-origin",
    ),
    ("METRICS_ENABLED", "true", "serve Prometheus metrics at `/metrics`"),
    (
        "METRICS_BIND",
        "",
        "`ADDR:PORT` to serve `/metrics` on its own listener (e.g. `127.0.0.1:9100`) instead of the main port",
    ),
    ("METRICS_TOKEN", "", "bearer token `/metrics` requires (`Authorization: Bearer …`); unset = no token"),
    (
        "DOCS_ENABLED",
        "true",
        "serve the API docs page (Swagger UI, assets in the binary) at `/docs`; `/openapi.json` is always served",
    ),
    (
        "UI_ENABLED",
        "false",
        "serve the hosted account page (sign up, sign in, sessions, password reset, email verification) at `/ui/`",
    ),
    (
        "WEBAUTHN_RP_ID",
        "",
        "passkeys: the relying-party id, the domain passkeys are bound to (e.g. `example.com`, or `localhost`); set with `WEBAUTHN_ORIGIN` to enable the `/auth/webauthn/*` routes (404 `PASSKEYS_DISABLED` otherwise)",
    ),
    (
        "WEBAUTHN_ORIGIN",
        "",
        "passkeys: the origin of the pages that call WebAuthn (e.g. `https://auth.example.com`, `http://localhost:8000`); its host must be `WEBAUTHN_RP_ID` or below it",
    ),
    ("WEBAUTHN_RP_NAME", "", "passkeys: the name authenticators show; default `WEBAUTHN_RP_ID`"),
    (
        "WEBAUTHN_PASSWORDLESS",
        "false",
        "passkeys: also allow sign-in with a (discoverable) passkey alone, without the password; passkeys registered while on are discoverable",
    ),
    ("LOG_LEVEL", "info", "`error`..`trace`, or a tracing filter such as `info,sqlx=debug`"),
    ("LOG_FORMAT", "pretty", "`pretty` or `json`"),
];

/// Keys DESIGN.md names that later versions implement. Accepted (so shared deployment files do
/// not break) but reported at start-up as having no effect yet.
pub const NOT_YET: &[&str] = &[];

/// Raw key/value pairs, already merged by precedence.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    values: BTreeMap<String, String>,
}

impl Sources {
    /// Merges file < environment < flags.
    pub fn gather(file: Option<&Path>, flags: &[(&str, Option<String>)]) -> Result<Self, String> {
        let mut s = Self::default();
        if let Some(path) = file {
            s.merge_file(path)?;
        }
        for key in KEYS.iter().map(|k| k.0).chain(NOT_YET.iter().copied()) {
            if let Ok(v) = std::env::var(key) {
                s.values.insert(key.to_owned(), v);
            }
        }
        for (key, value) in flags {
            if let Some(v) = value {
                s.values.insert((*key).to_owned(), v.clone());
            }
        }
        Ok(s)
    }

    /// Builds sources from explicit pairs (tests, embedding).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self { values: pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() }
    }

    fn merge_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!("cannot read config file {}: {e}. Check the path given to --config/FRAISE_CONFIG", path.display())
        })?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| format!("config file {} is not valid TOML: {e}", path.display()))?;
        for (key, value) in table {
            let upper = key.to_ascii_uppercase();
            if !KEYS.iter().any(|k| k.0 == upper) && !NOT_YET.contains(&upper.as_str()) {
                return Err(format!(
                    "config file {}: unknown key `{key}`. Known keys: {}",
                    path.display(),
                    KEYS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
                ));
            }
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "config file {}: `{key}` must be a string, number or boolean, not {other}",
                        path.display()
                    ));
                }
            };
            self.values.insert(upper, text);
        }
        Ok(())
    }

    fn raw(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    fn get(&self, key: &str) -> &str {
        match self.raw(key) {
            Some(v) => v,
            None => KEYS.iter().find(|k| k.0 == key).map(|k| k.1).unwrap_or(""),
        }
    }

    fn opt(&self, key: &str) -> Option<String> {
        Some(self.get(key).trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(&self, key: &str, what: &str, errors: &mut Vec<String>) -> Option<T> {
        let raw = self.get(key).trim();
        match raw.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                errors.push(format!(
                    "{key}={raw:?} is not {what}. Fix: set {key} to {what}, or unset it for the default"
                ));
                None
            }
        }
    }

    fn bool(&self, key: &str, errors: &mut Vec<String>) -> bool {
        match self.get(key).trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            other => {
                errors.push(format!("{key}={other:?} is not a boolean. Fix: set {key} to true or false"));
                false
            }
        }
    }

    /// The effective value of `key` (the default when nothing set it).
    pub fn value(&self, key: &str) -> &str {
        self.get(key)
    }

    /// Whether a file, the environment or a flag set `key`.
    pub fn is_set(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    /// Keys that are set but have no effect in this version.
    pub fn inert_keys(&self) -> Vec<&'static str> {
        NOT_YET.iter().copied().filter(|k| self.raw(k).is_some()).collect()
    }
}

/// A comma-separated list of secrets, blanks dropped.
fn list_secrets(raw: &str) -> Vec<SecretString> {
    raw.split(',').map(str::trim).filter(|v| !v.is_empty()).map(|v| SecretString::from(v.to_owned())).collect()
}

/// Whether `key`'s value is a secret or may hold one (credentials in a URL): reports show such a
/// key only as SET / NOT SET.
pub fn is_secret_key(key: &str) -> bool {
    key.contains("SECRET")
        || key.contains("PASSWORD")
        || key.contains("ENCRYPTION_KEY")
        || key.ends_with("TOKEN")
        || key.ends_with("_URL") && key != "APP_BASE_URL"
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres { url: SecretString, schema: String },
}

impl Database {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }

    /// "PostgreSQL" or "SQLite".
    pub fn describe_kind(&self) -> &'static str {
        if self.is_postgres() { "PostgreSQL" } else { "SQLite" }
    }

    /// A description without credentials, for logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite {}", p.display()),
            Self::Postgres { url, schema } => {
                let shown = url::Url::parse(url.expose_secret())
                    .map(|u| format!("{}:{}{}", u.host_str().unwrap_or("?"), u.port().unwrap_or(5432), u.path()))
                    .unwrap_or_else(|_| "(unparseable url)".into());
                format!("postgres {shown} schema {schema}")
            }
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub database: Database,
    pub pool_min: u32,
    pub pool_max: u32,
    pub pool_timeout_seconds: u64,
    /// Entries of the PostgreSQL session cache (`SESSION_CACHE_SIZE`, 0 = off).
    pub session_cache_size: usize,
    pub auto_migrate: bool,
    pub production: bool,
    pub jwt_secret: Option<SecretString>,
    /// Signature algorithm of access tokens.
    pub jwt_algorithm: fraise_core::tokens::JwtAlgorithm,
    /// Where EdDSA/RS256 keys live (`JWT_KEY_DIR`, default `DATA_DIR/keys`).
    pub jwt_key_dir: PathBuf,
    /// Former HS256 secrets that still verify (`JWT_PREVIOUS_SECRET_KEYS`).
    pub jwt_previous_secrets: Vec<SecretString>,
    /// Size of generated RSA keys.
    pub jwt_rsa_bits: usize,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub access_ttl_minutes: i64,
    pub refresh_ttl_days: i64,
    pub reuse_grace_seconds: i64,
    pub theft_scope: TheftScope,
    pub argon2: Argon2Params,
    pub hash_concurrency: usize,
    pub hash_queue: usize,
    pub policy: PasswordPolicy,
    pub require_verified_email: bool,
    pub require_mfa: bool,
    pub totp_issuer: String,
    /// Seals TOTP secrets (`MFA_ENCRYPTION_KEY`); `None`: derived from the JWT secret.
    pub mfa_key: Option<SecretString>,
    pub mfa_previous_keys: Vec<SecretString>,
    pub max_sessions_per_user: usize,
    pub idle_timeout_minutes: i64,
    pub absolute_lifetime_hours: i64,
    pub reset_ttl_minutes: i64,
    pub verification_ttl_hours: i64,
    pub links: fraise_core::mail::Links,
    pub smtp_url: Option<SecretString>,
    pub forgot_per_client_per_hour: u32,
    pub lockout: fraise_core::LockoutPolicy,
    pub session_retention_days: i64,
    pub audit_retention_days: i64,
    pub cleanup_interval_minutes: u64,
    pub mail_from: String,
    pub protection: fraise_http::protect::Protection,
    pub limits: Option<fraise_http::limits::LimitSettings>,
    pub token_transport: fraise_http::cookies::TokenTransport,
    pub csrf: bool,
    /// Serve `/docs` (`DOCS_ENABLED`).
    pub docs_enabled: bool,
    /// Serve the hosted page at `/ui/` (`UI_ENABLED`).
    pub ui_enabled: bool,
    pub auth_prefix: String,
    pub max_body_bytes: usize,
    pub request_timeout_seconds: u64,
    /// Wait for a request's head, idle keep-alive included, before closing the connection.
    pub header_read_timeout_seconds: u64,
    pub max_concurrent_requests: usize,
    pub log_level: String,
    pub log_json: bool,
    pub metrics_enabled: bool,
    /// A listener of its own for `/metrics`.
    pub metrics_bind: Option<std::net::SocketAddr>,
    pub metrics_token: Option<SecretString>,
    /// How a request names its tenant.
    pub tenancy: fraise_http::tenancy::TenantResolution,
    pub tenant_max_open: usize,
    /// Passkeys (`WEBAUTHN_*`); `None` when not configured.
    pub passkeys: Option<fraise_core::service::PasskeyConfig>,
    /// Keys set but not implemented by this version (warned about at start).
    pub inert: Vec<&'static str>,
}

/// Smallest JWT secret accepted in production, in bytes (HS256 key = hash output size).
pub const MIN_SECRET_BYTES: usize = 32;

impl Config {
    /// Validates every key; reports all problems at once.
    pub fn from_sources(s: &Sources) -> Result<Self, String> {
        let mut errors = Vec::new();
        let e = &mut errors;
        let data_dir = PathBuf::from(s.get("DATA_DIR"));
        let schema = s.get("DEFAULT_SCHEMA").trim().to_owned();
        if let Err(msg) = fraise_store::SchemaName::parse(&schema) {
            e.push(format!("DEFAULT_SCHEMA: {msg}"));
        }
        let database = match s.opt("DATABASE_URL") {
            None => Database::Sqlite(data_dir.join("fraise-auth.db")),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Database::Postgres { url: SecretString::from(url), schema }
            }
            Some(url) if url.starts_with("sqlite://") || url.starts_with("sqlite:") => {
                let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
                Database::Sqlite(PathBuf::from(path))
            }
            Some(_) => {
                e.push("DATABASE_URL must start with postgres://, postgresql:// or sqlite://. Fix: e.g. DATABASE_URL=postgres://user:pass@localhost:5432/fraiseql_dev".into());
                Database::Sqlite(data_dir.join("fraise-auth.db"))
            }
        };
        let environment = s.get("ENVIRONMENT").trim().to_ascii_lowercase();
        let production = match environment.as_str() {
            "production" | "prod" => true,
            "development" | "dev" | "test" | "staging" => false,
            other => {
                e.push(format!("ENVIRONMENT={other:?} is not one of development, staging, test, production"));
                false
            }
        };
        let jwt_secret = s.opt("JWT_SECRET_KEY").map(SecretString::from);
        let jwt_algorithm = fraise_core::tokens::JwtAlgorithm::parse(s.get("JWT_ALGORITHM")).unwrap_or_else(|msg| {
            e.push(format!("JWT_ALGORITHM: {msg}"));
            fraise_core::tokens::JwtAlgorithm::Hs256
        });
        let jwt_key_dir = s.opt("JWT_KEY_DIR").map_or_else(|| data_dir.join("keys"), PathBuf::from);
        let jwt_previous_secrets = list_secrets(s.get("JWT_PREVIOUS_SECRET_KEYS"));
        if s.opt("MFA_ENCRYPTION_KEY").is_some_and(|k| k.len() < 32) {
            e.push("MFA_ENCRYPTION_KEY: use at least 32 bytes (e.g. `openssl rand -base64 32`)".to_owned());
        }
        let jwt_rsa_bits = s.parse("JWT_RSA_KEY_BITS", "2048, 3072 or 4096", e).unwrap_or(2048);
        if ![2048, 3072, 4096].contains(&jwt_rsa_bits) {
            e.push(format!("JWT_RSA_KEY_BITS={jwt_rsa_bits} must be 2048, 3072 or 4096"));
        }
        let theft_scope = match s.get("THEFT_REVOKE_SCOPE").trim() {
            "user" => TheftScope::User,
            "session" => TheftScope::Session,
            other => {
                e.push(format!("THEFT_REVOKE_SCOPE={other:?} must be `user` or `session`"));
                TheftScope::User
            }
        };
        let argon2 = match (
            s.parse("ARGON2_MEMORY_COST", "a number of KiB (e.g. 102400)", e),
            s.parse("ARGON2_TIME_COST", "a positive integer (e.g. 2)", e),
            s.parse("ARGON2_PARALLELISM", "a positive integer (e.g. 8)", e),
        ) {
            (Some(memory_kib), Some(iterations), Some(parallelism)) => {
                let p = Argon2Params { memory_kib, iterations, parallelism };
                if let Err(msg) = p.validate() {
                    e.push(format!("ARGON2_*: {msg}. Fix: memory >= 8 x parallelism KiB, time >= 1, parallelism >= 1"));
                }
                p
            }
            _ => Argon2Params::default(),
        };
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let hash_concurrency = match s.opt("HASH_CONCURRENCY") {
            None => cpus,
            Some(_) => s.parse("HASH_CONCURRENCY", "a positive integer", e).unwrap_or(cpus),
        };
        let positive = |v: i64, key: &str, e: &mut Vec<String>| {
            if v <= 0 {
                e.push(format!("{key} must be greater than 0"));
            }
            v
        };
        let access_ttl_minutes = s.parse("ACCESS_TOKEN_TTL_MINUTES", "a number of minutes", e).unwrap_or(15);
        let refresh_ttl_days = s.parse("REFRESH_TOKEN_TTL_DAYS", "a number of days", e).unwrap_or(30);
        let reuse_grace_seconds: i64 = s.parse("REFRESH_REUSE_GRACE_SECONDS", "a number of seconds", e).unwrap_or(10);
        if reuse_grace_seconds < 0 {
            e.push("REFRESH_REUSE_GRACE_SECONDS must be 0 or more".into());
        }
        let auth_prefix = s.get("AUTH_PREFIX").trim().trim_end_matches('/').to_owned();
        if !auth_prefix.starts_with('/') || auth_prefix.contains(['{', '}', '*', ' ']) {
            e.push(format!("AUTH_PREFIX={auth_prefix:?} must be a path such as /auth"));
        }
        let log_json = match s.get("LOG_FORMAT").trim() {
            "json" => true,
            "pretty" | "text" => false,
            other => {
                e.push(format!("LOG_FORMAT={other:?} must be `json` or `pretty`"));
                false
            }
        };
        let tenancy = tenancy(s, e);
        let mut protection = protection(s, e);
        if tenancy == fraise_http::tenancy::TenantResolution::Header
            && let Some(cors) = &mut protection.cors
        {
            // A browser on another origin must be allowed to name its tenant.
            let name = axum::http::HeaderName::from_static(fraise_http::tenancy::TENANT_HEADER);
            if !cors.headers.contains(&name) {
                cors.headers.push(name);
            }
        }
        let cfg = Config {
            host: s.get("HOST").trim().to_owned(),
            port: s.parse("PORT", "a TCP port (1-65535)", e).unwrap_or(8000),
            pool_min: s.parse("DATABASE_POOL_MIN_SIZE", "a number of connections", e).unwrap_or(1),
            pool_max: s.parse("DATABASE_POOL_MAX_SIZE", "a number of connections", e).unwrap_or(10),
            pool_timeout_seconds: s.parse("DATABASE_POOL_TIMEOUT_SECONDS", "a number of seconds", e).unwrap_or(5),
            session_cache_size: s.parse("SESSION_CACHE_SIZE", "a number of sessions (0 = off)", e).unwrap_or(10_000),
            auto_migrate: s.bool("AUTO_MIGRATE", e),
            data_dir,
            database,
            production,
            jwt_secret,
            jwt_algorithm,
            jwt_key_dir,
            jwt_previous_secrets,
            jwt_rsa_bits,
            jwt_issuer: s.opt("JWT_ISSUER"),
            jwt_audience: s.opt("JWT_AUDIENCE"),
            access_ttl_minutes: positive(access_ttl_minutes, "ACCESS_TOKEN_TTL_MINUTES", e),
            refresh_ttl_days: positive(refresh_ttl_days, "REFRESH_TOKEN_TTL_DAYS", e),
            reuse_grace_seconds,
            theft_scope,
            argon2,
            hash_concurrency,
            hash_queue: s.parse("HASH_QUEUE_SIZE", "a number of waiting hashes", e).unwrap_or(64),
            policy: PasswordPolicy {
                min_length: s.parse("PASSWORD_MIN_LENGTH", "a number of characters", e).unwrap_or(8),
                require_uppercase: s.bool("PASSWORD_REQUIRE_UPPERCASE", e),
                require_lowercase: s.bool("PASSWORD_REQUIRE_LOWERCASE", e),
                require_digit: s.bool("PASSWORD_REQUIRE_DIGIT", e),
                require_special: s.bool("PASSWORD_REQUIRE_SPECIAL", e),
            },
            require_verified_email: s.bool("REQUIRE_EMAIL_VERIFICATION", e),
            require_mfa: s.bool("REQUIRE_MFA", e),
            totp_issuer: {
                let issuer = s.get("MFA_TOTP_ISSUER").trim().to_owned();
                if issuer.is_empty() || issuer.len() > 64 || issuer.chars().any(char::is_control) {
                    e.push("MFA_TOTP_ISSUER: 1 to 64 printable characters".to_owned());
                }
                issuer
            },
            mfa_key: s.opt("MFA_ENCRYPTION_KEY").map(SecretString::from),
            mfa_previous_keys: list_secrets(s.get("MFA_PREVIOUS_ENCRYPTION_KEYS")),
            max_sessions_per_user: s.parse("MAX_SESSIONS_PER_USER", "a number of sessions", e).unwrap_or(10),
            idle_timeout_minutes: s
                .parse("SESSION_IDLE_TIMEOUT_MINUTES", "a number of minutes (0 = off)", e)
                .unwrap_or(0),
            absolute_lifetime_hours: s
                .parse("SESSION_ABSOLUTE_LIFETIME_HOURS", "a number of hours (0 = off)", e)
                .unwrap_or(0),
            reset_ttl_minutes: s.parse("PASSWORD_RESET_TTL_MINUTES", "a number of minutes", e).unwrap_or(60),
            verification_ttl_hours: s.parse("EMAIL_VERIFICATION_TTL_HOURS", "a number of hours", e).unwrap_or(24),
            links: links(s, e),
            protection,
            limits: limits(s, e),
            token_transport: match s.get("TOKEN_TRANSPORT").trim() {
                "json" => fraise_http::cookies::TokenTransport::Json,
                "cookie" => fraise_http::cookies::TokenTransport::Cookie,
                "both" => fraise_http::cookies::TokenTransport::Both,
                other => {
                    e.push(format!("TOKEN_TRANSPORT={other:?} must be json, cookie or both"));
                    fraise_http::cookies::TokenTransport::Json
                }
            },
            csrf: s.bool("ENABLE_CSRF_PROTECTION", e),
            docs_enabled: s.bool("DOCS_ENABLED", e),
            ui_enabled: s.bool("UI_ENABLED", e),
            smtp_url: s.opt("SMTP_URL").map(SecretString::from),
            lockout: lockout(s, e),
            forgot_per_client_per_hour: s
                .parse("FORGOT_PASSWORD_PER_CLIENT_PER_HOUR", "a number of requests", e)
                .unwrap_or(10),
            session_retention_days: s.parse("SESSION_RETENTION_DAYS", "a number of days", e).unwrap_or(7),
            audit_retention_days: s.parse("AUDIT_RETENTION_DAYS", "a number of days", e).unwrap_or(90),
            cleanup_interval_minutes: s
                .parse("CLEANUP_INTERVAL_MINUTES", "a number of minutes (0 = never)", e)
                .unwrap_or(60),
            mail_from: s.get("MAIL_FROM").trim().to_owned(),
            auth_prefix,
            max_body_bytes: s.parse("MAX_BODY_BYTES", "a number of bytes", e).unwrap_or(65536),
            request_timeout_seconds: s.parse("REQUEST_TIMEOUT_SECONDS", "a number of seconds", e).unwrap_or(30),
            header_read_timeout_seconds: s.parse("HEADER_READ_TIMEOUT_SECONDS", "a number of seconds", e).unwrap_or(30),
            max_concurrent_requests: s.parse("MAX_CONCURRENT_REQUESTS", "a number of requests", e).unwrap_or(1024),
            log_level: s.get("LOG_LEVEL").trim().to_owned(),
            log_json,
            metrics_enabled: s.bool("METRICS_ENABLED", e),
            metrics_bind: match s.opt("METRICS_BIND") {
                None => None,
                Some(v) => match v.parse() {
                    Ok(addr) => Some(addr),
                    Err(_) => {
                        e.push(format!("METRICS_BIND={v:?} is not ADDR:PORT. Fix: e.g. METRICS_BIND=127.0.0.1:9100"));
                        None
                    }
                },
            },
            metrics_token: s.opt("METRICS_TOKEN").map(SecretString::from),
            tenancy,
            tenant_max_open: s.parse("TENANT_MAX_OPEN", "a number of tenants", e).unwrap_or(64),
            passkeys: passkeys(s, e),
            inert: s.inert_keys(),
        };
        if cfg.tenancy == fraise_http::tenancy::TenantResolution::Header && cfg.token_transport.uses_cookie() {
            // One browser, one cookie jar per host: tenant B's login would overwrite tenant A's
            // refresh cookie. Subdomain tenancy gives each tenant its own host, hence its own jar.
            errors.push(
                "TOKEN_TRANSPORT=cookie/both cannot be combined with TENANT_RESOLUTION_METHOD=header (tenants would share one refresh cookie). Fix: TOKEN_TRANSPORT=json, or subdomain tenancy".into(),
            );
        }
        if cfg.port == 0 {
            errors.push("PORT must be between 1 and 65535".into());
        }
        if cfg.pool_max == 0 || cfg.pool_min > cfg.pool_max {
            errors.push("DATABASE_POOL_MAX_SIZE must be at least 1 and at least DATABASE_POOL_MIN_SIZE".into());
        }
        if cfg.hash_concurrency == 0 {
            errors.push("HASH_CONCURRENCY must be at least 1".into());
        }
        // Upper bounds: beyond them a value is a typo, and some would overflow date arithmetic or
        // quietly disable theft detection.
        for (key, value, max) in [
            ("ACCESS_TOKEN_TTL_MINUTES", cfg.access_ttl_minutes, 24 * 60),
            ("REFRESH_TOKEN_TTL_DAYS", cfg.refresh_ttl_days, 365),
            ("REFRESH_REUSE_GRACE_SECONDS", cfg.reuse_grace_seconds, 60),
            ("REQUEST_TIMEOUT_SECONDS", i64::try_from(cfg.request_timeout_seconds).unwrap_or(i64::MAX), 3600),
            ("HEADER_READ_TIMEOUT_SECONDS", i64::try_from(cfg.header_read_timeout_seconds).unwrap_or(i64::MAX), 3600),
        ] {
            if value > max {
                errors.push(format!("{key}={value} is above the maximum of {max}"));
            }
        }
        for (key, value, max) in [
            ("SESSION_IDLE_TIMEOUT_MINUTES", cfg.idle_timeout_minutes, 525_600),
            ("SESSION_ABSOLUTE_LIFETIME_HOURS", cfg.absolute_lifetime_hours, 87_600),
            ("PASSWORD_RESET_TTL_MINUTES", cfg.reset_ttl_minutes, 1_440),
            ("EMAIL_VERIFICATION_TTL_HOURS", cfg.verification_ttl_hours, 720),
            ("SESSION_RETENTION_DAYS", cfg.session_retention_days, 3650),
            ("AUDIT_RETENTION_DAYS", cfg.audit_retention_days, 36500),
        ] {
            if !(0..=max).contains(&value) {
                errors.push(format!("{key}={value} must be between 0 and {max}"));
            }
        }
        if cfg.reset_ttl_minutes == 0 || cfg.verification_ttl_hours == 0 {
            errors.push("PASSWORD_RESET_TTL_MINUTES and EMAIL_VERIFICATION_TTL_HOURS must be at least 1".into());
        }
        if cfg.forgot_per_client_per_hour == 0 {
            errors.push("FORGOT_PASSWORD_PER_CLIENT_PER_HOUR must be at least 1".into());
        }
        if cfg.max_sessions_per_user == 0 {
            errors.push("MAX_SESSIONS_PER_USER must be at least 1".into());
        }
        if fraise_mail::parse_mailbox(&cfg.mail_from).is_err() {
            errors.push(format!("MAIL_FROM={:?} is not a mailbox such as `Name <noreply@example.com>`", cfg.mail_from));
        }
        if cfg.pool_timeout_seconds == 0 || cfg.pool_timeout_seconds > 300 {
            errors.push("DATABASE_POOL_TIMEOUT_SECONDS must be between 1 and 300".into());
        }
        if cfg.max_concurrent_requests == 0 {
            errors.push("MAX_CONCURRENT_REQUESTS must be at least 1".into());
        }
        if cfg.request_timeout_seconds == 0 {
            errors.push("REQUEST_TIMEOUT_SECONDS must be at least 1".into());
        }
        if cfg.header_read_timeout_seconds == 0 {
            errors.push("HEADER_READ_TIMEOUT_SECONDS must be at least 1".into());
        }
        if cfg.max_body_bytes < 1024 {
            errors.push("MAX_BODY_BYTES must be at least 1024".into());
        }
        if errors.is_empty() { Ok(cfg) } else { Err(format!("invalid configuration:\n  - {}", errors.join("\n  - "))) }
    }

    /// The JWT secret rules of DESIGN.md, checked by the commands that sign tokens (`serve`), not
    /// by those that do not (`migrate`): without a secret, PostgreSQL or production is refused
    /// with the guide's message; in production a secret must be at least 32 bytes.
    pub fn check_secret(&self) -> Result<(), String> {
        match &self.jwt_secret {
            None if self.production || self.database.is_postgres() => Err(format!(
                "JWT secret key required. Set JWT_SECRET_KEY environment variable (for example JWT_SECRET_KEY={}; `fraise-auth secret` prints a new one)",
                generate_secret()
            )),
            Some(secret) if self.production && secret.expose_secret().len() < MIN_SECRET_BYTES => Err(format!(
                "JWT_SECRET_KEY is {} bytes; production needs at least {MIN_SECRET_BYTES}. Fix: JWT_SECRET_KEY={}",
                secret.expose_secret().len(),
                generate_secret()
            )),
            _ => Ok(()),
        }
    }

    /// The JWT secret to use: the configured one, or (SQLite default, not production) the one
    /// stored in `DATA_DIR/jwt_secret`, generated with mode 0600 on first start.
    pub fn resolve_secret(&self) -> Result<(SecretString, Option<PathBuf>), String> {
        if let Some(secret) = &self.jwt_secret {
            if secret.expose_secret().len() < MIN_SECRET_BYTES {
                tracing::warn!(
                    "JWT_SECRET_KEY is shorter than {MIN_SECRET_BYTES} bytes: acceptable for development only (refused with ENVIRONMENT=production)"
                );
            }
            return Ok((secret.clone(), None));
        }
        let path = self.data_dir.join("jwt_secret");
        if let Ok(existing) = std::fs::read_to_string(&path) {
            let existing = existing.trim().to_owned();
            if existing.len() >= MIN_SECRET_BYTES {
                return Ok((SecretString::from(existing), Some(path)));
            }
            return Err(format!(
                "{} holds a secret shorter than {MIN_SECRET_BYTES} bytes; delete it to have a new one generated",
                path.display()
            ));
        }
        std::fs::create_dir_all(&self.data_dir)
            .map_err(|e| format!("cannot create DATA_DIR {}: {e}", self.data_dir.display()))?;
        let secret = generate_secret();
        write_private(&path, &secret).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        tracing::warn!(path = %path.display(), "JWT_SECRET_KEY is not set: generated a secret and stored it (mode 0600). Set JWT_SECRET_KEY for anything but local use.");
        Ok((SecretString::from(secret), Some(path)))
    }
}

/// Parses a comma-separated list of CIDRs (a bare address is a /32 or /128).
fn cidrs(s: &Sources, key: &str, e: &mut Vec<String>) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for item in s.get(key).split(',').map(str::trim).filter(|v| !v.is_empty()) {
        match item.parse::<ipnet::IpNet>().or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)) {
            Ok(net) => out.push(net),
            Err(_) => e.push(format!("{key}: {item:?} is not a CIDR such as 10.0.0.0/8 or an address")),
        }
    }
    out
}

/// Brute-force thresholds (lock lengths are the documented defaults).
fn lockout(s: &Sources, e: &mut Vec<String>) -> fraise_core::LockoutPolicy {
    let client: i64 = s.parse("LOCKOUT_CLIENT_THRESHOLD", "a number of failures", e).unwrap_or(5);
    let account: i64 = s.parse("LOCKOUT_ACCOUNT_THRESHOLD", "a number of failures", e).unwrap_or(50);
    let window: i64 = s.parse("LOCKOUT_WINDOW_MINUTES", "a number of minutes", e).unwrap_or(15);
    if client < 1 || account <= client {
        e.push(
            "LOCKOUT_ACCOUNT_THRESHOLD must be higher than LOCKOUT_CLIENT_THRESHOLD, which must be at least 1".into(),
        );
    }
    if !(1..=1440).contains(&window) {
        e.push("LOCKOUT_WINDOW_MINUTES must be between 1 and 1440".into());
    }
    fraise_core::LockoutPolicy {
        client_threshold: client,
        account_threshold: account,
        window: chrono::Duration::minutes(window.clamp(1, 1440)),
        ..fraise_core::LockoutPolicy::default()
    }
}

/// Rate-limit settings, or `None` when `ENABLE_RATE_LIMITING=false`.
fn limits(s: &Sources, e: &mut Vec<String>) -> Option<fraise_http::limits::LimitSettings> {
    let general: u32 = s.parse("RATE_LIMIT_REQUESTS_PER_MINUTE", "a number of requests", e).unwrap_or(60);
    let auth: u32 = s.parse("RATE_LIMIT_AUTH_REQUESTS_PER_MINUTE", "a number of requests", e).unwrap_or(5);
    if general == 0 || auth == 0 {
        e.push("RATE_LIMIT_*_PER_MINUTE must be at least 1 (use ENABLE_RATE_LIMITING=false to turn limits off)".into());
    }
    let allowlist = cidrs(s, "RATE_LIMIT_ALLOWLIST", e);
    let fail_open = match s.get("RATE_LIMIT_REDIS_FAILURE").trim() {
        "open" => true,
        "closed" => false,
        other => {
            e.push(format!("RATE_LIMIT_REDIS_FAILURE={other:?} must be `open` or `closed`"));
            true
        }
    };
    let redis = s.opt("REDIS_URL").map(|url| {
        if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")) {
            e.push("REDIS_URL must start with redis://, rediss:// or unix://".into());
        }
        fraise_http::limits::RedisSettings {
            url,
            prefix: s.get("RATE_LIMIT_REDIS_PREFIX").trim().to_owned(),
            fail_open,
        }
    });
    s.bool("ENABLE_RATE_LIMITING", e).then_some(fraise_http::limits::LimitSettings {
        general_per_minute: general,
        auth_per_minute: auth,
        allowlist,
        redis,
    })
}

/// Client IP, security headers and CORS settings.
fn protection(s: &Sources, e: &mut Vec<String>) -> fraise_http::protect::Protection {
    use axum::http::{HeaderName, HeaderValue, Method};
    let list = |key: &str| -> Vec<String> {
        s.get(key).split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
    };
    let trusted_proxies = cidrs(s, "TRUSTED_PROXIES", e);
    let origins = list("CORS_ALLOWED_ORIGINS");
    let cors = if origins.is_empty() {
        None
    } else {
        if origins.iter().any(|o| o == "*") {
            e.push("CORS_ALLOWED_ORIGINS=* is refused: credentials are allowed, so list the origins (https://app.example.com)".into());
        }
        let origins = origins
            .iter()
            .filter(|o| *o != "*")
            .filter_map(|o| match url::Url::parse(o) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.path() == "/" && !o.ends_with('/') => {
                    HeaderValue::from_str(o).ok()
                }
                _ => {
                    e.push(format!("CORS_ALLOWED_ORIGINS: {o:?} is not an origin such as https://app.example.com"));
                    None
                }
            })
            .collect();
        let methods = list("CORS_ALLOWED_METHODS")
            .iter()
            .filter_map(|m| match m.to_ascii_uppercase().parse::<Method>() {
                Ok(m) => Some(m),
                Err(_) => {
                    e.push(format!("CORS_ALLOWED_METHODS: {m:?} is not a method"));
                    None
                }
            })
            .collect();
        let headers = list("CORS_ALLOWED_HEADERS")
            .iter()
            .filter_map(|h| match HeaderName::from_bytes(h.as_bytes()) {
                Ok(h) => Some(h),
                Err(_) => {
                    e.push(format!("CORS_ALLOWED_HEADERS: {h:?} is not a header name"));
                    None
                }
            })
            .collect();
        Some(fraise_http::protect::Cors { origins, methods, headers })
    };
    let csp = s.get("CSP_POLICY").trim().to_owned();
    if HeaderValue::from_str(&csp).is_err() {
        e.push("CSP_POLICY must be a valid header value (printable ASCII)".into());
    }
    fraise_http::protect::Protection {
        trusted_proxies,
        security_headers: s.bool("ENABLE_SECURITY_HEADERS", e),
        csp,
        hsts_always: s.bool("HSTS_ALWAYS", e),
        cors,
    }
}

/// `TENANT_RESOLUTION_METHOD` and, for `subdomain`, `TENANT_BASE_DOMAIN`.
fn tenancy(s: &Sources, e: &mut Vec<String>) -> fraise_http::tenancy::TenantResolution {
    use fraise_http::tenancy::TenantResolution;
    match s.get("TENANT_RESOLUTION_METHOD").trim().to_ascii_lowercase().as_str() {
        "none" | "" => TenantResolution::None,
        "header" => TenantResolution::Header,
        "subdomain" => {
            let base = s.get("TENANT_BASE_DOMAIN").trim().trim_matches('.').to_ascii_lowercase();
            let valid = !base.is_empty()
                && base.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                e.push(format!(
                    "TENANT_BASE_DOMAIN={base:?}: subdomain tenancy needs the parent domain of the tenants, e.g. TENANT_BASE_DOMAIN=auth.example.com"
                ));
            }
            TenantResolution::Subdomain { base_domain: base }
        }
        other => {
            e.push(format!("TENANT_RESOLUTION_METHOD={other:?} must be none, header or subdomain"));
            TenantResolution::None
        }
    }
}

/// The email link templates: explicit templates must contain `{token}`.
/// `WEBAUTHN_*`: both the RP id and the origin, or neither.
fn passkeys(s: &Sources, e: &mut Vec<String>) -> Option<fraise_core::service::PasskeyConfig> {
    let passwordless = s.bool("WEBAUTHN_PASSWORDLESS", e);
    match (s.opt("WEBAUTHN_RP_ID"), s.opt("WEBAUTHN_ORIGIN")) {
        (Some(rp_id), Some(origin)) => {
            let name = s.opt("WEBAUTHN_RP_NAME");
            fraise_core::service::PasskeyConfig::new(&rp_id, &origin, name.as_deref(), passwordless)
                .map_err(|msg| e.push(msg))
                .ok()
        }
        (None, None) => {
            if passwordless {
                e.push("WEBAUTHN_PASSWORDLESS=true needs passkeys configured. Fix: set WEBAUTHN_RP_ID and WEBAUTHN_ORIGIN (e.g. localhost and http://localhost:8000)".into());
            }
            None
        }
        _ => {
            e.push("WEBAUTHN_RP_ID and WEBAUTHN_ORIGIN go together. Fix: set both (e.g. WEBAUTHN_RP_ID=example.com, WEBAUTHN_ORIGIN=https://auth.example.com), or neither to leave passkeys off".into());
            None
        }
    }
}

fn links(s: &Sources, e: &mut Vec<String>) -> fraise_core::mail::Links {
    let base = s.get("APP_BASE_URL").trim().to_owned();
    if url::Url::parse(&base).is_err() {
        e.push(format!("APP_BASE_URL={base:?} is not a URL such as https://app.example.com"));
    }
    let mut links = fraise_core::mail::Links::from_base(&base);
    for (key, slot) in
        [("RESET_URL_TEMPLATE", &mut links.reset_template), ("VERIFY_URL_TEMPLATE", &mut links.verify_template)]
    {
        if let Some(t) = s.opt(key) {
            if !t.contains("{token}") {
                e.push(format!("{key} must contain {{token}}, e.g. https://app.example.com/reset?token={{token}}"));
            }
            *slot = t;
        }
    }
    links
}

/// 48 random bytes, base64url: 64 characters, for `JWT_SECRET_KEY`.
pub fn generate_secret() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 48];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes a new file readable by its owner only (secrets, private keys); fails if it exists.
#[cfg(unix)]
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_sources(&Sources::from_pairs(pairs)).and_then(|c| c.check_secret().map(|()| c))
    }

    #[test]
    fn the_readme_documents_every_key() {
        let readme = include_str!("../README.md");
        for (key, _, _) in KEYS {
            assert!(readme.contains(&format!("`{key}`")), "README.md does not document {key}");
        }
        for key in NOT_YET {
            assert!(readme.contains(&format!("`{key}`")), "README.md does not list {key}");
        }
    }

    #[test]
    fn passkeys_need_both_the_rp_id_and_a_fitting_origin() {
        assert!(cfg(&[]).map(|c| c.passkeys.is_none()).unwrap_or(false), "off by default");
        let c = cfg(&[("WEBAUTHN_RP_ID", "localhost"), ("WEBAUTHN_ORIGIN", "http://localhost:8000")]);
        assert!(c.is_ok_and(|c| c.passkeys.is_some_and(|p| !p.passwordless)));
        let only_one = cfg(&[("WEBAUTHN_RP_ID", "localhost")]).err().unwrap_or_default();
        assert!(only_one.contains("go together"), "{only_one}");
        let mismatch = cfg(&[("WEBAUTHN_RP_ID", "example.org"), ("WEBAUTHN_ORIGIN", "https://a.example.com")])
            .err()
            .unwrap_or_default();
        assert!(mismatch.contains("WEBAUTHN_RP_ID"), "{mismatch}");
        let alone = cfg(&[("WEBAUTHN_PASSWORDLESS", "true")]).err().unwrap_or_default();
        assert!(alone.contains("WEBAUTHN_PASSWORDLESS=true needs passkeys configured"), "{alone}");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = cfg(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 8000));
        assert_eq!(c.argon2, Argon2Params::default());
        assert_eq!((c.access_ttl_minutes, c.refresh_ttl_days, c.reuse_grace_seconds), (15, 30, 10));
        assert!(matches!(c.database, Database::Sqlite(ref p) if p.ends_with("fraise-auth.db")));
        assert!(c.jwt_secret.is_none());
    }

    #[test]
    fn the_header_read_timeout_is_30_s_and_must_be_1_s_to_an_hour() {
        assert_eq!(cfg(&[]).map(|c| c.header_read_timeout_seconds), Ok(30));
        assert_eq!(cfg(&[("HEADER_READ_TIMEOUT_SECONDS", "5")]).map(|c| c.header_read_timeout_seconds), Ok(5));
        for (value, says) in
            [("0", "must be at least 1"), ("3601", "above the maximum"), ("soon", "a number of seconds")]
        {
            let err = cfg(&[("HEADER_READ_TIMEOUT_SECONDS", value)]).err().unwrap_or_default();
            assert!(err.contains("HEADER_READ_TIMEOUT_SECONDS") && err.contains(says), "{value}: {err}");
        }
    }

    #[test]
    fn postgres_or_production_without_a_secret_is_refused_with_the_guides_message() {
        for pairs in [vec![("DATABASE_URL", "postgres://localhost/x")], vec![("ENVIRONMENT", "production")]] {
            let err = cfg(&pairs).err().unwrap_or_default();
            assert!(err.contains("JWT secret key required. Set JWT_SECRET_KEY environment variable"), "{err}");
        }
    }

    #[test]
    fn a_short_secret_is_refused_in_production_only() {
        assert!(cfg(&[("ENVIRONMENT", "production"), ("JWT_SECRET_KEY", "short")]).is_err());
        assert!(cfg(&[("JWT_SECRET_KEY", "short")]).is_ok());
        let long = "x".repeat(32);
        assert!(cfg(&[("ENVIRONMENT", "production"), ("JWT_SECRET_KEY", &long)]).is_ok());
    }

    #[test]
    fn every_bad_value_is_reported_with_its_fix() {
        let err = cfg(&[
            ("PORT", "http"),
            ("ARGON2_TIME_COST", "0"),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_URL", "mysql://x"),
            ("REFRESH_TOKEN_TTL_DAYS", "100000000"),
            ("REFRESH_REUSE_GRACE_SECONDS", "3600"),
        ])
        .err()
        .unwrap_or_default();
        for needle in
            ["PORT=\"http\"", "ARGON2_*", "LOG_FORMAT", "DATABASE_URL must start", "REFRESH_TOKEN_TTL_DAYS", "GRACE"]
        {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
    }

    #[test]
    fn cors_refuses_a_wildcard_and_junk_and_proxies_must_be_cidrs() {
        let err =
            cfg(&[("CORS_ALLOWED_ORIGINS", "*"), ("TRUSTED_PROXIES", "10.0.0.0/8, nope")]).err().unwrap_or_default();
        assert!(
            err.contains("CORS_ALLOWED_ORIGINS=* is refused") && err.contains("TRUSTED_PROXIES: \"nope\""),
            "{err}"
        );
        let err = cfg(&[("CORS_ALLOWED_ORIGINS", "https://app.example.com/path")]).err().unwrap_or_default();
        assert!(err.contains("not an origin"), "{err}");
        let c = cfg(&[
            ("CORS_ALLOWED_ORIGINS", "https://a.example.com, http://localhost:3000"),
            ("TRUSTED_PROXIES", "10.0.0.1"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.protection.cors.map(|c| c.origins.len()), Some(2));
        assert_eq!(c.protection.trusted_proxies.len(), 1);
    }

    #[test]
    fn tenancy_settings_are_checked_and_cors_admits_the_tenant_header() {
        use fraise_http::tenancy::TenantResolution;
        let err = cfg(&[("TENANT_RESOLUTION_METHOD", "subdomain")]).err().unwrap_or_default();
        assert!(err.contains("TENANT_BASE_DOMAIN"), "{err}");
        let err = cfg(&[("TENANT_RESOLUTION_METHOD", "cookie")]).err().unwrap_or_default();
        assert!(err.contains("must be none, header or subdomain"), "{err}");
        let c = cfg(&[("TENANT_RESOLUTION_METHOD", "subdomain"), ("TENANT_BASE_DOMAIN", ".Auth.Example.com")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.tenancy, TenantResolution::Subdomain { base_domain: "auth.example.com".into() });
        let c = cfg(&[("TENANT_RESOLUTION_METHOD", "header"), ("CORS_ALLOWED_ORIGINS", "https://a.example.com")])
            .unwrap_or_else(|e| panic!("{e}"));
        let headers = c.protection.cors.map(|c| c.headers).unwrap_or_default();
        assert!(headers.iter().any(|h| h.as_str() == "x-tenant-id"), "{headers:?}");
        let err =
            cfg(&[("TENANT_RESOLUTION_METHOD", "header"), ("TOKEN_TRANSPORT", "cookie")]).err().unwrap_or_default();
        assert!(err.contains("share one refresh cookie"), "{err}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let c = cfg(&[
            ("JWT_SECRET_KEY", "super-secret-value-123"),
            ("DATABASE_URL", "postgres://u:hunter2@h/db"),
            ("JWT_PREVIOUS_SECRET_KEYS", "old-secret-one, old-secret-two"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.jwt_previous_secrets.len(), 2);
        let shown = format!("{c:?}");
        assert!(!shown.contains("super-secret-value-123") && !shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("old-secret-one") && !shown.contains("old-secret-two"), "{shown}");
        assert!(!c.database.describe().contains("hunter2"));
    }

    #[test]
    fn jwt_algorithm_key_dir_and_rsa_bits_are_checked() {
        let c = cfg(&[("JWT_ALGORITHM", "eddsa"), ("DATA_DIR", "/srv/fraise")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.jwt_algorithm, fraise_core::tokens::JwtAlgorithm::EdDsa);
        assert_eq!(c.jwt_key_dir, PathBuf::from("/srv/fraise/keys"));
        let c = cfg(&[("JWT_KEY_DIR", "/run/secrets/jwt")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.jwt_key_dir, PathBuf::from("/run/secrets/jwt"));
        let err = cfg(&[("JWT_ALGORITHM", "none"), ("JWT_RSA_KEY_BITS", "1024")]).err().unwrap_or_default();
        assert!(err.contains("JWT_ALGORITHM") && err.contains("HS256, EdDSA or RS256"), "{err}");
        assert!(err.contains("JWT_RSA_KEY_BITS=1024 must be 2048, 3072 or 4096"), "{err}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("fraise.toml");
        std::fs::write(&path, "PORT = 9000\njwt_secrt_key = 'x'\n").unwrap_or_else(|e| panic!("{e}"));
        let err = Sources::gather(Some(&path), &[]).err().unwrap_or_default();
        assert!(err.contains("unknown key `jwt_secrt_key`"), "{err}");
        std::fs::write(&path, "port = 9000\nlog_format = 'json'\n").unwrap_or_else(|e| panic!("{e}"));
        let s = Sources::gather(Some(&path), &[("PORT", Some("9100".into()))]).unwrap_or_default();
        let c = Config::from_sources(&s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.port, 9100, "flags beat the file");
        assert!(c.log_json);
    }

    #[test]
    fn the_generated_secret_is_stored_private_and_reused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let c = cfg(&[("DATA_DIR", dir.path().to_str().unwrap_or_default())]).unwrap_or_else(|e| panic!("{e}"));
        let (first, path) = c.resolve_secret().unwrap_or_else(|e| panic!("{e}"));
        let (second, _) = c.resolve_secret().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.expose_secret(), second.expose_secret());
        assert!(first.expose_secret().len() >= MIN_SECRET_BYTES);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path.unwrap_or_default()).map(|m| m.permissions().mode()).unwrap_or(0);
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
