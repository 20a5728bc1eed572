//! A process-local cache of the bearer path's answer (a session and its user), kept correct
//! across nodes by PostgreSQL's LISTEN/NOTIFY.
//!
//! Every change that could make a cached answer too lenient (a revocation, a shortened expiry, any
//! change to the user row, a deleted session) is announced on [`CHANNEL`] by triggers (migration
//! 0006), whoever makes it: this node, another node, the CLI, an operator's SQL. Each node keeps one
//! connection LISTENing and drops what it is told about. Changes that can only make a cached answer
//! too strict (a refresh rotation, a touch of `last_active`) are not announced; the service
//! re-reads the database before it refuses anything on a cached answer.
//!
//! The rules that keep it correct:
//! - **Never serve while deaf.** An answer is served from the cache only while the listener is
//!   connected and has heard this node's own heartbeat ([`PING_EVERY`], sent on a connection of
//!   its own so a busy pool cannot silence it) sent less than [`DEAF_AFTER`] ago. Notifications
//!   reach a listener in commit order, so hearing a heartbeat proves every change committed
//!   before it was sent has been applied: a change committed more than `DEAF_AFTER` ago is never
//!   contradicted by a cached answer, even when the listener's connection dies silently. Normally
//!   the delay is the notification's latency (milliseconds). Anyone who can NOTIFY can send a
//!   heartbeat-shaped payload, so one only counts if it claims a send time this node really
//!   reached (no later than its latest heartbeat); a copy of a real one proves the same as the
//!   original, since it was committed after it.
//! - **Never insert what an invalidation overtook.** Every invalidation bumps an epoch under the
//!   lock; a reader notes the epoch before its database read and inserts only if it is unchanged
//!   (checked under the same lock). So a read that raced a change is not cached.
//! - **Invalidate locally after commit.** A write on this node drops its entries itself once it
//!   committed ([`SessionCache::after_write`], a guard that also fires if the request is cancelled
//!   after the commit), so this node never serves its own stale answer, without waiting for the
//!   notification.
//! - **Forget on reconnect.** Whatever was announced while the listener was away is unknown: the
//!   cache is emptied whenever the listener connects or disconnects, and after connecting it
//!   serves nothing until it has heard a heartbeat through the new connection (a pooler that
//!   swallows LISTEN, for instance, keeps it off).
//! - **Only sessions that can be served.** Revoked sessions and disabled users are not stored,
//!   nor users that take more than [`MAX_USER_BYTES`] in memory (a large `metadata`): the memory
//!   stays bounded by `capacity` entries of bounded size.
//! - Entries also expire after [`ENTRY_TTL`], and the cache empties itself when full.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fraise_core::model::{Session, User};
use fraise_core::store::SessionCacheStats;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use uuid::Uuid;

/// The notification channel (migration 0006 names it too).
pub(crate) const CHANNEL: &str = "fraise_auth_cache";
/// How often a node announces its own heartbeat on [`CHANNEL`].
const PING_EVERY: Duration = Duration::from_millis(500);
/// A node that has not heard its own heartbeat sent within this long serves nothing from the
/// cache: the bound on how stale a cached answer can be when the listener fails silently.
const DEAF_AFTER: Duration = Duration::from_secs(2);
/// A listener that has heard nothing of its own for this long is replaced.
const RECONNECT_AFTER: Duration = Duration::from_secs(5);
/// The longest any entry is served.
const ENTRY_TTL: Duration = Duration::from_secs(30);
/// Users estimated to take more than this in memory are not cached (see [`approx_bytes`]).
const MAX_USER_BYTES: usize = 4096;

struct Entry {
    schema: Box<str>,
    value: Arc<(Session, User)>,
    /// A later `last_active` this node wrote (a touch), applied over the cached session's.
    last_active: DateTime<Utc>,
    inserted: Instant,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<Uuid, Entry>,
    by_user: HashMap<Uuid, Vec<Uuid>>,
    /// The schemas whose tables carry migration 0006's triggers: only their sessions are cached
    /// (a schema not yet migrated would change without telling anyone).
    announcing: HashSet<Box<str>>,
}

impl Inner {
    fn clear(&mut self) {
        self.sessions.clear();
        self.by_user.clear();
    }

    fn remove_session(&mut self, id: Uuid) {
        if let Some(e) = self.sessions.remove(&id) {
            let user = e.value.1.id;
            if let Some(ids) = self.by_user.get_mut(&user) {
                ids.retain(|s| *s != id);
                if ids.is_empty() {
                    self.by_user.remove(&user);
                }
            }
        }
    }
}

/// The cache, shared by the stores of every schema on one pool (entries remember their schema).
pub struct SessionCache {
    inner: Mutex<Inner>,
    /// Bumped (under `inner`'s lock) by every invalidation.
    epoch: AtomicU64,
    /// Entries at most; 0 until [`SessionCache::start`] (the cache is then off).
    capacity: AtomicUsize,
    /// Whether the listener is connected (and LISTENing).
    connected: AtomicBool,
    /// When it last connected, in milliseconds since `base`, plus one.
    connected_at: AtomicU64,
    /// When this node's latest heartbeat that the listener heard since it connected was sent, in
    /// milliseconds since `base`, plus one; 0 when none was.
    heard: AtomicU64,
    /// When this node's latest heartbeat was sent (milliseconds since `base`): no genuine
    /// heartbeat claims a later time.
    last_sent: AtomicU64,
    /// Test hook: while set, the listener applies nothing (a stalled connection, as seen from
    /// here).
    hold: AtomicBool,
    base: Instant,
    /// Tells this node's heartbeats from other nodes'.
    node: Uuid,
    hits: AtomicU64,
    misses: AtomicU64,
    /// The listening connection's server process (`pg_stat_activity.pid`), 0 while there is none.
    listener_pid: AtomicI32,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Default for SessionCache {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            epoch: AtomicU64::new(0),
            capacity: AtomicUsize::new(0),
            connected: AtomicBool::new(false),
            connected_at: AtomicU64::new(0),
            heard: AtomicU64::new(0),
            last_sent: AtomicU64::new(0),
            hold: AtomicBool::new(false),
            base: Instant::now(),
            node: Uuid::new_v4(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            listener_pid: AtomicI32::new(0),
        }
    }
}

impl SessionCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves maps that are still consistent enough to clear.
        self.inner.lock().unwrap_or_else(|poisoned| {
            let mut inner = poisoned.into_inner();
            inner.clear();
            inner
        })
    }

    /// The lock, with the epoch bumped under it: the way in for every change that must bar the
    /// inserts of reads that began before it (see [`SessionCache::insert`]).
    fn barring(&self) -> MutexGuard<'_, Inner> {
        let inner = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        inner
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether answers may be served and stored now (see the module's rules).
    pub(crate) fn live(&self) -> bool {
        let heard = self.heard.load(Ordering::Acquire);
        heard != 0
            && self.connected.load(Ordering::Acquire)
            && self.capacity.load(Ordering::Relaxed) > 0
            && self.millis().saturating_sub(heard - 1) < DEAF_AFTER.as_millis() as u64
    }

    /// What a reader of `schema` notes before its database read, for [`SessionCache::insert`]:
    /// the epoch, or `None` when nothing may be cached now: the cache is not live, or the schema
    /// does not announce its changes (yet), whose rows must not be cached even if its triggers
    /// appear while the read runs.
    pub(crate) fn ticket(&self, schema: &str) -> Option<u64> {
        // Off or deaf: no lock on the bearer path (`insert` would refuse anyway).
        if !self.live() {
            return None;
        }
        let inner = self.lock();
        inner.announcing.contains(schema).then(|| self.epoch.load(Ordering::Acquire))
    }

    /// The cached answer for session `id` of `schema`, if one may be served.
    pub(crate) fn get(&self, schema: &str, id: Uuid) -> Option<(Session, User)> {
        if !self.live() {
            return None;
        }
        let hit = {
            let inner = self.lock();
            inner
                .sessions
                .get(&id)
                .filter(|e| {
                    &*e.schema == schema && e.inserted.elapsed() < ENTRY_TTL && inner.announcing.contains(schema)
                })
                .map(|e| (Arc::clone(&e.value), e.last_active))
        };
        let Some((value, last_active)) = hit else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        let (mut session, user) = (*value).clone();
        session.last_active = session.last_active.max(last_active);
        Some((session, user))
    }

    /// Stores an answer read from the database after [`SessionCache::ticket`] returned `epoch`,
    /// unless an invalidation came in between.
    pub(crate) fn insert(&self, schema: &str, epoch: u64, session: Session, user: User) {
        if !self.live() || session.revoked_at.is_some() || !user.is_active || approx_bytes(&user) > MAX_USER_BYTES {
            return;
        }
        let mut inner = self.lock();
        if self.epoch.load(Ordering::Acquire) != epoch || !inner.announcing.contains(schema) {
            return;
        }
        if inner.sessions.len() >= self.capacity.load(Ordering::Relaxed) {
            // Simpler than an LRU and as correct; a deployment that fills it raises the size.
            inner.clear();
        }
        let (id, user_id, last_active) = (session.id.0, user.id, session.last_active);
        inner.remove_session(id);
        inner.sessions.insert(
            id,
            Entry { schema: schema.into(), value: Arc::new((session, user)), last_active, inserted: Instant::now() },
        );
        inner.by_user.entry(user_id).or_default().push(id);
    }

    /// A guard that invalidates `target` when dropped: create it before a write, so the
    /// invalidation runs after the commit, or when the request is cancelled at any point.
    pub(crate) fn after_write(&self, target: Target) -> AfterWrite<'_> {
        AfterWrite { cache: self, target }
    }

    /// Drops session `id` and bars racing inserts.
    pub(crate) fn invalidate_session(&self, id: Uuid) {
        let mut inner = self.barring();
        inner.remove_session(id);
    }

    /// Drops every session of user `id` and bars racing inserts.
    pub(crate) fn invalidate_user(&self, id: Uuid) {
        let mut inner = self.barring();
        for s in inner.by_user.remove(&id).unwrap_or_default() {
            inner.sessions.remove(&s);
        }
    }

    /// Drops everything and bars racing inserts.
    pub(crate) fn flush(&self) {
        let mut inner = self.barring();
        inner.clear();
    }

    /// Drops every session of `schema` and bars racing inserts.
    fn flush_schema(&self, schema: &str) {
        let mut inner = self.barring();
        let gone: Vec<Uuid> = inner.sessions.iter().filter(|(_, e)| &*e.schema == schema).map(|(id, _)| *id).collect();
        for id in gone {
            inner.remove_session(id);
        }
    }

    /// Drops session `id` without barring inserts: for changes that only make a cached answer too
    /// strict (a rotation), where a racing insert of the older row is harmless.
    pub(crate) fn forget(&self, id: Uuid) {
        self.lock().remove_session(id);
    }

    /// Records that this node moved session `id`'s `last_active` to `at`.
    pub(crate) fn touched(&self, id: Uuid, at: DateTime<Utc>) {
        if let Some(e) = self.lock().sessions.get_mut(&id) {
            e.last_active = e.last_active.max(at);
        }
    }

    /// Applies one notification's payload.
    fn apply(&self, payload: &str) {
        let mut chars = payload.chars();
        let kind = chars.next();
        let rest = chars.as_str();
        match (kind, Uuid::parse_str(rest)) {
            (Some('s'), Ok(id)) => self.invalidate_session(id),
            (Some('u'), Ok(id)) => self.invalidate_user(id),
            (Some('p'), _) => self.heartbeat(rest),
            // '*' and a schema: that schema's tables were truncated or dropped.
            (Some('*'), _) if !rest.is_empty() => self.flush_schema(rest),
            // "*", and anything this version does not know: forgetting everything is always safe.
            _ => self.flush(),
        }
    }

    /// A heartbeat `p<node>:<sent millis>`; only this node's own count (their send time is on
    /// this node's clock).
    fn heartbeat(&self, rest: &str) {
        let Some((node, sent)) = rest.split_once(':') else { return };
        if Uuid::parse_str(node).ok() != Some(self.node) {
            return;
        }
        let Ok(sent) = sent.parse::<u64>() else { return };
        // A claim later than this node's latest heartbeat is forged; and a heartbeat buffered
        // before a disconnect must not revive the cache.
        if sent > self.last_sent.load(Ordering::Acquire) || !self.connected.load(Ordering::Acquire) {
            return;
        }
        self.heard.fetch_max(sent.saturating_add(1), Ordering::AcqRel);
    }

    fn connected(&self) {
        let mut inner = self.barring();
        inner.clear();
        // Nothing announced before LISTEN took effect can be in the (empty) cache, and every
        // insert from now on noted an epoch after this bump. Live once a heartbeat is heard.
        self.heard.store(0, Ordering::Release);
        self.connected_at.store(self.millis() + 1, Ordering::Release);
        self.connected.store(true, Ordering::Release);
    }

    fn disconnected(&self) {
        let mut inner = self.barring();
        self.listener_pid.store(0, Ordering::Release);
        self.connected.store(false, Ordering::Release);
        self.heard.store(0, Ordering::Release);
        inner.clear();
    }

    /// Replaces the set of schemas that announce their changes.
    fn set_announcing(&self, schemas: Vec<String>) {
        let mut inner = self.lock();
        let now: HashSet<Box<str>> = schemas.into_iter().map(String::into_boxed_str).collect();
        // A schema that stopped announcing (its triggers dropped) loses its entries. One that
        // starts needs nothing: a read that began before it did holds no ticket.
        if inner.announcing.iter().any(|s| !now.contains(s)) {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            inner.clear();
        }
        inner.announcing = now;
    }

    fn heartbeat_payload(&self) -> String {
        let now = self.millis();
        self.last_sent.fetch_max(now, Ordering::AcqRel);
        format!("p{}:{now}", self.node)
    }

    /// Test hook: `true` makes the listener stop applying notifications (and heartbeats) until
    /// `false`, as if its connection had stalled.
    pub(crate) fn hold(&self, hold: bool) {
        self.hold.store(hold, Ordering::Release);
    }

    /// The listening connection's server process id, if connected.
    pub(crate) fn listener_pid(&self) -> Option<i32> {
        Some(self.listener_pid.load(Ordering::Acquire)).filter(|p| *p != 0)
    }

    pub(crate) fn stats(&self) -> SessionCacheStats {
        SessionCacheStats {
            live: self.live(),
            entries: self.lock().sessions.len(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Turns the cache on with room for `capacity` entries: spawns the listener and the heartbeat,
    /// each on a connection of its own to `options`. Both stop once the cache is dropped. A
    /// second call does nothing.
    pub(crate) fn start(self: &Arc<Self>, capacity: usize, options: PgConnectOptions) {
        if capacity == 0 || self.capacity.compare_exchange(0, capacity, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        tokio::spawn(heartbeat_loop(Arc::downgrade(self), one_connection(&options)));
        tokio::spawn(listen_loop(Arc::downgrade(self), options));
    }
}

/// A lazy pool of one connection.
fn one_connection(options: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .min_connections(0)
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options.clone())
}

/// What an [`AfterWrite`] guard invalidates.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    Session(Uuid),
    User(Uuid),
    All,
}

/// Invalidates its target when dropped (see [`SessionCache::after_write`]).
pub(crate) struct AfterWrite<'a> {
    cache: &'a SessionCache,
    target: Target,
}

impl Drop for AfterWrite<'_> {
    fn drop(&mut self) {
        match self.target {
            Target::Session(id) => self.cache.invalidate_session(id),
            Target::User(id) => self.cache.invalidate_user(id),
            Target::All => self.cache.flush(),
        }
    }
}

/// A rough count of the heap bytes `user` takes (strings, arrays, and `metadata`'s tree).
fn approx_bytes(user: &User) -> usize {
    fn json(v: &serde_json::Value) -> usize {
        const NODE: usize = std::mem::size_of::<serde_json::Value>();
        NODE + match v {
            serde_json::Value::String(s) => s.len(),
            serde_json::Value::Array(a) => a.iter().map(json).sum(),
            serde_json::Value::Object(o) => o.iter().map(|(k, v)| k.len() + NODE + json(v)).sum(),
            _ => 0,
        }
    }
    let strings = |v: &[String]| v.iter().map(|s| s.len() + 24).sum::<usize>();
    user.email.len()
        + user.password_hash.len()
        + user.name.as_ref().map_or(0, String::len)
        + strings(&user.roles)
        + strings(&user.permissions)
        + json(&user.metadata)
}

/// The schemas whose `tb_user` and `tb_session` carry all five of migration 0006's triggers,
/// enabled ALWAYS (so they fire in replica mode too; a trigger disabled by hand, or by a restore
/// with `--disable-triggers`, takes its schema out of the cache).
const ANNOUNCING_SCHEMAS: &str = "SELECT n.nspname::text FROM pg_trigger t \
     JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE t.tgname IN ('tr_tb_session_cache_update', 'tr_tb_session_cache_delete', 'tr_tb_session_cache_truncate', \
                        'tr_tb_user_cache_change', 'tr_tb_user_cache_truncate') \
       AND NOT t.tgisinternal AND t.tgenabled = 'A' \
     GROUP BY n.nspname HAVING count(*) = 5";

/// How often (in heartbeats) the set of announcing schemas is read again: a tenant migrated, a
/// schema dropped or a trigger disabled by hand is noticed within [`DEAF_AFTER`].
const SCHEMAS_EVERY: u32 = 4;

async fn heartbeat_loop(cache: Weak<SessionCache>, pool: PgPool) {
    let mut tick = tokio::time::interval(PING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u32.. {
        tick.tick().await;
        if n % SCHEMAS_EVERY == 0 {
            let schemas = sqlx::query_scalar::<_, String>(ANNOUNCING_SCHEMAS).fetch_all(&pool).await;
            match (schemas, cache.upgrade()) {
                (Ok(schemas), Some(c)) => c.set_announcing(schemas),
                (Err(e), Some(_)) => tracing::debug!(error = %e, "session cache cannot list the schemas it may serve"),
                (_, None) => return,
            }
        }
        let Some(payload) = cache.upgrade().map(|c| c.heartbeat_payload()) else { return };
        // Failure is not an error here: a node that cannot reach its database stops hearing
        // itself and serves nothing from the cache, which is the point.
        let sent = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(&payload).execute(&pool).await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "session cache heartbeat not sent");
        }
    }
}

async fn listen_loop(cache: Weak<SessionCache>, options: PgConnectOptions) {
    let mut backoff = Duration::from_millis(100);
    while cache.strong_count() > 0 {
        // A pool per attempt: dropping a listener hands its connection back to its pool after an
        // UNLISTEN, which on a stalled connection waits for TCP to give up (minutes); the next
        // attempt must not queue behind it.
        let failed = listen_once(&cache, &one_connection(&options), &mut backoff).await;
        if let Some(c) = cache.upgrade() {
            c.disconnected();
            tracing::warn!(error = %failed, retry_in_ms = backoff.as_millis() as u64,
                "session cache listener lost; bearer checks read the database meanwhile");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One listening connection's life, until it fails, goes deaf or the cache is dropped.
async fn listen_once(cache: &Weak<SessionCache>, pool: &PgPool, backoff: &mut Duration) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => return e,
    };
    // A lost connection is reported, not silently replaced: what was announced meanwhile is lost.
    listener.eager_reconnect(false);
    if let Err(e) = listener.listen(CHANNEL).await {
        return e;
    }
    let pid = match sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&mut listener).await {
        Ok(pid) => pid,
        Err(e) => return e,
    };
    let Some(c) = cache.upgrade() else { return sqlx::Error::PoolClosed };
    c.connected();
    c.listener_pid.store(pid, Ordering::Release);
    // A first heartbeat through this very connection: the cache is live once it comes back.
    let first = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(c.heartbeat_payload());
    drop(c);
    if let Err(e) = first.execute(&mut listener).await {
        return e;
    }
    *backoff = Duration::from_millis(100);
    tracing::info!("session cache listening for changes");
    // One timer for the connection's life: notifications do not reset it.
    let deaf = deaf(cache);
    tokio::pin!(deaf);
    loop {
        // `try_recv` is only ever cancelled when the listener is dropped right after.
        let got = tokio::select! {
            got = listener.try_recv() => got,
            () = &mut deaf => return sqlx::Error::Protocol("heard nothing of its own heartbeat".into()),
        };
        let Some(c) = cache.upgrade() else { return sqlx::Error::PoolClosed };
        while c.hold.load(Ordering::Acquire) {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
                () = &mut deaf => return sqlx::Error::Protocol("heard nothing of its own heartbeat".into()),
            }
        }
        match got {
            Ok(Some(n)) => c.apply(n.payload()),
            Ok(None) => return sqlx::Error::Protocol("connection lost".into()),
            Err(e) => return e,
        }
    }
}

/// Completes once the listener has not heard its own heartbeat for [`RECONNECT_AFTER`] (a
/// connection that died without a word), or the cache is gone.
async fn deaf(cache: &Weak<SessionCache>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(c) = cache.upgrade() else { return };
        let heard = c.heard.load(Ordering::Acquire).max(c.connected_at.load(Ordering::Acquire));
        if c.millis().saturating_sub(heard.saturating_sub(1)) > RECONNECT_AFTER.as_millis() as u64 {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use fraise_core::mfa::MfaMethods;
    use fraise_core::model::SessionId;

    fn pair(user: Uuid) -> (Session, User) {
        let now = Utc::now();
        let session = Session {
            id: SessionId(Uuid::new_v4()),
            user_id: user,
            token_family: Uuid::new_v4(),
            refresh_counter: 0,
            rotated_at: now,
            created_at: now,
            last_active: now,
            expires_at: now + chrono::Duration::days(1),
            revoked_at: None,
            revoked_reason: None,
            user_agent: None,
            ip_address: None,
        };
        let user = User {
            id: user,
            email: "a@example.com".into(),
            password_hash: String::new(),
            name: None,
            roles: vec![],
            permissions: vec![],
            metadata: serde_json::json!({}),
            is_active: true,
            email_verified: false,
            mfa: MfaMethods(0),
            created_at: now,
            updated_at: now,
        };
        (session, user)
    }

    /// A reader's whole round: ticket, (database read), insert.
    fn put(c: &SessionCache, schema: &str, s: Session, u: User) {
        if let Some(t) = c.ticket(schema) {
            c.insert(schema, t, s, u);
        }
    }

    /// What the listener does on connecting: LISTEN, then hear its first heartbeat.
    fn connect(c: &SessionCache) {
        c.connected();
        c.apply(&c.heartbeat_payload());
    }

    fn live_cache() -> SessionCache {
        let c = SessionCache::default();
        c.capacity.store(4, Ordering::Relaxed);
        c.set_announcing(vec!["a".into(), "b".into()]);
        connect(&c);
        c
    }

    #[test]
    fn serves_nothing_until_the_listener_is_connected() {
        let c = SessionCache::default();
        c.capacity.store(4, Ordering::Relaxed);
        c.set_announcing(vec!["a".into()]);
        let (s, u) = pair(Uuid::new_v4());
        let id = s.id.0;
        put(&c, "a", s.clone(), u.clone());
        assert!(c.get("a", id).is_none());
        c.connected();
        put(&c, "a", s.clone(), u.clone());
        assert!(c.get("a", id).is_none(), "connected, but no heartbeat heard through it yet");
        c.apply(&c.heartbeat_payload());
        put(&c, "a", s, u);
        assert!(c.get("a", id).is_some());
        c.disconnected();
        assert!(c.get("a", id).is_none());
        assert_eq!(c.stats().entries, 0);
    }

    #[test]
    fn an_invalidation_during_the_read_bars_the_insert() {
        let c = live_cache();
        let (s, u) = pair(Uuid::new_v4());
        let id = s.id.0;
        for invalidate in [
            &(|c: &SessionCache| c.invalidate_session(Uuid::new_v4())) as &dyn Fn(&SessionCache),
            &|c: &SessionCache| c.invalidate_user(Uuid::new_v4()),
            &|c: &SessionCache| c.flush(),
            &|c: &SessionCache| c.apply("*"),
        ] {
            let before = c.ticket("a").unwrap();
            invalidate(&c);
            c.insert("a", before, s.clone(), u.clone());
            assert!(c.get("a", id).is_none());
        }
        put(&c, "a", s, u);
        assert!(c.get("a", id).is_some());
    }

    #[test]
    fn notifications_drop_sessions_and_users_and_entries_are_per_schema() {
        let c = live_cache();
        let user = Uuid::new_v4();
        let (s1, u1) = pair(user);
        let (s2, u2) = pair(user);
        let (id1, id2) = (s1.id.0, s2.id.0);
        put(&c, "a", s1, u1);
        put(&c, "a", s2, u2);
        assert!(c.get("b", id1).is_none(), "another schema's session id is not this one's");
        c.set_announcing(vec!["a".into(), "b".into(), "c".into()]);
        assert!(c.get("a", id1).is_some(), "a schema joining keeps what is cached");
        c.apply(&format!("s{id1}"));
        assert!(c.get("a", id1).is_none());
        assert!(c.get("a", id2).is_some());
        c.apply(&format!("u{user}"));
        assert!(c.get("a", id2).is_none());
        assert_eq!(c.stats().entries, 0);
    }

    #[test]
    fn only_schemas_that_announce_their_changes_are_cached() {
        let c = live_cache();
        let (s, u) = pair(Uuid::new_v4());
        let id = s.id.0;
        put(&c, "unmigrated", s.clone(), u.clone());
        assert!(c.get("unmigrated", id).is_none());
        put(&c, "a", s, u);
        assert!(c.get("a", id).is_some());
        c.set_announcing(vec!["b".into()]);
        assert!(c.get("a", id).is_none());
        assert_eq!(c.stats().entries, 0, "a schema leaving the set empties the cache");
    }

    #[test]
    fn sessions_that_cannot_be_served_and_large_users_are_not_stored() {
        let c = live_cache();
        let (mut s, u) = pair(Uuid::new_v4());
        s.revoked_at = Some(Utc::now());
        put(&c, "a", s.clone(), u.clone());
        assert_eq!(c.stats().entries, 0, "revoked");
        s.revoked_at = None;
        let mut off = u.clone();
        off.is_active = false;
        put(&c, "a", s.clone(), off);
        assert_eq!(c.stats().entries, 0, "disabled user");
        let mut big = u.clone();
        big.metadata = serde_json::json!({ "a": vec![0; 200] });
        put(&c, "a", s.clone(), big);
        assert_eq!(c.stats().entries, 0, "a 200-element array takes more than {MAX_USER_BYTES} bytes parsed");
        put(&c, "a", s, u);
        assert_eq!(c.stats().entries, 1);
    }

    #[test]
    fn the_write_guard_invalidates_when_dropped_however_the_write_ends() {
        let c = live_cache();
        let (s, u) = pair(Uuid::new_v4());
        let (id, user) = (s.id.0, u.id);
        for target in [Target::Session(id), Target::User(user), Target::All] {
            put(&c, "a", s.clone(), u.clone());
            let before = c.ticket("a").unwrap();
            {
                let _guard = c.after_write(target);
                assert!(c.get("a", id).is_some(), "nothing happens before the write ends");
            }
            assert!(c.get("a", id).is_none(), "{target:?}");
            assert_ne!(c.ticket("a"), Some(before));
        }
    }

    #[test]
    fn a_schema_flush_spares_other_schemas_and_a_late_schema_holds_no_ticket() {
        let c = live_cache();
        let (sa, ua) = pair(Uuid::new_v4());
        let (sb, ub) = pair(Uuid::new_v4());
        let (a, b) = (sa.id.0, sb.id.0);
        put(&c, "a", sa, ua);
        put(&c, "b", sb, ub);
        c.apply("*a");
        assert!(c.get("a", a).is_none());
        assert!(c.get("b", b).is_some(), "another schema's entries stay");
        // A read of "late" began before its triggers were seen; they appear during the read.
        assert_eq!(c.ticket("late"), None);
        c.set_announcing(vec!["a".into(), "b".into(), "late".into()]);
        assert!(c.ticket("late").is_some());
        assert!(c.get("b", b).is_some(), "a schema joining empties nothing");
    }

    #[test]
    fn a_full_cache_empties_and_touches_move_last_active_forward() {
        let c = live_cache();
        let ids: Vec<Uuid> = (0..5)
            .map(|_| {
                let (s, u) = pair(Uuid::new_v4());
                let id = s.id.0;
                put(&c, "a", s, u);
                id
            })
            .collect();
        assert_eq!(c.stats().entries, 1, "the fifth insert found it full and emptied it");
        let later = Utc::now() + chrono::Duration::hours(1);
        c.touched(ids[4], later);
        assert_eq!(c.get("a", ids[4]).unwrap().0.last_active, later);
        c.forget(ids[4]);
        assert!(c.get("a", ids[4]).is_none());
    }

    #[test]
    fn only_this_nodes_recent_heartbeat_keeps_it_live() {
        let c = live_cache();
        // Pretend the last heartbeat heard was sent long ago.
        c.heard.store(1, Ordering::Release);
        let base_ms = c.millis();
        if base_ms < DEAF_AFTER.as_millis() as u64 {
            std::thread::sleep(DEAF_AFTER - Duration::from_millis(base_ms) + Duration::from_millis(10));
        }
        assert!(!c.live());
        c.apply(&format!("p{}:{}", Uuid::new_v4(), c.millis()));
        assert!(!c.live(), "another node's heartbeat proves nothing about this listener");
        // Anyone may NOTIFY: a heartbeat claiming a time this node has not sent at is forged.
        for forged in [c.millis() + 60_000, u64::MAX - 1, u64::MAX] {
            c.apply(&format!("p{}:{forged}", c.node));
            assert!(!c.live(), "forged heartbeat at {forged} accepted");
        }
        c.apply(&c.heartbeat_payload());
        assert!(c.live());
        c.disconnected();
        c.apply(&c.heartbeat_payload());
        assert!(!c.live(), "a heartbeat cannot revive a disconnected listener");
    }
}
