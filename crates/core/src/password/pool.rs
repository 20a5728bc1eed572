//! The bounded hashing pool.
//!
//! Argon2 with the guide's parameters costs ~100 MB and ~0.1-0.2 CPU-seconds per call. Run on the
//! async runtime it would stall every other request (the Python original's `/auth/me` p50 reached
//! 1.2 s during a login flood). So hashing runs here: `workers` dedicated OS threads and a queue of
//! at most `queue` waiting jobs. When the queue is full the caller is told at once ([`PoolBusy`])
//! instead of waiting, so memory (workers × Argon2 memory) and latency both stay bounded.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A worker idle this long hands its kept Argon2 memory back to the system
/// ([`super::hasher::release_thread_memory`]): during a login flood a worker is never idle that
/// long, so the memory is reused from hash to hash; an idle service does not keep it.
const KEEP_MEMORY_WHILE_IDLE: Duration = Duration::from_millis(500);

/// Hashing threads run at a lower priority (nice ~10 on Linux) than the threads serving
/// requests: a login flood then slows logins, not every bearer request. CFS still gives them all
/// the CPU nobody else wants, so login throughput on its own is unchanged.
const HASH_THREAD_PRIORITY: u8 = 22;

fn lower_priority() {
    let priority = thread_priority::ThreadPriorityValue::try_from(HASH_THREAD_PRIORITY)
        .map(thread_priority::ThreadPriority::Crossplatform);
    if let Ok(p) = priority
        && let Err(e) = thread_priority::set_current_thread_priority(p)
    {
        tracing::debug!(error = ?e, "cannot lower the hashing thread's priority");
    }
}

/// The pool refused a job because its queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("hash pool queue is full")]
pub struct PoolBusy;

/// A fixed set of worker threads fed by a bounded queue.
#[derive(Debug, Clone)]
pub struct HashPool {
    handle: Arc<Handle>,
    stats: Arc<Stats>,
    workers: usize,
}

/// The queue, shared by the pool's clones and its workers.
struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when a job arrives or the pool is dropped.
    ready: Condvar,
}

struct QueueState {
    jobs: VecDeque<Job>,
    /// Jobs taken by a worker and not finished (counted down before the caller hears back, so
    /// a caller that saw its job finish finds the worker free).
    busy: usize,
    /// Every `HashPool` clone is gone: workers finish and exit.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Jobs never run under the lock, so a poisoned lock still holds a consistent queue.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next job, or `None` once the pool is closed. Frees the thread's kept Argon2 memory
    /// after [`KEEP_MEMORY_WHILE_IDLE`] without work.
    fn next(&self) -> Option<Job> {
        let mut state = self.lock();
        let mut holding_memory = true;
        loop {
            if let Some(job) = state.jobs.pop_front() {
                state.busy += 1;
                return Some(job);
            }
            if state.closed {
                return None;
            }
            if holding_memory {
                let (s, timeout) = self
                    .ready
                    .wait_timeout(state, KEEP_MEMORY_WHILE_IDLE)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                state = s;
                if timeout.timed_out() && state.jobs.is_empty() {
                    drop(state);
                    super::hasher::release_thread_memory();
                    holding_memory = false;
                    state = self.lock();
                }
            } else {
                state = self.ready.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
    }
}

/// Owned by the pool's clones only: when the last goes, the workers are told to exit.
struct Handle {
    queue: Arc<Queue>,
    /// Jobs that may wait while every worker is busy.
    capacity: usize,
    workers: usize,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_all();
    }
}

#[derive(Debug, Default)]
struct Stats {
    /// Jobs accepted and not yet started.
    queued: AtomicUsize,
    /// Jobs running right now.
    running: AtomicUsize,
    /// Sum of queue waits in microseconds, and how many jobs it covers (for metrics).
    wait_micros: AtomicUsize,
    started: AtomicUsize,
}

impl HashPool {
    /// Starts `workers` threads (at least one) with room for `queue` waiting jobs.
    pub fn new(workers: usize, queue: usize) -> std::io::Result<Self> {
        let workers = workers.max(1);
        let shared = Arc::new(Queue {
            state: Mutex::new(QueueState { jobs: VecDeque::new(), busy: 0, closed: false }),
            ready: Condvar::new(),
        });
        let stats = Arc::new(Stats::default());
        for i in 0..workers {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new().name(format!("hash-{i}")).spawn(move || {
                lower_priority();
                while let Some(job) = shared.next() {
                    job();
                }
            })?;
        }
        Ok(Self { handle: Arc::new(Handle { queue: shared, capacity: queue, workers }), stats, workers })
    }

    /// Runs `f` on a worker and awaits its result. Fails fast with [`PoolBusy`] when the queue is
    /// full. If the caller stops waiting (client gone), the job still runs but its result is dropped.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolBusy>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel();
        let stats = Arc::clone(&self.stats);
        let queue = Arc::clone(&self.handle.queue);
        let enqueued = Instant::now();
        let job: Job = Box::new(move || {
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            stats.running.fetch_add(1, Ordering::Relaxed);
            let waited = enqueued.elapsed();
            let micros = usize::try_from(waited.as_micros()).unwrap_or(usize::MAX);
            stats.wait_micros.fetch_add(micros, Ordering::Relaxed);
            stats.started.fetch_add(1, Ordering::Relaxed);
            metrics::histogram!("fraise_hash_wait_seconds").record(waited.as_secs_f64());
            let began = Instant::now();
            // A panic inside `f` must not kill the worker thread: catch it and drop the sender,
            // which the awaiting side sees as a closed channel.
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            metrics::histogram!("fraise_hash_duration_seconds").record(began.elapsed().as_secs_f64());
            stats.running.fetch_sub(1, Ordering::Relaxed);
            queue.lock().busy -= 1;
            if let Ok(value) = out {
                let _ = done_tx.send(value);
            }
        });
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        {
            let queue = &self.handle.queue;
            let mut state = queue.lock();
            // Room: one job per worker plus `capacity` waiting (what the bounded channel allowed).
            if state.jobs.len() + state.busy >= self.handle.capacity + self.handle.workers {
                drop(state);
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                metrics::counter!("fraise_hash_rejected_total").increment(1);
                return Err(PoolBusy);
            }
            state.jobs.push_back(job);
            drop(state);
            queue.ready.notify_one();
        }
        // A closed channel means the job panicked; report it as busy rather than hang.
        done_rx.await.map_err(|_| PoolBusy)
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.stats.queued.load(Ordering::Relaxed)
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.stats.running.load(Ordering::Relaxed)
    }

    /// Jobs that have started since the pool was made (a counter, for tests and metrics).
    pub fn started(&self) -> usize {
        self.stats.started.load(Ordering::Relaxed)
    }

    /// Mean time a job waited in the queue so far.
    pub fn mean_wait(&self) -> Duration {
        let n = self.stats.started.load(Ordering::Relaxed).max(1);
        let micros = self.stats.wait_micros.load(Ordering::Relaxed) / n;
        Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[tokio::test]
    async fn runs_jobs_and_returns_results() {
        let pool = HashPool::new(2, 4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
    }

    /// The niceness of the calling thread (Linux: field 19 of /proc/thread-self/stat).
    fn niceness() -> Option<i32> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        stat.rsplit(')').next()?.split_whitespace().nth(16)?.parse().ok()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_yield_to_request_threads() {
        let pool = HashPool::new(1, 4).unwrap_or_else(|e| panic!("{e}"));
        let mine = niceness();
        let theirs = pool.run(niceness).await.ok().flatten();
        assert!(matches!((mine, theirs), (Some(m), Some(t)) if t > m), "caller {mine:?}, hash thread {theirs:?}");
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let pool = HashPool::new(1, 1).unwrap_or_else(|e| panic!("{e}"));
        let gate = Arc::new(Barrier::new(2));
        let g = Arc::clone(&gate);
        // Occupies the only worker until the barrier opens.
        let running = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move || g.wait()).await.map(|_| ()) }
        });
        while pool.running() == 0 {
            tokio::task::yield_now().await;
        }
        // Fills the one queue slot.
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 1).await }
        });
        while pool.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.run(|| 2).await, Err(PoolBusy));
        gate.wait();
        assert!(running.await.is_ok_and(|r| r.is_ok()));
        assert!(queued.await.is_ok_and(|r| r == Ok(1)));
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_kill_the_worker() {
        let pool = HashPool::new(1, 2).unwrap_or_else(|e| panic!("{e}"));
        let r: Result<(), _> = pool.run(|| panic!("boom")).await;
        assert_eq!(r, Err(PoolBusy));
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }
}
