//! `tenant create|list|drop` and `migrate --all-tenants`: operations over many tenants, with a
//! progress bar on a terminal and one plain line per tenant otherwise.
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use fraise_core::tenant::TenantName;
use fraise_store::{MigrationReport, TenantAdmin, TenantError};
use indicatif::{ProgressBar, ProgressStyle};

/// What happened to one tenant.
#[derive(Debug)]
pub struct Outcome {
    pub tenant: String,
    pub result: Result<MigrationReport, String>,
    pub took: Duration,
}

/// The totals of a run over several tenants.
#[derive(Debug, Default)]
pub struct Summary {
    pub ok: usize,
    pub failed: Vec<String>,
    pub total: Duration,
}

impl Summary {
    pub fn line(&self, verb: &str) -> String {
        let n = self.ok + self.failed.len();
        let per = if n == 0 { Duration::ZERO } else { self.total / u32::try_from(n).unwrap_or(u32::MAX) };
        let mut text = format!(
            "{verb} {} of {n} tenant(s) in {:.2} s ({:.1} ms per tenant)",
            self.ok,
            self.total.as_secs_f64(),
            per.as_secs_f64() * 1000.0
        );
        if !self.failed.is_empty() {
            text.push_str(&format!("; FAILED: {}", self.failed.join(", ")));
        }
        text
    }
}

/// Validates every name first (nothing runs if one is bad), refusing duplicates.
pub fn parse_names(names: &[String]) -> anyhow::Result<Vec<TenantName>> {
    let mut out: Vec<TenantName> = Vec::with_capacity(names.len());
    for n in names {
        let name = TenantName::parse(n).map_err(|e| anyhow::anyhow!("tenant name {n:?}: {e}"))?;
        if out.contains(&name) {
            anyhow::bail!("tenant name {n:?} given twice");
        }
        out.push(name);
    }
    Ok(out)
}

/// Progress for `n` items: a bar on a terminal, nothing otherwise (the per-tenant lines are the
/// progress then).
fn progress(n: usize) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() || n < 2 {
        return None;
    }
    let bar = ProgressBar::new(u64::try_from(n).unwrap_or(u64::MAX));
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} tenants  {elapsed} (eta {eta})  {msg}") {
        bar.set_style(style);
    }
    Some(bar)
}

/// Runs `op` on each tenant in turn, continuing past failures; prints one line per tenant.
pub async fn each<F, Fut>(names: &[TenantName], mut op: F) -> Summary
where
    F: FnMut(TenantName) -> Fut,
    Fut: std::future::Future<Output = Result<MigrationReport, TenantError>>,
{
    let bar = progress(names.len());
    let mut summary = Summary::default();
    let started = Instant::now();
    for name in names {
        let t0 = Instant::now();
        let result = op(name.clone()).await.map_err(|e| format!("{:#}", anyhow::Error::new(e)));
        let outcome = Outcome { tenant: name.to_string(), result, took: t0.elapsed() };
        let line = describe(&outcome);
        match &bar {
            Some(bar) => {
                bar.set_message(name.to_string());
                bar.println(&line);
                bar.inc(1);
            }
            None => crate::outln!("{line}"),
        }
        match outcome.result {
            Ok(_) => summary.ok += 1,
            Err(_) => summary.failed.push(outcome.tenant),
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    summary.total = started.elapsed();
    summary
}

fn describe(o: &Outcome) -> String {
    let ms = o.took.as_secs_f64() * 1000.0;
    match &o.result {
        Ok(r) if r.applied == 0 => format!("✅ {}: up to date ({} migration(s), {ms:.0} ms)", o.tenant, r.known),
        Ok(r) => format!("✅ {}: applied {} of {} migration(s) ({ms:.0} ms)", o.tenant, r.applied, r.known),
        Err(e) => format!("❌ {}: {e}", o.tenant),
    }
}

/// `migrate --all-tenants`: every registered tenant, one failure not stopping the rest.
pub async fn migrate_all(admin: &dyn TenantAdmin) -> anyhow::Result<Summary> {
    let names = admin.list().await.map_err(|e| anyhow::anyhow!("cannot list the tenants: {e}"))?;
    Ok(each(&names, |name| async move { admin.migrate_tenant(&name).await }).await)
}
