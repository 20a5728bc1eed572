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
///
/// `authority` is the request target's authority when the request carried one (HTTP/2
/// `:authority`, or an absolute-form HTTP/1.1 target); it must then agree with `Host`, so that a
/// proxy routing by one and this service reading the other can never pick different tenants. A
/// repeated `Host` or `X-Tenant-ID` header is refused for the same reason.
pub fn tenant_name(
    mode: &TenantResolution,
    headers: &HeaderMap,
    authority: Option<&str>,
) -> Result<Option<TenantName>, AuthError> {
    match mode {
        TenantResolution::None => Ok(None),
        TenantResolution::Header => {
            let value = single(headers, TENANT_HEADER)?.ok_or_else(|| missing("The X-Tenant-ID header is required"))?;
            let text = value.to_str().map_err(|_| missing("X-Tenant-ID must be plain ASCII"))?;
            TenantName::parse(text.trim()).map(Some)
        }
        TenantResolution::Subdomain { base_domain } => {
            let header_host = single(headers, header::HOST.as_str())?
                .map(|v| v.to_str().map_err(|_| missing("The Host header must be plain ASCII")))
                .transpose()?;
            let host = match (authority, header_host) {
                (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => {
                    return Err(missing("The request target's host and the Host header disagree"));
                }
                (Some(a), _) => a,
                (None, Some(h)) => h,
                (None, None) => return Err(missing("A Host header naming the tenant is required")),
            };
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

/// The one value of header `name`; two or more is an error.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h axum::http::HeaderValue>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(missing("The tenant must be named once; the header is repeated"));
    }
    Ok(first)
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
    if state.http.tenancy == TenantResolution::None {
        return next.run(req).await;
    }
    let Some(tenants) = &state.tenants else {
        // Tenancy configured without tenants (an embedder forgot `with_tenants`): serving the
        // base store would mix every tenant's users into one. Fail closed.
        tracing::error!("tenancy is on but the state has no tenants: call AppState::with_tenants");
        return ApiError::from(AuthError::Internal("tenancy without tenants".into())).into_response();
    };
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    let name = match tenant_name(&state.http.tenancy, req.headers(), authority.as_deref()) {
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
        assert_eq!(name(tenant_name(&m, &headers("x-tenant-id", "acme"), None)), Some("acme".into()));
        assert!(tenant_name(&m, &HeaderMap::new(), None).is_err());
        for bad in ["", "Acme", "a'b", "a;drop", "..", "public", "x".repeat(200).as_str()] {
            assert!(tenant_name(&m, &headers("x-tenant-id", bad), None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subdomain_mode_takes_the_first_label_under_the_base() {
        let m = sub();
        assert_eq!(name(tenant_name(&m, &headers("host", "acme.auth.example.com"), None)), Some("acme".into()));
        assert_eq!(name(tenant_name(&m, &headers("host", "ACME.Auth.Example.com:8443"), None)), Some("acme".into()));
        for bad in ["auth.example.com", "a.b.auth.example.com", "acme.evil.com", "acmeauth.example.com", "[::1]:80"] {
            assert!(tenant_name(&m, &headers("host", bad), None).is_err(), "{bad}");
        }
        assert!(tenant_name(&m, &HeaderMap::new(), None).is_err());
    }

    #[test]
    fn the_authority_must_agree_with_host_and_headers_may_not_repeat() {
        let m = sub();
        let h = headers("host", "acme.auth.example.com");
        assert_eq!(name(tenant_name(&m, &h, Some("acme.auth.example.com"))), Some("acme".into()));
        assert!(tenant_name(&m, &h, Some("other.auth.example.com")).is_err());
        assert_eq!(name(tenant_name(&m, &HeaderMap::new(), Some("acme.auth.example.com"))), Some("acme".into()));
        let mut twice = headers("x-tenant-id", "acme");
        twice.append("x-tenant-id", axum::http::HeaderValue::from_static("other"));
        assert!(tenant_name(&TenantResolution::Header, &twice, None).is_err());
    }

    #[test]
    fn single_tenant_mode_names_no_tenant() {
        assert!(matches!(tenant_name(&TenantResolution::None, &headers("x-tenant-id", "acme"), None), Ok(None)));
    }
}
