//! `GET /ui/`: the hosted account page (sign up, sign in, sessions, forgot/reset password, verify
//! email), served from the binary when `UI_ENABLED=true`. Off by default: an auth origin that
//! serves no HTML has nothing for an XSS to live in.
//!
//! Everything is compiled in (`include_str!`): the page, its stylesheet, its script, and the
//! TypeScript client of `clients/js` as built by `tsc` (`ui/client/*.js`; CI rebuilds it from the
//! source and fails if the committed copy differs). No CDN, no inline script: the page gets
//! [`UI_CSP`], which allows scripts, styles and `fetch` from this origin only; every other route
//! keeps `CSP_POLICY` (see `protect::client_layer`).
//!
//! `/ui/reset-password` and `/ui/verify-email` serve the page too, so with
//! `APP_BASE_URL=https://auth.example.com/ui` the emailed links land on it. Every answer carries an
//! `ETag` and `Cache-Control: no-cache`: the browser revalidates (a 304 when unchanged), so a new
//! binary's page never runs with the previous binary's client.
use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::cookies::TokenTransport;
use crate::error::ApiError;

/// Where the page lives.
pub const UI_PATH: &str = "/ui";

/// The Content-Security-Policy of the page and its files, and of nothing else.
pub const UI_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                          connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const JS: &str = "text/javascript; charset=utf-8";

/// Paths under `/ui/` that are the page itself (the landing points of emailed links).
const PAGES: &[&str] = &["reset-password", "verify-email"];

/// The files under `/ui/`: name, content type, contents.
const FILES: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../ui/app.js")),
    ("app.css", "text/css; charset=utf-8", include_str!("../ui/app.css")),
    ("client/index.js", JS, include_str!("../ui/client/index.js")),
    ("client/client.js", JS, include_str!("../ui/client/client.js")),
    ("client/errors.js", JS, include_str!("../ui/client/errors.js")),
    ("client/lock.js", JS, include_str!("../ui/client/lock.js")),
    ("client/passkeys.js", JS, include_str!("../ui/client/passkeys.js")),
    ("client/storage.js", JS, include_str!("../ui/client/storage.js")),
];

const INDEX: &str = include_str!("../ui/index.html");

/// Whether `path` is one of the page's paths (whose own CSP the security-header layer keeps, and
/// which the rate limiter does not count: static files are not API calls).
pub fn is_ui_path(path: &str) -> bool {
    path == UI_PATH || path.strip_prefix(UI_PATH).is_some_and(|rest| rest.starts_with('/'))
}

/// One file, ready to serve.
#[derive(Debug)]
struct Asset {
    content_type: &'static str,
    body: bytes::Bytes,
    etag: HeaderValue,
}

impl Asset {
    fn new(content_type: &'static str, body: String) -> Self {
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(body.as_bytes())))
            .unwrap_or(HeaderValue::from_static("\"0\""));
        Self { content_type, body: bytes::Bytes::from(body), etag }
    }

    fn respond(&self, req: &HeaderMap) -> Response {
        let fresh = req.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == self.etag.as_bytes());
        let mut res = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut res = (StatusCode::OK, self.body.clone()).into_response();
            res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
            res
        };
        let h = res.headers_mut();
        h.insert(header::ETAG, self.etag.clone());
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(UI_CSP));
        res
    }
}

/// FNV-1a, 64 bits: an ETag needs to change with the contents, not to resist forgery.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Escapes text for an HTML attribute value.
fn attr(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The page as served: the auth prefix and token transport of this deployment are written into
/// `<meta>` tags (configuration without an inline script).
fn index(auth_prefix: &str, transport: TokenTransport) -> String {
    let transport = match transport {
        TokenTransport::Json => "json",
        TokenTransport::Cookie => "cookie",
        TokenTransport::Both => "both",
    };
    INDEX.replace("{{AUTH_PREFIX}}", &attr(auth_prefix)).replace("{{TOKEN_TRANSPORT}}", transport)
}

/// The page's routes.
pub fn router<S: Clone + Send + Sync + 'static>(auth_prefix: &str, transport: TokenTransport) -> Router<S> {
    let page = Arc::new(Asset::new("text/html; charset=utf-8", index(auth_prefix, transport)));
    let files: Arc<Vec<(&'static str, Asset)>> =
        Arc::new(FILES.iter().map(|(name, ct, body)| (*name, Asset::new(ct, (*body).to_owned()))).collect());
    let index = {
        let page = Arc::clone(&page);
        move |headers: HeaderMap| async move { page.respond(&headers) }
    };
    let file = move |Path(file): Path<String>, headers: HeaderMap| async move {
        if PAGES.contains(&file.as_str()) {
            return page.respond(&headers);
        }
        match files.iter().find(|(name, _)| *name == file) {
            Some((_, asset)) => asset.respond(&headers),
            None => ApiError::not_found().into_response(),
        }
    };
    Router::new()
        // The page's links are relative: it must be seen at `/ui/`.
        .route(UI_PATH, get(|| async { Redirect::to(&format!("{UI_PATH}/")) }))
        .route(&format!("{UI_PATH}/"), get(index))
        .route(&format!("{UI_PATH}/{{*file}}"), get(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_page_paths_are_ui_paths() {
        for p in ["/ui", "/ui/", "/ui/app.js", "/ui/client/index.js"] {
            assert!(is_ui_path(p), "{p}");
        }
        for p in ["/", "/uix", "/auth/ui", "/docs/", "/u"] {
            assert!(!is_ui_path(p), "{p}");
        }
    }

    #[test]
    fn the_page_has_no_inline_script_no_remote_resource_and_its_configuration() {
        let page = index("/a\"uth", TokenTransport::Cookie);
        for tag in page.split("<script").skip(1) {
            assert!(tag.trim_start().starts_with("type=\"module\" src=\"./"), "inline or remote script: <script{tag}");
        }
        assert!(!page.contains(" style=") && !page.contains("<style"), "inline styles need 'unsafe-inline'");
        assert!(!page.contains("http://") && !page.contains("https://"), "{page}");
        assert!(page.contains("content=\"/a&quot;uth\""), "{page}");
        assert!(page.contains("content=\"cookie\""), "{page}");
        assert!(!page.contains("{{"), "a placeholder was left: {page}");
    }

    #[test]
    fn every_module_the_page_imports_is_served() {
        // `import ... from "./x.js"` in each file must name a file of FILES, relative to it.
        for (name, _, body) in FILES.iter().filter(|(n, _, _)| n.ends_with(".js")) {
            let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
            for spec in body.split("from \"./").skip(1).filter_map(|rest| rest.split_once('"').map(|(s, _)| s)) {
                let target = if dir.is_empty() { spec.to_owned() } else { format!("{dir}/{spec}") };
                assert!(FILES.iter().any(|(n, _, _)| *n == target), "{name} imports {spec}, which is not served");
            }
        }
    }

    #[test]
    fn etags_follow_the_contents() {
        let a = Asset::new(JS, "a".into());
        let b = Asset::new(JS, "b".into());
        assert_ne!(a.etag, b.etag);
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, a.etag.clone());
        assert_eq!(a.respond(&h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(b.respond(&h).status(), StatusCode::OK);
    }
}
