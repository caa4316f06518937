//! GraphiQL, the in-browser GraphQL explorer, served by the binary itself: the page on
//! `GET /api/graphql` and its scripts and styles under `/api/graphiql/`, embedded at build time
//! from `assets/graphiql/` (GraphiQL and React as published on npm, pinned there with their
//! licences and checksums). Nothing is loaded from elsewhere, so the explorer works on an admin
//! network without internet, and the page's Content-Security-Policy lets the browser load
//! nothing from another origin and run no inline script.

use warp::Filter;
use warp::http::HeaderValue;
use warp::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use warp::reply::{Reply, Response};

/// The page's policy: scripts, styles and queries from the listener only; fonts and images of
/// GraphiQL's stylesheet are `data:` URLs; no frames, forms, plugins or `<base>`.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; font-src data:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its name under `/api/graphiql/` and its content type.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// `assets/graphiql/<name>`, served as `content_type`.
macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../assets/graphiql/", $name)),
        }
    };
}

/// Every file the page loads, and nothing else.
const ASSETS: &[Asset] = &[
    asset!("graphiql.min.js", JAVASCRIPT),
    asset!("graphiql.min.css", CSS),
    asset!("react.production.min.js", JAVASCRIPT),
    asset!("react-dom.production.min.js", JAVASCRIPT),
    asset!("init.js", JAVASCRIPT),
    asset!("page.css", CSS),
];

const PAGE: &str = include_str!("../../assets/graphiql/index.html");

/// How long a browser may keep an asset without asking again; they change only with the binary.
const ASSET_CACHE: &str = "public, max-age=3600";

/// `GET /api/graphql` (the page) and `GET /api/graphiql/<file>` (its assets; 404 for any other
/// name).
pub fn routes() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync
{
    let page = warp::path!("api" / "graphql")
        .and(warp::get())
        .map(|| page_reply(PAGE.as_bytes(), "text/html; charset=utf-8", "no-cache"));
    let assets = warp::path!("api" / "graphiql" / String)
        .and(warp::get())
        .and_then(|name: String| async move {
            ASSETS
                .iter()
                .find(|asset| asset.name == name)
                .map(|asset| page_reply(asset.body, asset.content_type, ASSET_CACHE))
                .ok_or_else(warp::reject::not_found)
        });
    page.or(assets).unify()
}

/// `body` with the headers every GraphiQL file is served with.
fn page_reply(body: &'static [u8], content_type: &'static str, cache: &'static str) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file the page names is served, and the page loads no script of its own.
    #[tokio::test]
    async fn the_page_and_every_asset_it_names_are_served_with_the_policy() {
        let routes = routes();
        let page = warp::test::request()
            .path("/api/graphql")
            .reply(&routes)
            .await;
        assert_eq!(page.status(), 200);
        let csp = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("http"),
            "{csp}"
        );
        let html = std::str::from_utf8(page.body()).unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("<style"),
            "{html}"
        );
        let mut named = 0;
        for asset in ASSETS {
            let reference = format!("\"graphiql/{}\"", asset.name);
            assert!(
                html.contains(&reference),
                "the page does not load {}",
                asset.name
            );
            named += 1;
            let served = warp::test::request()
                .path(&format!("/api/graphiql/{}", asset.name))
                .reply(&routes)
                .await;
            assert_eq!(served.status(), 200, "{}", asset.name);
            assert_eq!(served.body().as_ref(), asset.body);
            assert_eq!(served.headers()[CONTENT_TYPE], asset.content_type);
        }
        assert_eq!(html.matches("\"graphiql/").count(), named);
        let unknown = warp::test::request()
            .path("/api/graphiql/..%2Fsecret")
            .reply(&routes)
            .await;
        assert_eq!(unknown.status(), 404);
    }
}
