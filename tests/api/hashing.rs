//! Password hashing as the service uses it: imported hashes, re-hashing, timing safety for
//! unknown emails, and the bounded queue.
use std::sync::{Arc, Barrier};

use fraise_core::Email;
use fraise_core::model::NewUser;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

/// Made by passlib 1.7.4 on argon2-cffi 25.1.0 with the original's parameters (shared vectors).
const PASSLIB_HASH: &str =
    "$argon2id$v=19$m=102400,t=2,p=8$GaOUsnaOkfJ+D8F47/3fWw$fja9+THxQVkS4Y+aMbB4//c7Dyn6mWfeFLBlbOW+Bs4";
const PASSLIB_PASSWORD: &str = "TestPassword123!";
const BCRYPT_HASH: &str = "$2b$12$uoTVCAfhVHCUpzH/jd6KWudIe3xMgQoKWZNO00K0nV3Sgk1ykJY/O";

async fn import(app: &TestApp, email: &str, hash: &str) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    app.auth
        .store()
        .insert_user(NewUser {
            id,
            email: Email::parse(email).unwrap(),
            password_hash: hash.to_owned(),
            name: None,
            now: app.clock_now(),
        })
        .await
        .unwrap();
    id
}

async fn stored_hash(app: &TestApp, id: uuid::Uuid) -> String {
    app.auth.store().user_by_id(id).await.unwrap().unwrap().password_hash
}

async fn a_passlib_hash_verifies_and_is_rehashed_to_the_configured_parameters(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = import(&app, "legacy@example.com", PASSLIB_HASH).await;
    app.login("legacy@example.com", "WrongPassword123!").await.assert(401, "INVALID_CREDENTIALS");
    assert_eq!(stored_hash(&app, id).await, PASSLIB_HASH, "a failed login changes nothing");

    app.login("legacy@example.com", PASSLIB_PASSWORD).await.assert(200, "");
    let new_hash = stored_hash(&app, id).await;
    assert!(
        new_hash.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"),
        "re-hashed with the configured parameters: {new_hash}"
    );
    app.login("legacy@example.com", PASSLIB_PASSWORD).await.assert(200, "");
    assert_eq!(stored_hash(&app, id).await, new_hash, "a current hash is left alone");
    assert_eq!(crate::storage::count_audit(&app, "password_rehashed").await, 1);
}

async fn a_bcrypt_import_verifies_and_becomes_argon2id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = import(&app, "bcrypt@example.com", BCRYPT_HASH).await;
    app.login("bcrypt@example.com", PASSLIB_PASSWORD).await.assert(200, "");
    assert!(stored_hash(&app, id).await.starts_with("$argon2id$"));
}

async fn an_unknown_email_costs_a_hash_like_a_known_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_up("real@example.com").await;
    let pool = app.auth.pool();
    for email in ["ghost@example.com", "not-even-an-email", "real@example.com"] {
        let before = pool.started();
        app.login(email, "WrongPass123!").await.assert(401, "INVALID_CREDENTIALS");
        assert_eq!(pool.started() - before, 1, "{email}: exactly one hash job");
    }
}

async fn a_full_hash_queue_answers_503_with_retry_after(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("HASH_CONCURRENCY", "1"), ("HASH_QUEUE_SIZE", "0")]).await;
    // Occupy the only worker. With a zero-length queue a job is accepted only while the worker
    // waits for one, so retry until the worker thread is up and has taken the blocker.
    let gate = Arc::new(Barrier::new(2));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let blocker = loop {
        let (pool, g) = (app.auth.pool().clone(), gate.clone());
        let job = tokio::spawn(async move { pool.run(move || g.wait()).await });
        // A refused job finishes at once; an accepted one runs as soon as the worker thread gets
        // the CPU, which at its lower priority on a busy machine can take longer than a fixed
        // few milliseconds (awaiting an accepted job here would wait on the barrier forever).
        while !job.is_finished() && app.auth.pool().running() == 0 {
            assert!(std::time::Instant::now() < deadline, "the hash worker never took a job");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        if !job.is_finished() && app.auth.pool().running() == 1 {
            break job;
        }
        assert!(job.await.unwrap().is_err(), "a job not running must have been refused");
        assert!(std::time::Instant::now() < deadline, "the hash worker never took a job");
    };
    let r = app.login("anyone@example.com", "TestPass123!").await;
    r.assert(503, "SERVICE_UNAVAILABLE");
    assert_eq!(r.header("retry-after"), Some("1"));
    app.register("new@example.com", "TestPass123!").await.assert(503, "SERVICE_UNAVAILABLE");
    tokio::task::spawn_blocking(move || gate.wait()).await.unwrap();
    blocker.await.unwrap().unwrap();
    // Once the worker is free, the same requests succeed: nothing was half-done.
    app.register("new@example.com", "TestPass123!").await.assert(201, "");
}

both_backends!(
    a_passlib_hash_verifies_and_is_rehashed_to_the_configured_parameters,
    a_bcrypt_import_verifies_and_becomes_argon2id,
    an_unknown_email_costs_a_hash_like_a_known_one,
    a_full_hash_queue_answers_503_with_retry_after,
);
