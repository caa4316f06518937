//! The web console: a page for the people who send the announcements, served by the admin
//! listener at `/` (and `/console`), its style sheet, script and icon under `/console/`.
//!
//! It is self-contained: plain HTML, CSS and JavaScript written here and embedded in the binary
//! (`src/admin/console/`, no build step), nothing loaded from elsewhere. Every answer carries a
//! Content-Security-Policy that allows only the listener's own script, style, icon and
//! `/api/graphql` (no inline script, no other origin, no framing), so the page can do nothing
//! the admin API does not allow its user. The API is its only back end: the console logs in
//! with the API's accounts (Basic credentials kept in the page's memory), and a same-origin
//! `fetch` with `content-type: application/json` passes [`same_origin`](super::same_origin).
//!
//! The form's limits (characters of the name, subject and body, the rate) are written into the
//! page from [`crate::job::spec`] when it is first served, so that its counters cannot drift
//! from what the API checks.

use std::sync::LazyLock;

use warp::Filter;
use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use warp::reply::{Reply, Response};

use crate::job::spec::{BODY_LENGTH, NAME_LENGTH, RATE, SUBJECT_LENGTH};

/// The console's policy: its own script, style and images, requests to its own origin only;
/// no plug-ins, frames, forms posted elsewhere, or `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'none'; \
     frame-ancestors 'none'; base-uri 'none'";

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");
const ICON: &str = include_str!("console/icon.svg");

/// The page with the request's limits written in.
static PAGE: LazyLock<String> = LazyLock::new(|| page(INDEX));

/// Every file of the console and its size in bytes, as served (the page with its limits).
pub fn files() -> [(&'static str, usize); 4] {
    [
        ("index.html", PAGE.len()),
        ("console.js", SCRIPT.len()),
        ("console.css", STYLE.len()),
        ("icon.svg", ICON.len()),
    ]
}

/// `template` with each `{{LIMIT}}` replaced by its value.
fn page(template: &str) -> String {
    let limits = [
        ("{{NAME_MIN}}", *NAME_LENGTH.start()),
        ("{{NAME_MAX}}", *NAME_LENGTH.end()),
        ("{{SUBJECT_MIN}}", *SUBJECT_LENGTH.start()),
        ("{{SUBJECT_MAX}}", *SUBJECT_LENGTH.end()),
        ("{{BODY_MIN}}", *BODY_LENGTH.start()),
        ("{{BODY_MAX}}", *BODY_LENGTH.end()),
        ("{{RATE_MIN}}", *RATE.start() as usize),
        ("{{RATE_MAX}}", *RATE.end() as usize),
    ];
    limits
        .iter()
        .fold(template.to_owned(), |page, (placeholder, value)| {
            page.replace(placeholder, &value.to_string())
        })
}

/// The console's routes (GET only).
pub fn routes() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync
{
    let index = warp::path::end()
        .or(warp::path!("console"))
        .unify()
        .map(|| served(PAGE.as_str(), "text/html; charset=utf-8"));
    let script = warp::path!("console" / "console.js")
        .map(|| served(SCRIPT, "text/javascript; charset=utf-8"));
    let style =
        warp::path!("console" / "console.css").map(|| served(STYLE, "text/css; charset=utf-8"));
    let icon = warp::path!("console" / "icon.svg").map(|| served(ICON, "image/svg+xml"));
    warp::get()
        .and(index.or(script).unify().or(style).unify().or(icon).unify())
        .boxed()
}

/// `body` as `content_type`, with the console's security headers.
fn served(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // A new version of the binary serves a new console at once.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(path: &str) -> warp::http::Response<bytes::Bytes> {
        warp::test::request()
            .method("GET")
            .path(path)
            .reply(&routes())
            .await
    }

    #[tokio::test]
    async fn every_file_is_served_with_the_policy() {
        for (path, kind) in [
            ("/", "text/html; charset=utf-8"),
            ("/console", "text/html; charset=utf-8"),
            ("/console/console.js", "text/javascript; charset=utf-8"),
            ("/console/console.css", "text/css; charset=utf-8"),
            ("/console/icon.svg", "image/svg+xml"),
        ] {
            let response = get(path).await;
            assert_eq!(response.status(), 200, "{path}");
            let headers = response.headers();
            assert_eq!(headers[CONTENT_TYPE], kind, "{path}");
            assert_eq!(
                headers["content-security-policy"], CONTENT_SECURITY_POLICY,
                "{path}"
            );
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        }
        assert_eq!(get("/console/other.js").await.status(), 404);
        let post = warp::test::request()
            .method("POST")
            .path("/")
            .reply(&routes())
            .await;
        assert_eq!(post.status(), 405);
    }

    /// The page loads nothing from elsewhere and runs no inline script; its limits are the
    /// request's.
    #[test]
    fn the_page_is_self_contained_and_carries_the_limits() {
        assert!(!PAGE.contains("{{"), "a placeholder is left");
        for text in [PAGE.as_str(), SCRIPT, STYLE, ICON] {
            for outside in ["http:", "https:", "//", "@import", "url("] {
                let found = text
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("//"))
                    .any(|line| line.contains(outside) && !line.contains("www.w3.org/2000/svg"));
                assert!(!found, "{outside} in a console file");
            }
        }
        assert!(!PAGE.contains("<script>"), "inline script");
        assert!(!PAGE.contains("style="), "inline style");
        assert!(PAGE.contains(r#"data-argument="messageBody" data-max="16000" data-min="1""#));
        assert!(PAGE.contains(r#"data-min="1" data-max="1000""#));
    }

    #[test]
    fn the_console_is_small() {
        let total: usize = files().iter().map(|(_, size)| size).sum();
        assert!(total < 64 * 1024, "{total} bytes");
    }
}
