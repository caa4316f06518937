//! The operator-facing files stay truthful: the documented example config passes
//! `check-config`, an invalid value is refused by key name, and the committed
//! `schema.graphql` is what `xmpp-broadcast schema` prints.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;

use support::scratch_dir;
use support::serve::{self, BINARY};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/component.toml.example");
const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");

fn run(args: &[&str]) -> Output {
    serve::command()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {BINARY} {args:?}: {e}"))
}

fn check_config(path: &Path) -> Output {
    run(&[
        "check-config",
        "--config",
        path.to_str().expect("UTF-8 path"),
    ])
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn example_config_passes_check_config() {
    let output = check_config(Path::new(EXAMPLE));
    assert!(
        output.status.success(),
        "check-config on the example: {}",
        text(&output)
    );
}

#[test]
fn every_server_example_passes_check_config() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    for server in ["prosody", "ejabberd", "mongooseim"] {
        let path = Path::new(examples).join(server).join("component.toml");
        let output = check_config(&path);
        assert!(
            output.status.success(),
            "check-config on {}: {}",
            path.display(),
            text(&output)
        );
    }
}

#[test]
fn too_short_lease_time_is_refused_by_name() {
    let example = fs::read_to_string(EXAMPLE).expect("read component.toml.example");
    // Top-level keys precede the first table, so a leading line sets the key (after
    // dropping the example's own setting, which TOML would reject as a duplicate).
    let without: Vec<&str> = example
        .lines()
        .filter(|line| !line.trim_start().starts_with("lease_time"))
        .collect();
    let config = format!("lease_time = 5\n{}\n", without.join("\n"));
    let dir = scratch_dir("config");
    let path = dir.path().join("short-lease.toml");
    fs::write(&path, config).expect("write config");

    let output = check_config(&path);
    assert!(!output.status.success(), "lease_time = 5 was accepted");
    assert!(
        text(&output).contains("lease_time"),
        "the error does not name lease_time: {}",
        text(&output)
    );
}

#[test]
fn committed_schema_matches_the_binary() {
    let output = run(&["schema"]);
    assert!(
        output.status.success(),
        "xmpp-broadcast schema: {}",
        text(&output)
    );
    let committed = fs::read_to_string(SCHEMA).expect("read schema.graphql");
    assert!(
        String::from_utf8_lossy(&output.stdout).trim_end() == committed.trim_end(),
        "schema.graphql is stale: regenerate it with \
         `cargo run -- schema > schema.graphql` and review the diff"
    );
}
