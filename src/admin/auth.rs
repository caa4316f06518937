//! Who is calling: HTTP Basic authentication of the global admin and of domain admins.
//!
//! The global admin's credentials are compared as SHA-1 digests, so the comparison takes the
//! same time whatever the supplied password shares with the real one; a global admin given by
//! an argon2 hash (`admin.password_hash`) is verified as a domain admin is, below. A domain admin logs in as
//! `admin@<domain>` with a password checked against the argon2 hash in the config; successful
//! checks are remembered (as digests, at most [`MAX_VERIFIED`]) so that a script's requests do
//! not each pay for argon2. Every other attempt costs one argon2 verification on the
//! [`login`](super::login) threads — against the dummy hash when no such admin exists, so that
//! the answer's timing does not tell which domains have an admin — unless the client or the
//! account has failed too often lately, which is refused without hashing.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use super::login::{self, FailureLimiter, LoginLimits, MAX_VERIFIED, Target, Verifier};
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
    /// The client or the account failed too often lately: 429 `too_many_login_failures`,
    /// without any hashing; the wait until the next attempt may be verified.
    Limited(Duration),
    /// Too many verifications are waiting: 503 `login_busy`.
    Busy,
}

/// Everyone who may log in.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    global: Global,
    /// Domain admins' hashes by domain; a hash that does not parse (the config refuses it)
    /// matches no password.
    domain_admins: BTreeMap<String, Option<Arc<PasswordHash>>>,
    /// Digests of `user:password` pairs of domain admins already verified.
    verified: Mutex<Verified>,
    limiter: FailureLimiter,
    verifier: Verifier,
}

/// How the global admin is recognised.
enum Global {
    /// By the digest of `user:password`.
    Digest([u8; 20]),
    /// By its user name and the argon2 hash of its password (`None`: a hash that does not
    /// parse, which the config refuses, matches no password).
    Hash {
        username: String,
        hash: Option<Arc<PasswordHash>>,
    },
}

/// The global admin's password as the config gives it.
pub enum GlobalPassword<'a> {
    Plain(&'a str),
    Hash(&'a Secret),
}

/// A bounded set, oldest entry forgotten first.
#[derive(Default)]
struct Verified {
    set: HashSet<[u8; 20]>,
    order: VecDeque<[u8; 20]>,
}

impl Verified {
    fn insert(&mut self, digest: [u8; 20]) {
        if self.set.insert(digest) {
            self.order.push_back(digest);
            if self.order.len() > MAX_VERIFIED
                && let Some(oldest) = self.order.pop_front()
            {
                self.set.remove(&oldest);
            }
        }
    }
}

impl Credentials {
    /// The global admin and the domain admins, with the documented login limits.
    pub fn new(username: &str, password: &str, domain_admins: BTreeMap<String, Secret>) -> Self {
        Credentials::with_limits(username, password, domain_admins, LoginLimits::default())
    }

    /// As [`Credentials::new`], with other login limits.
    pub fn with_limits(
        username: &str,
        password: &str,
        domain_admins: BTreeMap<String, Secret>,
        limits: LoginLimits,
    ) -> Self {
        Credentials::build(
            username,
            GlobalPassword::Plain(password),
            domain_admins,
            limits,
        )
    }

    /// The global admin, by its password or its hash, and the domain admins, with the
    /// documented login limits.
    pub fn for_global(
        username: &str,
        password: GlobalPassword<'_>,
        domain_admins: BTreeMap<String, Secret>,
    ) -> Self {
        Credentials::build(username, password, domain_admins, LoginLimits::default())
    }

    fn build(
        username: &str,
        password: GlobalPassword<'_>,
        domain_admins: BTreeMap<String, Secret>,
        limits: LoginLimits,
    ) -> Self {
        let global = match password {
            GlobalPassword::Plain(password) => {
                Global::Digest(digest(format!("{username}:{password}").as_bytes()))
            }
            GlobalPassword::Hash(hash) => Global::Hash {
                username: username.to_owned(),
                hash: PasswordHash::new(hash.expose()).ok().map(Arc::new),
            },
        };
        let domain_admins: BTreeMap<_, _> = domain_admins
            .into_iter()
            .map(|(domain, hash)| {
                let parsed = PasswordHash::new(hash.expose()).ok().map(Arc::new);
                (domain, parsed)
            })
            .collect();
        let global_hash = match &global {
            Global::Hash { hash, .. } => hash.as_deref(),
            Global::Digest(_) => None,
        };
        let template = domain_admins
            .values()
            .flatten()
            .next()
            .map(Arc::as_ref)
            .or(global_hash);
        let dummy = login::dummy_hash(template);
        Credentials {
            inner: Arc::new(Inner {
                global,
                domain_admins,
                verified: Mutex::new(Verified::default()),
                limiter: FailureLimiter::new(limits),
                verifier: Verifier::start(&limits, dummy),
            }),
        }
    }

    /// Checks an `Authorization` header value of a request from `client`.
    pub async fn check(
        &self,
        header: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Principal, Denied> {
        let inner = &self.inner;
        let header = header.ok_or(Denied::Missing)?;
        let supplied = basic_credentials(header).ok_or(Denied::Wrong)?;
        let supplied_digest = digest(&supplied);
        if let Global::Digest(global) = &inner.global
            && supplied_digest == *global
        {
            return Ok(Principal::GlobalAdmin);
        }
        let colon = supplied.iter().position(|byte| *byte == b':');
        let colon = colon.ok_or(Denied::Wrong)?;
        let (user, password) = (&supplied[..colon], &supplied[colon + 1..]);
        let user = String::from_utf8_lossy(user);
        let admin = match &inner.global {
            Global::Hash { username, hash } if *username == user => {
                Some((hash.clone(), Principal::GlobalAdmin))
            }
            _ => domain_of_admin(&user).and_then(|domain| {
                Some((
                    inner.domain_admins.get(&domain)?.clone(),
                    Principal::DomainAdmin(domain),
                ))
            }),
        };
        if let Some((_, principal)) = &admin
            && inner.verified().set.contains(&supplied_digest)
        {
            return Ok(principal.clone());
        }
        // Anything else costs an argon2 verification, unless the client or the account has
        // failed too often.
        inner
            .limiter
            .check(client, &user)
            .map_err(Denied::Limited)?;
        let (target, principal) = match admin {
            Some((Some(hash), principal)) => (Target::Known(hash), Some(principal)),
            Some((None, _)) | None => (Target::Unknown, None),
        };
        let matches = inner
            .verifier
            .verify(target, password.to_vec())
            .await
            .map_err(|_| Denied::Busy)?;
        match principal {
            Some(principal) if matches => {
                inner.verified().insert(supplied_digest);
                inner.limiter.succeeded(&user);
                Ok(principal)
            }
            _ => {
                inner.limiter.failed(client, &user);
                Err(Denied::Wrong)
            }
        }
    }

    /// The verifier threads' counters.
    #[cfg(test)]
    pub(crate) fn verifier_stats(&self) -> &login::VerifierStats {
        &self.inner.verifier.stats
    }
}

impl Inner {
    fn verified(&self) -> std::sync::MutexGuard<'_, Verified> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The decoded `user:password` of a Basic `Authorization` value. The scheme is
/// case-insensitive (RFC 7235 section 2.1, RFC 7617).
fn basic_credentials(header: &str) -> Option<Vec<u8>> {
    let header = header.trim_start();
    let (scheme, encoded) = header.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    STANDARD.decode(encoded.trim()).ok()
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
pub(crate) mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::Ordering;

    use argon2::{Algorithm, Params, Version};

    use super::*;

    pub(crate) fn basic(user_password: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_password))
    }

    /// An argon2 hash with `memory_kib` of memory and one pass: fast enough for tests, slow
    /// enough (with a few MiB) that concurrent logins overlap.
    pub(crate) fn test_hash(password: &str, memory_kib: u32) -> String {
        let params = Params::new(memory_kib, 1, 1, None).unwrap();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        argon2::password_hash::PasswordHasher::hash_password(&argon2, password.as_bytes())
            .unwrap()
            .to_string()
    }

    pub(crate) fn credentials_with(memory_kib: u32, limits: LoginLimits) -> Credentials {
        let admins = BTreeMap::from([
            (
                "example.com".to_owned(),
                Secret::new(test_hash("domainpw", memory_kib)),
            ),
            (
                "other.org".to_owned(),
                Secret::new(test_hash("otherpw", memory_kib)),
            ),
        ]);
        Credentials::with_limits("admin", "secret", admins, limits)
    }

    fn credentials() -> Credentials {
        credentials_with(64, LoginLimits::default())
    }

    fn client(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
    }

    const HOME: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));

    #[tokio::test]
    async fn checks_a_global_admin_given_by_its_hash() {
        let hash = Secret::new(test_hash("globalpw", 64));
        let admins = BTreeMap::from([(
            "example.com".to_owned(),
            Secret::new(test_hash("domainpw", 64)),
        )]);
        let credentials = Credentials::for_global("root", GlobalPassword::Hash(&hash), admins);
        for _ in 0..2 {
            // The second time from the verified cache.
            let global = credentials.check(Some(&basic("root:globalpw")), HOME).await;
            assert_eq!(global, Ok(Principal::GlobalAdmin));
        }
        assert_eq!(
            credentials
                .verifier_stats()
                .verified
                .load(Ordering::Relaxed),
            1
        );
        for wrong in ["root:domainpw", "root:", "admin:globalpw", "root:globalpw "] {
            let denied = credentials.check(Some(&basic(wrong)), HOME).await;
            assert_eq!(denied, Err(Denied::Wrong), "{wrong}");
        }
        let domain = credentials
            .check(Some(&basic("admin@example.com:domainpw")), HOME)
            .await;
        assert_eq!(domain, Ok(Principal::DomainAdmin("example.com".into())));
        // The hash itself is not a password.
        let hash_as_password = format!("root:{}", hash.expose());
        let denied = credentials
            .check(Some(&basic(&hash_as_password)), HOME)
            .await;
        assert_eq!(denied, Err(Denied::Wrong));
    }

    #[tokio::test]
    async fn checks_the_global_admin() {
        let credentials = credentials();
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            let header = format!("{scheme} {}", STANDARD.encode("admin:secret"));
            let ok = credentials.check(Some(&header), HOME).await;
            assert_eq!(ok, Ok(Principal::GlobalAdmin), "{header}");
        }
        let wrong = credentials.check(Some(&basic("admin:wrong")), HOME).await;
        assert_eq!(wrong, Err(Denied::Wrong));
        for malformed in ["Bearer x", "Basic", "Basicx", "Basic !!!"] {
            let refused = credentials.check(Some(malformed), HOME).await;
            assert_eq!(refused, Err(Denied::Wrong), "{malformed}");
        }
        assert_eq!(credentials.check(None, HOME).await, Err(Denied::Missing));
    }

    #[tokio::test]
    async fn checks_domain_admins_against_their_hash() {
        let credentials = credentials();
        let domain_admin = Principal::DomainAdmin("example.com".into());
        for _ in 0..2 {
            let ok = credentials
                .check(Some(&basic("admin@Example.com:domainpw")), HOME)
                .await;
            assert_eq!(ok, Ok(domain_admin.clone()));
        }
        let lower_case = format!("basic {}", STANDARD.encode("admin@other.org:otherpw"));
        let ok = credentials.check(Some(&lower_case), HOME).await;
        assert_eq!(ok, Ok(Principal::DomainAdmin("other.org".into())));
        for refused in [
            "admin@example.com:wrong",
            "root@example.com:domainpw",
            "admin@other.org:domainpw",
            "admin@unknown.net:domainpw",
        ] {
            assert_eq!(
                credentials.check(Some(&basic(refused)), HOME).await,
                Err(Denied::Wrong),
                "{refused}"
            );
        }
        assert!(domain_admin.may_manage("example.com"));
        assert!(!domain_admin.may_manage("other.org"));
        assert!(Principal::GlobalAdmin.may_manage("other.org"));
    }

    /// The answer for an account that does not exist costs the same as for a known admin with
    /// a wrong password: one argon2 verification, against a hash with the same parameters.
    #[tokio::test]
    async fn unknown_accounts_cost_a_verification_of_the_dummy_hash() {
        let credentials = credentials();
        let stats = credentials.verifier_stats();
        let attempts = [
            "admin@unknown.net:pw",
            "root@example.com:pw",
            "admin:wrong",
            "no-at-sign:pw",
        ];
        for (index, attempt) in attempts.iter().enumerate() {
            let refused = credentials.check(Some(&basic(attempt)), HOME).await;
            assert_eq!(refused, Err(Denied::Wrong), "{attempt}");
            let done = index as u64 + 1;
            assert_eq!(stats.dummies.load(Ordering::SeqCst), done, "{attempt}");
            assert_eq!(stats.verified.load(Ordering::SeqCst), done, "{attempt}");
        }
        let known = credentials
            .check(Some(&basic("admin@example.com:wrong")), HOME)
            .await;
        assert_eq!(known, Err(Denied::Wrong));
        assert_eq!(stats.verified.load(Ordering::SeqCst), 5);
        assert_eq!(stats.dummies.load(Ordering::SeqCst), 4);
        let dummy = login::dummy_hash(credentials.inner.domain_admins["example.com"].as_deref());
        let known = credentials.inner.domain_admins["example.com"]
            .as_deref()
            .unwrap();
        assert_eq!(dummy.params, known.params);
    }

    /// Many wrong logins at once: never more verifications at a time than verifier threads,
    /// the queue's overflow refused at once as busy, and the global admin unaffected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_bad_logins_are_bounded_by_the_verifier_threads_and_queue() {
        let limits = LoginLimits {
            verifier_threads: 2,
            verify_queue: 3,
            ..LoginLimits::default()
        };
        let credentials = credentials_with(4096, limits);
        let attempts = (0..40u8).map(|index| {
            let credentials = credentials.clone();
            tokio::spawn(async move {
                let header = basic(&format!("admin@example.com:wrong{index}"));
                credentials.check(Some(&header), client(index + 1)).await
            })
        });
        let attempts: Vec<_> = attempts.collect();
        let global = credentials.check(Some(&basic("admin:secret")), HOME).await;
        assert_eq!(global, Ok(Principal::GlobalAdmin));
        let mut answers = Vec::new();
        for attempt in attempts {
            answers.push(attempt.await.unwrap());
        }
        let busy = answers.iter().filter(|a| **a == Err(Denied::Busy)).count();
        let wrong = answers.iter().filter(|a| **a == Err(Denied::Wrong)).count();
        assert_eq!(busy + wrong, 40, "{answers:?}");
        assert!(busy > 0, "the queue never overflowed: {answers:?}");
        let stats = credentials.verifier_stats();
        assert!(stats.peak.load(Ordering::SeqCst) <= 2);
        assert_eq!(stats.verified.load(Ordering::SeqCst), wrong as u64);
    }

    /// After its failures an account is refused without hashing, from any address; another
    /// admin still logs in, and a known good login (cached) of the flooded account still works.
    #[tokio::test]
    async fn an_account_that_failed_too_often_is_refused_without_hashing() {
        let limits = LoginLimits {
            max_failures_per_account: 3,
            ..LoginLimits::default()
        };
        let credentials = credentials_with(64, limits);
        let good = basic("admin@example.com:domainpw");
        assert!(credentials.check(Some(&good), HOME).await.is_ok());
        let stats = credentials.verifier_stats();
        for index in 0..3 {
            let header = basic(&format!("admin@example.com:wrong{index}"));
            let refused = credentials.check(Some(&header), client(index + 2)).await;
            assert_eq!(refused, Err(Denied::Wrong));
        }
        let verified = stats.verified.load(Ordering::SeqCst);
        assert_eq!(verified, 4);
        let limited = credentials
            .check(Some(&basic("admin@example.com:again")), client(9))
            .await;
        assert!(matches!(limited, Err(Denied::Limited(_))), "{limited:?}");
        assert_eq!(stats.verified.load(Ordering::SeqCst), verified);
        // A right password that has not been verified before is refused too, until the window
        // ends; one verified before is not.
        let other_password = credentials
            .check(Some(&basic("admin@EXAMPLE.com:domainpw")), HOME)
            .await;
        assert!(matches!(other_password, Err(Denied::Limited(_))));
        assert!(credentials.check(Some(&good), HOME).await.is_ok());
        let other = credentials
            .check(Some(&basic("admin@other.org:otherpw")), HOME)
            .await;
        assert_eq!(other, Ok(Principal::DomainAdmin("other.org".into())));
    }

    #[tokio::test]
    async fn a_client_that_failed_too_often_is_refused_without_hashing() {
        let limits = LoginLimits {
            max_failures_per_client: 4,
            ..LoginLimits::default()
        };
        let credentials = credentials_with(64, limits);
        for index in 0..4 {
            let header = basic(&format!("admin@d{index}.org:wrong"));
            assert_eq!(
                credentials.check(Some(&header), HOME).await,
                Err(Denied::Wrong)
            );
        }
        let header = basic("admin@other.org:otherpw");
        let limited = credentials.check(Some(&header), HOME).await;
        assert!(matches!(limited, Err(Denied::Limited(_))), "{limited:?}");
        assert_eq!(
            credentials.verifier_stats().verified.load(Ordering::SeqCst),
            4
        );
        // The global admin is never limited (a digest comparison costs nothing).
        let global = credentials.check(Some(&basic("admin:secret")), HOME).await;
        assert_eq!(global, Ok(Principal::GlobalAdmin));
        // Another address is not limited.
        let other = credentials.check(Some(&header), client(2)).await;
        assert_eq!(other, Ok(Principal::DomainAdmin("other.org".into())));
    }

    #[test]
    fn the_verified_cache_is_bounded() {
        let mut verified = Verified::default();
        for index in 0..(MAX_VERIFIED + 10) {
            verified.insert(digest(index.to_string().as_bytes()));
        }
        assert_eq!(verified.set.len(), MAX_VERIFIED);
        assert_eq!(verified.order.len(), MAX_VERIFIED);
        assert!(!verified.set.contains(&digest(b"0")));
        assert!(
            verified
                .set
                .contains(&digest(MAX_VERIFIED.to_string().as_bytes()))
        );
    }
}
