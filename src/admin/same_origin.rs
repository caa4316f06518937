//! What a web browser may send to `/api/graphql`: only JSON, and only from the listener's own
//! origin (GraphiQL and the web console, served by the listener itself).
//!
//! A page on any other site can make a browser POST a form or a `fetch` "simple request"
//! (`text/plain`, `application/x-www-form-urlencoded`, `multipart/form-data`) with the Basic
//! credentials the browser cached after GraphiQL, and without a CORS preflight. Such a request
//! is refused before its body is read and before authentication, so nothing runs:
//! - a `Content-Type` other than `application/json` (parameters such as `charset` allowed;
//!   MongooseIM's listener accepts `application/json` only, and refuses the others with 415):
//!   415 `unsupported_media_type`;
//! - an `Origin` other than the listener's (scheme, host and port of the `Host` header;
//!   `Origin: null` included), or `Sec-Fetch-Site: cross-site` or `same-site`: 403
//!   `cross_origin_request`.
//!
//! Clients that are not browsers (curl, scripts, the CLI) send no `Origin` and are unaffected.
//! No CORS headers are ever sent, so a browser refuses the preflight of a cross-origin JSON
//! request.

use super::codes::ErrorCode;
use warp::http::HeaderMap;
use warp::http::header::{CONTENT_TYPE, HOST, ORIGIN};

/// Why a POST to `/api/graphql` is refused before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not `application/json`.
    NotJson,
    /// Sent by a page of another origin.
    CrossOrigin,
}

impl Refusal {
    /// The answer's code (its HTTP status is the code's: 415 or 403).
    pub fn code(self) -> ErrorCode {
        match self {
            Refusal::NotJson => ErrorCode::UnsupportedMediaType,
            Refusal::CrossOrigin => ErrorCode::CrossOriginRequest,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::NotJson => "Requests to /api/graphql must have Content-Type application/json",
            Refusal::CrossOrigin => {
                "Requests to /api/graphql from a page of another origin are refused"
            }
        }
    }
}

/// Checks the headers of a POST to `/api/graphql`.
pub(crate) fn check(headers: &HeaderMap) -> Result<(), Refusal> {
    if !from_own_origin(headers) {
        return Err(Refusal::CrossOrigin);
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    if !content_type.is_some_and(is_json) {
        return Err(Refusal::NotJson);
    }
    Ok(())
}

/// `application/json`, case-insensitive, with or without parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default();
    essence.trim().eq_ignore_ascii_case("application/json")
}

fn from_own_origin(headers: &HeaderMap) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok());
    if fetch_site.is_some_and(|site| {
        site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site")
    }) {
        return false;
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let host = headers.get(HOST).and_then(|value| value.to_str().ok());
    match (origin.to_str().ok().and_then(parse_origin), host) {
        (Some((scheme, origin_host, origin_port)), Some(host)) => match split_port(host) {
            Some((host, port)) => {
                let port = port.or_else(|| default_port(scheme));
                origin_host.eq_ignore_ascii_case(host) && Some(origin_port) == port
            }
            None => false,
        },
        _ => false,
    }
}

/// `scheme://host[:port]` → (scheme, host, port with the scheme's default).
fn parse_origin(origin: &str) -> Option<(&str, &str, u16)> {
    let (scheme, authority) = origin.split_once("://")?;
    let (host, port) = split_port(authority)?;
    Some((scheme, host, port.or_else(|| default_port(scheme))?))
}

/// `host[:port]` (an IPv6 host in brackets); `None` if the port is not a number.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => Some((host, Some(port.parse().ok()?))),
        _ => Some((authority, None)),
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn only_json_is_accepted() {
        for accepted in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
        ] {
            let map = headers(&[("content-type", accepted)]);
            assert_eq!(check(&map), Ok(()), "{accepted}");
        }
        for refused in [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application/graphql",
            "",
        ] {
            let map = headers(&[("content-type", refused)]);
            assert_eq!(check(&map), Err(Refusal::NotJson), "{refused}");
        }
        assert_eq!(check(&HeaderMap::new()), Err(Refusal::NotJson));
    }

    #[test]
    fn only_the_listeners_own_origin_is_accepted() {
        let host = ("host", "127.0.0.1:5551");
        for origin in ["http://127.0.0.1:5551", "HTTP://127.0.0.1:5551"] {
            let map = headers(&[JSON, host, ("origin", origin)]);
            assert_eq!(check(&map), Ok(()), "{origin}");
        }
        // Behind a TLS proxy that passes the Host header on.
        let proxied = [
            JSON,
            ("host", "admin.example.com"),
            ("origin", "https://admin.example.com"),
        ];
        assert_eq!(check(&headers(&proxied)), Ok(()));
        let v6 = [
            JSON,
            ("host", "[::1]:5551"),
            ("origin", "http://[::1]:5551"),
        ];
        assert_eq!(check(&headers(&v6)), Ok(()));
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:5552",
            "http://127.0.0.1",
            "https://127.0.0.1:5551.evil.example",
            "null",
            "",
        ] {
            let map = headers(&[JSON, host, ("origin", origin)]);
            assert_eq!(check(&map), Err(Refusal::CrossOrigin), "{origin}");
        }
        let no_host = headers(&[JSON, ("origin", "http://127.0.0.1:5551")]);
        assert_eq!(check(&no_host), Err(Refusal::CrossOrigin));
        // A form posted cross-site is refused for its origin before its content type.
        let form = headers(&[
            ("content-type", "text/plain"),
            host,
            ("origin", "http://x.org"),
        ]);
        assert_eq!(check(&form), Err(Refusal::CrossOrigin));
    }

    /// What Chromium sends with the console's `fetch` (its own origin, same-origin metadata,
    /// JSON) passes; `tests/console_e2e.rs` shows it in the browser.
    #[test]
    fn the_consoles_requests_pass() {
        let map = headers(&[
            ("content-type", "application/json"),
            ("host", "127.0.0.1:5551"),
            ("origin", "http://127.0.0.1:5551"),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "cors"),
        ]);
        assert_eq!(check(&map), Ok(()));
    }

    #[test]
    fn fetch_metadata_of_another_site_is_refused() {
        for site in ["cross-site", "same-site"] {
            let map = headers(&[JSON, ("sec-fetch-site", site)]);
            assert_eq!(check(&map), Err(Refusal::CrossOrigin), "{site}");
        }
        for site in ["same-origin", "none"] {
            let map = headers(&[JSON, ("sec-fetch-site", site)]);
            assert_eq!(check(&map), Ok(()), "{site}");
        }
    }
}
