//! Browser security: CORS from an allowlist of origins, and the security headers every answer
//! carries (`docs/security.md`).
//!
//! CORS is `tower_http`'s layer, configured from [`CorsConfig`]: a preflight from an allowed
//! origin is answered before routing and authentication (it carries no token); an origin not on
//! the list gets no CORS headers, so the browser keeps the answer from the page.

use std::time::Duration;

use axum::{
    Router,
    extract::Request,
    http::{HeaderMap, HeaderName, HeaderValue, Method, header},
    response::Response,
};
use serde::{Deserialize, Serialize};
use tower::ServiceExt as _;
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};

use crate::field_check::InvalidField;

/// Cross-origin requests from browsers (`[cors]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins whose pages may call the API (`https://app.example.com`), or `"*"` for any (then
    /// without credentials). Default: none, so browsers on other origins are refused.
    pub allowed_origins: Vec<String>,
    /// Whether those pages may send credentials (cookies, HTTP authentication) and read the
    /// answers. Bearer tokens in `Authorization` need no credentials mode. Default false.
    pub allow_credentials: bool,
    /// How long a browser may reuse a preflight's answer. Default 600 s.
    pub max_age_s: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allow_credentials: false,
            max_age_s: 600,
        }
    }
}

impl CorsConfig {
    /// Checks the `[cors]` section.
    pub fn check(&self) -> Result<(), InvalidField> {
        self.origins_problem()
            .map_err(|reason| InvalidField::new("cors.allowed_origins", reason))
    }

    /// What is wrong with the allowed origins, if anything.
    fn origins_problem(&self) -> Result<(), String> {
        let any = self.allowed_origins.iter().any(|origin| origin == "*");
        if any && self.allowed_origins.len() > 1 {
            return Err("\"*\" must be the only entry".into());
        }
        if any && self.allow_credentials {
            return Err("\"*\" cannot be combined with allow_credentials".into());
        }
        for origin in self.allowed_origins.iter().filter(|o| *o != "*") {
            let uri: http::Uri = origin
                .parse()
                .map_err(|_| format!("{origin:?} is not an origin"))?;
            let bare =
                uri.path_and_query().is_none_or(|pq| pq.as_str() == "/") && !origin.ends_with('/');
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() || !bare
            {
                return Err(format!(
                    "{origin:?} is not an origin (scheme://host[:port], nothing after)"
                ));
            }
        }
        Ok(())
    }
}

/// Request headers a page may send.
const ALLOWED_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    HeaderName::from_static("x-request-id"),
];

/// Response headers a page may read beyond the CORS-safelisted ones.
const EXPOSED_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-cache"),
    header::RETRY_AFTER,
    header::AGE,
    header::WARNING,
];

/// The CORS layer for the API port.
fn cors_layer(config: &CorsConfig) -> CorsLayer {
    // Checked at start-up, so every entry parses.
    let listed: Vec<HeaderValue> = config
        .allowed_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    let origins = if config.allowed_origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(listed.clone())
    };
    // Granted only to listed origins (the layer would otherwise send it to any origin).
    let credentials = config.allow_credentials;
    let credentials = AllowCredentials::predicate(move |origin, _| {
        credentials && listed.iter().any(|listed| listed == origin)
    });
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers(ALLOWED_HEADERS)
        .expose_headers(EXPOSED_HEADERS)
        .allow_credentials(credentials)
        .max_age(Duration::from_secs(config.max_age_s))
}

/// `router` behind the CORS layer of `config`, except a plain `OPTIONS` (no
/// `Access-Control-Request-Method`: not a preflight), which the router answers itself (405 with
/// `Allow`, as for any method a path does not take) instead of the CORS layer's empty 200. With
/// no origin listed (the default) CORS is off and `router` is returned as it is: nothing would
/// be granted, and every request would pay for the layer.
pub fn with_cors(router: Router, config: &CorsConfig) -> Router {
    if config.allowed_origins.is_empty() {
        return router;
    }
    let behind_cors = router.clone().layer(cors_layer(config));
    Router::new().fallback_service(tower::service_fn(move |request: Request| {
        let plain_options = request.method() == Method::OPTIONS
            && !request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let target = if plain_options {
            router.clone()
        } else {
            behind_cors.clone()
        };
        target.oneshot(request)
    }))
}

/// Security headers on every answer (`[security_headers]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityHeadersConfig {
    /// `Content-Security-Policy`. Default `default-src 'none'; frame-ancestors 'none'`: the API
    /// serves JSON, which no page should run or frame.
    pub content_security_policy: String,
    /// `X-Frame-Options`. Default `DENY`.
    pub frame_options: String,
    /// `Referrer-Policy`. Default `no-referrer`.
    pub referrer_policy: String,
    /// `Strict-Transport-Security` max-age when the gateway serves TLS (not sent over plain
    /// HTTP, where browsers ignore it). Default 31,536,000 s (a year); 0 sends none.
    pub hsts_max_age_s: u64,
}

impl Default for SecurityHeadersConfig {
    fn default() -> Self {
        Self {
            content_security_policy: "default-src 'none'; frame-ancestors 'none'".to_owned(),
            frame_options: "DENY".to_owned(),
            referrer_policy: "no-referrer".to_owned(),
            hsts_max_age_s: 31_536_000,
        }
    }
}

impl SecurityHeadersConfig {
    /// Checks the `[security_headers]` section: every value makes a valid header.
    pub fn check(&self) -> Result<(), InvalidField> {
        self.headers(true)
            .map(drop)
            .map_err(|reason| InvalidField::new("security_headers", reason))
    }

    /// The headers to add, once; the reason when a value is not a valid header value. `tls`:
    /// whether the listener serves TLS (HSTS only then).
    pub fn headers(&self, tls: bool) -> Result<HeaderMap, String> {
        let value = |name: &str, value: &str| {
            HeaderValue::from_str(value).map_err(|_| format!("{name}: not a valid header value"))
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        for (name, setting, field) in [
            (
                header::CONTENT_SECURITY_POLICY,
                &self.content_security_policy,
                "content_security_policy",
            ),
            (
                header::X_FRAME_OPTIONS,
                &self.frame_options,
                "frame_options",
            ),
            (
                header::REFERRER_POLICY,
                &self.referrer_policy,
                "referrer_policy",
            ),
        ] {
            if !setting.is_empty() {
                headers.insert(name, value(field, setting)?);
            }
        }
        if tls && self.hsts_max_age_s > 0 {
            let hsts = format!("max-age={}; includeSubDomains", self.hsts_max_age_s);
            headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                value("hsts_max_age_s", &hsts)?,
            );
        }
        Ok(headers)
    }
}

/// Adds the configured security headers an answer does not set itself.
pub fn add_security_headers(headers: &HeaderMap, response: &mut Response) {
    for (name, value) in headers {
        if !response.headers().contains_key(name) {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> CorsConfig {
        CorsConfig {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            allow_credentials: credentials,
            ..CorsConfig::default()
        }
    }

    #[test]
    fn origins_must_be_bare_and_any_must_stand_alone_without_credentials() {
        assert!(
            cors(&["https://app.example.com", "http://localhost:3000"], true)
                .check()
                .is_ok()
        );
        assert!(cors(&["*"], false).check().is_ok());
        assert!(cors(&["*"], true).check().is_err());
        assert!(cors(&["*", "https://a.example"], false).check().is_err());
        for bad in [
            "app.example.com",
            "https://a.example/",
            "https://a.example/x",
            "ftp://a.example",
        ] {
            assert!(cors(&[bad], false).check().is_err(), "{bad}");
        }
    }

    #[test]
    fn hsts_only_over_tls() {
        let config = SecurityHeadersConfig::default();
        let plain = config.headers(false).unwrap();
        assert_eq!(plain[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(!plain.contains_key(header::STRICT_TRANSPORT_SECURITY));
        let tls = config.headers(true).unwrap();
        assert_eq!(
            tls[header::STRICT_TRANSPORT_SECURITY],
            "max-age=31536000; includeSubDomains"
        );
        let bad = SecurityHeadersConfig {
            referrer_policy: "no\nreferrer".into(),
            ..SecurityHeadersConfig::default()
        };
        assert!(bad.headers(false).is_err());
    }
}
