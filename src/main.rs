//! `fraise-auth`: the command line. Parses arguments, loads configuration, and hands over to the
//! library (`fraise_auth::boot`).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fraise_auth::boot::{self, Db};
use fraise_auth::config::{Config, Sources};
use fraise_auth::tenant_cmd;
use fraise_core::SystemClock;
use secrecy::ExposeSecret as _;

/// jemalloc rather than glibc's malloc: the request path allocates and frees many small objects
/// (futures, headers, JSON), and glibc's `malloc`/`free` (with `malloc_consolidate`) were a sixth
/// of the server's CPU under load. Measured (README, Performance): server CPU per refresh -15 to
/// -20 %, `/auth/me` at 64 connections +20 %, idle RSS +1 MB. Argon2's 100 MB blocks go to
/// jemalloc's oversize arena, which returns them to the system at once, as glibc's mmap did.
/// mimalloc was measured too and kept them (idle RSS 130 MB). Default options: `.cargo/config.toml`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// FraiseQL-compatible native authentication: accounts, Argon2id, JWT access tokens, rotating
/// refresh tokens with theft detection, on SQLite (default) or PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "fraise-auth", version, about)]
struct Cli {
    /// TOML file with configuration keys (same names as the environment variables); environment
    /// and flags override it. Also read from FRAISE_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Show header and claims WITHOUT verifying anything.
    Decode {
        #[arg(allow_hyphen_values = true)]
        token: String,
    },
    /// Verify with the configured JWT secret (access token) or MAC key (refresh token); exits
    /// non-zero and says why when invalid.
    Verify {
        #[arg(allow_hyphen_values = true)]
        token: String,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (migrates the database first unless --no-migrate).
    Serve {
        /// Address to bind [env: HOST, default 127.0.0.1]
        #[arg(long)]
        host: Option<String>,
        /// Port to bind [env: PORT, default 8000]
        #[arg(long)]
        port: Option<u16>,
        /// Folder for the SQLite database and generated secret [env: DATA_DIR, default ./data]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Do not apply pending migrations at start (readiness stays 503 until someone does).
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply pending database migrations; running it again changes nothing.
    /// `migrate status` lists them instead, applied or pending.
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
        /// Folder of the SQLite database [env: DATA_DIR, default ./data]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// PostgreSQL: the schema to migrate instead of DEFAULT_SCHEMA (a tenant's, for instance).
        /// SQLite: the tenant whose file to migrate.
        #[arg(long, value_name = "NAME")]
        schema: Option<String>,
        /// Migrate every tenant after the main database: one line per tenant, continues past a
        /// failing tenant and exits non-zero at the end if any failed.
        #[arg(long, conflicts_with = "schema")]
        all_tenants: bool,
    },
    /// Create, list and drop tenants (one PostgreSQL schema, or one SQLite file under
    /// DATA_DIR/tenants, each). Requests name their tenant as TENANT_RESOLUTION_METHOD says.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Print a new random secret suitable for JWT_SECRET_KEY.
    Secret,
    /// Check this installation without a running server: configuration, JWT secret, database
    /// (version, migrations, read/write in a rolled-back transaction), hashing speed, Redis and
    /// SMTP. One line per check, ✅ or ❌ with the fix; exits non-zero if any check fails.
    Doctor {
        /// Print the facts a bug report needs (version, database, OS, settings with every secret
        /// shown only as SET / NOT SET) instead of the checks
        #[arg(long)]
        report: bool,
    },
    /// Measure password hashing with the configured ARGON2_* parameters, suggest parameters that
    /// reach --target-ms, and measure token operations per second.
    Bench {
        /// The hash time to aim for, in milliseconds (the guide suggests 100-500)
        #[arg(long, default_value_t = 250)]
        target_ms: u64,
        /// Hashes per measurement (the median is reported)
        #[arg(long, default_value_t = 5)]
        samples: usize,
    },
    /// Run the auth flow against a running server: register, me, refresh, me, logout, replay.
    /// Prints each step; exits non-zero at the first failure.
    Smoke {
        /// The server's base URL, e.g. http://127.0.0.1:8000
        #[arg(long)]
        url: String,
        /// Path prefix of the auth routes on that server
        #[arg(long, default_value = "/auth")]
        prefix: String,
        /// Send X-Tenant-ID: NAME (header tenancy)
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
        /// Password of the throw-away account (must meet the server's policy)
        #[arg(long, default_value = "Smoke-Test-Pass-1!")]
        password: String,
    },
    /// Administer accounts: create, disable, enable, set-roles, reset-mfa, list.
    User {
        /// Act on this tenant's users (default: the main database)
        #[arg(long, global = true, value_name = "NAME")]
        tenant: Option<String>,
        #[command(subcommand)]
        action: UserAction,
    },
    /// Manage the keys that sign access tokens with JWT_ALGORITHM=EdDSA or RS256.
    ///
    /// Keys are files in JWT_KEY_DIR (default DATA_DIR/keys): one private key per file,
    /// `<kid>.pem` (mode 0600), and a file `current` naming the kid that signs new tokens. Every
    /// key in the directory verifies, so tokens signed before a rotation stay valid until they
    /// expire. Servers read the directory when they start: restart them after a change. With
    /// several servers, every one needs the same directory contents.
    ///
    /// Usual life of a key: `keys generate` once; later `keys rotate`; after the old key's tokens
    /// have expired (ACCESS_TOKEN_TTL_MINUTES), `keys retire OLD_KID`. HS256 has no key files:
    /// change JWT_SECRET_KEY and keep the old one in JWT_PREVIOUS_SECRET_KEYS instead.
    Keys {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Inspect a token (the guide's token debug tool).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// List security events from the audit trail (tb_auth_audit), newest first.
    Audit {
        /// Only events of the user with this email
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// Only events of this type (login_failure, token_theft_detected, ...)
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Only events since: an RFC 3339 time (2026-01-31T00:00:00Z) or an age (90m, 24h, 7d)
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// At most this many events
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object per line instead of a table
        #[arg(long)]
        json: bool,
        /// The events of this tenant (default: the main database)
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// List every migration, applied or pending (and each tenant's state); exits non-zero when
    /// something is pending.
    Status,
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Create an account (no session is opened). Without --password-stdin a random password is
    /// generated and printed once.
    Create {
        email: String,
        /// Display name
        #[arg(long)]
        name: Option<String>,
        /// Comma-separated roles, e.g. admin,editor
        #[arg(long, value_name = "ROLES")]
        roles: Option<String>,
        /// Mark the email as verified
        #[arg(long)]
        verified: bool,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account: its sessions end now and logins answer 403 ACCOUNT_DISABLED.
    Disable { email: String },
    /// Enable a disabled account (old sessions stay ended).
    Enable { email: String },
    /// Replace an account's roles (comma-separated; "" clears them).
    SetRoles { email: String, roles: String },
    /// Remove every second factor of an account (TOTP, recovery codes, passkeys), for support when
    /// a user lost them; the next login needs only the password.
    ResetMfa { email: String },
    /// List accounts, ordered by email.
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeyAction {
    /// Create a new key of JWT_ALGORITHM in JWT_KEY_DIR and print its kid.
    ///
    /// It becomes the signing key only if there is none yet; otherwise it only verifies, until `keys rotate
    /// --to KID` makes it current (publish first, sign later: see `keys rotate --help`).
    Generate,
    /// Make a new key (or, with --to, an existing one) the signing key; print old and new kid.
    ///
    /// The previous keys stay and keep verifying the tokens they signed.
    ///
    /// Relying parties cache /.well-known/jwks.json for up to 5 minutes. To rotate without them
    /// ever seeing an unknown kid: `keys generate`, restart the servers, wait 5 minutes, then
    /// `keys rotate --to NEW_KID` and restart again.
    Rotate {
        /// Make this existing key current instead of generating a new one
        #[arg(long, value_name = "KID", allow_hyphen_values = true)]
        to: Option<String>,
    },
    /// List the keys: kid, algorithm, current or not, created time.
    List,
    /// Delete a key that no longer signs (the current key is refused).
    ///
    /// Tokens it signed stop verifying (after the servers restart), so wait until they have
    /// expired.
    Retire {
        /// The kid of the key to delete (see `keys list`)
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[derive(Debug, Subcommand)]
enum TenantAction {
    /// Create tenants and apply every migration to each (2-32 characters of a-z, 0-9, _;
    /// starting with a letter). Several names in one run show progress.
    Create {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// List the tenants, one per line.
    List,
    /// Delete a tenant and ALL its data (users, sessions, audit). Refuses without --yes.
    Drop {
        name: String,
        /// Confirm that the tenant's data is to be destroyed
        #[arg(long)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(cli_config: Option<PathBuf>, flags: &[(&str, Option<String>)]) -> anyhow::Result<Config> {
    let file = cli_config.or_else(|| std::env::var_os("FRAISE_CONFIG").map(PathBuf::from));
    let sources = Sources::gather(file.as_deref(), flags).map_err(anyhow::Error::msg)?;
    Config::from_sources(&sources).map_err(anyhow::Error::msg)
}

fn path_flag(p: Option<PathBuf>) -> Option<String> {
    p.map(|p| p.to_string_lossy().into_owned())
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    // PostgreSQL's notices ("schema already exists, skipping") are noise at info unless asked for.
    let directives = if cfg.log_level.contains("sqlx") {
        cfg.log_level.clone()
    } else {
        format!("{},sqlx::postgres::notice=warn", cfg.log_level)
    };
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    // Colours only for a person at a terminal, not in files or log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if cfg.log_json {
        builder.json().flatten_event(true).with_current_span(true).init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Token { action: TokenAction::Decode { token } } => {
            let (header, claims) = fraise_auth::token_cmd::decode(&token).map_err(anyhow::Error::msg)?;
            fraise_auth::outln!(
                "⚠️  UNVERIFIED: decoded only; nothing here is checked\nheader:\n{header:#}\nclaims:\n{claims:#}"
            );
            Ok(())
        }
        Command::Token { action: TokenAction::Verify { token } } => {
            use fraise_core::Clock as _;
            let cfg = load(cli.config, &[])?;
            cfg.check_secret().map_err(anyhow::Error::msg)?;
            let (secret, _) = cfg.resolve_secret().map_err(anyhow::Error::msg)?;
            let (text, ok) =
                fraise_auth::token_cmd::verify(&cfg, secret.expose_secret().as_bytes(), &token, SystemClock.now());
            fraise_auth::outln!("{text}");
            if ok { Ok(()) } else { Err(anyhow::anyhow!("token is not valid")) }
        }
        Command::Keys { action } => {
            let cfg = load(cli.config, &[])?;
            init_logging(&cfg);
            keys(&cfg, action)
        }
        Command::Secret => {
            fraise_auth::outln!("{}", fraise_auth::config::generate_secret());
            Ok(())
        }
        Command::Migrate { action: Some(MigrateAction::Status), data_dir, schema, .. } => {
            let cfg = load(cli.config, &[("DATA_DIR", path_flag(data_dir)), ("DEFAULT_SCHEMA", schema)])?;
            init_logging(&cfg);
            fraise_auth::admin_cmd::migrate_status(&cfg).await
        }
        Command::Migrate { action: None, data_dir, schema, all_tenants } => {
            let cfg = load(cli.config, &[("DATA_DIR", path_flag(data_dir)), ("DEFAULT_SCHEMA", schema.clone())])?;
            init_logging(&cfg);
            let db = Db::open(&cfg).await?;
            // On SQLite (no schemas) `--schema` names a tenant's file.
            if let Some(name) = schema.filter(|_| !cfg.database.is_postgres()) {
                let name = tenant_cmd::parse_names(&[name])?;
                let summary = tenant_cmd::each(&name, |n| {
                    let admin = db.tenants(&cfg);
                    async move { admin.migrate_tenant(&n).await }
                })
                .await;
                return if summary.failed.is_empty() { Ok(()) } else { Err(anyhow::anyhow!("migration failed")) };
            }
            let report = db.migrate().await?;
            if report.applied == 0 {
                fraise_auth::outln!("{}: up to date ({} migration(s))", cfg.database.describe(), report.known);
            } else {
                fraise_auth::outln!(
                    "{}: applied {} of {} migration(s)",
                    cfg.database.describe(),
                    report.applied,
                    report.known
                );
            }
            if all_tenants {
                let summary = tenant_cmd::migrate_all(db.tenants(&cfg).as_ref()).await?;
                fraise_auth::outln!("{}", summary.line("migrated"));
                if !summary.failed.is_empty() {
                    anyhow::bail!("{} tenant(s) failed to migrate", summary.failed.len());
                }
            }
            Ok(())
        }
        Command::Doctor { report } => {
            let file = cli.config.or_else(|| std::env::var_os("FRAISE_CONFIG").map(PathBuf::from));
            let sources = Sources::gather(file.as_deref(), &[]).map_err(anyhow::Error::msg)?;
            let cfg = Config::from_sources(&sources);
            if report {
                fraise_auth::outln!("{}", fraise_auth::doctor::report(&sources, cfg.as_ref().ok()).await);
                return Ok(());
            }
            let checks = fraise_auth::doctor::checks(cfg).await;
            for c in &checks {
                fraise_auth::outln!("{c}");
            }
            let failed = checks.iter().filter(|c| !c.ok).count();
            if failed > 0 {
                anyhow::bail!("{failed} of {} checks failed", checks.len());
            }
            Ok(())
        }
        Command::Bench { target_ms, samples } => {
            let cfg = load(cli.config, &[])?;
            let (secret, _) = cfg.resolve_secret().map_err(anyhow::Error::msg)?;
            let target = std::time::Duration::from_millis(target_ms.max(1));
            let report = tokio::task::spawn_blocking(move || {
                fraise_auth::bench_cmd::run(&cfg, secret.expose_secret().as_bytes(), target, samples)
            })
            .await
            .context("benchmark thread failed")?
            .map_err(anyhow::Error::msg)?;
            fraise_auth::outln!("{}", report.trim_end_matches('\n'));
            Ok(())
        }
        Command::Smoke { url, prefix, tenant, password } => {
            let steps = fraise_auth::smoke::run(&url, &prefix, tenant, &password).await;
            for s in &steps {
                fraise_auth::outln!("{}", s.line);
            }
            if steps.iter().any(|s| !s.ok) {
                anyhow::bail!("smoke test failed against {url}");
            }
            fraise_auth::outln!("all {} steps passed", steps.len());
            Ok(())
        }
        Command::User { tenant, action } => {
            let cfg = load(cli.config, &[])?;
            init_logging(&cfg);
            use fraise_auth::admin_cmd::UserOp;
            let op = match action {
                UserAction::Create { email, name, roles, verified, password_stdin } => {
                    let password = if password_stdin {
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line).context("cannot read the password from stdin")?;
                        Some(line.trim_end_matches(['\r', '\n']).to_owned())
                    } else {
                        None
                    };
                    UserOp::Create { email, name, roles, verified, password }
                }
                UserAction::Disable { email } => UserOp::Disable { email },
                UserAction::Enable { email } => UserOp::Enable { email },
                UserAction::SetRoles { email, roles } => UserOp::SetRoles { email, roles },
                UserAction::ResetMfa { email } => UserOp::ResetMfa { email },
                UserAction::List { limit, offset, json } => UserOp::List { limit, offset, json },
            };
            fraise_auth::admin_cmd::user(&cfg, tenant.as_deref(), op).await
        }
        Command::Tenant { action } => {
            let cfg = load(cli.config, &[])?;
            init_logging(&cfg);
            tenant(&cfg, action).await
        }
        Command::Audit { user, kind, since, limit, json, tenant } => {
            let cfg = load(cli.config, &[])?;
            init_logging(&cfg);
            audit(&cfg, AuditQuery { user, kind, since, limit, json, tenant }).await
        }
        Command::Serve { host, port, data_dir, no_migrate } => {
            let mut flags =
                vec![("HOST", host), ("PORT", port.map(|p| p.to_string())), ("DATA_DIR", path_flag(data_dir))];
            if no_migrate {
                flags.push(("AUTO_MIGRATE", Some("false".into())));
            }
            let cfg = load(cli.config, &flags)?;
            init_logging(&cfg);
            serve(cfg).await
        }
    }
}

/// Parses `--since`: an RFC 3339 time, or an age such as `90m`, `24h`, `7d`.
fn parse_since(text: &str, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let usage = || anyhow::anyhow!("--since {text:?}: use 2026-01-31T00:00:00Z, 90m, 24h or 7d");
    let (n, per) = [("m", 60), ("h", 3600), ("d", 86_400)]
        .iter()
        .find_map(|(unit, secs)| text.strip_suffix(unit).map(|n| (n, *secs)))
        .ok_or_else(usage)?;
    let n: i64 = n.parse().map_err(|_| usage())?;
    let age = n.checked_mul(per).and_then(chrono::Duration::try_seconds).ok_or_else(usage)?;
    now.checked_sub_signed(age).ok_or_else(usage)
}

async fn tenant(cfg: &Config, action: TenantAction) -> anyhow::Result<()> {
    let db = Db::open(cfg).await?;
    let admin = db.tenants(cfg);
    if cfg.tenancy == fraise_http::tenancy::TenantResolution::None {
        eprintln!(
            "note: TENANT_RESOLUTION_METHOD=none: the server serves no tenant until it is set to header or subdomain"
        );
    }
    match action {
        TenantAction::Create { names } => {
            let names = tenant_cmd::parse_names(&names)?;
            let summary = tenant_cmd::each(&names, |n| {
                let admin = &admin;
                async move { admin.create(&n).await }
            })
            .await;
            fraise_auth::outln!("{}", summary.line("created"));
            if summary.failed.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("{} tenant(s) not created", summary.failed.len())
            }
        }
        TenantAction::List => {
            let names = admin.list().await.map_err(|e| anyhow::anyhow!("cannot list the tenants: {e}"))?;
            for n in &names {
                fraise_auth::outln!("{n}");
            }
            eprintln!("{} tenant(s)", names.len());
            Ok(())
        }
        TenantAction::Drop { name, yes } => {
            let name = tenant_cmd::parse_names(&[name])?.remove(0);
            if !yes {
                anyhow::bail!(
                    "dropping tenant '{name}' deletes all its users, sessions and audit events. Re-run with --yes to confirm"
                );
            }
            admin.drop_tenant(&name).await?;
            fraise_auth::outln!("dropped tenant {name}");
            Ok(())
        }
    }
}

fn keys(cfg: &Config, action: KeyAction) -> anyhow::Result<()> {
    use fraise_auth::keys::KeyDir;
    let dir = KeyDir::new(&cfg.jwt_key_dir);
    let alg = cfg.jwt_algorithm;
    let err = anyhow::Error::msg;
    match action {
        KeyAction::Generate => {
            let key = dir.generate(alg, cfg.jwt_rsa_bits).map_err(err)?;
            let current = dir.current_kid().map_err(err)?;
            let made_current = current.is_none();
            if made_current {
                dir.set_current(key.kid()).map_err(err)?;
            }
            fraise_auth::outln!("{}", key.kid());
            eprintln!(
                "{alg} key written to {}{}",
                key.path.display(),
                if made_current {
                    " and made current (it signs new tokens)".to_owned()
                } else {
                    format!(
                        "; it verifies but does not sign (current: {}). `fraise-auth keys rotate --to {}` makes it sign",
                        current.unwrap_or_default(),
                        key.kid()
                    )
                }
            );
            Ok(())
        }
        KeyAction::Rotate { to } => {
            let old = dir.current_kid().map_err(err)?;
            let new = match to {
                Some(kid) => {
                    let keys = dir.keys().map_err(err)?;
                    let key = keys.iter().find(|k| k.kid() == kid).ok_or_else(|| {
                        anyhow::anyhow!(
                            "no key {kid} in {}. `fraise-auth keys list` shows the kids",
                            dir.path().display()
                        )
                    })?;
                    if key.key.alg() != alg {
                        anyhow::bail!("key {kid} is {} but JWT_ALGORITHM={alg}", key.key.alg());
                    }
                    kid
                }
                None => dir.generate(alg, cfg.jwt_rsa_bits).map_err(err)?.kid().to_owned(),
            };
            dir.set_current(&new).map_err(err)?;
            fraise_auth::outln!("old {}", old.as_deref().unwrap_or("-"));
            fraise_auth::outln!("new {new}");
            eprintln!(
                "restart the servers to sign with {new}; the old key keeps verifying until `fraise-auth keys retire`"
            );
            Ok(())
        }
        KeyAction::List => {
            let keys = dir.keys().map_err(err)?;
            let current = dir.current_kid().map_err(err)?;
            for k in &keys {
                let is_current = current.as_deref() == Some(k.kid());
                let note = if k.key.alg() == alg { "" } else { "  (ignored: JWT_ALGORITHM is another algorithm)" };
                fraise_auth::outln!(
                    "{}  {:<5}  {:<7}  {}{note}",
                    k.kid(),
                    k.key.alg().name(),
                    if is_current { "current" } else { "-" },
                    k.created_rfc3339()
                );
            }
            eprintln!("{} key(s) in {} (JWT_ALGORITHM={alg})", keys.len(), dir.path().display());
            if !alg.is_asymmetric() {
                eprintln!(
                    "note: HS256 signs with JWT_SECRET_KEY; these files are used only with JWT_ALGORITHM=EdDSA or RS256"
                );
            }
            Ok(())
        }
        KeyAction::Retire { kid } => {
            let key = dir.retire(&kid).map_err(err)?;
            fraise_auth::outln!("retired {kid} (deleted {})", key.path.display());
            Ok(())
        }
    }
}

/// The filters of `audit`.
struct AuditQuery {
    user: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    limit: u32,
    json: bool,
    tenant: Option<String>,
}

async fn audit(cfg: &Config, q: AuditQuery) -> anyhow::Result<()> {
    use fraise_core::Clock as _;
    let AuditQuery { user, kind, since, limit, json, tenant } = q;
    let db = Db::open(cfg).await?;
    let store = match tenant {
        None => db.store(),
        Some(name) => {
            let name = tenant_cmd::parse_names(&[name])?.remove(0);
            db.tenants(cfg)
                .open(&name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .ok_or_else(|| anyhow::anyhow!("no tenant '{name}'"))?
        }
    };
    let user = match user {
        None => None,
        Some(email) => {
            let parsed = fraise_core::Email::parse(&email).map_err(|e| anyhow::anyhow!("--user: {e}"))?;
            let found = store.user_by_email(&parsed).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            Some(found.ok_or_else(|| anyhow::anyhow!("no user with email {email}"))?.id)
        }
    };
    let since = since.map(|s| parse_since(&s, SystemClock.now())).transpose()?;
    let filter = fraise_core::store::AuditFilter { user, kind, since, limit };
    let events = store.list_audit(&filter).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    for e in &events {
        let at = e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        if json {
            let line = serde_json::json!({"at": at, "type": e.kind, "user": e.user_id, "session": e.session_id,
                "ip": e.ip_address, "user_agent": e.user_agent, "details": e.details});
            fraise_auth::outln!("{line}");
        } else {
            let user = e.user_id.map(|u| u.to_string()).unwrap_or_else(|| "-".into());
            let ip = e.ip_address.as_deref().unwrap_or("-");
            fraise_auth::outln!("{at}  {:<28} {user:<36}  {ip:<15}  {}", e.kind, e.details);
        }
    }
    if !json {
        eprintln!("{} event(s)", events.len());
    }
    Ok(())
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    for key in &cfg.inert {
        tracing::warn!(key, "this setting is not implemented by this version and has no effect");
    }
    cfg.check_secret().map_err(anyhow::Error::msg)?;
    if cfg.token_transport.uses_cookie() && !cfg.csrf {
        tracing::warn!(
            "TOKEN_TRANSPORT uses a cookie but ENABLE_CSRF_PROTECTION is off: SameSite=Strict is then the only CSRF defence"
        );
    }
    if cfg.production && cfg.smtp_url.is_none() {
        tracing::warn!(
            "ENVIRONMENT=production without SMTP_URL: reset and verification emails only reach DATA_DIR/outbox"
        );
    }
    let (secret, stored) = cfg.resolve_secret().map_err(anyhow::Error::msg)?;
    if let Some(path) = stored {
        tracing::info!(path = %path.display(), "using the JWT secret stored in the data folder");
    }
    // Before touching the database: a production node without its signing key stops here.
    let keys = fraise_auth::keys::access_keys(
        &cfg,
        secret.expose_secret().as_bytes(),
        fraise_auth::keys::FirstKey::GenerateInDevelopment,
    )?;
    tracing::info!(alg = %keys.alg(), kid = keys.signing_kid(), verifying = keys.verifying_kids().count(), "access-token keys loaded");
    let db = Db::open(&cfg).await?;
    if cfg.auto_migrate {
        let report = db.migrate().await?;
        tracing::info!(database = %cfg.database.describe(), applied = report.applied, known = report.known, "migrations checked");
        if cfg.tenancy != fraise_http::tenancy::TenantResolution::None {
            // Idempotent and quick when nothing is pending; a failing tenant is reported, not fatal.
            let admin = db.tenants(&cfg);
            let names = admin.list().await.map_err(|e| anyhow::anyhow!("cannot list the tenants: {e}"))?;
            for name in &names {
                if let Err(e) = admin.migrate_tenant(name).await {
                    tracing::error!(tenant = %name, error = %format!("{:#}", anyhow::Error::new(e)), "tenant migration failed");
                }
            }
            tracing::info!(tenants = names.len(), "tenant migrations checked");
        }
    }
    // After migrating: only schemas whose triggers announce their changes are cached.
    db.start_session_cache(&cfg);
    let auth = boot::service(&cfg, db.store(), secret.expose_secret().as_bytes(), Arc::new(SystemClock))?;
    auth.warm_up();
    let tenants = boot::tenants(&cfg, &db, &auth);
    if cfg.cleanup_interval_minutes > 0 {
        let every = std::time::Duration::from_secs(cfg.cleanup_interval_minutes * 60);
        boot::spawn_cleanup(auth.clone(), tenants.clone(), every);
    }
    let state = boot::state(&cfg, auth, tenants)?;
    let options = fraise_http::ServeOptions {
        header_read_timeout: std::time::Duration::from_secs(cfg.header_read_timeout_seconds),
    };
    if let (true, Some(addr)) = (cfg.metrics_enabled, cfg.metrics_bind) {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot bind METRICS_BIND {addr}"))?;
        tracing::info!(address = %addr, "metrics listening");
        let metrics = fraise_http::metrics::router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = fraise_http::serve_with(listener, metrics, shutdown_signal(), options).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    } else if cfg.metrics_enabled && cfg.metrics_token.is_none() && cfg.production {
        tracing::warn!(
            "/metrics is served on the main port without a token: set METRICS_BIND to a private address or METRICS_TOKEN"
        );
    }
    let app = fraise_http::app(state);
    let addr: SocketAddr = format!("{}:{}", cfg.host, cfg.port)
        .parse()
        .or_else(|_| format!("[{}]:{}", cfg.host, cfg.port).parse())
        .with_context(|| format!("HOST={:?} is not an IP address", cfg.host))?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot bind {addr}"))?;
    tracing::info!(address = %listener.local_addr()?, database = %cfg.database.describe(), "fraise-auth listening");
    fraise_http::serve_with(listener, app, shutdown_signal(), options).await.context("server error")?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A kid is a base64url thumbprint, so about one in 32 starts with `-`; clap must take it as
    /// the value, not as an unknown flag (a CI run once generated such a kid).
    #[test]
    fn kids_and_tokens_that_start_with_a_hyphen_are_values() {
        let retire = Cli::try_parse_from(["fraise-auth", "keys", "retire", "-9abc"]).unwrap();
        assert!(matches!(retire.command, Command::Keys { action: KeyAction::Retire { ref kid } } if kid == "-9abc"));
        let rotate = Cli::try_parse_from(["fraise-auth", "keys", "rotate", "--to", "-Xy"]).unwrap();
        assert!(
            matches!(rotate.command, Command::Keys { action: KeyAction::Rotate { to: Some(ref to) } } if to == "-Xy")
        );
        let verify = Cli::try_parse_from(["fraise-auth", "token", "verify", "-a.b.c"]).unwrap();
        assert!(
            matches!(verify.command, Command::Token { action: TokenAction::Verify { ref token } } if token == "-a.b.c")
        );
        assert!(Cli::try_parse_from(["fraise-auth", "keys", "retire", "--bogus", "x"]).is_err());
    }
}
