//! HTTPS on the admin listener, end to end: `serve` against a real Prosody with a server
//! certificate from a CA made by the test. The CLI (trusting the CA with `--ca-file` or
//! `XMPP_BROADCAST_CA_FILE`) and curl (`--cacert`) start and watch broadcasts that a real
//! client receives; without the CA both refuse the server, saying its certificate is not
//! trusted. On SIGHUP `serve` re-reads the files: a broken certificate is refused and the one
//! read before is still served, a renewed one (another serial, another key) is served.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use support::prosody::{DOMAIN, Prosody, ProsodyStorage};
use support::serve::{ADMIN_PASSWORD, ADMIN_USER, AdminTlsFiles, JobStore, Serve, ServeConfig};
use support::tls::{TestCa, presented_certificate};
use support::xmpp_client::XmppClient;
use support::{Deadline, process, scratch_dir, serve};

const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_over_https_with_cli_curl_and_a_renewed_certificate() {
    process::require_program("curl", "apt-get install curl");
    let dir = scratch_dir("tls");
    let ca = TestCa::new("xmpp-broadcast test CA");
    let ca_file = dir.path().join("ca.pem");
    ca.write_pem(&ca_file);
    let first = ca.issue(dir.path(), 1);
    // The paths of the config; a renewal replaces the files in place, as certbot's does.
    let certificate = dir.path().join("admin.pem");
    let key = dir.path().join("admin.key");
    std::fs::copy(&first.certificate, &certificate).unwrap();
    std::fs::copy(&first.key, &key).unwrap();

    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    prosody.register_user("admin", "pw").await;
    let alice = prosody.register_user("alice", "alicepw").await;
    let mut client = XmppClient::login(&alice, "alicepw", prosody.c2s_port());
    client.wait_online(LOGIN_TIMEOUT).await;
    let mut config = ServeConfig::for_prosody(&prosody, JobStore::Sqlite);
    config.admin_tls = Some(AdminTlsFiles {
        certificate: certificate.clone(),
        key: key.clone(),
        ca: ca_file.clone(),
    });
    // Healthy as seen over HTTPS, trusting the CA only.
    let serve = Serve::start(config).await;
    let base = serve.admin().base().to_owned();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let address = base.trim_start_matches("https://").to_owned();
    assert_presented(&address, &ca_file, &first.der).await;

    // The CLI: start and watch to the end, trusting the CA with --ca-file.
    let started = xb_at(
        &base,
        Some(&ca_file),
        &[
            "start",
            "--name",
            "over https",
            "--sender",
            "admin@example.com",
            "--subject",
            "HTTPS",
            "--body",
            "Started by the CLI over HTTPS",
            "--watch",
        ],
    )
    .await;
    assert_success(&started, "start --watch over HTTPS");
    let text = String::from_utf8_lossy(&started.stdout);
    assert!(text.contains("FINISHED"), "{text}");
    let message = client.next_message(DELIVERY_TIMEOUT).await.expect("alice");
    assert_eq!(message.body, "Started by the CLI over HTTPS");

    // curl with the CA: startBroadcast, then getBroadcast until the job has ended.
    let started = curl(&base, Some(&ca_file), &start_request("curl notice")).await;
    assert_success(&started, "curl startBroadcast");
    let answer: Value = serde_json::from_slice(&started.stdout).expect("JSON answer");
    let id = answer["data"]["broadcast"]["startBroadcast"]["ids"][0]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {answer}"));
    let deadline = Deadline::after(DELIVERY_TIMEOUT, "the curl job to finish");
    loop {
        let got = curl(&base, Some(&ca_file), &get_request(id)).await;
        assert_success(&got, "curl getBroadcast");
        let job: Value = serde_json::from_slice(&got.stdout).expect("JSON answer");
        if job["data"]["broadcast"]["getBroadcast"]["executionState"] == "FINISHED" {
            break;
        }
        deadline.tick().await;
    }
    let message = client.next_message(DELIVERY_TIMEOUT).await.expect("alice");
    assert_eq!(message.body, "Started by curl over HTTPS");

    // The CLI with the CA from the environment: `watch` of the curl job.
    let watched = xb_env(
        &["watch", &id.to_string(), "--url", &base, "--domain", DOMAIN],
        &[("XMPP_BROADCAST_CA_FILE", path(&ca_file))],
    )
    .await;
    assert_success(&watched, "watch with XMPP_BROADCAST_CA_FILE");

    // Without the CA, both refuse the server's certificate and send nothing.
    let refused = xb_at(&base, None, &["list"]).await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("presented a certificate that is not trusted")
            && stderr.contains("--ca-file"),
        "{stderr}"
    );
    let refused = curl(&base, None, &start_request("never sent")).await;
    // 60: the peer certificate cannot be authenticated with the known CA certificates.
    assert_eq!(refused.status.code(), Some(60), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
    let jobs = serve.admin().get_broadcasts(DOMAIN).await;
    assert_eq!(
        jobs.len(),
        2,
        "nothing was started without the CA: {jobs:?}"
    );

    // SIGHUP with a broken certificate: refused, logged, the first one still served.
    std::fs::write(&certificate, "not a certificate\n").unwrap();
    serve.sighup();
    wait_for_log(&serve, "reload: the certificate or key cannot be used").await;
    assert!(
        serve.log().contains("admin.tls_certificate"),
        "{}",
        serve.log()
    );
    assert_presented(&address, &ca_file, &first.der).await;

    // SIGHUP with a renewed certificate (serial 2, a new key): served from the next connection.
    let renewed = ca.issue(dir.path(), 2);
    assert_ne!(renewed.der, first.der);
    std::fs::copy(&renewed.key, &key).unwrap();
    std::fs::copy(&renewed.certificate, &certificate).unwrap();
    serve.sighup();
    wait_for_log(
        &serve,
        "reload: the admin API serves the certificate read now",
    )
    .await;
    assert_presented(&address, &ca_file, &renewed.der).await;
    let listed = xb_at(&base, Some(&ca_file), &["list"]).await;
    assert_success(&listed, "list after the renewal");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("curl notice"));
}

/// `check-config` and `serve` stop on a certificate they cannot use, naming the key, before
/// `serve` listens or reads a database.
#[tokio::test]
async fn unusable_certificate_files_stop_the_start_naming_the_key() {
    let dir = scratch_dir("tls-config");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/component.toml.example"
    ))
    .unwrap();
    let missing = dir.path().join("missing.pem");
    let key = dir.path().join("admin.key");
    std::fs::write(&key, "").unwrap();
    let config = example.replace(
        "# tls_certificate = \"/etc/xmpp-broadcast/admin.pem\"\n# tls_key = \"/etc/xmpp-broadcast/admin.key\"",
        &format!("tls_certificate = {:?}\ntls_key = {:?}", path(&missing), path(&key)),
    );
    assert_ne!(config, example, "the example documents both keys");
    let config = config.replace("listen = \"127.0.0.1:5551\"", "listen = \"127.0.0.1:0\"");
    let config_path = dir.path().join("component.toml");
    std::fs::write(&config_path, config).unwrap();
    for command in ["check-config", "serve"] {
        let output = xb(&[command, "--config", path(&config_path)]).await;
        assert_eq!(output.status.code(), Some(1), "{command}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("cannot serve the admin API over HTTPS")
                && stderr.contains(&format!(
                    "cannot read admin.tls_certificate = {}",
                    path(&missing)
                )),
            "{command}: {stderr}"
        );
    }
    // Offline, check-config reads the file only.
    let output = xb(&["check-config", "--offline", "--config", path(&config_path)]).await;
    assert_success(&output, "check-config --offline");
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// `xmpp-broadcast ARGS --url BASE --domain example.com`, trusting the CA in `ca` (none: the
/// system's).
async fn xb_at(base: &str, ca: Option<&Path>, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--url", base, "--domain", DOMAIN]);
    if let Some(ca) = ca {
        all.extend(["--ca-file", path(ca)]);
    }
    xb(&all).await
}

/// `xmpp-broadcast ARGS` as the global admin (credentials from the environment).
async fn xb(args: &[&str]) -> Output {
    xb_env(args, &[]).await
}

async fn xb_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = serve::command();
    command
        .args(args)
        .env("XMPP_BROADCAST_USER", ADMIN_USER)
        .env("XMPP_BROADCAST_PASSWORD", ADMIN_PASSWORD);
    for (name, value) in env {
        command.env(name, value);
    }
    process::output_with_input(command, b"").await
}

/// curl posting `request` to the GraphQL API at `base`, trusting `ca` (none: the system's).
async fn curl(base: &str, ca: Option<&Path>, request: &Value) -> Output {
    let mut command = std::process::Command::new("curl");
    command.args(["--silent", "--show-error", "--fail-with-body"]);
    if let Some(ca) = ca {
        command.arg("--cacert").arg(ca);
    }
    command
        .args(["--user", &format!("{ADMIN_USER}:{ADMIN_PASSWORD}")])
        .args(["--header", "content-type: application/json"])
        .args(["--data-binary", "@-"])
        .arg(format!("{base}/api/graphql"));
    process::output_with_input(command, request.to_string().as_bytes()).await
}

fn start_request(name: &str) -> Value {
    json!({
        "query": "mutation Start($name: String!, $domain: DomainName!, $body: String!) { \
                  broadcast { startBroadcast(name: $name, domain: $domain, messageSubject: \"\", \
                  messageBody: $body, senderJid: \"admin@example.com\", messageRate: 100, \
                  recipientGroup: ALL_USERS_IN_DOMAIN) { ids } } }",
        "variables": { "name": name, "domain": DOMAIN, "body": "Started by curl over HTTPS" },
    })
}

fn get_request(id: i64) -> Value {
    json!({
        "query": "query Get($domain: DomainName!, $id: Int!) { broadcast { \
                  getBroadcast(domain: $domain, id: $id) { executionState } } }",
        "variables": { "domain": DOMAIN, "id": id },
    })
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Panics unless the listener at `address` presents `expected` to a client trusting `ca`.
async fn assert_presented(address: &str, ca: &Path, expected: &[u8]) {
    let presented = presented_certificate(address, ca).await.expect("handshake");
    assert!(presented == expected, "another certificate is served");
}

async fn wait_for_log(serve: &Serve, line: &str) {
    let deadline = Deadline::after(RELOAD_TIMEOUT, format!("serve to log {line:?}"));
    while !serve.log().contains(line) {
        deadline.tick().await;
    }
}
