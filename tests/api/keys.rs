//! Signing keys: JWT_ALGORITHM, the JWKS endpoint, the `keys` subcommands and `token verify`,
//! the last two run as processes.
use std::path::Path;
use std::process::Command;

use axum::http::Method;
use chrono::{Duration, Utc};
use fraise_core::model::SessionId;
use fraise_core::tokens::{AccessTokens, JwtSettings, KeyRing, PrivateKey};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, SECRET, TestApp};

both_backends!(login_and_me_work_under_eddsa_and_rs256);

async fn login_and_me_work_under_eddsa_and_rs256(backend: Backend) {
    for alg in ["EdDSA", "RS256"] {
        let app = TestApp::spawn_with(backend, &[("JWT_ALGORITHM", alg)]).await;
        app.signed_up("keys@example.com").await;
        let login = app.login("keys@example.com", PASSWORD).await;
        login.assert(200, "");
        let access = login.str("access_token");
        let me = app.me(&access).await;
        me.assert(200, "");
        assert_eq!(me.body["email"], "keys@example.com");
        let header = jsonwebtoken::decode_header(&access).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg);

        // Independent check: the token verifies with nothing but the published JWK.
        let jwks = app.call(Method::GET, "/.well-known/jwks.json", None, None).await;
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.body.clone()).unwrap();
        let kid = header.kid.clone().unwrap();
        let jwk = set.find(&kid).unwrap_or_else(|| panic!("kid {kid} not in {}", jwks.text));
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.validate_exp = false; // the app's clock is not the system's
        let data = jsonwebtoken::decode::<Value>(&access, &key, &validation).unwrap();
        assert_eq!(data.claims["sub"], me.body["id"]);

        // The same token with its payload changed no longer verifies, here or there.
        let forged = with_payload(&access, |claims| claims["roles"] = json!(["admin"]));
        assert!(jsonwebtoken::decode::<Value>(&forged, &key, &validation).is_err());
        app.me(&forged).await.assert(401, "INVALID_TOKEN");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_publishes_each_public_key_and_never_a_secret() {
    for (alg, kty, fields) in [("EdDSA", "OKP", &["crv", "x"][..]), ("RS256", "RSA", &["n", "e"][..])] {
        let app = TestApp::spawn_with(Backend::Sqlite, &[("JWT_ALGORITHM", alg)]).await;
        let res = app.call(Method::GET, "/.well-known/jwks.json", None, None).await;
        res.assert(200, "");
        assert_eq!(res.header("cache-control"), Some("public, max-age=300"));
        let keys = res.body["keys"].as_array().cloned().unwrap_or_default();
        assert_eq!(keys.len(), 1, "{}", res.text);
        let jwk = &keys[0];
        assert_eq!(
            (jwk["kty"].as_str(), jwk["alg"].as_str(), jwk["use"].as_str()),
            (Some(kty), Some(alg), Some("sig"))
        );
        for f in fields {
            assert!(jwk[*f].as_str().is_some_and(|v| !v.is_empty()), "{f} missing: {jwk}");
        }
        if alg == "EdDSA" {
            assert_eq!(jwk["crv"], "Ed25519");
        } else {
            assert_eq!(jwk["e"], "AQAB");
        }
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(jwk.get(private).is_none(), "{private} published: {jwk}");
        }
        // Development generated the key: <kid>.pem, private, and current.
        let kid = jwk["kid"].as_str().unwrap();
        let dir = app.data_dir.join("keys");
        assert_eq!(std::fs::read_to_string(dir.join("current")).unwrap().trim(), kid);
        assert_eq!(mode(&dir.join(format!("{kid}.pem"))), 0o600);
        // At the root, not under AUTH_PREFIX.
        app.call(Method::GET, "/auth/.well-known/jwks.json", None, None).await.assert(404, "NOT_FOUND");
    }
    let app = TestApp::spawn(Backend::Sqlite).await;
    let res = app.call(Method::GET, "/.well-known/jwks.json", None, None).await;
    assert_eq!(res.body, json!({"keys": []}));
    assert!(!res.text.contains(SECRET));
    assert!(!app.data_dir.join("keys").exists(), "HS256 writes no key files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_the_previous_secret_verifies_only_while_it_is_listed() {
    let old = TestApp::spawn(Backend::Sqlite).await;
    old.signed_up("hs@example.com").await;
    let access = old.login("hs@example.com", PASSWORD).await.str("access_token");
    let new_secret = "a-brand-new-secret-a-brand-new-secret-0123";
    let kept = fraise_auth::config::Config::from_sources(&fraise_auth::config::Sources::from_pairs(&[
        ("JWT_SECRET_KEY", new_secret),
        ("JWT_PREVIOUS_SECRET_KEYS", SECRET),
    ]))
    .unwrap();
    let ring =
        fraise_auth::keys::access_keys(&kept, new_secret.as_bytes(), fraise_auth::keys::FirstKey::Never).unwrap();
    let tokens = AccessTokens::new(ring, JwtSettings::default());
    assert!(tokens.verify(&access, None, old.clock_now()).is_ok());
    let dropped = AccessTokens::hs256(new_secret.as_bytes(), JwtSettings::default()).unwrap();
    assert!(dropped.verify(&access, None, old.clock_now()).is_err());
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
}

/// `token` with its payload rewritten by `edit` and its signature kept.
fn with_payload(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    edit(&mut claims);
    format!("{}.{}.{}", parts[0], B64.encode(claims.to_string()), parts[2])
}

/// Runs the binary with a fresh environment: `DATA_DIR`, the test secret, `extra`.
fn cli(data_dir: &Path, extra: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fraise-auth"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("JWT_SECRET_KEY", SECRET)
        .env("LOG_LEVEL", "warn");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run fraise-auth: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn key_of(dir: &Path, kid: &str) -> PrivateKey {
    PrivateKey::from_pem(&std::fs::read_to_string(dir.join(format!("{kid}.pem"))).unwrap()).unwrap()
}

fn signed_by(key: &PrivateKey, at: chrono::DateTime<Utc>) -> String {
    let tokens = AccessTokens::new(KeyRing::asymmetric(key, &[]).unwrap(), JwtSettings::default());
    tokens.issue(uuid::Uuid::new_v4(), SessionId::new(), &[], &[], None, at).unwrap().0
}

#[test]
fn keys_commands_generate_rotate_list_and_retire() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let keys = data.join("keys");
    let ed = [("JWT_ALGORITHM", "EdDSA")];

    let (ok, _, err) = cli(data, &ed, &["keys", "list"]);
    assert!(ok && err.contains("0 key(s)"), "{err}");
    let (ok, out, err) = cli(data, &ed, &["keys", "generate"]);
    assert!(ok, "{err}");
    let k1 = out.trim().to_owned();
    assert_eq!(k1.len(), 43, "a thumbprint kid: {out}");
    assert!(err.contains("made current"), "{err}");
    assert_eq!(mode(&keys.join(format!("{k1}.pem"))), 0o600);
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(std::fs::read_to_string(keys.join("current")).unwrap().trim(), k1);

    let (ok, out, err) = cli(data, &ed, &["keys", "generate"]);
    let k2 = out.trim().to_owned();
    assert!(ok && err.contains("does not sign") && err.contains(&format!("rotate --to {k2}")), "{err}");
    assert_eq!(std::fs::read_to_string(keys.join("current")).unwrap().trim(), k1, "a second key does not sign yet");

    let before = signed_by(&key_of(&keys, &k1), Utc::now());
    let (ok, out, err) = cli(data, &ed, &["keys", "rotate"]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("old {k1}")), "{out}");
    let k3 = out.lines().find_map(|l| l.strip_prefix("new ")).unwrap().to_owned();
    assert!(![&k1, &k2].contains(&&k3));

    let (ok, out, _) = cli(data, &ed, &["keys", "list"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (kid, state) in [(&k1, "-"), (&k2, "-"), (&k3, "current")] {
        let line = lines.iter().find(|l| l.starts_with(kid.as_str())).unwrap_or_else(|| panic!("{kid}: {out}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((cols[1], cols[2]), ("EdDSA", state), "{line}");
        assert!(chrono::DateTime::parse_from_rfc3339(cols[3]).is_ok(), "created time: {line}");
    }

    // The token of the rotated-out key still verifies until that key is retired.
    let (ok, out, _) = cli(data, &ed, &["token", "verify", &before]);
    assert!(ok && out.contains("✅ valid access token"), "{out}");
    let (ok, _, err) = cli(data, &ed, &["keys", "retire", &k3]);
    assert!(!ok && err.contains("current signing key"), "{err}");
    let (ok, out, err) = cli(data, &ed, &["keys", "retire", &k1]);
    assert!(ok && out.contains(&format!("retired {k1}")), "{err}");
    assert!(!keys.join(format!("{k1}.pem")).exists());
    let (ok, out, _) = cli(data, &ed, &["token", "verify", &before]);
    assert!(!ok && out.contains(&format!("unknown kid {k1}")), "{out}");
    let (ok, _, err) = cli(data, &ed, &["keys", "retire", "no-such-kid"]);
    assert!(!ok && err.contains("no key no-such-kid"), "{err}");

    // Promote an existing key; a key of another algorithm is not usable.
    let (ok, out, _) = cli(data, &ed, &["keys", "rotate", "--to", &k2]);
    assert!(ok && out.contains(&format!("old {k3}")) && out.contains(&format!("new {k2}")), "{out}");
    let (ok, _, err) = cli(data, &[("JWT_ALGORITHM", "RS256")], &["keys", "rotate", "--to", &k3]);
    assert!(!ok && err.contains("is EdDSA but JWT_ALGORITHM=RS256"), "{err}");
    let (ok, _, err) = cli(data, &[], &["keys", "generate"]);
    assert!(!ok && err.contains("JWT_ALGORITHM=EdDSA or RS256"), "HS256 has no key files: {err}");
}

#[test]
fn token_verify_says_why_a_token_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let rs = [("JWT_ALGORITHM", "RS256")];
    let (ok, out, err) = cli(data, &rs, &["keys", "generate"]);
    assert!(ok, "{err}");
    let key = key_of(&data.join("keys"), out.trim());
    let now = Utc::now();

    let (ok, out, _) = cli(data, &rs, &["token", "verify", &signed_by(&key, now)]);
    assert!(ok && out.contains("✅ valid access token") && out.contains("RS256"), "{out}");

    let expired = signed_by(&key, now - Duration::hours(2));
    let (ok, out, err) = cli(data, &rs, &["token", "verify", &expired]);
    assert!(!ok && out.contains("❌ expired since") && err.contains("not valid"), "{out}");
    let (_, claims) = fraise_auth::token_cmd::decode(&expired).unwrap();
    let when = chrono::DateTime::from_timestamp(claims["exp"].as_i64().unwrap(), 0).unwrap();
    assert!(out.contains(&when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)), "says since when: {out}");

    let tampered = with_payload(&signed_by(&key, now), |c| c["roles"] = json!(["superuser"]));
    let (ok, out, _) = cli(data, &rs, &["token", "verify", &tampered]);
    assert!(!ok && out.contains("bad signature"), "{out}");

    let (foreign, _) = PrivateKey::generate(fraise_core::tokens::JwtAlgorithm::Rs256, 2048).unwrap();
    let (ok, out, _) = cli(data, &rs, &["token", "verify", &signed_by(&foreign, now)]);
    assert!(!ok && out.contains(&format!("unknown kid {}", foreign.kid())) && out.contains(key.kid()), "{out}");

    // Well signed by our key, but not an access token.
    let pem = std::fs::read_to_string(data.join("keys").join(format!("{}.pem", key.kid()))).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(key.kid().to_owned());
    let claims = json!({"sub": uuid::Uuid::new_v4().to_string(), "type": "refresh", "iat": now.timestamp(),
        "exp": now.timestamp() + 600, "jti": "j", "session_id": SessionId::new().to_string()});
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let refresh_typed = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
    let (ok, out, _) = cli(data, &rs, &["token", "verify", &refresh_typed]);
    assert!(!ok && out.contains("wrong type: \"refresh\""), "{out}");

    // An HS256 token of this server's own secret, presented to the RS256 server.
    let hs = AccessTokens::hs256(SECRET.as_bytes(), JwtSettings::default()).unwrap();
    let hs_token = hs.issue(uuid::Uuid::new_v4(), SessionId::new(), &[], &[], None, now).unwrap().0;
    let (ok, out, _) = cli(data, &rs, &["token", "verify", &hs_token]);
    assert!(!ok && out.contains("algorithm HS256 is not accepted"), "{out}");

    // No key directory at all: verify reads, never writes.
    let empty = tempfile::tempdir().unwrap();
    let (ok, out, _) = cli(empty.path(), &[("JWT_ALGORITHM", "EdDSA")], &["token", "verify", &hs_token]);
    assert!(!ok && out.contains("keys generate"), "{out}");
    assert!(!empty.path().join("keys").exists());
}

#[test]
fn production_refuses_to_serve_without_a_key_and_says_what_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let env = [("JWT_ALGORITHM", "EdDSA"), ("ENVIRONMENT", "production"), ("HOST", "192.0.2.1")];
    let (ok, _, err) = cli(tmp.path(), &env, &["serve"]);
    assert!(!ok, "{err}");
    assert!(err.contains("no key in") && err.contains("fraise-auth keys generate"), "{err}");
    assert!(!tmp.path().join("keys").exists(), "production generates nothing");
    assert!(!tmp.path().join("fraise-auth.db").exists(), "refused before touching the database");
}
