//! Token transport in cookies, and CSRF protection for it.
//!
//! `TOKEN_TRANSPORT=cookie` (or `both`): register, login and refresh set the refresh token in an
//! `HttpOnly; Secure; SameSite=Strict` cookie scoped to the auth path (in `cookie` mode the JSON
//! body no longer carries it, so page scripts never see it); refresh and logout read it from there
//! when the body does not name one; logout clears it.
//!
//! `ENABLE_CSRF_PROTECTION`: a request that changes state (POST, PUT, PATCH, DELETE) and carries
//! the refresh cookie must also carry `X-CSRF-Token` equal to the `csrf_token` cookie (double
//! submit, compared in constant time), else 403 CSRF_FAILED. Requests without the cookie are not
//! affected: without an ambient credential there is nothing to forge.
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use crate::AppState;
use crate::error::ApiError;

pub const REFRESH_COOKIE: &str = "fraise_refresh";
pub const CSRF_COOKIE: &str = "csrf_token";

/// Where refresh tokens travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenTransport {
    /// In the JSON body only (default).
    #[default]
    Json,
    /// In an HttpOnly cookie only.
    Cookie,
    /// Both.
    Both,
}

impl TokenTransport {
    pub fn uses_cookie(self) -> bool {
        self != Self::Json
    }

    pub fn uses_body(self) -> bool {
        self != Self::Cookie
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Adds the refresh cookie (and a fresh CSRF cookie) to `res`.
pub fn set_session_cookies(res: &mut Response, refresh_token: &str, path: &str, max_age_secs: i64) {
    let mut csrf = [0u8; 32];
    rand::fill(&mut csrf);
    let csrf = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(csrf);
    let cookies = [
        format!(
            "{REFRESH_COOKIE}={refresh_token}; Path={path}; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Strict"
        ),
        // Readable by the page (it must copy it into the header), useless to another site.
        format!("{CSRF_COOKIE}={csrf}; Path=/; Max-Age={max_age_secs}; Secure; SameSite=Strict"),
    ];
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

/// Expires both cookies.
pub fn clear_session_cookies(res: &mut Response, path: &str) {
    for c in [
        format!("{REFRESH_COOKIE}=; Path={path}; Max-Age=0; HttpOnly; Secure; SameSite=Strict"),
        format!("{CSRF_COOKIE}=; Path=/; Max-Age=0; Secure; SameSite=Strict"),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

/// The double-submit check.
pub async fn csrf_layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let changes_state = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    if state.http.csrf && changes_state && cookie(req.headers(), REFRESH_COOKIE).is_some() {
        let expected = cookie(req.headers(), CSRF_COOKIE).unwrap_or("");
        let given = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
        let ok = !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()));
        if !ok {
            return ApiError::new(StatusCode::FORBIDDEN, "CSRF_FAILED", "CSRF token missing or invalid")
                .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_several() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; fraise_refresh=tok; csrf_token=c"));
        assert_eq!(cookie(&h, REFRESH_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, CSRF_COOKIE), Some("c"));
        assert_eq!(cookie(&h, "missing"), None);
    }
}
