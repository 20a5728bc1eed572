//! Passkeys: real WebAuthn ceremonies against a software authenticator
//! (`webauthn-authenticator-rs`'s `SoftPasskey`: P-256 keys, CBOR attestation, signed assertions),
//! on both backends.
//!
//! `SoftPasskey` makes no resident keys and returns no user handle; for the passwordless tests the
//! "browser" side below fills in what a discoverable authenticator would: the allow list of the
//! credential it holds and the user handle it stored. Neither is signed, so the server's checks are
//! the same as with a real discoverable passkey.
use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::Duration;
use serde_json::{Value, json};
use sqlx::Connection as _;
use uuid::Uuid;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use crate::both_backends;
use crate::helpers::{Backend, Res, TestApp, pg_url};

const ORIGIN: &str = "http://localhost:8000";

fn passkeys_on(passwordless: bool) -> Vec<(&'static str, &'static str)> {
    vec![
        ("WEBAUTHN_RP_ID", "localhost"),
        ("WEBAUTHN_ORIGIN", ORIGIN),
        ("WEBAUTHN_RP_NAME", "fraise test"),
        ("WEBAUTHN_PASSWORDLESS", if passwordless { "true" } else { "false" }),
    ]
}

/// A browser with one software authenticator.
struct Browser {
    authenticator: WebauthnAuthenticator<SoftPasskey>,
    /// Credential ids this authenticator made (base64url), for discoverable sign-in.
    held: Vec<String>,
}

impl Browser {
    fn new() -> Self {
        // `true`: the soft key claims user verification (as a PIN or a fingerprint would).
        Self { authenticator: WebauthnAuthenticator::new(SoftPasskey::new(true)), held: Vec::new() }
    }

    fn origin() -> Url {
        Url::parse(ORIGIN).unwrap()
    }

    /// `navigator.credentials.create(options)`, as JSON.
    fn create(&mut self, options: &Value) -> Value {
        let mut options = options.clone();
        // SoftPasskey refuses resident-key requests it cannot honour; it behaves as a
        // discoverable one through `held` and `user_handle` below.
        if let Some(sel) = options["publicKey"].get_mut("authenticatorSelection") {
            sel["requireResidentKey"] = json!(false);
            sel["residentKey"] = json!("discouraged");
        }
        let ccr: CreationChallengeResponse = serde_json::from_value(options).unwrap();
        let cred = self.authenticator.do_registration(Self::origin(), ccr).unwrap();
        let cred = serde_json::to_value(&cred).unwrap();
        self.held.push(cred["id"].as_str().unwrap().to_owned());
        cred
    }

    /// `navigator.credentials.get(options)`, as JSON. With an empty allow list (passwordless)
    /// the authenticator picks its newest credential and answers with `user_handle`.
    fn get(&mut self, options: &Value, user_handle: Option<Uuid>) -> Value {
        let mut options = options.clone();
        let allow = &mut options["publicKey"]["allowCredentials"];
        if allow.as_array().is_none_or(Vec::is_empty) {
            let id = self.held.last().cloned().unwrap_or_else(|| B64.encode([7u8; 32]));
            *allow = json!([{"type": "public-key", "id": id}]);
        }
        let rcr: RequestChallengeResponse = serde_json::from_value(options).unwrap();
        let assertion = self.authenticator.do_authentication(Self::origin(), rcr).unwrap();
        let mut assertion = serde_json::to_value(&assertion).unwrap();
        if let Some(user) = user_handle {
            assertion["response"]["userHandle"] = json!(B64.encode(user.as_bytes()));
        }
        assertion
    }
}

async fn post(app: &TestApp, path: &str, body: Value, bearer: Option<&str>) -> Res {
    app.call(Method::POST, path, Some(&body), bearer).await
}

/// Registers a passkey for the bearer's user through both routes; returns the 201 body.
async fn register(app: &TestApp, browser: &mut Browser, bearer: &str, name: Option<&str>) -> Res {
    let start = post(app, "/auth/webauthn/register/start", json!({}), Some(bearer)).await;
    start.assert(200, "");
    let credential = browser.create(&start.body["options"]);
    let mut body = json!({"ceremony_id": start.str("ceremony_id"), "credential": credential});
    if let Some(name) = name {
        body["name"] = json!(name);
    }
    post(app, "/auth/webauthn/register/finish", body, Some(bearer)).await
}

async fn list(app: &TestApp, bearer: &str) -> Vec<Value> {
    let r = app.call(Method::GET, "/auth/webauthn/credentials", None, Some(bearer)).await;
    r.assert(200, "");
    r.body["credentials"].as_array().cloned().unwrap()
}

/// Passwordless start and the browser's answer, not yet sent.
async fn passwordless_assertion(app: &TestApp, browser: &mut Browser, user: Uuid) -> (String, Value) {
    let start = post(app, "/auth/webauthn/login/start", json!({}), None).await;
    start.assert(200, "");
    let assertion = browser.get(&start.body["options"], Some(user));
    (start.str("ceremony_id"), assertion)
}

async fn finish_passwordless(app: &TestApp, ceremony_id: &str, assertion: &Value) -> Res {
    post(app, "/auth/webauthn/login/finish", json!({"ceremony_id": ceremony_id, "credential": assertion}), None).await
}

/// `tb_user.mfa_methods` of `user`, read straight from the database.
async fn mfa_bits(app: &TestApp, user: Uuid) -> i64 {
    match &app.config.database {
        fraise_auth::config::Database::Sqlite(path) => {
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            sqlx::query_scalar("SELECT mfa_methods FROM tb_user WHERE pk_user = ?1")
                .bind(user.to_string())
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
        fraise_auth::config::Database::Postgres { schema, .. } => {
            let mut c = sqlx::PgConnection::connect(&pg_url()).await.unwrap();
            let sql = format!("SELECT mfa_methods FROM \"{schema}\".tb_user WHERE pk_user = $1");
            let v: i32 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(user).fetch_one(&mut c).await.unwrap();
            i64::from(v)
        }
    }
}

async fn passkeys_are_registered_listed_and_removed(backend: Backend) {
    let app = TestApp::spawn_with(backend, &passkeys_on(false)).await;
    let at = app.signed_up("keys@example.com").await.str("access_token");
    let user = app.user_id("keys@example.com").await;
    let mut browser = Browser::new();
    assert_eq!(mfa_bits(&app, user).await & 2, 0);

    let first = register(&app, &mut browser, &at, Some("  Laptop ")).await;
    first.assert(201, "");
    assert_eq!(first.body["name"], "Laptop");
    assert!(first.body["last_used_at"].is_null());
    assert_eq!(mfa_bits(&app, user).await & 2, 2, "a passkey sets the passkey bit");
    app.clock.advance(Duration::seconds(1));
    // The second registration excludes the first passkey, and gets the default name.
    let start = post(&app, "/auth/webauthn/register/start", json!({}), Some(&at)).await;
    let excluded = start.body["options"]["publicKey"]["excludeCredentials"].as_array().cloned().unwrap();
    assert_eq!(excluded.len(), 1);
    assert_eq!(excluded[0]["id"], json!(browser.held[0]));
    let credential = browser.create(&start.body["options"]);
    let second = post(
        &app,
        "/auth/webauthn/register/finish",
        json!({"ceremony_id": start.str("ceremony_id"), "credential": credential}),
        Some(&at),
    )
    .await;
    second.assert(201, "");
    assert_eq!(second.body["name"], "Passkey");

    let listed = list(&app, &at).await;
    let names: Vec<_> = listed.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Laptop", "Passkey"]);
    assert!(listed.iter().all(|c| c.get("passkey").is_none() && c.get("credential_id").is_none()), "no key material");

    let delete = |id: String| {
        let app = &app;
        let at = at.clone();
        async move { app.call(Method::DELETE, &format!("/auth/webauthn/credentials/{id}"), None, Some(&at)).await }
    };
    delete(first.str("id")).await.assert(200, "");
    assert_eq!(mfa_bits(&app, user).await & 2, 2, "one passkey left");
    delete(second.str("id")).await.assert(200, "");
    assert_eq!(mfa_bits(&app, user).await & 2, 0, "removing the last passkey clears the bit");
    assert!(list(&app, &at).await.is_empty());
    delete(second.str("id")).await.assert(404, "CREDENTIAL_NOT_FOUND");
    delete("not-a-uuid".into()).await.assert(404, "CREDENTIAL_NOT_FOUND");
}

async fn a_registration_ceremony_is_single_use_bound_to_its_user_and_expires(backend: Backend) {
    let app = TestApp::spawn_with(backend, &passkeys_on(false)).await;
    let signed_up = app.signed_up("alice@example.com").await;
    let alice = signed_up.str("access_token");
    let bob = app.signed_up("bob@example.com").await.str("access_token");
    let mut browser = Browser::new();

    let start = post(&app, "/auth/webauthn/register/start", json!({}), Some(&alice)).await;
    let credential = browser.create(&start.body["options"]);
    let body = json!({"ceremony_id": start.str("ceremony_id"), "credential": credential});
    // Bob cannot finish Alice's ceremony (and spends it trying).
    post(&app, "/auth/webauthn/register/finish", body.clone(), Some(&bob)).await.assert(400, "VALIDATION_ERROR");
    let r = post(&app, "/auth/webauthn/register/finish", body, Some(&alice)).await;
    r.assert(400, "VALIDATION_ERROR");
    assert_eq!(r.body["detail"]["field"], "ceremony_id");

    let start = post(&app, "/auth/webauthn/register/start", json!({}), Some(&alice)).await;
    let credential = browser.create(&start.body["options"]);
    let body = json!({"ceremony_id": start.str("ceremony_id"), "credential": credential});
    post(&app, "/auth/webauthn/register/finish", body.clone(), Some(&alice)).await.assert(201, "");
    // Replayed: the ceremony is gone.
    let r = post(&app, "/auth/webauthn/register/finish", body, Some(&alice)).await;
    r.assert(400, "VALIDATION_ERROR");
    assert_eq!(r.body["detail"]["field"], "ceremony_id");
    assert_eq!(list(&app, &alice).await.len(), 1);

    // Five minutes to finish.
    let start = post(&app, "/auth/webauthn/register/start", json!({}), Some(&alice)).await;
    let credential = browser.create(&start.body["options"]);
    app.clock.advance(Duration::seconds(301));
    let body = json!({"ceremony_id": start.str("ceremony_id"), "credential": credential});
    // The access token has expired too by now: refresh it (a password login would now ask for the
    // passkey as a second factor).
    let alice = app.refresh(&signed_up.str("refresh_token")).await.str("access_token");
    post(&app, "/auth/webauthn/register/finish", body, Some(&alice)).await.assert(400, "VALIDATION_ERROR");
    assert_eq!(list(&app, &alice).await.len(), 1);
}

async fn passwordless_sign_in_with_a_passkey(backend: Backend) {
    let app = TestApp::spawn_with(backend, &passkeys_on(true)).await;
    let reg = app.signed_up("pl@example.com").await;
    let user = app.user_id("pl@example.com").await;
    let mut browser = Browser::new();
    let start = post(&app, "/auth/webauthn/register/start", json!({}), Some(&reg.str("access_token"))).await;
    let sel = &start.body["options"]["publicKey"]["authenticatorSelection"];
    assert_eq!(sel["residentKey"], "required", "passwordless needs discoverable passkeys: {sel}");
    assert_eq!(sel["userVerification"], "required");
    let credential = browser.create(&start.body["options"]);
    post(
        &app,
        "/auth/webauthn/register/finish",
        json!({"ceremony_id": start.str("ceremony_id"), "credential": credential}),
        Some(&reg.str("access_token")),
    )
    .await
    .assert(201, "");
    app.logout(json!({"refresh_token": reg.str("refresh_token")}), None).await.assert(200, "");

    let start = post(&app, "/auth/webauthn/login/start", json!({}), None).await;
    start.assert(200, "");
    let public_key = &start.body["options"]["publicKey"];
    assert!(public_key["allowCredentials"].as_array().is_none_or(Vec::is_empty), "discoverable: {public_key}");
    assert_eq!(public_key["userVerification"], "required");
    assert!(start.body["options"].get("mediation").is_none(), "the client picks conditional UI itself");
    let assertion = browser.get(&start.body["options"], Some(user));
    app.clock.advance(Duration::seconds(5));
    let r = finish_passwordless(&app, &start.str("ceremony_id"), &assertion).await;
    r.assert(200, "");
    assert_eq!(r.body["user"]["email"], "pl@example.com");
    assert_eq!(r.body["token_type"], "bearer");
    app.me(&r.str("access_token")).await.assert(200, "");
    let listed = list(&app, &r.str("access_token")).await;
    assert_eq!(listed[0]["last_used_at"], "2026-09-21T14:13:25.000Z");

    // The same answer again: the ceremony is spent.
    finish_passwordless(&app, &start.str("ceremony_id"), &assertion).await.assert(401, "INVALID_MFA_CODE");
    // An empty body also works as the start (no JSON at all).
    let r = app.post_raw("/auth/webauthn/login/start", None, "").await;
    r.assert(200, "");
}

async fn wrong_or_foreign_passkeys_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, &passkeys_on(true)).await;
    let alice = app.signed_up("a@example.com").await.str("access_token");
    let bob = app.signed_up("b@example.com").await.str("access_token");
    let alice_id = app.user_id("a@example.com").await;
    let bob_id = app.user_id("b@example.com").await;
    let mut alice_key = Browser::new();
    let alice_cred = register(&app, &mut alice_key, &alice, None).await;
    alice_cred.assert(201, "");

    // A passkey nobody registered.
    let mut stranger = Browser::new();
    let _ = stranger.create(&post(&app, "/auth/webauthn/register/start", json!({}), Some(&bob)).await.body["options"]);
    let (id, assertion) = passwordless_assertion(&app, &mut stranger, bob_id).await;
    finish_passwordless(&app, &id, &assertion).await.assert(401, "INVALID_MFA_CODE");

    // Alice's passkey claiming to be Bob's.
    let (id, assertion) = passwordless_assertion(&app, &mut alice_key, bob_id).await;
    finish_passwordless(&app, &id, &assertion).await.assert(401, "INVALID_MFA_CODE");

    // An answer to another ceremony's challenge.
    let (_, assertion) = passwordless_assertion(&app, &mut alice_key, alice_id).await;
    let (other, _) = passwordless_assertion(&app, &mut alice_key, alice_id).await;
    finish_passwordless(&app, &other, &assertion).await.assert(401, "INVALID_MFA_CODE");

    // Bob can neither delete nor list Alice's passkey.
    let path = format!("/auth/webauthn/credentials/{}", alice_cred.str("id"));
    app.call(Method::DELETE, &path, None, Some(&bob)).await.assert(404, "CREDENTIAL_NOT_FOUND");
    assert!(list(&app, &bob).await.is_empty());
    assert_eq!(list(&app, &alice).await.len(), 1);

    // And the failures are audited without credential material.
    let events = app
        .auth
        .store()
        .list_audit(&fraise_core::store::AuditFilter {
            kind: Some("webauthn_login_failure".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    let reasons: Vec<_> = events.iter().map(|e| e.details["reason"].as_str().unwrap().to_owned()).collect();
    assert!(reasons.contains(&"unknown_credential".to_owned()), "{reasons:?}");
    assert!(reasons.contains(&"credential_of_another_user".to_owned()), "{reasons:?}");
    assert!(reasons.contains(&"wrong_challenge".to_owned()), "{reasons:?}");
}

async fn a_counter_that_goes_backwards_is_refused_as_a_clone(backend: Backend) {
    let app = TestApp::spawn_with(backend, &passkeys_on(true)).await;
    let at = app.signed_up("clone@example.com").await.str("access_token");
    let user = app.user_id("clone@example.com").await;
    let mut browser = Browser::new();
    register(&app, &mut browser, &at, None).await.assert(201, "");
    // Signed with counter 1, held back (as a clone would hold its own copy of the key).
    let (early, early_assertion) = passwordless_assertion(&app, &mut browser, user).await;
    // Counter 2 is used first.
    let (id, assertion) = passwordless_assertion(&app, &mut browser, user).await;
    finish_passwordless(&app, &id, &assertion).await.assert(200, "");
    // Counter 1 now is behind the stored 2: refused.
    finish_passwordless(&app, &early, &early_assertion).await.assert(401, "INVALID_MFA_CODE");
}

async fn passwordless_off_or_passkeys_off_say_so(backend: Backend) {
    let app = TestApp::spawn_with(backend, &passkeys_on(false)).await;
    let r = post(&app, "/auth/webauthn/login/start", json!({}), None).await;
    r.assert(400, "VALIDATION_ERROR");
    assert_eq!(r.body["detail"]["field"], "mfa_token");
    let r =
        post(&app, "/auth/webauthn/login/finish", json!({"ceremony_id": Uuid::new_v4(), "credential": {}}), None).await;
    r.assert(400, "VALIDATION_ERROR");

    let app = TestApp::spawn(backend).await;
    let at = app.signed_up("off@example.com").await.str("access_token");
    post(&app, "/auth/webauthn/register/start", json!({}), Some(&at)).await.assert(404, "PASSKEYS_DISABLED");
    app.call(Method::GET, "/auth/webauthn/credentials", None, Some(&at)).await.assert(404, "PASSKEYS_DISABLED");
    post(&app, "/auth/webauthn/login/start", json!({}), None).await.assert(404, "PASSKEYS_DISABLED");
}

async fn a_disabled_account_cannot_sign_in_with_its_passkey(backend: Backend) {
    let app = TestApp::spawn_with(backend, &passkeys_on(true)).await;
    let at = app.signed_up("gone@example.com").await.str("access_token");
    let user = app.user_id("gone@example.com").await;
    let mut browser = Browser::new();
    register(&app, &mut browser, &at, None).await.assert(201, "");
    assert!(app.auth.set_user_active(user, false).await.unwrap());
    let (id, assertion) = passwordless_assertion(&app, &mut browser, user).await;
    finish_passwordless(&app, &id, &assertion).await.assert(403, "ACCOUNT_DISABLED");
}

async fn bad_input_gets_an_envelope_never_a_5xx(backend: Backend) {
    let app = TestApp::spawn_with(backend, &passkeys_on(true)).await;
    let at = app.signed_up("bad@example.com").await.str("access_token");
    let ceremony = post(&app, "/auth/webauthn/register/start", json!({}), Some(&at)).await.str("ceremony_id");
    let login = post(&app, "/auth/webauthn/login/start", json!({}), None).await.str("ceremony_id");
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("/auth/webauthn/register/finish", json!({"ceremony_id": ceremony}), 400, "VALIDATION_ERROR"),
        ("/auth/webauthn/register/finish", json!({"ceremony_id": ceremony, "credential": 5}), 400, "VALIDATION_ERROR"),
        ("/auth/webauthn/register/finish", json!({"ceremony_id": 5, "credential": {}}), 400, "VALIDATION_ERROR"),
        (
            "/auth/webauthn/register/finish",
            json!({"ceremony_id": ceremony, "credential": {"id": 1, "rawId": [1], "response": "x", "type": null}}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "/auth/webauthn/register/finish",
            json!({"ceremony_id": ceremony, "name": ["x"], "credential": {}}),
            400,
            "VALIDATION_ERROR",
        ),
        ("/auth/webauthn/register/finish", json!([]), 400, "VALIDATION_ERROR"),
        ("/auth/webauthn/login/start", json!({"mfa_token": 42}), 400, "VALIDATION_ERROR"),
        ("/auth/webauthn/login/finish", json!({"ceremony_id": login, "credential": "x"}), 400, "VALIDATION_ERROR"),
        (
            "/auth/webauthn/login/finish",
            json!({"ceremony_id": login, "credential": {"id": "AA", "rawId": "AA", "type": "public-key",
                "response": {"authenticatorData": "AA", "clientDataJSON": "AA", "signature": "AA", "userHandle": "AA"}}}),
            401,
            "INVALID_MFA_CODE",
        ),
        (
            "/auth/webauthn/login/finish",
            json!({"ceremony_id": "not-a-uuid", "credential": {"id": "AA", "rawId": "AA", "type": "public-key",
                "response": {"authenticatorData": "AA", "clientDataJSON": "AA", "signature": "AA", "userHandle": null}}}),
            401,
            "INVALID_MFA_CODE",
        ),
    ];
    for (path, body, status, code) in cases {
        let r = post(&app, path, body.clone(), Some(&at)).await;
        assert_eq!((r.status.as_u16(), r.code()), (status, code), "{path} {body}: {}", r.text);
    }
    let r = app.post_raw("/auth/webauthn/login/finish", Some("application/json"), "{not json").await;
    r.assert(400, "VALIDATION_ERROR");
    let huge = format!(r#"{{"ceremony_id": "{ceremony}", "credential": {{"id": "{}"}}}}"#, "A".repeat(100_000));
    let r = app.post_raw("/auth/webauthn/login/finish", Some("application/json"), huge).await;
    r.assert(413, "PAYLOAD_TOO_LARGE");
    let r = app.post_raw("/auth/webauthn/login/start", Some("text/plain"), "{}").await;
    r.assert(415, "UNSUPPORTED_MEDIA_TYPE");
}

/// A password login of a user with a passkey: the `mfa_token` of its answer.
async fn mfa_token(app: &TestApp, email: &str) -> String {
    let r = app.login(email, crate::helpers::PASSWORD).await;
    r.assert(200, "");
    assert_eq!(r.body["mfa_required"], json!(true), "{}", r.text);
    assert!(r.body["methods"].as_array().unwrap().contains(&json!("webauthn")), "{}", r.text);
    r.str("mfa_token")
}

async fn second_factor_start(app: &TestApp, token: &str) -> Res {
    post(app, "/auth/webauthn/login/start", json!({"mfa_token": token}), None).await
}

async fn second_factor_finish(app: &TestApp, ceremony_id: &str, token: &str, assertion: &Value) -> Res {
    let body = json!({"ceremony_id": ceremony_id, "mfa_token": token, "credential": assertion});
    post(app, "/auth/webauthn/login/finish", body, None).await
}

async fn a_passkey_is_a_second_factor_after_the_password(backend: Backend) {
    let app = TestApp::spawn_with(backend, &passkeys_on(false)).await;
    let at = app.signed_up("mfa@example.com").await.str("access_token");
    let mut browser = Browser::new();
    let cred = register(&app, &mut browser, &at, Some("Key")).await;
    cred.assert(201, "");
    let me = app.me(&at).await;
    assert_eq!((me.body["mfa_enabled"].clone(), me.body["mfa_methods"].clone()), (json!(true), json!(["webauthn"])));

    let token = mfa_token(&app, "mfa@example.com").await;
    // Starting does not spend the token's tries: more starts than tries, then one finish works.
    let mut start = second_factor_start(&app, &token).await;
    for _ in 0..6 {
        start = second_factor_start(&app, &token).await;
        start.assert(200, "");
    }
    let allowed = start.body["options"]["publicKey"]["allowCredentials"].as_array().cloned().unwrap();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0]["id"], json!(browser.held[0]));
    let assertion = browser.get(&start.body["options"], None);
    let r = second_factor_finish(&app, &start.str("ceremony_id"), &token, &assertion).await;
    r.assert(200, "");
    assert_eq!(r.body["user"]["email"], "mfa@example.com");
    app.me(&r.str("access_token")).await.assert(200, "");
    // Replayed: the token and the ceremony are both spent.
    second_factor_finish(&app, &start.str("ceremony_id"), &token, &assertion).await.assert(401, "MFA_TOKEN_EXPIRED");
    // Passwordless is off: the passkey alone is not a login.
    post(&app, "/auth/webauthn/login/start", json!({}), None).await.assert(400, "VALIDATION_ERROR");
    let events = app
        .auth
        .store()
        .list_audit(&fraise_core::store::AuditFilter {
            kind: Some("webauthn_login_success".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].details["second_factor"], json!(true));
}

async fn a_wrong_or_foreign_passkey_is_refused_as_a_second_factor(backend: Backend) {
    let app = TestApp::spawn_with(backend, &passkeys_on(false)).await;
    let alice = app.signed_up("a2@example.com").await.str("access_token");
    let bob = app.signed_up("b2@example.com").await.str("access_token");
    let mut alice_key = Browser::new();
    let mut bob_key = Browser::new();
    register(&app, &mut alice_key, &alice, None).await.assert(201, "");
    register(&app, &mut bob_key, &bob, None).await.assert(201, "");

    let token = mfa_token(&app, "a2@example.com").await;
    // Bob's passkey answering Alice's challenge (his own credential in the allow list).
    let start = second_factor_start(&app, &token).await;
    let mut options = start.body["options"].clone();
    options["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": bob_key.held[0]}]);
    let assertion = bob_key.get(&options, None);
    second_factor_finish(&app, &start.str("ceremony_id"), &token, &assertion).await.assert(401, "INVALID_MFA_CODE");
    // Alice's passkey, but the answer belongs to a ceremony started with Bob's token.
    let bob_token = mfa_token(&app, "b2@example.com").await;
    let bob_start = second_factor_start(&app, &bob_token).await;
    let start = second_factor_start(&app, &token).await;
    let assertion = alice_key.get(&start.body["options"], None);
    second_factor_finish(&app, &bob_start.str("ceremony_id"), &token, &assertion).await.assert(401, "INVALID_MFA_CODE");
    // A stranger's key (made for an abandoned registration of Bob's, never stored).
    let mut stranger = Browser::new();
    let _ = stranger.create(&post(&app, "/auth/webauthn/register/start", json!({}), Some(&bob)).await.body["options"]);
    let start = second_factor_start(&app, &token).await;
    let mut options = start.body["options"].clone();
    options["publicKey"]["allowCredentials"] = json!([]);
    let assertion = stranger.get(&options, None);
    second_factor_finish(&app, &start.str("ceremony_id"), &token, &assertion).await.assert(401, "INVALID_MFA_CODE");
    // Each wrong answer took one of the token's five tries; two left, then it is spent.
    for _ in 0..2 {
        let start = second_factor_start(&app, &token).await;
        second_factor_finish(
            &app,
            &start.str("ceremony_id"),
            &token,
            &json!({"id": "AA", "rawId": "AA", "type": "public-key",
            "response": {"authenticatorData": "AA", "clientDataJSON": "AA", "signature": "AA", "userHandle": null}}),
        )
        .await
        .assert(401, "INVALID_MFA_CODE");
    }
    second_factor_start(&app, &token).await.assert(401, "MFA_TOKEN_EXPIRED");
    // A user without a passkey gets no ceremony.
    app.signed_up("nokey@example.com").await;
    let r = app.login("nokey@example.com", crate::helpers::PASSWORD).await;
    assert!(r.body.get("mfa_required").is_none(), "no second factor, no mfa_token: {}", r.text);
}

async fn a_passkey_satisfies_require_mfa_and_reset_mfa_removes_it(backend: Backend) {
    let mut config = passkeys_on(false);
    config.push(("REQUIRE_MFA", "true"));
    let app = TestApp::spawn_with(backend, &config).await;
    let at = app.signed_up("must@example.com").await.str("access_token");
    let user = app.user_id("must@example.com").await;
    app.me(&at).await.assert(403, "MFA_REQUIRED");
    let mut browser = Browser::new();
    register(&app, &mut browser, &at, None).await.assert(201, "");
    app.me(&at).await.assert(200, "");

    assert!(app.auth.store().reset_mfa(user, app.clock_now()).await.unwrap());
    assert_eq!(mfa_bits(&app, user).await, 0);
    assert!(app.auth.store().passkeys(user).await.unwrap().is_empty(), "reset-mfa removes the passkeys too");
    app.me(&at).await.assert(403, "MFA_REQUIRED");
}

both_backends!(
    passkeys_are_registered_listed_and_removed,
    a_registration_ceremony_is_single_use_bound_to_its_user_and_expires,
    passwordless_sign_in_with_a_passkey,
    wrong_or_foreign_passkeys_are_refused,
    a_counter_that_goes_backwards_is_refused_as_a_clone,
    passwordless_off_or_passkeys_off_say_so,
    a_disabled_account_cannot_sign_in_with_its_passkey,
    bad_input_gets_an_envelope_never_a_5xx,
    a_passkey_is_a_second_factor_after_the_password,
    a_wrong_or_foreign_passkey_is_refused_as_a_second_factor,
    a_passkey_satisfies_require_mfa_and_reset_mfa_removes_it,
);
