//! `fraise-auth smoke --url URL`: the guide's auth flow tester against a running server. Registers
//! a throw-away account, reads /me, refreshes, reads /me with the new token, logs out, and
//! replays the old refresh token (which must be refused). Prints each step; stops at the first
//! failure with what was expected and what came back.
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One step's outcome, as printed.
#[derive(Debug)]
pub struct Step {
    pub ok: bool,
    pub line: String,
}

struct Client {
    http: reqwest::Client,
    base: String,
    prefix: String,
    tenant: Option<String>,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> Result<(u16, Value, Duration), String> {
        let url = format!("{}{}{path}", self.base, self.prefix);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if let Some(t) = &self.tenant {
            req = req.header("x-tenant-id", t);
        }
        let t0 = Instant::now();
        let res = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = res.status().as_u16();
        let body = res.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body, t0.elapsed()))
    }
}

fn code(body: &Value) -> &str {
    body["detail"]["code"].as_str().unwrap_or("")
}

fn str_at<'a>(body: &'a Value, key: &str) -> Result<&'a str, String> {
    body[key].as_str().ok_or_else(|| format!("no `{key}` in the response: {body}"))
}

/// Runs the flow; the steps run so far, the last one failed if the flow stopped early.
pub async fn run(url: &str, prefix: &str, tenant: Option<String>, password: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let outcome = flow(url, prefix, tenant, password, &mut steps).await;
    if let Err(e) = outcome {
        steps.push(Step { ok: false, line: format!("❌ {e}") });
    }
    steps
}

async fn flow(
    url: &str,
    prefix: &str,
    tenant: Option<String>,
    password: &str,
    steps: &mut Vec<Step>,
) -> Result<(), String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let c = Client { http, base: url.trim_end_matches('/').to_owned(), prefix: prefix.to_owned(), tenant };
    let mut pass = |what: String, took: Duration| {
        steps.push(Step { ok: true, line: format!("✅ {what} ({} ms)", took.as_millis()) });
    };
    let expect = |what: &str, want: u16, got: (u16, &Value)| -> Result<(), String> {
        if got.0 == want { Ok(()) } else { Err(format!("{what}: expected HTTP {want}, got {} {}", got.0, got.1)) }
    };
    use reqwest::Method;

    let suffix: u64 = rand::random();
    let email = format!("smoke-{suffix:016x}@example.com");
    let (s, body, took) = c
        .call(
            Method::POST,
            "/register",
            Some(json!({"email": email, "password": password, "name": "Smoke Test"})),
            None,
        )
        .await?;
    expect("register", 201, (s, &body))?;
    let access = str_at(&body, "access_token")?.to_owned();
    let refresh = str_at(&body, "refresh_token")
        .map_err(|e| format!("{e} (is TOKEN_TRANSPORT=cookie? smoke needs the token in the body: json or both)"))?
        .to_owned();
    pass(format!("register {email}"), took);

    let (s, body, took) = c.call(Method::GET, "/me", None, Some(&access)).await?;
    expect("me", 200, (s, &body))?;
    if body["email"] != email.as_str() {
        return Err(format!("me: expected email {email}, got {body}"));
    }
    pass("me returns the new user".into(), took);

    let (s, body, took) = c.call(Method::POST, "/refresh", Some(json!({"refresh_token": refresh})), None).await?;
    expect("refresh", 200, (s, &body))?;
    let access2 = str_at(&body, "access_token")?.to_owned();
    let refresh2 = str_at(&body, "refresh_token")?.to_owned();
    if refresh2 == refresh {
        return Err("refresh: the refresh token was not rotated".into());
    }
    pass("refresh rotates the refresh token".into(), took);

    let (s, body, took) = c.call(Method::GET, "/me", None, Some(&access2)).await?;
    expect("me with the new access token", 200, (s, &body))?;
    pass("me with the new access token".into(), took);

    let (s, body, took) =
        c.call(Method::POST, "/logout", Some(json!({"refresh_token": refresh2})), Some(&access2)).await?;
    expect("logout", 200, (s, &body))?;
    pass("logout".into(), took);

    let (s, body, took) = c.call(Method::GET, "/me", None, Some(&access2)).await?;
    if s != 401 {
        return Err(format!("me after logout: expected 401 (the session is over), got {s} {body}"));
    }
    pass(format!("the logged-out access token is refused ({})", code(&body)), took);

    let (s, body, took) = c.call(Method::POST, "/refresh", Some(json!({"refresh_token": refresh})), None).await?;
    if !matches!(s, 401 | 403) {
        return Err(format!("replayed refresh token: expected 401 or 403, got {s} {body}"));
    }
    pass(format!("the replayed refresh token is refused ({s} {})", code(&body)), took);
    Ok(())
}
