//! `fraise-auth doctor`: the troubleshooting guide's checks, run by the binary itself, without a
//! running server. One line per check, ✅ or ❌ with the fix; `--report` prints the facts the
//! guide's issue template asks for, with every secret shown only as SET / NOT SET.
use std::time::{Duration, Instant};

use fraise_core::password::PasswordHasher;
use secrecy::ExposeSecret as _;

use crate::boot::Db;
use crate::config::{Config, KEYS, MIN_SECRET_BYTES, Sources, is_secret_key};

/// A hash slower than this makes every login slow; the guide aims for 100-500 ms.
const SLOW_HASH: Duration = Duration::from_secs(1);
/// How long a dependency may take to answer before it counts as unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    pub ok: bool,
    pub name: &'static str,
    /// What was found, and for a failure how to fix it.
    pub detail: String,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self { ok: true, name, detail: detail.into() }
    }

    fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Self { ok: false, name, detail: detail.into() }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = if self.ok { "✅" } else { "❌" };
        write!(f, "{mark} {}: {}", self.name, self.detail)
    }
}

/// Runs every check, in the order the guide asks them. A configuration that does not load is the
/// only check then.
pub async fn checks(cfg: Result<Config, String>) -> Vec<Check> {
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => return vec![Check::fail("configuration", e)],
    };
    let mut out = vec![Check::pass("configuration", "valid")];
    out.push(secret(&cfg));
    if cfg.jwt_algorithm.is_asymmetric() {
        out.push(signing_keys(&cfg));
    }
    match Db::open_existing(&cfg).await {
        Err(e) => {
            out.push(Check::fail("database", format!("{e:#}")));
            for name in ["migrations", "read/write"] {
                out.push(Check::fail(name, "not checked: the database cannot be opened"));
            }
        }
        Ok(db) => database(&cfg, &db, &mut out).await,
    }
    out.push(hashing(&cfg).await);
    out.push(redis(&cfg).await);
    out.push(smtp(&cfg).await);
    out
}

fn secret(cfg: &Config) -> Check {
    const NAME: &str = "JWT secret";
    if let Err(e) = cfg.check_secret() {
        return Check::fail(NAME, e);
    }
    let fix = format!("Fix: JWT_SECRET_KEY={}", crate::config::generate_secret());
    let (value, origin) = match &cfg.jwt_secret {
        Some(s) => (s.expose_secret().to_owned(), "JWT_SECRET_KEY".to_owned()),
        None => {
            let path = cfg.data_dir.join("jwt_secret");
            match std::fs::read_to_string(&path) {
                Ok(text) => (text.trim().to_owned(), path.display().to_string()),
                Err(_) => {
                    return Check::fail(
                        NAME,
                        format!(
                            "not set, and no generated secret in {} yet. {fix} (or let `serve` generate one on the SQLite default)",
                            path.display()
                        ),
                    );
                }
            }
        }
    };
    if value.len() < MIN_SECRET_BYTES {
        return Check::fail(
            NAME,
            format!("{origin} is {} bytes; at least {MIN_SECRET_BYTES} needed. {fix}", value.len()),
        );
    }
    let distinct = value.chars().collect::<std::collections::BTreeSet<_>>().len();
    if distinct < 10 {
        return Check::fail(NAME, format!("{origin} uses only {distinct} distinct characters: not random. {fix}"));
    }
    Check::pass(NAME, format!("{origin}, {} bytes", value.len()))
}

/// EdDSA/RS256: a signing key in JWT_KEY_DIR (read only; never generated here).
fn signing_keys(cfg: &Config) -> Check {
    const NAME: &str = "signing keys";
    let secret = cfg.jwt_secret.as_ref().map(|s| s.expose_secret().as_bytes().to_vec()).unwrap_or_default();
    match crate::keys::access_keys(cfg, &secret, crate::keys::FirstKey::Never) {
        Ok(ring) => Check::pass(
            NAME,
            format!(
                "{}: signing kid {}, {} verifying key(s) in {}",
                ring.alg(),
                ring.signing_kid(),
                ring.verifying_kids().count(),
                cfg.jwt_key_dir.display()
            ),
        ),
        Err(e) => Check::fail(NAME, format!("{e:#}")),
    }
}

async fn database(cfg: &Config, db: &Db, out: &mut Vec<Check>) {
    let where_ = cfg.database.describe();
    match tokio::time::timeout(REACH_TIMEOUT, db.server_version()).await {
        Ok(Ok(version)) => out.push(Check::pass("database", format!("{where_}: {version}"))),
        Ok(Err(e)) => {
            out.push(Check::fail(
                "database",
                format!("{where_} unreachable: {e:#}. Fix: check DATABASE_URL and that the server is running"),
            ));
            for name in ["migrations", "read/write"] {
                out.push(Check::fail(name, "not checked: the database is unreachable"));
            }
            return;
        }
        Err(_) => {
            out.push(Check::fail("database", format!("{where_}: no answer in {}s", REACH_TIMEOUT.as_secs())));
            return;
        }
    }
    out.push(migrations(cfg, db).await);
    out.push(match db.check_read_write().await {
        Ok(()) => Check::pass("read/write", "inserted, read and deleted a user, session and audit row (rolled back)"),
        Err(e) => Check::fail(
            "read/write",
            format!("{e}. Fix: run `fraise-auth migrate`, and grant the service's role SELECT, INSERT, UPDATE, DELETE on its tables"),
        ),
    });
}

async fn migrations(cfg: &Config, db: &Db) -> Check {
    const NAME: &str = "migrations";
    match db.store().migrations_current().await {
        Ok(true) => {}
        Ok(false) => return Check::fail(NAME, "pending (or tables missing). Fix: fraise-auth migrate"),
        Err(e) => return Check::fail(NAME, format!("cannot read the migration table: {e}")),
    }
    if cfg.tenancy == fraise_http::tenancy::TenantResolution::None {
        return Check::pass(NAME, "current");
    }
    let directory = db.tenants(cfg);
    let names = match directory.list().await {
        Ok(n) => n,
        Err(e) => return Check::fail(NAME, format!("main schema current; cannot list tenants: {e}")),
    };
    let mut behind = Vec::new();
    for name in &names {
        let current = match directory.open(name).await {
            Ok(Some(store)) => store.migrations_current().await.unwrap_or(false),
            _ => false,
        };
        if !current {
            behind.push(name.to_string());
        }
    }
    if behind.is_empty() {
        Check::pass(NAME, format!("current, and in all {} tenant(s)", names.len()))
    } else {
        Check::fail(
            NAME,
            format!(
                "{} of {} tenant(s) behind: {}. Fix: fraise-auth migrate --all-tenants",
                behind.len(),
                names.len(),
                behind.join(", ")
            ),
        )
    }
}

async fn hashing(cfg: &Config) -> Check {
    const NAME: &str = "password hashing";
    let p = cfg.argon2;
    let params = format!("Argon2id m={} KiB, t={}, p={}", p.memory_kib, p.iterations, p.parallelism);
    let hasher = match PasswordHasher::new(p) {
        Ok(h) => h,
        Err(e) => return Check::fail(NAME, format!("{params}: {e}")),
    };
    let timed = tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        hasher.hash("doctor-Password-1!").map(|_| t0.elapsed())
    })
    .await;
    match timed {
        Ok(Ok(took)) if took <= SLOW_HASH => {
            Check::pass(NAME, format!("one hash in {} ms ({params})", took.as_millis()))
        }
        Ok(Ok(took)) => Check::fail(
            NAME,
            format!(
                "one hash took {} ms ({params}): every login waits that long. Fix: lower ARGON2_MEMORY_COST or ARGON2_TIME_COST (`fraise-auth bench --target-ms 300` suggests values)",
                took.as_millis()
            ),
        ),
        Ok(Err(e)) => Check::fail(NAME, format!("{params}: {e}")),
        Err(e) => Check::fail(NAME, format!("hashing thread failed: {e}")),
    }
}

async fn redis(cfg: &Config) -> Check {
    const NAME: &str = "redis";
    let Some(limits) = cfg.limits.as_ref().filter(|l| l.redis.is_some()) else {
        return Check::pass(NAME, "not configured (rate limits counted in memory, per node)");
    };
    let limiter = match fraise_http::limits::Limits::new(limits, &cfg.auth_prefix) {
        Ok(l) => l,
        Err(e) => return Check::fail(NAME, e),
    };
    match tokio::time::timeout(REACH_TIMEOUT, limiter.health()).await {
        Ok(h) if h["status"] == "ok" => Check::pass(NAME, "reachable (rate limits shared by every node)"),
        _ => Check::fail(
            NAME,
            format!(
                "unreachable; requests will be {} meanwhile. Fix: check REDIS_URL and that Redis is running",
                if limits.redis.as_ref().is_some_and(|r| r.fail_open) { "let through" } else { "refused (503)" }
            ),
        ),
    }
}

async fn smtp(cfg: &Config) -> Check {
    const NAME: &str = "smtp";
    let Some(url) = &cfg.smtp_url else {
        return Check::pass(
            NAME,
            format!("not configured (emails written to {})", cfg.data_dir.join("outbox").display()),
        );
    };
    let transport = fraise_mail::parse_mailbox(&cfg.mail_from)
        .and_then(|from| fraise_mail::Smtp::from_url(url.expose_secret(), from));
    let transport = match transport {
        Ok(t) => t,
        Err(e) => return Check::fail(NAME, e),
    };
    match tokio::time::timeout(REACH_TIMEOUT, transport.check()).await {
        Ok(Ok(true)) => Check::pass(NAME, "server reachable and answering"),
        Ok(Ok(false)) | Ok(Err(_)) | Err(_) => {
            Check::fail(NAME, "server unreachable or not speaking SMTP. Fix: check SMTP_URL (host, port, TLS mode)")
        }
    }
}

/// The guide's issue-reporting facts, ready to paste.
pub async fn report(sources: &Sources, cfg: Option<&Config>) -> String {
    let mut out = String::from("## Environment\n");
    out.push_str(&format!("- fraise-auth version: {}\n", env!("CARGO_PKG_VERSION")));
    let database = match cfg {
        None => "unknown (configuration invalid)".to_owned(),
        Some(cfg) => match Db::open_existing(cfg).await {
            Ok(db) => match tokio::time::timeout(REACH_TIMEOUT, db.server_version()).await {
                Ok(Ok(v)) => v,
                _ => format!("{} (unreachable)", cfg.database.describe_kind()),
            },
            Err(_) => format!("{} (cannot open)", cfg.database.describe_kind()),
        },
    };
    out.push_str(&format!("- Database: {database}\n"));
    out.push_str(&format!("- Operating system: {}\n", os()));
    out.push_str(&format!("- CPUs: {}\n", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)));
    out.push_str(&format!("- Deployment type: {}\n", deployment()));
    out.push_str("\n## Configuration\n");
    for (key, _, _) in KEYS {
        let shown = if is_secret_key(key) {
            if sources.value(key).trim().is_empty() { "NOT SET".to_owned() } else { "SET".to_owned() }
        } else {
            let v = sources.value(key);
            if sources.is_set(key) { v.to_owned() } else { format!("{v} (default)") }
        };
        out.push_str(&format!("- {key}: {shown}\n"));
    }
    out
}

fn os() -> String {
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_owned()));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|k| k.trim().to_owned()).ok();
    let mut text = pretty.unwrap_or_else(|| std::env::consts::OS.to_owned());
    if let Some(k) = kernel {
        text.push_str(&format!(", kernel {k}"));
    }
    text.push_str(&format!(", {}", std::env::consts::ARCH));
    text
}

fn deployment() -> &'static str {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        "kubernetes"
    } else if std::path::Path::new("/.dockerenv").exists() || std::path::Path::new("/run/.containerenv").exists() {
        "container"
    } else if std::env::var_os("INVOCATION_ID").is_some() {
        "systemd service"
    } else {
        "local"
    }
}
