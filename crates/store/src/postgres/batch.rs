//! Group commit for refresh rotations on PostgreSQL.
//!
//! A rotation is one small write, and on this machine kind most of its cost is the transaction
//! around it, not the row: PostgreSQL spent ~330 µs of CPU per single-row rotation statement
//! (pgbench, 8 clients: ~5,200/s), but ~120 µs per rotation when four rode one statement
//! (~15,000/s). So refreshes are handed to a worker that takes every rotation waiting at that
//! moment and runs them as **one statement, one commit**. A rotation that finds the worker idle,
//! and not just done with a small batch, runs on its own at once; batches form from what queued
//! while the worker was busy.
//!
//! A small batch also waits a little for the clients it just answered ([`linger`]). Measured at
//! 8 connections each rotating its own chain, the worker was busy 94 % of the time with batches
//! of 3.9: the clients split into two groups of four, each waiting while the other's commit ran,
//! and a commit costs nearly the same for 4 rotations as for 8 (0.85 vs 0.9-1.1 ms). Waiting up
//! to [`LINGER`] after a batch of 2 to [`LINGER_BELOW`] - 1 rotations for as many jobs as it
//! carried merges the groups into one: batches of 7.2-7.8, PostgreSQL CPU per refresh down by
//! about 30 %, refreshes/s +11 % (median of three alternating pairs of rounds; single rounds
//! from -6 % to +30 % on a noisy machine). A lone client never waits (after a
//! batch of one), a queue that already holds that many never waits, and batches of
//! [`LINGER_BELOW`] or more have amortised their commit already, so they never wait either. The
//! wait serves clients that refresh in a loop, as the benchmark's do; refreshes from independent
//! clients that arrive within 1-2 ms of a small batch's end wait for the deadline too (not
//! measured: at most 2 ms each).
//!
//! Each rotation keeps every property of the single statement: it commits (with its audit row)
//! before its caller hears of it, it is the same compare-and-swap on `refresh_counter`, and it
//! sees the same liveness checks. A batch holds several row locks at once, so it runs on the
//! worker's own connection with a short `lock_timeout` (200 ms, under PostgreSQL's default
//! `deadlock_timeout` of 1 s): if it waits on a row another transaction holds (a revocation in
//! flight, a batch of another node), it gives up first, so the other writer does not fail for
//! it. A batch that fails for any reason hands every rotation back, and each caller runs the
//! statement alone on the shared pool, exactly as without batching: one bad row cannot fail the
//! others, though it delays its whole batch (by up to the lock timeout for a busy row).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fraise_core::StoreError;
use fraise_core::model::AuditEvent;
use fraise_core::store::{Liveness, RotationBatchStats};
use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection as _, Executor, PgConnection, Row};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::errors::map;

/// At most this many rotations per statement.
const MAX_BATCH: usize = 64;
/// How long a batch waits for a row another transaction holds before it hands its rotations
/// back (`lock_timeout` of the worker's connection). Well under `deadlock_timeout` (1 s by
/// default), so in a lock cycle it is always the batch that gives way.
const LOCK_TIMEOUT: &str = "200ms";
/// The longest the worker waits after a small batch for as many jobs as it carried ([`linger`]).
/// Tokio's timer counts whole milliseconds, so a wait that times out lasts 1-2 ms.
const LINGER: Duration = Duration::from_millis(1);
/// From this many rotations a batch has amortised its commit: the worker does not wait after it.
const LINGER_BELOW: usize = 16;
/// How long a batch may take, connecting included, before its rotations are handed back (and
/// its connection dropped: a half-open connection would otherwise hang the worker). Handing back
/// a rotation that did commit is safe: run again, it matches nothing, and the caller then finds
/// the chain already advanced, as for a concurrent presenter of the same token.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The rotation-and-audit statement for any number of rotations of distinct sessions: `$1`..`$12`
/// are arrays of equal length, one element per rotation. Returns the rotated sessions (`{session_cols}, {user_cols}`); the INSERT sees
/// only what the UPDATE returned, so a presentation that rotates nothing records nothing.
pub(super) const ROTATE_SQL: &str = "WITH inp AS (SELECT * FROM unnest($1::uuid[], $2::int8[], $3::timestamptz[], \
     $4::timestamptz[], $5::timestamptz[], $6::timestamptz[], $7::uuid[], $8::text[], $9::text[], $10::text[], \
     $11::text[], $12::timestamptz[]) AS t(id, ctr, ts, exp, idle, born, aid, kind, ip, ua, det, at)), \
     r AS (UPDATE {s}.tb_session AS ss SET refresh_counter = ss.refresh_counter + 1, rotated_at = inp.ts, \
     last_active = inp.ts, expires_at = inp.exp \
     FROM inp, {s}.tb_user AS uu \
     WHERE ss.pk_session = inp.id AND ss.refresh_counter = inp.ctr AND ss.revoked_at IS NULL AND ss.expires_at > inp.ts \
       AND (inp.idle IS NULL OR ss.last_active >= inp.idle) AND (inp.born IS NULL OR ss.created_at >= inp.born) \
       AND uu.pk_user = ss.fk_user AND uu.is_active \
     RETURNING {session_cols}, {user_cols}), \
     a AS (INSERT INTO {s}.tb_auth_audit (pk_auth_audit, event_type, fk_user, fk_session, ip_address, user_agent, \
     details, created_at) \
     SELECT inp.aid, inp.kind, r.fk_user, r.pk_session, inp.ip::inet, inp.ua, inp.det::jsonb, inp.at \
     FROM r JOIN inp ON inp.id = r.pk_session) \
     SELECT * FROM r";

/// One rotation: the arguments of `rotate_refresh_audited`.
#[derive(Debug)]
pub(super) struct Rotation {
    pub id: Uuid,
    pub presented: i64,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub live: Liveness,
    pub audit: AuditEvent,
}

/// What the statement did for one rotation: the rotated row (`session_cols`, `user_cols`), or
/// `None` when nothing matched (unknown session, wrong counter, revoked, expired, idle, disabled
/// user).
pub(super) type Outcome = Option<PgRow>;

/// Runs [`ROTATE_SQL`] (`sql`, its schema spliced in) for `rotations`, which must name distinct
/// sessions in ascending order, and says what happened to each, in order.
pub(super) async fn run<'e, E>(exec: E, sql: &Arc<str>, rotations: &[&Rotation]) -> Result<Vec<Outcome>, StoreError>
where
    E: Executor<'e, Database = sqlx::Postgres>,
{
    let rows = sqlx::query(AssertSqlSafe(Arc::clone(sql)))
        .bind(column(rotations, |r| r.id))
        .bind(column(rotations, |r| r.presented))
        .bind(column(rotations, |r| r.now))
        .bind(column(rotations, |r| r.expires_at))
        .bind(column(rotations, |r| r.live.idle_cutoff))
        .bind(column(rotations, |r| r.live.created_cutoff))
        .bind(column(rotations, |r| r.audit.id))
        .bind(column(rotations, |r| r.audit.kind.as_str()))
        .bind(column(rotations, |r| r.audit.ip_address.as_deref()))
        .bind(column(rotations, |r| r.audit.user_agent.as_deref()))
        .bind(column(rotations, |r| r.audit.details.to_string()))
        .bind(column(rotations, |r| r.audit.at))
        .fetch_all(exec)
        .await
        .map_err(map)?;
    let mut by_id: HashMap<Uuid, PgRow> = HashMap::with_capacity(rows.len());
    for row in rows {
        by_id.insert(row.try_get("pk_session").map_err(map)?, row);
    }
    Ok(rotations.iter().map(|r| by_id.remove(&r.id)).collect())
}

/// One bind array: `f` of every rotation.
fn column<'a, T>(rotations: &[&'a Rotation], f: impl Fn(&'a Rotation) -> T) -> Vec<T> {
    rotations.iter().map(|r| f(r)).collect()
}

/// A worker's answer to one rotation: its outcome, or "run it alone" (`None`).
type Reply = Option<Outcome>;

struct Job {
    /// [`ROTATE_SQL`] for the rotation's schema: only jobs with the same text share a statement.
    sql: Arc<str>,
    /// Shared with the caller, which runs it alone if it is handed back.
    rotation: Arc<Rotation>,
    reply: oneshot::Sender<Reply>,
}

/// The queue in front of the worker; shared by the stores of every schema on one pool.
#[derive(Default)]
pub(super) struct Batcher {
    queue: StdMutex<Option<mpsc::UnboundedSender<Job>>>,
    statements: AtomicU64,
    rotations: AtomicU64,
    handed_back: AtomicU64,
    busy_micros: AtomicU64,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Batcher {
    pub fn stats(&self) -> RotationBatchStats {
        RotationBatchStats {
            statements: self.statements.load(Ordering::Relaxed),
            rotations: self.rotations.load(Ordering::Relaxed),
            handed_back: self.handed_back.load(Ordering::Relaxed),
            busy_micros: self.busy_micros.load(Ordering::Relaxed),
        }
    }

    /// Queues `rotation` for a batch statement; `None` when it must run alone (its batch
    /// failed, or there is no Tokio runtime to run the worker on).
    pub async fn submit(self: &Arc<Self>, options: &PgConnectOptions, sql: Arc<str>, rotation: Arc<Rotation>) -> Reply {
        let (reply, answer) = oneshot::channel();
        let job = Job { sql, rotation, reply };
        {
            let mut queue = self.queue.lock().ok()?;
            if queue.as_ref().is_none_or(mpsc::UnboundedSender::is_closed) {
                *queue = self.spawn_worker(options);
            }
            queue.as_ref()?.send(job).ok()?;
        }
        answer.await.ok().flatten()
    }

    /// Starts the worker on the current runtime: one, so that a batch takes everything queued
    /// while the previous one ran (two workers measured slower: smaller batches, more PostgreSQL
    /// CPU per rotation). It ends when the queue's sender is dropped (with
    /// the last store sharing this batcher) or its runtime shuts down.
    fn spawn_worker(self: &Arc<Self>, options: &PgConnectOptions) -> Option<mpsc::UnboundedSender<Job>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let options = options.clone().options([("lock_timeout", LOCK_TIMEOUT)]);
        let stats = Arc::downgrade(self);
        runtime.spawn(async move {
            let (mut carried, mut worker, mut last) = (Vec::new(), None, 0);
            loop {
                linger(&mut rx, &mut carried, last).await;
                let Some(batch) = next_batch(&mut rx, &mut carried).await else { return };
                let size = batch.len();
                if batch.is_empty() {
                    last = 0;
                    continue;
                }
                let Some(stats) = stats.upgrade() else { return };
                // A batch handed back is run alone by its callers: none of them comes back soon.
                last = if stats.execute(&options, &mut worker, batch).await { size } else { 0 };
            }
        });
        Some(tx)
    }

    /// Runs one batch on the worker's connection (opened if need be, proved alive if it sat
    /// idle) and answers its jobs. On any failure the jobs are handed back, and the connection is
    /// dropped unless PostgreSQL itself refused the statement (a lock timeout, say): the next
    /// batch reconnects. True when the batch committed (its callers were answered).
    async fn execute(&self, options: &PgConnectOptions, conn: &mut Option<Worker>, batch: Vec<Job>) -> bool {
        let started = Instant::now();
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.rotations.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let rotations: Vec<&Rotation> = batch.iter().map(|j| &*j.rotation).collect();
        let ran = tokio::time::timeout(STATEMENT_TIMEOUT, async {
            let c = Worker::ready(conn, options).await?;
            run(&mut c.conn, &batch[0].sql, &rotations).await
        })
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("batched rotation timed out".into())));
        drop(rotations);
        let busy = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.busy_micros.fetch_add(busy, Ordering::Relaxed);
        match ran {
            Ok(outcomes) => {
                if let Some(c) = conn {
                    c.used = Instant::now();
                }
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Some(outcome));
                }
                true
            }
            Err(e) => {
                if !matches!(e, StoreError::Other(_)) {
                    *conn = None;
                }
                tracing::debug!(error = ?e, rotations = batch.len(), "batched refresh rotation failed; each runs alone");
                self.handed_back.fetch_add(batch.len() as u64, Ordering::Relaxed);
                for job in batch {
                    let _ = job.reply.send(None);
                }
                false
            }
        }
    }
}

/// The worker's own connection, and when it last answered.
struct Worker {
    conn: PgConnection,
    used: Instant,
}

impl Worker {
    /// The connection, opened if there is none, pinged if it sat idle for a second or more (the
    /// database may have restarted meanwhile), as the shared pool does.
    async fn ready<'a>(slot: &'a mut Option<Worker>, options: &PgConnectOptions) -> Result<&'a mut Worker, StoreError> {
        if let Some(w) = slot.as_mut().filter(|w| w.used.elapsed() >= super::PING_IF_IDLE_FOR)
            && w.conn.ping().await.is_err()
        {
            *slot = None;
        }
        match slot {
            Some(w) => Ok(w),
            None => {
                let conn = PgConnection::connect_with(options).await.map_err(map)?;
                Ok(slot.insert(Worker { conn, used: Instant::now() }))
            }
        }
    }
}

/// After a batch of `last` rotations, waits until as many jobs are queued again (counting those
/// carried over), at most [`LINGER`]: the clients just answered are about to send their next
/// refresh, and sharing a commit with them costs less than a commit of their own. Returns at
/// once after a batch of one or of [`LINGER_BELOW`] or more (`last` is 0 after a batch handed
/// back), when jobs were carried over from the last round (another schema's, a second presenter
/// of a session: they have waited a round already), when that many are queued already, or when
/// the queue closes.
async fn linger(rx: &mut mpsc::UnboundedReceiver<Job>, carried: &mut Vec<Job>, last: usize) {
    if !(2..LINGER_BELOW).contains(&last) || !carried.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + LINGER;
    while carried.len() + rx.len() < last {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(job)) => carried.push(job),
            Ok(None) | Err(_) => return,
        }
    }
}

/// The next batch: the jobs carried over from the last round, then whatever is queued (waiting
/// only when there is nothing at all), keeping jobs of the first job's schema, one per session,
/// at most [`MAX_BATCH`], in session order; the rest are carried to the next round. Jobs whose
/// caller has gone are dropped (the batch may then be empty). `None` when the queue closed.
async fn next_batch(rx: &mut mpsc::UnboundedReceiver<Job>, carried: &mut Vec<Job>) -> Option<Vec<Job>> {
    if carried.is_empty() {
        carried.push(rx.recv().await?);
    }
    while carried.len() < 2 * MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => carried.push(job),
            Err(_) => break,
        }
    }
    // A caller that gave up (its request cancelled or timed out) must not have its rotation
    // committed later: nobody would receive the new token, and the client's retry with the old
    // one, past the grace window, would look like theft.
    carried.retain(|j| !j.reply.is_closed());
    let Some(first) = carried.first() else { return Some(Vec::new()) };
    let sql = Arc::clone(&first.sql);
    let mut sessions = HashSet::new();
    let (mut batch, rest): (Vec<Job>, Vec<Job>) = std::mem::take(carried)
        .into_iter()
        .partition(|j| sessions.len() < MAX_BATCH && *j.sql == *sql && sessions.insert(j.rotation.id));
    *carried = rest;
    batch.sort_unstable_by_key(|j| j.rotation.id);
    Some(batch)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A queued job, and its caller's end (dropping it means the caller gave up).
    fn job(sql: &Arc<str>, id: u128) -> (Job, oneshot::Receiver<Reply>) {
        let now = Utc::now();
        let audit = AuditEvent {
            id: Uuid::nil(),
            at: now,
            kind: "token_refresh".into(),
            user_id: None,
            session_id: None,
            ip_address: None,
            user_agent: None,
            details: serde_json::json!({}),
        };
        let live = Liveness { idle_cutoff: None, created_cutoff: None };
        let rotation = Rotation { id: Uuid::from_u128(id), presented: 0, now, expires_at: now, live, audit };
        let (reply, caller) = oneshot::channel();
        (Job { sql: Arc::clone(sql), rotation: Arc::new(rotation), reply }, caller)
    }

    /// Queues jobs; returns the callers' ends, which must live as long as the callers wait.
    fn queue(tx: &mpsc::UnboundedSender<Job>, jobs: &[(&Arc<str>, u128)]) -> Vec<oneshot::Receiver<Reply>> {
        jobs.iter()
            .map(|(sql, id)| {
                let (job, caller) = job(sql, *id);
                tx.send(job).ok().unwrap();
                caller
            })
            .collect()
    }

    fn ids(batch: &[Job]) -> Vec<u128> {
        batch.iter().map(|j| j.rotation.id.as_u128()).collect()
    }

    #[tokio::test]
    async fn a_batch_is_one_schema_one_rotation_per_session_in_session_order() {
        let (a, b): (Arc<str>, Arc<str>) = ("schema a".into(), "schema b".into());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _callers = queue(&tx, &[(&a, 3), (&b, 1), (&a, 1), (&a, 3), (&a, 2)]);
        let mut carried = Vec::new();
        let first = next_batch(&mut rx, &mut carried).await.unwrap();
        assert_eq!(ids(&first), [1, 2, 3], "schema a, the second presenter of session 3 waits");
        assert_eq!(ids(&carried), [1, 3]);
        let second = next_batch(&mut rx, &mut carried).await.unwrap();
        assert!(second.iter().all(|j| *j.sql == *b) && ids(&second) == [1]);
        let third = next_batch(&mut rx, &mut carried).await.unwrap();
        assert_eq!(ids(&third), [3]);
        assert!(carried.is_empty());
        drop(tx);
        assert!(next_batch(&mut rx, &mut carried).await.is_none(), "the queue closed");
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_max_batch_rotations() {
        let a: Arc<str> = "schema a".into();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let jobs: Vec<_> = (0..(MAX_BATCH as u128 + 5)).map(|id| (&a, id)).collect();
        let _callers = queue(&tx, &jobs);
        let mut carried = Vec::new();
        assert_eq!(next_batch(&mut rx, &mut carried).await.unwrap().len(), MAX_BATCH);
        assert_eq!(next_batch(&mut rx, &mut carried).await.unwrap().len(), 5);
    }

    /// Time is paused: it moves only when every task waits on a timer, so the waits are exact.
    #[tokio::test(start_paused = true)]
    async fn after_a_small_batch_the_worker_waits_for_as_many_jobs_but_at_most_the_linger() {
        let a: Arc<str> = "schema a".into();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut carried = Vec::new();
        // Nobody comes back: the whole LINGER, then on.
        let started = tokio::time::Instant::now();
        linger(&mut rx, &mut carried, 4).await;
        let waited = started.elapsed();
        assert!(waited >= LINGER && waited <= 2 * LINGER, "{waited:?}");
        // Two are queued and three more come one by one: it returns as the fourth is in, at no time.
        let mut callers = queue(&tx, &[(&a, 1), (&a, 2)]);
        let late = tokio::spawn({
            let (tx, a) = (tx.clone(), Arc::clone(&a));
            async move {
                let mut callers = Vec::new();
                for id in 3..=5 {
                    tokio::task::yield_now().await;
                    callers.extend(queue(&tx, &[(&a, id)]));
                }
                callers
            }
        });
        let started = tokio::time::Instant::now();
        linger(&mut rx, &mut carried, 4).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(ids(&carried), [1, 2, 3, 4], "it waited for the third and fourth, not the fifth");
        callers.extend(late.await.unwrap());
        assert_eq!(rx.len(), 1, "the fifth waits in the queue");
        // Jobs carried over from the last round: no wait, even with fewer queued than `last`.
        let started = tokio::time::Instant::now();
        linger(&mut rx, &mut carried, 8).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(carried.len() + rx.len(), 5);
        drop(callers);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_client_a_large_batch_and_a_closed_queue_never_wait() {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let mut carried = Vec::new();
        let started = tokio::time::Instant::now();
        for last in [0, 1, LINGER_BELOW, MAX_BATCH] {
            linger(&mut rx, &mut carried, last).await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "a batch of one or of LINGER_BELOW and more: no wait");
        drop(tx);
        linger(&mut rx, &mut carried, 4).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "the queue closed: no wait");
        assert!(carried.is_empty());
    }

    #[tokio::test]
    async fn a_job_whose_caller_gave_up_is_never_run() {
        let a: Arc<str> = "schema a".into();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut callers = queue(&tx, &[(&a, 1), (&a, 2), (&a, 3)]);
        drop(callers.remove(1));
        let mut carried = Vec::new();
        assert_eq!(ids(&next_batch(&mut rx, &mut carried).await.unwrap()), [1, 3]);
        drop(callers);
        queue(&tx, &[(&a, 4)]);
        assert!(next_batch(&mut rx, &mut carried).await.unwrap().is_empty(), "nobody waits for 4");
    }
}
