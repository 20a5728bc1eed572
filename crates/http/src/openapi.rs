//! The OpenAPI 3.1 document of this deployment, generated on its first request.
//!
//! Every handler carries `#[utoipa::path]`, and the router is built from those attributes
//! (`utoipa_axum::routes!` in each route group): a route's path and method are written once, and
//! the same declaration registers the handler and documents it. What a handler cannot know
//! because a layer decides it per deployment (the prefix, tenancy, rate limits, CSRF, the body
//! limit, load shedding) is added by [`finish`], which mirrors those layers.
//!
//! Error responses list, per status, one example per code the route can answer with; the codes,
//! their usual statuses and their meanings come from [`crate::error::CODES`].
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use utoipa::openapi::content::Content;
use utoipa::openapi::example::Example;
use utoipa::openapi::header::Header;
use utoipa::openapi::info::{InfoBuilder, License};
use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, OpenApi, Ref, RefOr, Required};

use crate::error::{ApiError, CODES};
use crate::tenancy::TenantResolution;
use crate::{AppState, HttpConfig};

/// The name of the bearer security scheme, as handlers reference it.
pub const BEARER: &str = "bearer";

/// Codes every bearer-protected route can answer with (the `AuthUser` extractor's).
pub const BEARER_CODES: &[(u16, &str)] = &[
    (401, "UNAUTHORIZED"),
    (401, "INVALID_TOKEN"),
    (401, "TOKEN_EXPIRED"),
    (403, "ACCOUNT_DISABLED"),
    (403, "MFA_REQUIRED"),
];

/// The bearer codes of the routes that stay open under `REQUIRE_MFA` (`EnrollingUser`).
pub const ENROLLING_CODES: &[(u16, &str)] =
    &[(401, "UNAUTHORIZED"), (401, "INVALID_TOKEN"), (401, "TOKEN_EXPIRED"), (403, "ACCOUNT_DISABLED")];

/// A set of error responses for `responses(...)` of `#[utoipa::path]`: the codes the handler
/// itself (its extractors and the service) can answer with; [`finish`] adds the shared ones.
macro_rules! error_set {
    ($(#[$doc:meta])* $name:ident = $($codes:expr),+ $(,)?) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                let mut out = std::collections::BTreeMap::new();
                $(for &(status, code) in $codes {
                    $crate::openapi::add_error(&mut out, status, code);
                })+
                out
            }
        }
    };
}
pub(crate) use error_set;

error_set!(
    /// Any bearer-protected route without errors of its own.
    BearerErrors = BEARER_CODES
);

/// Adds `code` to the `status` response of `responses` (creating it if needed): one example per
/// code, a line per code in the description, and the headers that status carries.
pub fn add_error(responses: &mut BTreeMap<String, RefOr<Response>>, status: u16, code: &str) {
    let meaning = CODES.iter().find(|c| c.0 == code).map_or("", |c| c.2);
    let entry = responses.entry(status.to_string()).or_insert_with(|| {
        let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
        RefOr::T(Response::new(format!("{reason}.")))
    });
    let RefOr::T(response) = entry else {
        return;
    };
    let content = response
        .content
        .entry("application/json".to_owned())
        .or_insert_with(|| Content::new(Some(Ref::from_schema_name("ErrorEnvelope"))));
    if content.examples.contains_key(code) {
        return;
    }
    let value = serde_json::json!({"detail": {"code": code, "message": meaning}});
    content.examples.insert(code.to_owned(), RefOr::T(Example::builder().summary(code).value(Some(value)).build()));
    let separator = if response.description.contains("\n- `") { "\n" } else { "\n\n" };
    response.description.push_str(&format!("{separator}- `{code}`: {meaning}"));
    let mut add_header = |name: &str, description: &str, ty: Type| {
        response.headers.entry(name.to_owned()).or_insert_with(|| {
            Header::builder().schema(ObjectBuilder::new().schema_type(ty)).description(Some(description)).build()
        });
    };
    match status {
        401 => {
            add_header("WWW-Authenticate", "`Bearer` (with `error=\"invalid_token\"` for a bad token)", Type::String)
        }
        423 | 429 | 503 => add_header("Retry-After", "Seconds to wait before trying again", Type::Integer),
        _ => {}
    }
}

/// Completes the generated document for this deployment: information, the bearer scheme, the
/// error schemas, and on every operation the parameters and error responses the layers add.
pub fn finish(mut doc: OpenApi, http: &HttpConfig) -> OpenApi {
    // Built afresh: the default one describes utoipa itself (its author as contact).
    doc.info = InfoBuilder::new()
        .title("fraise-auth")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(description(http)))
        .license(Some(License::new(env!("CARGO_PKG_LICENSE"))))
        .build();
    let components = doc.components.get_or_insert_with(Components::new);
    components.security_schemes.insert(
        BEARER.into(),
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
    );
    components.schemas.extend(crate::error::envelope_schemas());
    let auth_prefix = format!("{}/", http.auth_prefix);
    for (path, item) in doc.paths.paths.iter_mut() {
        let auth = path.starts_with(&auth_prefix);
        let health = path == "/health" || path.starts_with("/health/");
        let operations = [
            ("GET", &mut item.get),
            ("PUT", &mut item.put),
            ("POST", &mut item.post),
            ("DELETE", &mut item.delete),
            ("PATCH", &mut item.patch),
        ];
        for (method, op) in operations {
            if let Some(op) = op.as_mut() {
                layer_errors(op, http, method, auth, health);
            }
        }
    }
    doc
}

/// `request_body = Option<T>` comes out as "`null` or T"; what it means here is "no body, or T"
/// (`OptionalJsonBody`): T, not required.
fn optional_body(op: &mut Operation) {
    let Some(body) = op.request_body.as_mut() else {
        return;
    };
    for content in body.content.values_mut() {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
            let refs: Vec<_> = one_of.items.iter().filter(|i| matches!(i, RefOr::Ref(_))).cloned().collect();
            if let ([only], 2) = (refs.as_slice(), one_of.items.len()) {
                content.schema = Some(only.clone());
                body.required = Some(Required::False);
            }
        }
    }
}

fn layer_errors(op: &mut Operation, http: &HttpConfig, method: &str, auth: bool, health: bool) {
    optional_body(op);
    let responses = &mut op.responses.responses;
    if auth && http.tenancy != TenantResolution::None {
        add_error(responses, 400, "VALIDATION_ERROR");
        add_error(responses, 404, "TENANT_NOT_FOUND");
    }
    let mut params = Vec::new();
    if auth && http.tenancy == TenantResolution::Header {
        params.push(header_param(
            "X-Tenant-ID",
            Required::True,
            "The tenant (`TENANT_RESOLUTION_METHOD=header`): `^[a-z][a-z0-9_]{0,30}[a-z0-9]$`.",
        ));
    }
    let changes_state = matches!(method, "POST" | "PUT" | "PATCH" | "DELETE");
    if http.csrf && changes_state {
        params.push(header_param(
            "X-CSRF-Token",
            Required::False,
            "Required when the request carries the refresh cookie: the value of the `csrf_token` cookie.",
        ));
        add_error(responses, 403, "CSRF_FAILED");
    }
    if !params.is_empty() {
        op.parameters.get_or_insert_with(Vec::new).extend(params);
    }
    if op.request_body.is_some() {
        add_error(responses, 400, "VALIDATION_ERROR");
        add_error(responses, 413, "PAYLOAD_TOO_LARGE");
        add_error(responses, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    if !health {
        // Health probes are neither rate limited nor shed (see `limits` and `layers`).
        if http.limits.is_some() {
            add_error(responses, 429, "RATE_LIMITED");
        }
        add_error(responses, 503, "SERVICE_UNAVAILABLE");
    }
    add_error(responses, 408, "REQUEST_TIMEOUT");
    add_error(responses, 500, "INTERNAL_ERROR");
}

fn header_param(name: &str, required: Required, description: &str) -> Parameter {
    Parameter::builder()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(required)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

fn description(http: &HttpConfig) -> String {
    let tenancy = match &http.tenancy {
        TenantResolution::None => "one tenant".to_owned(),
        TenantResolution::Header => {
            "tenant named by the `X-Tenant-ID` header (required on every auth route)".to_owned()
        }
        TenantResolution::Subdomain { base_domain } => format!("tenant named by the host, `<tenant>.{base_domain}`"),
    };
    let transport = match http.token_transport {
        crate::cookies::TokenTransport::Json => "in the JSON body",
        crate::cookies::TokenTransport::Cookie => "only in the HttpOnly `fraise_refresh` cookie",
        crate::cookies::TokenTransport::Both => "in the JSON body and the HttpOnly `fraise_refresh` cookie",
    };
    format!(
        "Authentication server: email/password accounts, JWT access tokens, rotating refresh tokens, \
         sessions.\n\nThis deployment: auth routes under `{}`; {tenancy}; refresh tokens travel {transport}; \
         CSRF check {}; rate limits {}.\n\nEvery error has one shape, `{{\"detail\": {{\"code\", \"message\", \
         \"field\"?}}}}`; each error response below lists the codes the route can answer with. Every \
         response carries `X-Request-Id`.",
        http.auth_prefix,
        if http.csrf { "on" } else { "off" },
        if http.limits.is_some() { "on (`X-RateLimit-*` headers)" } else { "off" },
    )
}

/// The serialized document, built on the first `GET /openapi.json` and kept. Not at start-up:
/// finished, it holds every operation's error examples (~2.5 MB of heap while it is built), and
/// freed among the router's allocations it left that much resident in an idle server that may
/// never be asked for it. `None`: it could not be serialized (answered 500 and logged).
#[derive(Debug, Clone, Default)]
pub struct Document(pub Arc<OnceLock<Option<bytes::Bytes>>>);

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this deployment.", content_type = "application/json", body = Object))
)]
pub async fn openapi_json(State(state): State<AppState>, Extension(doc): Extension<Document>) -> HttpResponse {
    let json = doc.0.get_or_init(|| match serde_json::to_vec(&crate::openapi(&state)) {
        Ok(json) => Some(json.into()),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize the OpenAPI document");
            None
        }
    });
    match json {
        Some(json) => {
            let mut res = axum::body::Body::from(json.clone()).into_response();
            res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            res
        }
        None => ApiError::for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response(),
    }
}
