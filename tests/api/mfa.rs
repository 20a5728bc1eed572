//! Second factors over HTTP: TOTP enrollment, the two-step login, recovery codes, the mfa_token's
//! limits, replay, removal, REQUIRE_MFA and support's reset. Codes are computed here from the
//! secret the server hands out, with RFC 4226/6238 written out (not the server's crate).
use axum::http::Method;
use chrono::Duration;
use fraise_auth::boot::Db;
use hmac::{KeyInit as _, Mac as _};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, Res, TestApp, cli};

/// RFC 4648 base32 (no padding), decoded by hand.
fn base32_decode(s: &str) -> Vec<u8> {
    let mut bits: u64 = 0;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {s}"),
        };
        bits = (bits << 5) | u64::from(v);
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// RFC 6238 with SHA-1, 6 digits, 30 s: the code for Unix time `t`.
fn totp(secret_b32: &str, t: i64) -> String {
    let key = base32_decode(secret_b32);
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&((t / 30) as u64).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[off]) & 0x7f) << 24
        | u32::from(h[off + 1]) << 16
        | u32::from(h[off + 2]) << 8
        | u32::from(h[off + 3]);
    format!("{:06}", bin % 1_000_000)
}

struct Enrolled {
    access: String,
    secret: String,
    recovery: Vec<String>,
}

async fn post_bearer(app: &TestApp, path: &str, body: Value, bearer: &str) -> Res {
    app.call(Method::POST, path, Some(&body), Some(bearer)).await
}

/// Signs up `email` and turns TOTP on; the clock moves to the next step afterwards, so the
/// confirming code's step is spent and the next one is fresh.
async fn enrolled(app: &TestApp, email: &str) -> Enrolled {
    let access = app.signed_up(email).await.str("access_token");
    enroll(app, access).await
}

/// Turns TOTP on for the holder of `access`.
async fn enroll(app: &TestApp, access: String) -> Enrolled {
    let setup = post_bearer(app, "/auth/mfa/totp/setup", json!({}), &access).await;
    setup.assert(200, "");
    let secret = setup.str("secret");
    let uri = setup.str("otpauth_uri");
    assert!(uri.starts_with("otpauth://totp/fraise-auth:"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(setup.str("qr_svg").starts_with("<?xml") || setup.str("qr_svg").contains("<svg"));
    let code = totp(&secret, app.clock_now().timestamp());
    let confirm = post_bearer(app, "/auth/mfa/totp/confirm", json!({"code": code}), &access).await;
    confirm.assert(200, "");
    let recovery: Vec<String> =
        confirm.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(recovery.len(), 10);
    app.clock.advance(Duration::seconds(30));
    Enrolled { access, secret, recovery }
}

async fn mfa_token(app: &TestApp, email: &str) -> String {
    let r = app.login(email, PASSWORD).await;
    r.assert(200, "");
    assert_eq!(r.body["mfa_required"], json!(true), "{}", r.text);
    assert!(r.body.get("access_token").is_none() && r.body.get("refresh_token").is_none(), "{}", r.text);
    r.str("mfa_token")
}

async fn verify(app: &TestApp, token: &str, code: &str) -> Res {
    app.post("/auth/mfa/verify", json!({"mfa_token": token, "code": code})).await
}

async fn totp_login_takes_a_second_step_and_shows_in_me(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let before = app.me(&app.signed_up("plain@example.com").await.str("access_token")).await;
    assert_eq!((before.body["mfa_enabled"].clone(), before.body["mfa_methods"].clone()), (json!(false), json!([])));
    let e = enrolled(&app, "two@example.com").await;
    let me = app.me(&e.access).await;
    assert_eq!((me.body["mfa_enabled"].clone(), me.body["mfa_methods"].clone()), (json!(true), json!(["totp"])));

    let r = app.login("two@example.com", PASSWORD).await;
    assert_eq!(r.body["methods"], json!(["totp", "recovery_code"]));
    let token = r.str("mfa_token");
    let ok = verify(&app, &token, &totp(&e.secret, app.clock_now().timestamp())).await;
    ok.assert(200, "");
    assert_eq!(ok.body["user"]["email"], json!("two@example.com"));
    app.me(&ok.str("access_token")).await.assert(200, "");
    app.refresh(&ok.str("refresh_token")).await.assert(200, "");
    // The token is single use.
    verify(&app, &token, &totp(&e.secret, app.clock_now().timestamp() + 30)).await.assert(401, "MFA_TOKEN_EXPIRED");
    // A user without a second factor still logs in in one step.
    assert!(app.login("plain@example.com", PASSWORD).await.body.get("access_token").is_some());
    // The wrong password is still one answer, whatever the second factor.
    app.login("two@example.com", "Wrong123!x").await.assert(401, "INVALID_CREDENTIALS");
}

async fn a_code_is_accepted_once_and_within_one_step_of_skew(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let e = enrolled(&app, "skew@example.com").await;
    let now = app.clock_now().timestamp();
    // The confirming code (previous step) is spent: replay refused although inside the skew.
    let t = mfa_token(&app, "skew@example.com").await;
    verify(&app, &t, &totp(&e.secret, now - 30)).await.assert(401, "INVALID_MFA_CODE");
    // Two steps ahead is outside the window.
    verify(&app, &t, &totp(&e.secret, now + 60)).await.assert(401, "INVALID_MFA_CODE");
    // One step ahead (a fast phone) is inside.
    verify(&app, &t, &totp(&e.secret, now + 30)).await.assert(200, "");
    // ...and then the current step, being older than the one used, is a replay too.
    let t2 = mfa_token(&app, "skew@example.com").await;
    verify(&app, &t2, &totp(&e.secret, now)).await.assert(401, "INVALID_MFA_CODE");
    // Later, a code one step old is still accepted (slow typing).
    app.clock.advance(Duration::seconds(90));
    let now = app.clock_now().timestamp();
    let t3 = mfa_token(&app, "skew@example.com").await;
    let used = totp(&e.secret, now - 30);
    verify(&app, &t3, &used).await.assert(200, "");
    // The same code again, on a fresh login: refused.
    let t4 = mfa_token(&app, "skew@example.com").await;
    verify(&app, &t4, &used).await.assert(401, "INVALID_MFA_CODE");
}

async fn recovery_codes_work_once_each_in_any_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let e = enrolled(&app, "rec@example.com").await;
    let before = crate::metrics::scrape(&app).await;
    let t = mfa_token(&app, "rec@example.com").await;
    let typed = e.recovery[0].to_uppercase().replace('-', " ");
    verify(&app, &t, &typed).await.assert(200, "");
    let t = mfa_token(&app, "rec@example.com").await;
    verify(&app, &t, &e.recovery[0]).await.assert(401, "INVALID_MFA_CODE");
    verify(&app, &t, &e.recovery[1]).await.assert(200, "");
    assert_eq!(crate::storage::count_audit(&app, "mfa_recovery_code_used").await, 2);
    let after = crate::metrics::scrape(&app).await;
    let delta = |series: &str| crate::metrics::value(&after, series) - crate::metrics::value(&before, series);
    assert!(delta(r#"fraise_mfa_total{method="recovery_code",outcome="success"}"#) >= 2.0, "{after}");
    assert!(delta(r#"fraise_mfa_total{method="recovery_code",outcome="invalid"}"#) >= 1.0, "{after}");
    assert!(delta(r#"fraise_logins_total{outcome="mfa_required"}"#) >= 2.0, "{after}");
    // Another user's recovery code is no good here.
    let other = enrolled(&app, "rec2@example.com").await;
    let t = mfa_token(&app, "rec@example.com").await;
    verify(&app, &t, &other.recovery[0]).await.assert(401, "INVALID_MFA_CODE");
}

async fn the_mfa_token_allows_five_tries_and_five_minutes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let e = enrolled(&app, "tries@example.com").await;
    let t = mfa_token(&app, "tries@example.com").await;
    for _ in 0..5 {
        verify(&app, &t, "000000").await.assert(401, "INVALID_MFA_CODE");
    }
    // The right code, too late: the token is spent.
    verify(&app, &t, &totp(&e.secret, app.clock_now().timestamp())).await.assert(401, "MFA_TOKEN_EXPIRED");
    assert_eq!(crate::storage::count_audit(&app, "mfa_failure").await, 5);
    // Wrong codes counted toward lockout like wrong passwords: this client is locked now.
    app.login("tries@example.com", PASSWORD).await.assert(423, "ACCOUNT_LOCKED");
    app.clock.advance(Duration::minutes(20));

    let t = mfa_token(&app, "tries@example.com").await;
    app.clock.advance(Duration::seconds(301));
    verify(&app, &t, &totp(&e.secret, app.clock_now().timestamp())).await.assert(401, "MFA_TOKEN_EXPIRED");
    // Shapes that cannot be tokens never reach the database.
    for bad in ["", "mfa_", "mfa_short", &"x".repeat(10_000)] {
        verify(&app, bad, "123456").await.assert(401, "MFA_TOKEN_EXPIRED");
    }
}

async fn concurrent_guesses_get_five_tries_in_all_and_one_code_one_login(backend: Backend) {
    let app =
        TestApp::spawn_with(backend, &[("LOCKOUT_CLIENT_THRESHOLD", "1000"), ("LOCKOUT_ACCOUNT_THRESHOLD", "2000")])
            .await;
    let e = enrolled(&app, "race@example.com").await;
    let t = mfa_token(&app, "race@example.com").await;
    let answers = futures::future::join_all((0..12).map(|_| verify(&app, &t, "000000"))).await;
    let wrong = answers.iter().filter(|r| r.code() == "INVALID_MFA_CODE").count();
    let spent = answers.iter().filter(|r| r.code() == "MFA_TOKEN_EXPIRED").count();
    assert_eq!((wrong, spent), (5, 7), "{:?}", answers.iter().map(|r| r.code().to_owned()).collect::<Vec<_>>());

    // Two logins racing with the same code: one session.
    let (a, b) = (mfa_token(&app, "race@example.com").await, mfa_token(&app, "race@example.com").await);
    let code = totp(&e.secret, app.clock_now().timestamp());
    let (ra, rb) = tokio::join!(verify(&app, &a, &code), verify(&app, &b, &code));
    let mut codes = [ra.status.as_u16(), rb.status.as_u16()];
    codes.sort_unstable();
    assert_eq!(codes, [200, 401], "{} / {}", ra.text, rb.text);
    // One token, the right code, twice at once: one session.
    app.clock.advance(Duration::seconds(30));
    let c = mfa_token(&app, "race@example.com").await;
    let code = totp(&e.secret, app.clock_now().timestamp());
    let (ra, rb) = tokio::join!(verify(&app, &c, &code), verify(&app, &c, &code));
    let ok = [&ra, &rb].iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1, "{} / {}", ra.text, rb.text);
}

async fn removing_totp_needs_proof_and_ends_the_second_step(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let e = enrolled(&app, "rm@example.com").await;
    let del = |body: Value| {
        let access = e.access.clone();
        let app = &app;
        async move { app.call(Method::DELETE, "/auth/mfa/totp", Some(&body), Some(&access)).await }
    };
    del(json!({})).await.assert(400, "VALIDATION_ERROR");
    del(json!({"code": "123456"})).await.assert(401, "INVALID_MFA_CODE");
    del(json!({"password": "Wrong123!x"})).await.assert(401, "INVALID_CREDENTIALS");
    // Setting up again while on is refused.
    post_bearer(&app, "/auth/mfa/totp/setup", json!({}), &e.access).await.assert(400, "VALIDATION_ERROR");
    del(json!({"password": PASSWORD})).await.assert(200, "");
    assert_eq!(app.me(&e.access).await.body["mfa_enabled"], json!(false));
    del(json!({"password": PASSWORD})).await.assert(400, "VALIDATION_ERROR");
    assert!(app.login("rm@example.com", PASSWORD).await.body.get("access_token").is_some());
    // The recovery codes died with it.
    let again = enroll(&app, e.access.clone()).await;
    let t = mfa_token(&app, "rm@example.com").await;
    verify(&app, &t, &e.recovery[2]).await.assert(401, "INVALID_MFA_CODE");
    // With a current code.
    let code = totp(&again.secret, app.clock_now().timestamp());
    app.call(Method::DELETE, "/auth/mfa/totp", Some(&json!({"code": code})), Some(&again.access)).await.assert(200, "");
    for kind in ["mfa_totp_enabled", "mfa_totp_disabled"] {
        assert_eq!(crate::storage::count_audit(&app, kind).await, 2, "{kind}");
    }
}

async fn confirm_needs_a_pending_setup_and_the_right_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let access = app.signed_up("conf@example.com").await.str("access_token");
    post_bearer(&app, "/auth/mfa/totp/confirm", json!({"code": "123456"}), &access)
        .await
        .assert(400, "VALIDATION_ERROR");
    let first = post_bearer(&app, "/auth/mfa/totp/setup", json!({}), &access).await.str("secret");
    let second = post_bearer(&app, "/auth/mfa/totp/setup", json!({}), &access).await.str("secret");
    assert_ne!(first, second);
    let now = app.clock_now().timestamp();
    // The replaced secret's code is wrong now.
    post_bearer(&app, "/auth/mfa/totp/confirm", json!({"code": totp(&first, now)}), &access)
        .await
        .assert(401, "INVALID_MFA_CODE");
    for bad in [json!({}), json!({"code": 123456}), json!({"code": null})] {
        post_bearer(&app, "/auth/mfa/totp/confirm", bad, &access).await.assert(400, "VALIDATION_ERROR");
    }
    post_bearer(&app, "/auth/mfa/totp/confirm", json!({"code": "x".repeat(100_000)}), &access)
        .await
        .assert(413, "PAYLOAD_TOO_LARGE");
    // Still off until confirmed: login in one step.
    assert!(app.login("conf@example.com", PASSWORD).await.body.get("access_token").is_some());
    post_bearer(&app, "/auth/mfa/totp/confirm", json!({"code": totp(&second, now)}), &access).await.assert(200, "");
    // No bearer, no enrollment.
    app.call(Method::POST, "/auth/mfa/totp/setup", None, None).await.assert(401, "UNAUTHORIZED");
}

/// What the database holds of a TOTP secret: sealed bytes, not the secret.
async fn sealed_secret(app: &TestApp) -> Vec<u8> {
    match &app.db {
        Db::Sqlite(s) => sqlx::query_scalar("SELECT secret_sealed FROM tb_mfa_totp").fetch_one(s.pool()).await.unwrap(),
        Db::Postgres(s) => sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT secret_sealed FROM \"{}\".tb_mfa_totp",
            s.schema().as_str()
        )))
        .fetch_one(s.pool())
        .await
        .unwrap(),
    }
}

async fn the_secret_is_sealed_at_rest_and_recovery_codes_are_hashed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let e = enrolled(&app, "dump@example.com").await;
    let raw = base32_decode(&e.secret);
    let sealed = sealed_secret(&app).await;
    assert!(sealed.len() > raw.len());
    assert!(!sealed.windows(raw.len()).any(|w| w == raw.as_slice()), "the secret is in the clear");
    assert!(!sealed.windows(e.secret.len()).any(|w| w == e.secret.as_bytes()), "the base32 secret is in the clear");
    let stored: Vec<Vec<u8>> = match &app.db {
        Db::Sqlite(s) => {
            sqlx::query_scalar("SELECT code_hash FROM tb_mfa_recovery_code").fetch_all(s.pool()).await.unwrap()
        }
        Db::Postgres(s) => sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT code_hash FROM \"{}\".tb_mfa_recovery_code",
            s.schema().as_str()
        )))
        .fetch_all(s.pool())
        .await
        .unwrap(),
    };
    assert_eq!(stored.len(), 10);
    for code in &e.recovery {
        let canon = code.replace('-', "");
        assert!(!stored.iter().any(|h| h.windows(canon.len()).any(|w| w == canon.as_bytes())));
    }
}

async fn require_mfa_allows_only_enrollment_until_there_is_a_factor(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("REQUIRE_MFA", "true")]).await;
    let r = app.signed_up("must@example.com").await;
    let access = r.str("access_token");
    app.me(&access).await.assert(403, "MFA_REQUIRED");
    app.call(Method::GET, "/auth/sessions", None, Some(&access)).await.assert(403, "MFA_REQUIRED");
    let setup = post_bearer(&app, "/auth/mfa/totp/setup", json!({}), &access).await;
    setup.assert(200, "");
    let code = totp(&setup.str("secret"), app.clock_now().timestamp());
    post_bearer(&app, "/auth/mfa/totp/confirm", json!({"code": code}), &access).await.assert(200, "");
    app.me(&access).await.assert(200, "");
    // Logout works for the unenrolled too.
    let other = app.signed_up("leave@example.com").await;
    app.logout(json!({}), Some(&other.str("access_token"))).await.assert(200, "");
}

async fn support_resets_mfa_from_the_command_line(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let e = enrolled(&app, "lost@example.com").await;
    let pending = mfa_token(&app, "lost@example.com").await;
    let (ok, out) = cli(&app, &["user", "reset-mfa", "lost@example.com"]);
    assert!(ok, "{out}");
    assert!(out.contains("had: totp"), "{out}");
    assert!(app.login("lost@example.com", PASSWORD).await.body.get("access_token").is_some());
    // A login pending before the reset cannot be finished with the old factor.
    verify(&app, &pending, &e.recovery[0]).await.assert(401, "MFA_TOKEN_EXPIRED");
    assert_eq!(crate::storage::count_audit(&app, "mfa_reset").await, 1);
    let (ok, out) = cli(&app, &["user", "reset-mfa", "nobody@example.com"]);
    assert!(!ok && out.contains("no user"), "{out}");
}

both_backends!(
    totp_login_takes_a_second_step_and_shows_in_me,
    a_code_is_accepted_once_and_within_one_step_of_skew,
    recovery_codes_work_once_each_in_any_case,
    the_mfa_token_allows_five_tries_and_five_minutes,
    concurrent_guesses_get_five_tries_in_all_and_one_code_one_login,
    removing_totp_needs_proof_and_ends_the_second_step,
    confirm_needs_a_pending_setup_and_the_right_code,
    the_secret_is_sealed_at_rest_and_recovery_codes_are_hashed,
    require_mfa_allows_only_enrollment_until_there_is_a_factor,
    support_resets_mfa_from_the_command_line,
    wrong_codes_from_many_clients_lock_the_second_step_for_everyone,
    a_secret_sealed_under_a_former_key_opens_and_is_sealed_again,
);

async fn wrong_codes_from_many_clients_lock_the_second_step_for_everyone(backend: Backend) {
    // Per-client lockout off the table: every request here comes from one address, so raise it,
    // and show that the per-user lock alone stops the guessing.
    let app =
        TestApp::spawn_with(backend, &[("LOCKOUT_CLIENT_THRESHOLD", "1000"), ("LOCKOUT_ACCOUNT_THRESHOLD", "2000")])
            .await;
    let e = enrolled(&app, "many@example.com").await;
    for _ in 0..2 {
        let t = mfa_token(&app, "many@example.com").await;
        for _ in 0..5 {
            verify(&app, &t, "000000").await.assert(401, "INVALID_MFA_CODE");
        }
    }
    assert_eq!(crate::storage::count_audit(&app, "mfa_locked").await, 1);
    // Locked for everyone: the right code is refused without being looked at.
    let t = mfa_token(&app, "many@example.com").await;
    let r = verify(&app, &t, &totp(&e.secret, app.clock_now().timestamp())).await;
    r.assert(423, "ACCOUNT_LOCKED");
    assert_eq!(r.header("retry-after"), Some("900"));
    // Fifteen minutes later one more wrong code locks for thirty.
    app.clock.advance(Duration::seconds(901));
    let t = mfa_token(&app, "many@example.com").await;
    verify(&app, &t, "000000").await.assert(401, "INVALID_MFA_CODE");
    let r = verify(&app, &t, &e.recovery[0]).await;
    r.assert(423, "ACCOUNT_LOCKED");
    assert_eq!(r.header("retry-after"), Some("1800"));
    // A password change (here a reset) ends the lock and voids the pending token.
    let pending = mfa_token(&app, "many@example.com").await;
    app.post("/auth/forgot-password", json!({"email": "many@example.com"})).await.assert(200, "");
    let reset = app.outbox_tokens("reset-password", 1).await.pop().unwrap();
    app.post("/auth/reset-password", json!({"token": reset, "new_password": "NewPass456!x"})).await.assert(200, "");
    verify(&app, &pending, &e.recovery[0]).await.assert(401, "MFA_TOKEN_EXPIRED");
    let r = app.login("many@example.com", "NewPass456!x").await;
    assert_eq!(r.body["mfa_required"], json!(true), "a reset does not turn the second factor off: {}", r.text);
    verify(&app, &r.str("mfa_token"), &e.recovery[0]).await.assert(200, "");
}

async fn a_secret_sealed_under_a_former_key_opens_and_is_sealed_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let e = enrolled(&app, "rotate@example.com").await;
    let before = sealed_secret(&app).await;
    // The same database, served with a new JWT secret and the old one listed as former.
    let rotated = fraise_auth::config::Config::from_sources(&fraise_auth::config::Sources::from_pairs(&[(
        "JWT_PREVIOUS_SECRET_KEYS",
        crate::helpers::SECRET,
    )]))
    .unwrap();
    let mut cfg = app.config.clone();
    cfg.jwt_previous_secrets = rotated.jwt_previous_secrets;
    let clock: std::sync::Arc<dyn fraise_core::Clock> = std::sync::Arc::new(app.clock.clone());
    let new_secret = "another-secret-0123456789-another-secret-0123456789";
    let auth = fraise_auth::boot::service(&cfg, app.db.store(), new_secret.as_bytes(), clock).unwrap();
    let out = auth.login("rotate@example.com", PASSWORD, &Default::default()).await.unwrap();
    let fraise_core::service::LoginOutcome::MfaRequired(m) = out else { panic!("no second step") };
    auth.mfa_verify(&m.mfa_token, &totp(&e.secret, app.clock_now().timestamp()), &Default::default()).await.unwrap();
    let after = sealed_secret(&app).await;
    assert_ne!(before, after, "sealed again under the current key");
    // Without the former key the old server's seal is now useless, and the new one opens.
    app.clock.advance(Duration::seconds(30));
    let fresh = fraise_auth::boot::service(
        &app.config,
        app.db.store(),
        new_secret.as_bytes(),
        std::sync::Arc::new(app.clock.clone()),
    )
    .unwrap();
    let out = fresh.login("rotate@example.com", PASSWORD, &Default::default()).await.unwrap();
    let fraise_core::service::LoginOutcome::MfaRequired(m) = out else { panic!("no second step") };
    fresh.mfa_verify(&m.mfa_token, &totp(&e.secret, app.clock_now().timestamp()), &Default::default()).await.unwrap();
}
