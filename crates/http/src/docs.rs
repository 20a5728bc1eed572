//! `GET /docs`: Swagger UI over `/openapi.json`, served from the binary (no CDN: the assets are
//! compiled in by `utoipa-swagger-ui`'s `vendored` feature), so it works without internet access.
//!
//! Its pages need more than the API's `default-src 'none'`: they load their own scripts, styles
//! and images and fetch the document. They get [`DOCS_CSP`], which allows exactly that and only
//! from this origin: no inline script (Swagger UI's configuration is the file
//! `swagger-initializer.js`, not an inline block), no `eval`, no third-party host. Every other
//! route keeps the configured `CSP_POLICY` (see `protect::client_layer`). Off with
//! `DOCS_ENABLED=false`.
use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::error::ApiError;

/// Where the page lives.
pub const DOCS_PATH: &str = "/docs";

/// The Content-Security-Policy of the docs pages, and of nothing else. Swagger UI sets most styles
/// through the DOM (allowed by `style-src 'self'`); the hash admits the one `<style>` block its
/// bundle inserts (Chromium names it in the violation report when the vendored version changes;
/// without it the page still works). Its CSS uses `data:` images.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; \
                            style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; img-src 'self' data:; \
                            connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; \
                            frame-ancestors 'none'";

/// Whether `path` is one of the docs pages (whose own CSP the security-header layer keeps).
pub fn is_docs_path(path: &str) -> bool {
    path == DOCS_PATH || path.strip_prefix(DOCS_PATH).is_some_and(|rest| rest.starts_with('/'))
}

/// The docs routes, reading the document at `openapi_url`.
pub fn router<S: Clone + Send + Sync + 'static>(openapi_url: &str) -> Router<S> {
    // No validator badge (it would call an outside host); no configuration from the query string.
    let config = Arc::new(
        utoipa_swagger_ui::Config::new([openapi_url.to_owned()]).validator_url("none").query_config_enabled(false),
    );
    let index = {
        let config = Arc::clone(&config);
        move || async move { asset("", &config) }
    };
    let file = move |Path(file): Path<String>| async move { asset(&file, &config) };
    Router::new()
        // The page's links are relative: it must be seen at `/docs/`.
        .route(DOCS_PATH, get(|| async { Redirect::to(&format!("{DOCS_PATH}/")) }))
        .route(&format!("{DOCS_PATH}/"), get(index))
        .route(&format!("{DOCS_PATH}/{{*file}}"), get(file))
}

fn asset(file: &str, config: &Arc<utoipa_swagger_ui::Config<'static>>) -> Response {
    match utoipa_swagger_ui::serve(file, Arc::clone(config)) {
        Ok(Some(file)) => {
            let mut res = (StatusCode::OK, file.bytes.into_owned()).into_response();
            let headers = res.headers_mut();
            if let Ok(ct) = HeaderValue::from_str(&file.content_type) {
                headers.insert(header::CONTENT_TYPE, ct);
            }
            headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
            res
        }
        Ok(None) => ApiError::not_found().into_response(),
        Err(e) => {
            tracing::error!(error = %e, "docs: cannot render the Swagger UI configuration");
            ApiError::for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_docs_pages_are_docs_paths() {
        for p in ["/docs", "/docs/", "/docs/swagger-ui.css"] {
            assert!(is_docs_path(p), "{p}");
        }
        for p in ["/", "/docsx", "/auth/docs", "/openapi.json", "/doc"] {
            assert!(!is_docs_path(p), "{p}");
        }
    }

    #[test]
    fn the_assets_are_in_the_binary_and_the_page_has_no_inline_script() {
        let config = Arc::new(utoipa_swagger_ui::Config::new(["/openapi.json".to_owned()]));
        let page = utoipa_swagger_ui::serve("", Arc::clone(&config)).ok().flatten().map(|f| f.bytes.into_owned());
        let page = String::from_utf8(page.unwrap_or_default()).unwrap_or_default();
        assert!(page.contains("swagger-initializer.js"), "{page}");
        // Every <script> loads a file (so `script-src 'self'` suffices) and nothing is remote.
        for tag in page.split("<script").skip(1) {
            assert!(tag.trim_start().starts_with("src=\"./"), "inline or remote script: <script{tag}");
        }
        assert!(!page.contains("http://") && !page.contains("https://"), "{page}");
        for file in ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"] {
            assert!(utoipa_swagger_ui::serve(file, Arc::clone(&config)).ok().flatten().is_some(), "{file}");
        }
        let init =
            utoipa_swagger_ui::serve("swagger-initializer.js", config).ok().flatten().map(|f| f.bytes.into_owned());
        assert!(String::from_utf8(init.unwrap_or_default()).unwrap_or_default().contains("/openapi.json"));
    }
}
