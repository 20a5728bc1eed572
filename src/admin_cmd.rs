//! `user …` and `migrate status`: administration from the command line, through the same service
//! (policy, hashing pool, audit trail) as the HTTP routes.
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use fraise_core::service::parse_roles;
use fraise_core::tenant::TenantName;
use fraise_core::{AuthService, SystemClock};
use secrecy::ExposeSecret as _;

use crate::boot::{self, Db};
use crate::config::Config;

/// What `user` was asked to do.
#[derive(Debug, Clone)]
pub enum UserOp {
    Create { email: String, name: Option<String>, roles: Option<String>, verified: bool, password: Option<String> },
    Disable { email: String },
    Enable { email: String },
    SetRoles { email: String, roles: String },
    ResetMfa { email: String },
    List { limit: u32, offset: u32, json: bool },
}

/// The service over the main database, or over `tenant`'s.
async fn service(cfg: &Config, tenant: Option<&str>) -> anyhow::Result<AuthService> {
    cfg.check_secret().map_err(anyhow::Error::msg)?;
    let (secret, _) = cfg.resolve_secret().map_err(anyhow::Error::msg)?;
    let db = Db::open_existing(cfg).await?;
    let base = boot::service(cfg, db.store(), secret.expose_secret().as_bytes(), Arc::new(SystemClock))?;
    let Some(tenant) = tenant else {
        return Ok(base);
    };
    let name = TenantName::parse(tenant).map_err(|e| anyhow::anyhow!("--tenant {tenant:?}: {e}"))?;
    let store = db
        .tenants(cfg)
        .open(&name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| anyhow::anyhow!("no tenant '{name}' (fraise-auth tenant list)"))?;
    Ok(base.for_tenant(&name, store))
}

/// A random password that meets the default policy (upper, lower, digit, special).
fn generated_password() -> String {
    let bytes: [u8; 18] = rand::random();
    format!("{}-Aa1", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub async fn user(cfg: &Config, tenant: Option<&str>, op: UserOp) -> anyhow::Result<()> {
    let auth = service(cfg, tenant).await?;
    let not_found = |email: &str| anyhow::anyhow!("no user with email {email}");
    match op {
        UserOp::Create { email, name, roles, verified, password } => {
            let roles = parse_roles(roles.as_deref().unwrap_or("")).map_err(|e| anyhow::anyhow!("--roles: {e}"))?;
            let (password, generated) = match password {
                Some(p) => (p, false),
                None => (generated_password(), true),
            };
            let user = auth
                .create_user(&email, &password, name.as_deref(), &roles, verified)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::outln!("created {} ({})", user.email, user.id);
            if generated {
                crate::outln!("password: {password}\n(shown once; the user can change it, or use forgot-password)");
            }
        }
        UserOp::Disable { email } => {
            let user =
                auth.find_user(&email).await.map_err(|e| anyhow::anyhow!("{e}"))?.ok_or_else(|| not_found(&email))?;
            auth.set_user_active(user.id, false).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::outln!("disabled {email}: its sessions are revoked and logins refused (403 ACCOUNT_DISABLED)");
        }
        UserOp::Enable { email } => {
            let user =
                auth.find_user(&email).await.map_err(|e| anyhow::anyhow!("{e}"))?.ok_or_else(|| not_found(&email))?;
            auth.set_user_active(user.id, true).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::outln!("enabled {email}");
        }
        UserOp::SetRoles { email, roles } => {
            let roles = parse_roles(&roles).map_err(|e| anyhow::anyhow!("{e}"))?;
            let user = auth
                .set_roles(&email, &roles)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .ok_or_else(|| not_found(&email))?;
            crate::outln!(
                "{}: roles [{}] (tokens issued before keep their old roles until they expire)",
                user.email,
                user.roles.join(", ")
            );
        }
        UserOp::ResetMfa { email } => {
            let user =
                auth.find_user(&email).await.map_err(|e| anyhow::anyhow!("{e}"))?.ok_or_else(|| not_found(&email))?;
            let had = user.mfa.names();
            auth.reset_mfa(user.id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let had = if had.is_empty() { "none".to_owned() } else { had.join(", ") };
            crate::outln!(
                "{email}: second factors removed (had: {had}); recovery codes voided; the next login needs only the password"
            );
        }
        UserOp::List { limit, offset, json } => {
            let users = auth.list_users(limit, offset).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            for u in &users {
                let created = u.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                if json {
                    let line = serde_json::json!({"id": u.id, "email": u.email, "name": u.name, "roles": u.roles,
                        "is_active": u.is_active, "email_verified": u.email_verified, "mfa_methods": u.mfa.names(),
                        "created_at": created});
                    crate::outln!("{line}");
                } else {
                    let state = if u.is_active { "active" } else { "disabled" };
                    let verified = if u.email_verified { "verified" } else { "unverified" };
                    crate::outln!(
                        "{:<40} {}  {state:<8} {verified:<10} {created}  [{}]",
                        u.email,
                        u.id,
                        u.roles.join(",")
                    );
                }
            }
            if !json {
                eprintln!("{} user(s)", users.len());
            }
        }
    }
    Ok(())
}

/// `migrate status`: every migration, applied or pending, for the main database and (with
/// tenancy on) each tenant. Errors when anything is pending, so scripts can gate on it.
pub async fn migrate_status(cfg: &Config) -> anyhow::Result<()> {
    let db = Db::open_existing(cfg).await?;
    let mut pending = 0;
    let main = db.migration_status().await?;
    crate::outln!("{}:", cfg.database.describe());
    for m in &main {
        crate::outln!("  {} {:>4} {}", if m.applied { "applied" } else { "PENDING" }, m.version, m.description);
        pending += usize::from(!m.applied);
    }
    let tenants = db.tenants(cfg);
    for name in tenants.list().await.context("cannot list the tenants")? {
        let behind = match tenants.open(&name).await {
            Ok(Some(store)) => !store.migrations_current().await.unwrap_or(false),
            _ => true,
        };
        crate::outln!("tenant {name}: {}", if behind { "PENDING" } else { "current" });
        pending += usize::from(behind);
    }
    if pending > 0 {
        anyhow::bail!("{pending} pending; run `fraise-auth migrate` (and `--all-tenants`)");
    }
    Ok(())
}
