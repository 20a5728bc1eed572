//! JWT attacks against `/auth/me`, one test each: every forged, stale, foreign or malformed bearer
//! token is 401 (`INVALID_TOKEN`, or `TOKEN_EXPIRED` for a genuine but expired one), never a 5xx
//! and never a 200. Tokens are forged with the test secret where the attack needs a valid
//! signature, so a refusal proves the claim check, not a signature failure; each test first shows
//! that an unmodified re-signed token is accepted.
use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::Duration;
use fraise_core::tokens::keys::hs256_kid;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, SECRET, TestApp};

/// A user's fresh login: (access token, refresh token).
async fn logged_in(app: &TestApp) -> (String, String) {
    app.signed_up("target@example.com").await;
    let r = app.login("target@example.com", PASSWORD).await;
    r.assert(200, "");
    (r.str("access_token"), r.str("refresh_token"))
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

fn header_of(token: &str) -> Value {
    serde_json::from_slice(&B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap()
}

/// `claims` signed with HS256 under the test secret and its real kid: a token only the server
/// (or someone holding its secret) could make.
fn signed(claims: &Value) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(hs256_kid(SECRET.as_bytes()));
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(SECRET.as_bytes()).unwrap()).unwrap()
}

/// A token from raw header JSON, claims and signature text.
fn raw(header: &Value, claims: &Value, sig: &str) -> String {
    format!("{}.{}.{sig}", B64.encode(header.to_string()), B64.encode(claims.to_string()))
}

#[track_caller]
fn refused(r: &crate::helpers::Res, what: &str) {
    assert_eq!((r.status.as_u16(), r.code()), (401, "INVALID_TOKEN"), "{what}: {}", r.text);
    assert_eq!(r.header("www-authenticate").map(|v| v.starts_with("Bearer")), Some(true), "{what}");
}

#[tokio::test]
async fn a_re_signed_unmodified_token_is_accepted_so_the_forgeries_below_test_claims() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (access, _) = logged_in(&app).await;
    app.me(&signed(&claims_of(&access))).await.assert(200, "");
}

#[tokio::test]
async fn alg_none_is_refused_with_or_without_a_kid_and_signature() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (access, _) = logged_in(&app).await;
    let claims = claims_of(&access);
    let kid = hs256_kid(SECRET.as_bytes());
    let sig = access.split('.').nth(2).unwrap();
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        for (header, s) in [
            (json!({"alg": alg, "typ": "JWT"}), ""),
            (json!({"alg": alg, "kid": kid}), ""),
            (json!({"alg": alg, "kid": kid}), sig),
        ] {
            refused(&app.me(&raw(&header, &claims, s)).await, &format!("alg {alg:?} {header}"));
        }
    }
    refused(&app.me(&raw(&json!({"kid": kid}), &claims, sig)).await, "no alg at all");
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_of_an_asymmetric_setup_is_refused() {
    for alg in ["RS256", "EdDSA"] {
        let app = TestApp::spawn_with(Backend::Sqlite, &[("JWT_ALGORITHM", alg)]).await;
        let (access, _) = logged_in(&app).await;
        let kid = header_of(&access)["kid"].as_str().unwrap().to_owned();
        // The public key as an attacker finds it: PEM (from the private file, via openssl),
        // DER, the JWK's raw fields and the JWK JSON itself.
        let pem_path = app.data_dir.join("keys").join(format!("{kid}.pem"));
        let out = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&pem_path)
            .output()
            .expect("openssl is installed");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let public_pem = out.stdout;
        let der = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&pem_path)
            .output()
            .unwrap()
            .stdout;
        let jwks = app.call(Method::GET, "/.well-known/jwks.json", None, None).await;
        let jwk = jwks.body["keys"][0].clone();
        let mut secrets: Vec<Vec<u8>> = vec![public_pem.clone(), public_pem.trim_ascii_end().to_vec(), der];
        for field in ["x", "n"] {
            if let Some(v) = jwk[field].as_str() {
                secrets.push(v.as_bytes().to_vec());
                secrets.push(B64.decode(v).unwrap());
            }
        }
        secrets.push(jwk.to_string().into_bytes());
        let claims = claims_of(&access);
        for secret in secrets {
            for header_kid in [Some(kid.clone()), None] {
                let mut h = Header::new(Algorithm::HS256);
                h.kid = header_kid;
                let forged = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&secret).unwrap()).unwrap();
                refused(&app.me(&forged).await, &format!("{alg}: HS256 with a public key"));
            }
        }
        // The genuine token still works: the refusals were not the app being broken.
        app.me(&access).await.assert(200, "");
    }
}

#[tokio::test]
async fn kid_injection_never_selects_anything_but_our_own_keys() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("JWT_ALGORITHM", "EdDSA")]).await;
    let (access, _) = logged_in(&app).await;
    let parts: Vec<&str> = access.split('.').collect();
    let real_kid = header_of(&access)["kid"].as_str().unwrap().to_owned();
    let injections = [
        "../../../../../../dev/null".to_owned(),
        "/dev/null".to_owned(),
        "../keys/current".to_owned(),
        "current".to_owned(),
        format!("../keys/{real_kid}"),
        format!("{real_kid}.pem"),
        format!("{real_kid}' OR '1'='1"),
        "' UNION SELECT 'secret' --".to_owned(),
        format!("{real_kid}\u{0000}"),
        "x".repeat(5000),
        String::new(),
        hs256_kid(SECRET.as_bytes()),
    ];
    for kid in &injections {
        // Same payload and signature, kid swapped: EdDSA with a foreign kid.
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
        let token = format!("{}.{}.{}", B64.encode(header.to_string()), parts[1], parts[2]);
        refused(&app.me(&token).await, &format!("kid {kid:.40}"));
        // HS256 "signed" with the empty key or /dev/null's contents, naming the injected kid.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.clone());
        let forged = jsonwebtoken::encode(
            &h,
            &claims_of(&access),
            &EncodingKey::from_secret(b"").unwrap_or_else(|_| EncodingKey::from_secret(b"\0").unwrap()),
        )
        .unwrap();
        refused(&app.me(&forged).await, &format!("HS256 kid {kid:.40}"));
    }
    // Non-string kids, and header keys that point at other keys (jku, x5u, an embedded jwk).
    for extra in [
        json!({"kid": 42}),
        json!({"kid": null}),
        json!({"kid": [real_kid]}),
        json!({"kid": {"$ne": ""}}),
        json!({"kid": real_kid, "jku": "http://127.0.0.1:1/jwks.json"}),
        json!({"kid": real_kid, "jwk": {"kty": "oct", "k": "AAAA"}, "alg": "HS256"}),
    ] {
        let mut header = json!({"alg": "EdDSA", "typ": "JWT"});
        for (k, v) in extra.as_object().unwrap() {
            header[k] = v.clone();
        }
        let token = format!("{}.{}.{}", B64.encode(header.to_string()), parts[1], parts[2]);
        // (The signature covers the header, so even the jku one fails; jku is never fetched.)
        refused(&app.me(&token).await, &format!("header {header}"));
    }
}

#[tokio::test]
async fn an_expired_token_is_token_expired_at_the_second() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (access, _) = logged_in(&app).await;
    app.clock.advance(Duration::minutes(15) - Duration::seconds(1));
    app.me(&access).await.assert(200, "");
    app.clock.advance(Duration::seconds(1));
    app.me(&access).await.assert(401, "TOKEN_EXPIRED");
    // A forged exp in the past, validly signed.
    let mut c = claims_of(&access);
    c["exp"] = json!(app.clock_now().timestamp() - 1);
    app.me(&signed(&c)).await.assert(401, "TOKEN_EXPIRED");
    // Extreme values: refused, never a panic (overflow) or a 5xx.
    for exp in [json!(i64::MIN), json!(0), json!(-1), json!("never"), json!(1e300), json!(null)] {
        let mut c = claims_of(&access);
        c["exp"] = exp.clone();
        let r = app.me(&signed(&c)).await;
        assert_eq!(r.status.as_u16(), 401, "exp {exp}: {}", r.text);
    }
}

#[tokio::test]
async fn a_not_yet_valid_token_is_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (access, _) = logged_in(&app).await;
    let now = app.clock_now().timestamp();
    let mut c = claims_of(&access);
    c["nbf"] = json!(now + 60);
    refused(&app.me(&signed(&c)).await, "nbf in a minute");
    let mut c = claims_of(&access);
    c["nbf"] = json!(now);
    app.me(&signed(&c)).await.assert(200, "");
    // iat far in the future (a token minted by a clock that is ahead, or forged).
    let mut c = claims_of(&access);
    c["iat"] = json!(now + 3600);
    refused(&app.me(&signed(&c)).await, "iat in an hour");
    let mut c = claims_of(&access);
    c["nbf"] = json!(i64::MAX);
    refused(&app.me(&signed(&c)).await, "nbf at the end of time");
}

#[tokio::test]
async fn a_wrong_or_missing_issuer_or_audience_is_refused() {
    let app =
        TestApp::spawn_with(Backend::Sqlite, &[("JWT_ISSUER", "https://auth.example"), ("JWT_AUDIENCE", "app")]).await;
    let (access, _) = logged_in(&app).await;
    let c = claims_of(&access);
    assert_eq!((c["iss"].as_str(), c["aud"].as_str()), (Some("https://auth.example"), Some("app")));
    app.me(&signed(&c)).await.assert(200, "");
    for (field, value) in [
        ("iss", json!("https://evil.example")),
        ("iss", json!("https://auth.example/")),
        ("iss", json!(null)),
        ("iss", json!(["https://auth.example"])),
        ("aud", json!("other-app")),
        ("aud", json!(null)),
        ("aud", json!(["other-app", "app"])),
        ("aud", json!("APP")),
    ] {
        let mut c = c.clone();
        c[field] = value.clone();
        refused(&app.me(&signed(&c)).await, &format!("{field} = {value}"));
        let mut c = c.clone();
        c.as_object_mut().unwrap().remove(field);
        refused(&app.me(&signed(&c)).await, &format!("{field} missing"));
    }
    // And a server without iss/aud refuses tokens that carry them (tokens of another deployment).
    let plain = TestApp::spawn(Backend::Sqlite).await;
    let (access, _) = logged_in(&plain).await;
    let mut c = claims_of(&access);
    c["aud"] = json!("app");
    refused(&plain.me(&signed(&c)).await, "unexpected aud");
}

#[tokio::test]
async fn a_refresh_token_is_no_access_token() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (access, refresh) = logged_in(&app).await;
    refused(&app.me(&refresh).await, "the opaque refresh token as a bearer");
    for kind in ["refresh", "Access", "reset", "", "access "] {
        let mut c = claims_of(&access);
        c["type"] = json!(kind);
        refused(&app.me(&signed(&c)).await, &format!("type {kind:?}"));
    }
    let mut c = claims_of(&access);
    c.as_object_mut().unwrap().remove("type");
    refused(&app.me(&signed(&c)).await, "no type");
    // And the access token is no refresh token.
    app.refresh(&access).await.assert(401, "INVALID_TOKEN");
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (access, _) = logged_in(&app).await;
    app.signed_up("other@example.com").await;
    let other = app.login("other@example.com", PASSWORD).await.str("access_token");
    let parts: Vec<&str> = access.split('.').collect();
    let edits: [(&str, Value); 6] = [
        ("roles", json!(["admin"])),
        ("permissions", json!(["*"])),
        ("sub", claims_of(&other)["sub"].clone()),
        ("session_id", claims_of(&other)["session_id"].clone()),
        ("exp", json!(claims_of(&access)["exp"].as_i64().unwrap() + 86_400)),
        ("tenant", json!("acme")),
    ];
    for (field, value) in edits {
        let mut c = claims_of(&access);
        c[field] = value;
        let token = format!("{}.{}.{}", parts[0], B64.encode(c.to_string()), parts[2]);
        refused(&app.me(&token).await, &format!("tampered {field}"));
    }
    // One flipped bit anywhere in the signature.
    let sig = B64.decode(parts[2]).unwrap();
    for i in [0, sig.len() / 2, sig.len() - 1] {
        let mut s = sig.clone();
        s[i] ^= 1;
        refused(&app.me(&format!("{}.{}.{}", parts[0], parts[1], B64.encode(&s))).await, "flipped signature bit");
    }
    // Signed validly, but naming another user's session: the session check catches it.
    let mut c = claims_of(&access);
    c["session_id"] = claims_of(&other)["session_id"].clone();
    refused(&app.me(&signed(&c)).await, "another user's session");
    app.me(&access).await.assert(200, "");
}

#[tokio::test]
async fn a_100_kb_token_is_refused_cheaply() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (access, _) = logged_in(&app).await;
    let parts: Vec<&str> = access.split('.').collect();
    let pad = "A".repeat(100 * 1024);
    for big in [pad.clone(), format!("{}.{pad}.{}", parts[0], parts[2]), format!("{}.{}.{pad}", parts[0], parts[1]), {
        let mut c = claims_of(&access);
        c["roles"] = json!(vec!["r"; 25_000]);
        signed(&c)
    }] {
        assert!(big.len() >= 100 * 1024);
        let started = std::time::Instant::now();
        refused(&app.me(&big).await, "100 KB token");
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "refused before any heavy work");
    }
}

#[tokio::test]
async fn non_base64_segments_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (access, _) = logged_in(&app).await;
    let p: Vec<&str> = access.split('.').collect();
    let std_b64 = |s: &str| s.replace('-', "+").replace('_', "/");
    let cases = [
        "!!!.@@@.###".to_owned(),
        format!("{}.{}.%%%", p[0], p[1]),
        format!("{}.$$$.{}", p[0], p[2]),
        format!("***.{}.{}", p[1], p[2]),
        format!("{}==.{}.{}", p[0], p[1], p[2]),
        format!("{}.{}.{}=", p[0], p[1], p[2]),
        format!("{}.{}.{}", std_b64(p[0]), std_b64(p[1]), std_b64(p[2])) + "+/",
        format!("{} .{}.{}", p[0], p[1], p[2]),
        format!("{}.{}.{}.{}", p[0], p[1], p[2], p[2]),
        format!("{}.{}", p[0], p[1]),
        format!("{}..{}", p[0], p[2]),
        format!("{}.{}.{}", p[0], B64.encode([0xff, 0xfe, 0x00]), p[2]),
        format!("{}.{}.{}", B64.encode("not json"), p[1], p[2]),
        format!("{}.{}.{}", B64.encode("[]"), p[1], p[2]),
        ".".to_owned(),
        "..".to_owned(),
    ];
    for token in &cases {
        refused(&app.me(token).await, &format!("{token:.60}"));
    }
    // A header value that is not visible ASCII is no token at all: 401 UNAUTHORIZED, not a 5xx.
    for value in [&b"Bearer \xff\xfe.x.y"[..], "Bearer é.é.é".as_bytes()] {
        let r = app
            .send(
                axum::http::Request::builder()
                    .uri("/auth/me")
                    .header("authorization", axum::http::HeaderValue::from_bytes(value).unwrap())
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        r.assert(401, "UNAUTHORIZED");
    }
}
