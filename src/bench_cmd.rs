//! `fraise-auth bench`: the guide's performance profiler as a subcommand. Times the configured
//! Argon2id parameters, suggests parameters that reach a target time, and measures token
//! operations per second. Figures are medians of several runs; the machine's other load shows in
//! them, so run it on an otherwise idle host.
use std::time::{Duration, Instant};

use chrono::Utc;
use fraise_core::model::SessionId;
use fraise_core::password::{Argon2Params, PasswordHasher};
use fraise_core::tokens::{AccessTokens, JwtSettings, KeyRing, PrivateKey, RefreshToken, RefreshTokens};
use uuid::Uuid;

use crate::config::Config;

/// OWASP's floor for Argon2id memory (19 MiB with t=2): the suggestion never goes below it.
const MIN_MEMORY_KIB: u32 = 19 * 1024;
/// The suggestion never goes above 1 GiB per hash.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;

/// What one hash costs.
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    pub wall: Duration,
    /// CPU time of the hashing thread (equal to `wall` on an idle machine, as the hash is
    /// single-threaded).
    pub cpu: Duration,
}

/// CPU time consumed by the calling thread so far, to the nanosecond. (`/proc/thread-self/schedstat`,
/// used before, is only brought up to date at each scheduler tick while the thread runs: 4 ms
/// steps here, so a light hash measured 0 ms and a 90 ms one ±4 %.)
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

/// Median cost of `samples` hashes with `params` (after one warm-up).
pub fn hash_cost(params: Argon2Params, samples: usize) -> Result<HashCost, String> {
    let hasher = PasswordHasher::new(params)?;
    hasher.hash("warm-up-Password-1!").map_err(|e| e.to_string())?;
    let mut runs = Vec::with_capacity(samples.max(1));
    for _ in 0..samples.max(1) {
        let (t0, c0) = (Instant::now(), thread_cpu());
        hasher.hash("bench-Password-1!").map_err(|e| e.to_string())?;
        // CPU read before wall: the CPU interval lies inside the wall one.
        let cpu = thread_cpu().saturating_sub(c0);
        runs.push(HashCost { wall: t0.elapsed(), cpu });
    }
    runs.sort_by_key(|r| r.wall);
    Ok(runs[runs.len() / 2])
}

/// Median cost of a hash while `threads` threads hash at once (each `samples` hashes, after a
/// warm-up): what a login costs when a flood keeps every hashing thread busy. Argon2's working set
/// (100 MiB with the guide's parameters) is far larger than the caches, so hashes running side by
/// side share memory bandwidth and each takes longer than one alone (3-16 % on 2 CPUs here, in 5
/// runs measured with the thread CPU clock).
pub fn hash_cost_concurrent(params: Argon2Params, samples: usize, threads: usize) -> Result<HashCost, String> {
    let mut costs = std::thread::scope(|scope| {
        let running: Vec<_> = (0..threads.max(1)).map(|_| scope.spawn(|| hash_cost(params, samples))).collect();
        running
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err("a hashing thread panicked".into())))
            .collect::<Result<Vec<_>, _>>()
    })?;
    costs.sort_by_key(|c| c.cpu);
    Ok(costs[costs.len() / 2])
}

/// Parameters whose hash should take about `target`: time grows linearly with memory × passes,
/// so memory is scaled first (within OWASP's floor and 1 GiB), then passes.
pub fn suggest(params: Argon2Params, measured: Duration, target: Duration) -> Argon2Params {
    let ratio = target.as_secs_f64() / measured.as_secs_f64().max(1e-6);
    let work = f64::from(params.memory_kib) * f64::from(params.iterations) * ratio;
    let mut iterations = params.iterations.max(1);
    let mut memory = work / f64::from(iterations);
    while memory < f64::from(MIN_MEMORY_KIB) && iterations > 1 {
        iterations -= 1;
        memory = work / f64::from(iterations);
    }
    while memory > f64::from(MAX_MEMORY_KIB) {
        iterations += 1;
        memory = work / f64::from(iterations);
    }
    // Whole MiB, within bounds, and at least 8 KiB per lane as Argon2 requires.
    let mib = (memory / 1024.0).round().clamp(f64::from(MIN_MEMORY_KIB / 1024), f64::from(MAX_MEMORY_KIB / 1024));
    let memory_kib = ((mib as u32) * 1024).max(8 * params.parallelism);
    Argon2Params { memory_kib, iterations, parallelism: params.parallelism }
}

/// Runs `op` repeatedly for about `budget` and returns operations per second.
fn per_second(budget: Duration, mut op: impl FnMut()) -> f64 {
    let t0 = Instant::now();
    let mut n: u64 = 0;
    while t0.elapsed() < budget {
        for _ in 0..64 {
            op();
        }
        n += 64;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// The whole report, as printed.
pub fn run(cfg: &Config, secret: &[u8], target: Duration, samples: usize) -> Result<String, String> {
    let p = cfg.argon2;
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cost = hash_cost(p, samples)?;
    let cpu_s = cost.cpu.as_secs_f64().max(1e-6);
    let mut out = format!(
        "Argon2id m={} KiB, t={}, p={} (configured): median of {samples} hashes {:.1} ms wall, {:.1} ms CPU\n\
         hash-bound login limit: {cpus} CPU(s) / {cpu_s:.4} CPU-s per hash = {:.1} logins/s\n",
        p.memory_kib,
        p.iterations,
        p.parallelism,
        cost.wall.as_secs_f64() * 1000.0,
        cpu_s * 1000.0,
        cpus as f64 / cpu_s,
    );
    let all = hash_cost_concurrent(p, samples, cpus)?;
    let all_s = all.cpu.as_secs_f64().max(1e-6);
    out.push_str(&format!(
        "with all {cpus} CPU(s) hashing at once: median {:.1} ms CPU per hash; \
         limit {cpus} CPU(s) / {all_s:.4} CPU-s per hash at once = {:.1} logins/s\n",
        all_s * 1000.0,
        cpus as f64 / all_s,
    ));
    let s = suggest(p, cost.wall, target);
    if s == p {
        out.push_str(&format!(
            "target {} ms: the configured parameters are as close as whole MiB allow\n",
            target.as_millis()
        ));
    } else {
        let check = hash_cost(s, samples.min(3))?;
        out.push_str(&format!(
            "target {} ms: ARGON2_MEMORY_COST={} ARGON2_TIME_COST={} ARGON2_PARALLELISM={} (measured {:.0} ms)\n",
            target.as_millis(),
            s.memory_kib,
            s.iterations,
            s.parallelism,
            check.wall.as_secs_f64() * 1000.0
        ));
    }
    let budget = Duration::from_millis(500);
    // The configured algorithm and key; with EdDSA/RS256 and no key yet, a throw-away one.
    let ring = match crate::keys::access_keys(cfg, secret, crate::keys::FirstKey::Never) {
        Ok(ring) => ring,
        Err(_) => {
            let (key, _) = PrivateKey::generate(cfg.jwt_algorithm, cfg.jwt_rsa_bits)?;
            KeyRing::asymmetric(&key, &[])?
        }
    };
    let alg = ring.alg();
    let jwt = AccessTokens::new(ring, JwtSettings::default());
    let (user, session, roles, now) = (Uuid::new_v4(), SessionId::new(), vec!["user".to_owned()], Utc::now());
    let token = jwt.issue(user, session, &roles, &[], None, now).map_err(|e| e.to_string())?.0;
    let sign = per_second(budget, || {
        let _ = jwt.issue(user, session, &roles, &[], None, now);
    });
    let verify = per_second(budget, || {
        let _ = jwt.verify(&token, None, now);
    });
    let keys = RefreshTokens::from_secret(secret);
    let rt = RefreshToken { session, counter: 7 };
    let text = keys.mint(rt, "");
    let mint = per_second(budget, || {
        let _ = keys.mint(rt, "");
    });
    let parse = per_second(budget, || {
        let _ = keys.parse(&text, "");
    });
    out.push_str(&format!(
        "access token ({alg}), one core: sign {sign:.0}/s, verify {verify:.0}/s\n\
         refresh token (HMAC-SHA256), one core: mint {mint:.0}/s, parse {parse:.0}/s\n"
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(memory_kib: u32, iterations: u32) -> Argon2Params {
        Argon2Params { memory_kib, iterations, parallelism: 8 }
    }

    #[test]
    fn concurrent_cost_times_hashes_on_every_thread() {
        let light = Argon2Params { memory_kib: 8 * 1024, iterations: 1, parallelism: 1 };
        let Ok(cost) = hash_cost_concurrent(light, 2, 3) else { panic!("light parameters hash") };
        assert!(cost.cpu > Duration::ZERO && cost.wall > Duration::ZERO, "{cost:?}");
        // A hash runs on one thread: it cannot use more CPU than the time it took (1 ms of slack:
        // `Instant` may be slewed by NTP, the thread clock is not).
        assert!(cost.cpu <= cost.wall + Duration::from_millis(1), "{cost:?}");
        assert!(hash_cost_concurrent(Argon2Params { memory_kib: 1, iterations: 1, parallelism: 1 }, 1, 2).is_err());
    }

    /// A clock brought up to date only at scheduler ticks (4 ms here) reads 0 for a 200 µs window
    /// without a tick in it, which most of twenty such windows are: every one must read more.
    #[test]
    fn thread_cpu_counts_this_threads_work_below_a_tick() {
        for window in 0..20 {
            let (c0, t0) = (thread_cpu(), Instant::now());
            let mut x = 0u64;
            while t0.elapsed() < Duration::from_micros(200) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            let (cpu, wall) = (thread_cpu().saturating_sub(c0), t0.elapsed());
            assert!(cpu > Duration::ZERO, "window {window}: cpu {cpu:?}, wall {wall:?}");
            assert!(cpu <= wall + Duration::from_millis(1), "window {window}: cpu {cpu:?}, wall {wall:?}");
        }
    }

    #[test]
    fn suggestions_scale_memory_then_passes_within_bounds() {
        let p = params(102_400, 2);
        let ms = Duration::from_millis;
        // Twice too slow: half the memory.
        assert_eq!(suggest(p, ms(400), ms(200)), params(51_200, 2));
        // Far too slow: memory stops at the floor, passes drop instead.
        let s = suggest(p, ms(2000), ms(100));
        assert!(s.memory_kib >= MIN_MEMORY_KIB && s.iterations == 1, "{s:?}");
        // Far too fast: memory grows, capped at 1 GiB, then passes grow.
        let s = suggest(p, ms(10), ms(1000));
        assert!(s.memory_kib <= MAX_MEMORY_KIB && s.iterations > 2, "{s:?}");
        // On target: unchanged.
        assert_eq!(suggest(p, ms(200), ms(200)), p);
    }
}
