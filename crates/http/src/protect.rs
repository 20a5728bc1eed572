//! Who the client is, and the headers every response carries.
//!
//! - Client IP: the socket peer, unless the peer is a trusted proxy (`TRUSTED_PROXIES`); only then
//!   is `X-Forwarded-For` read, right to left, skipping trusted hops: the first untrusted address
//!   is the client. A client cannot choose its own key by sending the header itself.
//! - Security headers on every response, errors included; HSTS when the request reached us over
//!   HTTPS (a trusted proxy's `X-Forwarded-Proto: https`) or when `HSTS_ALWAYS` is set. The one
//!   exception: the `/docs` and `/ui` pages keep the CSP they set themselves (`docs::DOCS_CSP`,
//!   `ui::UI_CSP`), which lets them load their own scripts and styles; no other route can relax
//!   the policy.
//! - CORS for the configured origins only, with credentials; never `*` with credentials.
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Settings of this module.
#[derive(Debug, Clone)]
pub struct Protection {
    pub trusted_proxies: Vec<IpNet>,
    pub security_headers: bool,
    pub csp: String,
    pub hsts_always: bool,
    pub cors: Option<Cors>,
}

impl Default for Protection {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            security_headers: true,
            csp: DEFAULT_CSP.to_owned(),
            hsts_always: false,
            cors: None,
        }
    }
}

/// A JSON API renders nothing and embeds nothing.
pub const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

#[derive(Debug, Clone)]
pub struct Cors {
    pub origins: Vec<HeaderValue>,
    pub methods: Vec<Method>,
    pub headers: Vec<HeaderName>,
}

/// The client as established by [`client_layer`]; read it through the `Client` extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    /// The request reached the edge over HTTPS (as a trusted proxy says).
    pub https: bool,
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    proxies.iter().any(|net| net.contains(&ip))
}

/// The client's address given the socket peer and the request headers.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> ClientAddr {
    if !trusted(peer, proxies) {
        return ClientAddr { ip: peer, https: false };
    }
    // Every X-Forwarded-For header, in order, as one comma-separated list.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // Some proxies (Azure Application Gateway, IIS ARR) append `ip:port` or `[v6]:port`.
        let parsed = hop.parse::<IpAddr>().or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()));
        match parsed {
            Ok(ip) => {
                client = ip;
                if !trusted(ip, proxies) {
                    break;
                }
            }
            // Garbage in the chain: stop at the last hop a trusted party vouched for.
            Err(_) => break,
        }
    }
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    ClientAddr { ip: client, https }
}

/// Establishes [`ClientAddr`] once per request and adds the security headers to the response.
pub async fn client_layer(State(p): State<std::sync::Arc<Protection>>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip()).or_else(|| {
        req.extensions()
            .get::<axum::extract::connect_info::MockConnectInfo<SocketAddr>>()
            .map(|axum::extract::connect_info::MockConnectInfo(a)| a.ip())
    });
    let client = peer.map(|peer| client_addr(peer, req.headers(), &p.trusted_proxies));
    if let Some(c) = client {
        req.extensions_mut().insert(c);
    }
    let path = req.uri().path();
    let page = crate::docs::is_docs_path(path) || crate::ui::is_ui_path(path);
    let mut res = next.run(req).await;
    if p.security_headers {
        let h = res.headers_mut();
        let set = |h: &mut HeaderMap, name: HeaderName, value: &'static str| {
            h.insert(name, HeaderValue::from_static(value));
        };
        set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        set(h, header::X_FRAME_OPTIONS, "DENY");
        set(h, header::X_XSS_PROTECTION, "1; mode=block");
        set(h, header::REFERRER_POLICY, "strict-origin-when-cross-origin");
        let own_policy = page && h.contains_key(header::CONTENT_SECURITY_POLICY);
        if let (false, Ok(csp)) = (own_policy, HeaderValue::from_str(&p.csp)) {
            h.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        if p.hsts_always || client.is_some_and(|c| c.https) {
            set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains");
        }
    }
    res
}

/// The CORS layer for the configured origins (credentials allowed), or none.
pub fn cors_layer(cors: &Cors) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(cors.origins.clone()))
        .allow_credentials(true)
        .allow_methods(cors.methods.clone())
        .allow_headers(cors.headers.clone())
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(std::time::Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().filter_map(|n| n.parse().ok()).collect()
    }

    fn headers(xff: &[&str], proto: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")));
        }
        if let Some(p) = proto {
            h.insert("x-forwarded-proto", HeaderValue::from_str(p).unwrap_or(HeaderValue::from_static("")));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_its_address() {
        let c = client_addr(ip("198.51.100.9"), &headers(&["1.2.3.4"], Some("https")), &nets(&["10.0.0.0/8"]));
        assert_eq!(c, ClientAddr { ip: ip("198.51.100.9"), https: false });
    }

    #[test]
    fn through_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let proxies = nets(&["10.0.0.0/8"]);
        // The client sent a spoofed first hop; the proxies appended the real one, then themselves.
        let c = client_addr(ip("10.0.0.2"), &headers(&["6.6.6.6, 203.0.113.5", "10.0.0.1"], Some("https")), &proxies);
        assert_eq!(c, ClientAddr { ip: ip("203.0.113.5"), https: true });
    }

    #[test]
    fn garbage_or_missing_forwarded_for_falls_back_to_the_last_vouched_hop() {
        let proxies = nets(&["10.0.0.0/8"]);
        assert_eq!(client_addr(ip("10.0.0.2"), &headers(&[], None), &proxies).ip, ip("10.0.0.2"));
        assert_eq!(client_addr(ip("10.0.0.2"), &headers(&["not-an-ip"], None), &proxies).ip, ip("10.0.0.2"));
        assert_eq!(
            client_addr(ip("10.0.0.2"), &headers(&["7.7.7.7, junk, 10.0.0.3"], None), &proxies).ip,
            ip("10.0.0.3")
        );
    }

    #[test]
    fn hops_with_ports_are_understood() {
        let proxies = nets(&["10.0.0.0/8"]);
        assert_eq!(client_addr(ip("10.0.0.2"), &headers(&["203.0.113.5:51234"], None), &proxies).ip, ip("203.0.113.5"));
        assert_eq!(client_addr(ip("10.0.0.2"), &headers(&["[2001:db8::1]:443"], None), &proxies).ip, ip("2001:db8::1"));
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_match_ipv4_ranges() {
        let c = client_addr(ip("::ffff:10.0.0.2"), &headers(&["203.0.113.5"], None), &nets(&["10.0.0.0/8"]));
        assert_eq!(c.ip, ip("203.0.113.5"));
    }
}
