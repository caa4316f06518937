//! Who is calling: HTTP Basic authentication of the global admin and of domain admins.
//!
//! The global admin's credentials are compared as SHA-1 digests, so the comparison takes the
//! same time whatever the supplied password shares with the real one. A domain admin logs in as
//! `admin@<domain>` with a password checked against the argon2 hash in the config; successful
//! checks are remembered (as digests) so that a script's requests do not each pay for argon2.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use crate::config::Secret;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// May do everything.
    GlobalAdmin,
    /// May do everything for this domain only.
    DomainAdmin(String),
}

impl Principal {
    /// Whether this caller may act on `domain`.
    pub fn may_manage(&self, domain: &str) -> bool {
        match self {
            Principal::GlobalAdmin => true,
            Principal::DomainAdmin(own) => own == domain,
        }
    }
}

/// Why a request was refused before it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization` header: MongooseIM's `no_permissions`.
    Missing,
    /// Wrong credentials, or a header in a wrong form: `wrong_credentials`.
    Wrong,
}

/// Everyone who may log in.
#[derive(Clone)]
pub struct Credentials {
    global_digest: [u8; 20],
    domain_admins: Arc<BTreeMap<String, Secret>>,
    /// Digests of `user:password` pairs of domain admins already verified.
    verified: Arc<Mutex<HashSet<[u8; 20]>>>,
}

impl Credentials {
    pub fn new(username: &str, password: &str, domain_admins: BTreeMap<String, Secret>) -> Self {
        Credentials {
            global_digest: digest(format!("{username}:{password}").as_bytes()),
            domain_admins: Arc::new(domain_admins),
            verified: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, header: Option<&str>) -> Result<Principal, Denied> {
        let header = header.ok_or(Denied::Missing)?;
        let supplied = header
            .strip_prefix("Basic ")
            .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
            .ok_or(Denied::Wrong)?;
        let supplied_digest = digest(&supplied);
        if supplied_digest == self.global_digest {
            return Ok(Principal::GlobalAdmin);
        }
        let text = std::str::from_utf8(&supplied).map_err(|_| Denied::Wrong)?;
        let (user, password) = text.split_once(':').ok_or(Denied::Wrong)?;
        let domain = domain_of_admin(user).ok_or(Denied::Wrong)?;
        let hash = self.domain_admins.get(&domain).ok_or(Denied::Wrong)?;
        let known = self
            .verified
            .lock()
            .expect("verified lock")
            .contains(&supplied_digest);
        if !known {
            let hash = PasswordHash::new(hash.expose()).map_err(|_| Denied::Wrong)?;
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .map_err(|_| Denied::Wrong)?;
            self.verified
                .lock()
                .expect("verified lock")
                .insert(supplied_digest);
        }
        Ok(Principal::DomainAdmin(domain))
    }
}

/// The domain of a domain admin's user name, `admin@<domain>` (normalised).
fn domain_of_admin(user: &str) -> Option<String> {
    let jid = jid::BareJid::new(user).ok()?;
    (jid.node()?.as_str() == "admin").then(|| jid.domain().to_string())
}

fn digest(bytes: &[u8]) -> [u8; 20] {
    Sha1::digest(bytes).into()
}

/// A password hash for a domain admin, as the config's `admin_password_hash` expects.
pub fn hash_password(password: &str) -> Result<String, String> {
    argon2::password_hash::PasswordHasher::hash_password(&Argon2::default(), password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_password: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_password))
    }

    fn credentials() -> Credentials {
        let hash = hash_password("domainpw").unwrap();
        let admins = BTreeMap::from([("example.com".to_owned(), Secret::new(hash))]);
        Credentials::new("admin", "secret", admins)
    }

    #[test]
    fn checks_the_global_admin() {
        let credentials = credentials();
        let ok = credentials.check(Some(&basic("admin:secret")));
        assert_eq!(ok, Ok(Principal::GlobalAdmin));
        let wrong = credentials.check(Some(&basic("admin:wrong")));
        assert_eq!(wrong, Err(Denied::Wrong));
        assert_eq!(credentials.check(Some("Bearer x")), Err(Denied::Wrong));
        assert_eq!(credentials.check(None), Err(Denied::Missing));
    }

    #[test]
    fn checks_domain_admins_against_their_hash() {
        let credentials = credentials();
        let domain_admin = Principal::DomainAdmin("example.com".into());
        for _ in 0..2 {
            let ok = credentials.check(Some(&basic("admin@Example.com:domainpw")));
            assert_eq!(ok, Ok(domain_admin.clone()));
        }
        for refused in [
            "admin@example.com:wrong",
            "root@example.com:domainpw",
            "admin@other.org:domainpw",
        ] {
            assert_eq!(
                credentials.check(Some(&basic(refused))),
                Err(Denied::Wrong),
                "{refused}"
            );
        }
        assert!(domain_admin.may_manage("example.com"));
        assert!(!domain_admin.may_manage("other.org"));
        assert!(Principal::GlobalAdmin.may_manage("other.org"));
    }
}
