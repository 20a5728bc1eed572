//! Property test: the refresh-token state machine against a model small enough to read at once.
//!
//! Random sequences of refresh (with the current token or one a few links back), logout, admin
//! revocation, `/auth/me`, and clock jumps chosen around the edges that matter (the 10 s reuse
//! grace window, the 15 min access TTL, the refresh TTL of one day) run against a real app (through
//! the router, on a real database, with the injected `ManualClock`) and against [`Model`]; after
//! every step the status, the error code and, for a successful refresh, the exact token returned
//! must agree. Three sessions: two of one user (so theft revoking the user's sessions shows) and
//! one of another user (which theft must leave alone).
//!
//! `PROPTEST_CASES` / `MODEL_CASES_PG` set the number of cases (default 64 on SQLite, 16 on
//! PostgreSQL, where each case is a schema of its own).
use chrono::{DateTime, Duration, Utc};
use fraise_core::model::{RevokeReason, SessionId};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, TestApp};

const GRACE: i64 = 10;
const ACCESS_TTL: i64 = 15 * 60;
const REFRESH_TTL: i64 = 86_400;

#[derive(Debug, Clone)]
enum Op {
    /// Refresh session `s` with the token `back` links behind the newest one the client holds.
    Refresh {
        s: usize,
        back: usize,
    },
    Logout {
        s: usize,
        back: usize,
    },
    /// An administrator (or another session of the user) revokes session `s`.
    Revoke {
        s: usize,
    },
    Me {
        s: usize,
    },
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let jumps = prop::sample::select(vec![
        1,
        5,
        GRACE - 1,
        GRACE,
        GRACE + 1,
        60,
        ACCESS_TTL - 1,
        ACCESS_TTL,
        ACCESS_TTL + 1,
        REFRESH_TTL - 1,
        REFRESH_TTL,
        REFRESH_TTL + 1,
    ]);
    prop_oneof![
        6 => (0..3usize, prop_oneof![4 => Just(0usize), 2 => Just(1usize), 1 => 2..4usize])
            .prop_map(|(s, back)| Op::Refresh { s, back }),
        1 => (0..3usize, 0..3usize).prop_map(|(s, back)| Op::Logout { s, back }),
        1 => (0..3usize).prop_map(|s| Op::Revoke { s }),
        2 => (0..3usize).prop_map(|s| Op::Me { s }),
        4 => jumps.prop_map(Op::Advance),
    ]
}

/// What the model knows of one session.
#[derive(Debug, Clone)]
struct ModelSession {
    user: usize,
    counter: usize,
    rotated_at: i64,
    expires_at: i64,
    revoked: bool,
    access_exp: i64,
}

#[derive(Debug)]
struct Model {
    now: i64,
    sessions: Vec<ModelSession>,
}

/// An expected answer: status and error code ("" for success); for a refresh, the counter of the
/// refresh token it must return.
type Expected = (u16, &'static str, Option<usize>);

impl Model {
    fn link(&self, s: usize, k: usize) -> &'static str {
        let m = &self.sessions[s];
        if k == m.counter {
            "current"
        } else if k + 1 == m.counter && self.now - m.rotated_at <= GRACE {
            "grace"
        } else {
            "replayed"
        }
    }

    fn theft(&mut self, s: usize) {
        let user = self.sessions[s].user;
        self.sessions.iter_mut().filter(|m| m.user == user).for_each(|m| m.revoked = true);
    }

    fn refresh(&mut self, s: usize, k: usize) -> Expected {
        let now = self.now;
        if self.sessions[s].revoked || self.sessions[s].expires_at <= now {
            return (401, "INVALID_TOKEN", None);
        }
        match self.link(s, k) {
            "current" => {
                let m = &mut self.sessions[s];
                m.counter += 1;
                m.rotated_at = now;
                m.expires_at = now + REFRESH_TTL;
                m.access_exp = now + ACCESS_TTL;
                (200, "", Some(m.counter))
            }
            "grace" => {
                let m = &mut self.sessions[s];
                m.access_exp = now + ACCESS_TTL;
                (200, "", Some(m.counter))
            }
            _ => {
                self.theft(s);
                (403, "TOKEN_THEFT_DETECTED", None)
            }
        }
    }

    fn logout(&mut self, s: usize, k: usize) -> Expected {
        match (self.link(s, k), self.sessions[s].revoked) {
            (_, true) => (400, "INVALID_TOKEN", None),
            ("current" | "grace", false) => {
                self.sessions[s].revoked = true;
                (200, "", None)
            }
            _ => {
                self.theft(s);
                (403, "TOKEN_THEFT_DETECTED", None)
            }
        }
    }

    fn me(&self, s: usize) -> Expected {
        let m = &self.sessions[s];
        if m.access_exp <= self.now {
            (401, "TOKEN_EXPIRED", None)
        } else if m.revoked || m.expires_at <= self.now {
            (401, "INVALID_TOKEN", None)
        } else {
            (200, "", None)
        }
    }
}

/// The client side: every refresh token each session has been given (index = counter), its
/// newest access token, and its id.
struct Client {
    tokens: Vec<String>,
    access: String,
    id: SessionId,
}

fn session_of(access: &str) -> SessionId {
    use base64::Engine as _;
    let payload = access.split('.').nth(1).unwrap_or_default();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap_or_default())
            .unwrap_or_default();
    claims["session_id"].as_str().unwrap_or_default().parse().unwrap_or_else(|()| panic!("session id in {claims}"))
}

async fn check(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let app = TestApp::spawn_with(backend, &[("REFRESH_TOKEN_TTL_DAYS", "1")]).await;
    let t0: DateTime<Utc> = app.clock_now();
    let mut clients = Vec::new();
    for (email, register) in [("a@example.com", true), ("a@example.com", false), ("b@example.com", true)] {
        let r = if register { app.signed_up(email).await } else { app.login(email, PASSWORD).await };
        let access = r.str("access_token");
        clients.push(Client { tokens: vec![r.str("refresh_token")], id: session_of(&access), access });
    }
    let fresh = |user| ModelSession {
        user,
        counter: 0,
        rotated_at: 0,
        expires_at: REFRESH_TTL,
        revoked: false,
        access_exp: ACCESS_TTL,
    };
    let mut model = Model { now: 0, sessions: vec![fresh(0), fresh(0), fresh(1)] };

    for (step, op) in ops.iter().enumerate() {
        let (expected, got, token) = match *op {
            Op::Advance(secs) => {
                model.now += secs;
                app.clock.set(t0 + Duration::seconds(model.now));
                continue;
            }
            Op::Refresh { s, back } => {
                let k = clients[s].tokens.len().saturating_sub(1 + back);
                let expected = model.refresh(s, k);
                let r = app.refresh(&clients[s].tokens[k]).await;
                let mut token = None;
                if r.status.is_success() {
                    let rt = r.str("refresh_token");
                    token = Some(match clients[s].tokens.iter().position(|t| *t == rt) {
                        Some(i) => i,
                        None => {
                            clients[s].tokens.push(rt);
                            clients[s].tokens.len() - 1
                        }
                    });
                    clients[s].access = r.str("access_token");
                }
                (expected, r, token)
            }
            Op::Logout { s, back } => {
                let k = clients[s].tokens.len().saturating_sub(1 + back);
                let expected = model.logout(s, k);
                (expected, app.logout(json!({"refresh_token": clients[s].tokens[k]}), None).await, None)
            }
            Op::Revoke { s } => {
                let revoked =
                    app.auth.store().revoke_session(clients[s].id, RevokeReason::Revoked, app.clock_now()).await;
                prop_assert_eq!(revoked.ok(), Some(!model.sessions[s].revoked), "step {}: {:?}", step, op);
                model.sessions[s].revoked = true;
                continue;
            }
            Op::Me { s } => (model.me(s), app.me(&clients[s].access).await, None),
        };
        prop_assert!(!got.status.is_server_error(), "step {}: {:?}: 5xx {}", step, op, got.text);
        prop_assert_eq!(
            (got.status.as_u16(), got.code(), token),
            expected,
            "step {}: {:?}; model {:?}; body {}",
            step,
            op,
            model,
            got.text
        );
    }
    Ok(())
}

fn run(backend: Backend, var: &str, default_cases: u32) {
    let cases = std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default_cases);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let started = std::time::Instant::now();
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| rt.block_on(check(backend, ops)));
    if let Err(e) = result {
        panic!("{e}");
    }
    // Read by scripts/reliability.sh for its summary table.
    println!("proptest-model {backend:?}: {cases} cases passed in {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn the_refresh_state_machine_agrees_with_its_model_on_sqlite() {
    run(Backend::Sqlite, "PROPTEST_CASES", 64);
}

#[test]
fn the_refresh_state_machine_agrees_with_its_model_on_postgres() {
    run(Backend::Postgres, "MODEL_CASES_PG", 16);
}
