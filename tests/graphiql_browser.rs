//! GraphiQL in Debian's Chromium (headless, driven by selenium: `tests/support/graphiql.py`
//! over `tests/support/browser.py`) with the network to the outside closed: the page served by
//! the admin listener loads, a query typed into its editor runs and its result shows in the
//! page, every request the browser made went to the listener, and the page came with a
//! Content-Security-Policy that allows no other origin and no inline script, which the page
//! never trips.

mod support;

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use support::admin::BroadcastSpec;
use support::app::{App, AppOptions};
use support::process;
use support::serve::{ADMIN_PASSWORD, ADMIN_USER};
use support::xmpp_client::venv_python;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/graphiql.py");
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn graphiql_runs_a_query_offline_under_its_content_security_policy() {
    for program in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(program).is_file(),
            "{program} not found: apt-get install chromium chromium-driver (bash .ci/run does)"
        );
    }
    let app = App::start(AppOptions::one_domain("example.com", 3)).await;
    let spec = BroadcastSpec {
        name: "seen in GraphiQL".into(),
        ..BroadcastSpec::default()
    };
    let id = app.admin().start_broadcast(&spec).await.expect("started");
    app.admin().wait_state(id, "FINISHED", JOB_TIMEOUT).await;

    let origin = format!("http://{}", app.admin_address);
    let page = format!("{origin}/api/graphql");
    let query = format!(
        "{{ broadcast {{ getBroadcast(domain: \"example.com\", id: {id}) \
         {{ name recipientCount }} }} }}"
    );
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN_USER}:{ADMIN_PASSWORD}"));
    let mut command = Command::new(venv_python());
    command.arg(SCRIPT).args([
        page.as_str(),
        &format!("Basic {credentials}"),
        &query,
        "seen in GraphiQL",
    ]);
    let output = process::output_with_input(command, b"").await;
    assert!(
        output.status.success(),
        "{SCRIPT} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!("{err}: {}", String::from_utf8_lossy(&output.stdout));
    });

    // The query as typed, and its answer in the result pane.
    let typed = report["editor"].as_str().unwrap_or_default();
    assert_eq!(squeeze(typed), squeeze(&query), "{report:#}");
    let result = report["result"].as_str().unwrap_or_default();
    assert!(
        result.contains("\"name\": \"seen in GraphiQL\""),
        "{report:#}"
    );
    assert!(result.contains("\"recipientCount\": 4"), "{report:#}");

    // Every request went to the listener: the page, its scripts and styles, the queries.
    let requests: Vec<&str> = report["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for url in &requests {
        assert!(
            url.starts_with(&format!("{origin}/")) || url.starts_with("data:"),
            "the browser asked for {url}, not the listener: {report:#}"
        );
    }
    for asset in [
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
        "init.js",
    ] {
        let url = format!("{origin}/api/graphiql/{asset}");
        assert!(
            requests.contains(&url.as_str()),
            "{url} not loaded: {report:#}"
        );
        assert_eq!(response(&report, "GET", &url)["status"], 200, "{url}");
    }
    assert!(
        requests.iter().filter(|url| **url == page).count() >= 2,
        "page and query"
    );

    // The policy, as the browser received it, and nothing it refused.
    let policy = response(&report, "GET", &page)["headers"]["content-security-policy"]
        .as_str()
        .unwrap_or_else(|| panic!("no Content-Security-Policy: {report:#}"));
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(
        !policy.contains("unsafe-") && !policy.contains("http"),
        "{policy}"
    );
    let console = report["console"].to_string();
    assert!(
        !console.contains("Content Security Policy") && !console.contains("Refused"),
        "{console}"
    );
}

/// The browser's response to its `method` request of `url`.
fn response<'a>(report: &'a Value, method: &str, url: &str) -> &'a Value {
    report["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .find(|response| response["method"] == method && response["url"] == url)
        .unwrap_or_else(|| panic!("no response to {method} {url}: {report:#}"))
}

/// `text` without whitespace, to compare a query as typed with the editor's text.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect()
}
