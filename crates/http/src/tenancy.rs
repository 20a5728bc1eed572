//! Which tenant a request is for, and that tenant's service.
//!
//! With `TENANT_RESOLUTION_METHOD=header` the tenant is the `X-Tenant-ID` header; with
//! `subdomain` it is the first label of the `Host` under `TENANT_BASE_DOMAIN`. The name is
//! validated before anything else happens (400 VALIDATION_ERROR, field `tenant`), then looked up
//! (404 TENANT_NOT_FOUND); the tenant's [`AuthService`] goes into the request's extensions, where
//! the [`crate::extract::Auth`] and [`crate::AuthUser`] extractors find it. A token is bound to
//! the tenant it was issued for, so presenting it to another tenant fails its verification.
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fraise_core::tenant::TenantName;
use fraise_core::{AuthError, AuthService};

use crate::AppState;
use crate::error::ApiError;

/// The header naming the tenant in `header` mode.
pub const TENANT_HEADER: &str = "x-tenant-id";

/// How a request names its tenant (`TENANT_RESOLUTION_METHOD`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TenantResolution {
    /// One tenant: the service's own store (`DEFAULT_SCHEMA`).
    #[default]
    None,
    /// `X-Tenant-ID: acme`.
    Header,
    /// `acme.<base_domain>`; `base_domain` is lower-case, without a leading dot or a port.
    Subdomain { base_domain: String },
}

/// The service of the tenant this request is for (set by [`tenant_layer`]).
#[derive(Debug, Clone)]
pub struct TenantService(pub AuthService);

fn missing(message: &str) -> AuthError {
    AuthError::Validation { field: Some("tenant"), message: message.to_owned() }
}

/// The tenant named by `headers` under `mode`; `None` in single-tenant mode.
pub fn tenant_name(mode: &TenantResolution, headers: &HeaderMap) -> Result<Option<TenantName>, AuthError> {
    match mode {
        TenantResolution::None => Ok(None),
        TenantResolution::Header => {
            let Some(value) = headers.get(TENANT_HEADER) else {
                return Err(missing("The X-Tenant-ID header is required"));
            };
            let text = value.to_str().map_err(|_| missing("X-Tenant-ID must be plain ASCII"))?;
            TenantName::parse(text.trim()).map(Some)
        }
        TenantResolution::Subdomain { base_domain } => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| missing("A Host header naming the tenant is required"))?;
            let host = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
            let label = host
                .strip_suffix(base_domain.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .filter(|label| !label.is_empty())
                .ok_or_else(|| missing("The host must be <tenant>.<TENANT_BASE_DOMAIN>"))?;
            if label.contains('.') {
                return Err(missing("The tenant is one DNS label, directly under TENANT_BASE_DOMAIN"));
            }
            TenantName::parse(label).map(Some)
        }
    }
}

/// `host:port` → `host` (and `[v6]:port` → `[v6]`, which names no tenant anyway).
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Resolves the tenant and hands its service to the handlers; no-op in single-tenant mode.
pub async fn tenant_layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(tenants) = &state.tenants else {
        return next.run(req).await;
    };
    let name = match tenant_name(&state.http.tenancy, req.headers()) {
        Ok(Some(name)) => name,
        Ok(None) => return next.run(req).await,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match tenants.service(&name).await {
        Ok(service) => {
            req.extensions_mut().insert(TenantService(service));
            next.run(req).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
        h
    }

    fn sub() -> TenantResolution {
        TenantResolution::Subdomain { base_domain: "auth.example.com".into() }
    }

    fn name(r: Result<Option<TenantName>, AuthError>) -> Option<String> {
        r.ok().flatten().map(|n| n.as_str().to_owned())
    }

    #[test]
    fn header_mode_reads_and_validates_the_header() {
        let m = TenantResolution::Header;
        assert_eq!(name(tenant_name(&m, &headers("x-tenant-id", "acme"))), Some("acme".into()));
        assert!(tenant_name(&m, &HeaderMap::new()).is_err());
        for bad in ["", "Acme", "a'b", "a;drop", "..", "public", "x".repeat(200).as_str()] {
            assert!(tenant_name(&m, &headers("x-tenant-id", bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subdomain_mode_takes_the_first_label_under_the_base() {
        let m = sub();
        assert_eq!(name(tenant_name(&m, &headers("host", "acme.auth.example.com"))), Some("acme".into()));
        assert_eq!(name(tenant_name(&m, &headers("host", "ACME.Auth.Example.com:8443"))), Some("acme".into()));
        for bad in ["auth.example.com", "a.b.auth.example.com", "acme.evil.com", "acmeauth.example.com", "[::1]:80"] {
            assert!(tenant_name(&m, &headers("host", bad)).is_err(), "{bad}");
        }
        assert!(tenant_name(&m, &HeaderMap::new()).is_err());
    }

    #[test]
    fn single_tenant_mode_names_no_tenant() {
        assert!(matches!(tenant_name(&TenantResolution::None, &headers("x-tenant-id", "acme")), Ok(None)));
    }
}
