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
use fraise_core::SystemClock;
use secrecy::ExposeSecret as _;

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
    Decode { token: String },
    /// Verify with the configured JWT secret (access token) or MAC key (refresh token); exits
    /// non-zero and says why when invalid.
    Verify { token: String },
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
    Migrate {
        /// Folder of the SQLite database [env: DATA_DIR, default ./data]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// PostgreSQL schema to migrate instead of DEFAULT_SCHEMA
        #[arg(long)]
        schema: Option<String>,
    },
    /// Print a new random secret suitable for JWT_SECRET_KEY.
    Secret,
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
    let filter = EnvFilter::try_new(&cfg.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
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
            println!("⚠️  UNVERIFIED: decoded only; nothing here is checked\nheader:\n{header:#}\nclaims:\n{claims:#}");
            Ok(())
        }
        Command::Token { action: TokenAction::Verify { token } } => {
            use fraise_core::Clock as _;
            let cfg = load(cli.config, &[])?;
            cfg.check_secret().map_err(anyhow::Error::msg)?;
            let (secret, _) = cfg.resolve_secret().map_err(anyhow::Error::msg)?;
            let (text, ok) =
                fraise_auth::token_cmd::verify(&cfg, secret.expose_secret().as_bytes(), &token, SystemClock.now());
            println!("{text}");
            if ok { Ok(()) } else { Err(anyhow::anyhow!("token is not valid")) }
        }
        Command::Secret => {
            println!("{}", fraise_auth::config::generate_secret());
            Ok(())
        }
        Command::Migrate { data_dir, schema } => {
            let cfg = load(cli.config, &[("DATA_DIR", path_flag(data_dir)), ("DEFAULT_SCHEMA", schema)])?;
            init_logging(&cfg);
            let db = Db::open(&cfg).await?;
            let report = db.migrate().await?;
            if report.applied == 0 {
                println!("{}: up to date ({} migration(s))", cfg.database.describe(), report.known);
            } else {
                println!("{}: applied {} of {} migration(s)", cfg.database.describe(), report.applied, report.known);
            }
            Ok(())
        }
        Command::Audit { user, kind, since, limit, json } => {
            let cfg = load(cli.config, &[])?;
            init_logging(&cfg);
            audit(&cfg, user, kind, since, limit, json).await
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

async fn audit(
    cfg: &Config,
    user: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    use fraise_core::Clock as _;
    let db = Db::open(cfg).await?;
    let store = db.store();
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
            println!("{line}");
        } else {
            let user = e.user_id.map(|u| u.to_string()).unwrap_or_else(|| "-".into());
            let ip = e.ip_address.as_deref().unwrap_or("-");
            println!("{at}  {:<28} {user:<36}  {ip:<15}  {}", e.kind, e.details);
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
    let db = Db::open(&cfg).await?;
    if cfg.auto_migrate {
        let report = db.migrate().await?;
        tracing::info!(database = %cfg.database.describe(), applied = report.applied, known = report.known, "migrations checked");
    }
    let auth = boot::service(&cfg, db.store(), secret.expose_secret().as_bytes(), Arc::new(SystemClock))?;
    auth.warm_up();
    if cfg.cleanup_interval_minutes > 0 {
        boot::spawn_cleanup(auth.clone(), std::time::Duration::from_secs(cfg.cleanup_interval_minutes * 60));
    }
    let app = fraise_http::app(boot::state(&cfg, auth)?);
    let addr: SocketAddr = format!("{}:{}", cfg.host, cfg.port)
        .parse()
        .or_else(|_| format!("[{}]:{}", cfg.host, cfg.port).parse())
        .with_context(|| format!("HOST={:?} is not an IP address", cfg.host))?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot bind {addr}"))?;
    tracing::info!(address = %listener.local_addr()?, database = %cfg.database.describe(), "fraise-auth listening");
    fraise_http::serve(listener, app, shutdown_signal()).await.context("server error")?;
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
