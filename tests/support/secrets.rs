//! The test suite's secrets, each a distinctive string, and the check that none of them
//! appears in what the product shows: every `serve` log ([`super::serve::Serve`] checks its
//! own when it stops) and every admin API answer ([`super::admin::Admin`] checks each one).

use super::fake_server;
use super::prosody::{COMPONENT_SECRET, MARIADB_PASSWORD};
use super::serve::ADMIN_PASSWORD;

/// Every secret the suite configures. Each starts with `xbtest-` and ends with a random
/// tag, so that no other text contains it by chance.
pub const TEST_SECRETS: &[&str] = &[
    COMPONENT_SECRET,
    ADMIN_PASSWORD,
    MARIADB_PASSWORD,
    fake_server::SECRET,
    DATABASE_PASSWORD,
];

/// A password the secret-handling tests give for a job or users database URL.
pub const DATABASE_PASSWORD: &str = "xbtest-database-password-J8d3";

/// The test secrets that `text` contains.
pub fn leaked_in(text: &str) -> Vec<&'static str> {
    TEST_SECRETS
        .iter()
        .copied()
        .filter(|secret| text.contains(secret))
        .collect()
}

/// Panics, naming the secret and where, if `text` (from `what`) contains a test secret.
pub fn assert_no_secret(what: &str, text: &str) {
    let leaked = leaked_in(text);
    if let Some(line) = text
        .lines()
        .find(|line| leaked.iter().any(|secret| line.contains(secret)))
    {
        panic!("{what} shows the test secret(s) {leaked:?} in this line: {line}");
    }
    assert!(
        leaked.is_empty(),
        "{what} shows the test secret(s) {leaked:?}"
    );
}
