//! What a login may cost: domain admins' argon2 verifications run on a small fixed set of
//! dedicated threads behind a bounded queue, and failed logins are counted per client address
//! and per account so that a flood is refused before it costs any hashing.
//!
//! Each argon2 verification with the default parameters fills 19 MiB. Run on tokio's blocking
//! pool (up to 512 threads, each with its own malloc arena), a flood of wrong passwords held
//! gigabytes; on [`VERIFIER_THREADS`] long-lived threads the memory is that of one
//! verification per thread, reused by the next one (BENCHMARKS.md, "Login flood").

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use sha1::{Digest, Sha1};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Dedicated threads that verify domain admins' passwords. One leaves the second core of a
/// small machine to the runtime thread that sends messages; at ~30 ms a verification it still
/// checks over 30 first logins a second (later requests of a script hit the cache).
pub const VERIFIER_THREADS: usize = 1;

/// Verifications that may wait for a verifier thread. A login that finds the queue full is
/// refused at once with 503 `login_busy` instead of waiting: at most
/// `VERIFIER_THREADS + VERIFY_QUEUE` verifications exist at any time, and a queued one waits
/// at most ~0.5 s.
pub const VERIFY_QUEUE: usize = 16;

/// Failed logins of one client address (IPv6: its /64) within [`FAILURE_WINDOW`] after which
/// its further attempts are refused with 429 without hashing.
pub const MAX_FAILURES_PER_CLIENT: u32 = 30;

/// Failed logins of one account name within [`FAILURE_WINDOW`] after which further attempts
/// on it are refused with 429 without hashing, whoever sends them.
pub const MAX_FAILURES_PER_ACCOUNT: u32 = 10;

/// How long failures are counted from the first one of a client or an account.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Clients and accounts (together) whose failures are remembered. When full, expired entries
/// are dropped first, then the oldest one, so that random names cannot grow the memory.
const MAX_TRACKED: usize = 20_000;

/// Verified `user:password` digests remembered so that a script's requests do not each pay for
/// argon2; the oldest is forgotten first.
pub const MAX_VERIFIED: usize = 1024;

/// The limits of login verification; [`LoginLimits::default`] has the documented values, tests
/// use smaller ones.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub verifier_threads: usize,
    pub verify_queue: usize,
    pub max_failures_per_client: u32,
    pub max_failures_per_account: u32,
    pub failure_window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            verifier_threads: VERIFIER_THREADS,
            verify_queue: VERIFY_QUEUE,
            max_failures_per_client: MAX_FAILURES_PER_CLIENT,
            max_failures_per_account: MAX_FAILURES_PER_ACCOUNT,
            failure_window: FAILURE_WINDOW,
        }
    }
}

/// What a verification is checked against.
pub(crate) enum Target {
    /// A configured domain admin's hash.
    Known(Arc<PasswordHash>),
    /// No such admin: the dummy hash is verified all the same, so that the answer takes as long
    /// as for a known admin with a wrong password, and the result is ignored.
    Unknown,
}

/// The queue was full: try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy;

struct Job {
    target: Target,
    password: Vec<u8>,
    reply: oneshot::Sender<bool>,
}

/// Counters of the verifier threads.
#[derive(Debug, Default)]
pub(crate) struct VerifierStats {
    running: AtomicUsize,
    /// The most verifications that ever ran at once.
    pub peak: AtomicUsize,
    /// Verifications done, of which against the dummy hash.
    pub verified: AtomicU64,
    pub dummies: AtomicU64,
}

/// Hands verifications to the dedicated threads; the threads end when it is dropped.
pub(crate) struct Verifier {
    queue: SyncSender<Job>,
    /// Read by the tests, which check the bounds with it.
    #[cfg_attr(not(test), expect(dead_code))]
    pub stats: Arc<VerifierStats>,
}

impl Verifier {
    /// Starts `limits.verifier_threads` threads; `dummy` is verified for unknown accounts.
    pub fn start(limits: &LoginLimits, dummy: PasswordHash) -> Self {
        let (queue, jobs) = std::sync::mpsc::sync_channel(limits.verify_queue);
        let jobs = Arc::new(Mutex::new(jobs));
        let stats = Arc::new(VerifierStats::default());
        let dummy = Arc::new(dummy);
        for index in 0..limits.verifier_threads.max(1) {
            let (jobs, stats, dummy) = (jobs.clone(), stats.clone(), dummy.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || verify_jobs(&jobs, &stats, &dummy));
            if let Err(err) = spawned {
                tracing::error!(%err, "cannot start a password verification thread");
            }
        }
        Verifier { queue, stats }
    }

    /// Verifies `password` against `target` on a verifier thread; `Busy` at once if the queue
    /// is full. `false` for an unknown account.
    pub async fn verify(&self, target: Target, password: Vec<u8>) -> Result<bool, Busy> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            target,
            password,
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => answer.await.map_err(|_| Busy),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

fn verify_jobs(jobs: &Mutex<Receiver<Job>>, stats: &VerifierStats, dummy: &PasswordHash) {
    // argon2's working memory, kept for the thread's life: one allocation of the largest
    // configured cost instead of one per login, which malloc would keep anyway.
    let mut memory = Vec::new();
    loop {
        let job = {
            let jobs = jobs.lock().unwrap_or_else(PoisonError::into_inner);
            match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let running = stats.running.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak.fetch_max(running, Ordering::SeqCst);
        let matches = match &job.target {
            Target::Known(hash) => verify(&job.password, hash, &mut memory),
            Target::Unknown => {
                let _ = verify(&job.password, dummy, &mut memory);
                stats.dummies.fetch_add(1, Ordering::SeqCst);
                false
            }
        };
        stats.verified.fetch_add(1, Ordering::SeqCst);
        stats.running.fetch_sub(1, Ordering::SeqCst);
        let _ = job.reply.send(matches);
    }
}

/// Whether `password` matches `hash` (a PHC string's parts), computed in `memory`, which grows
/// to the hash's memory cost and is reused by the next verification. As argon2's own
/// `verify_password`, with the output compared in constant time.
fn verify(password: &[u8], hash: &PasswordHash, memory: &mut Vec<Block>) -> bool {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let Some(out) = buffer.get_mut(..expected.len()) else {
        return false;
    };
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt.as_ref(),
        &mut *out,
        &mut memory[..blocks],
    );
    computed.is_ok() && Output::new(out).is_ok_and(|output| output == *expected)
}

/// The hash verified for unknown accounts: the parameters (algorithm, version, memory, time,
/// lanes, salt and output lengths) of `template` — the first configured domain admin's hash —
/// or argon2's defaults (those of `hash-password`) when there is none, with an all-zero output
/// that no password produces.
pub(crate) fn dummy_hash(template: Option<&PasswordHash>) -> PasswordHash {
    // The template's salt is kept (same length, same work); the result is never used.
    let mut dummy = match template {
        Some(template) => template.clone(),
        None => PasswordHash::new(DEFAULT_DUMMY).expect("DEFAULT_DUMMY is a valid PHC string"),
    };
    let length = dummy.hash.map_or(DEFAULT_OUTPUT_LEN, |output| output.len());
    dummy.hash = Output::new(&vec![0; length]).ok().or(dummy.hash);
    dummy
}

/// argon2's default parameters (`Argon2::default()`, what `hash-password` writes), as a PHC
/// string with a 16-byte salt and a 32-byte output.
const DEFAULT_DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$\
                             AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const DEFAULT_OUTPUT_LEN: usize = 32;

/// Failure counts of one client or account.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Whose failures are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// An IPv4 address, or the /64 of an IPv6 address.
    Client(IpAddr),
    /// SHA-1 of the lower-cased user name (fixed size whatever the name's length).
    Account([u8; 20]),
}

/// Counts failed logins per client and per account within a window.
pub(crate) struct FailureLimiter {
    limits: LoginLimits,
    windows: Mutex<HashMap<Key, Window>>,
}

impl FailureLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        FailureLimiter {
            limits,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` if the client or the account has used up its failures: how long until it may
    /// try again.
    pub fn check(&self, client: Option<IpAddr>, user: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let exhausted = |key: Key, max: u32| {
            windows.get(&key).and_then(|window| {
                let ends = window.started + self.limits.failure_window;
                (window.failures >= max && ends > now).then(|| ends - now)
            })
        };
        let account = exhausted(account_key(user), self.limits.max_failures_per_account);
        let client =
            client.and_then(|ip| exhausted(client_key(ip), self.limits.max_failures_per_client));
        match account.into_iter().chain(client).max() {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed login of `user` from `client`.
    pub fn failed(&self, client: Option<IpAddr>, user: &str) {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let keys = client
            .map(client_key)
            .into_iter()
            .chain([account_key(user)]);
        for key in keys {
            if !windows.contains_key(&key) && windows.len() >= MAX_TRACKED {
                self.make_room(&mut windows, now);
            }
            let window = windows.entry(key).or_insert(Window {
                started: now,
                failures: 0,
            });
            if window.started + self.limits.failure_window <= now {
                *window = Window {
                    started: now,
                    failures: 0,
                };
            }
            window.failures = window.failures.saturating_add(1);
        }
    }

    /// Forgets the failures of an account that just logged in.
    pub fn succeeded(&self, user: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.remove(&account_key(user));
    }

    fn make_room(&self, windows: &mut HashMap<Key, Window>, now: Instant) {
        windows.retain(|_, window| window.started + self.limits.failure_window > now);
        if windows.len() >= MAX_TRACKED {
            let oldest = windows
                .iter()
                .min_by_key(|(_, window)| window.started)
                .map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                windows.remove(&oldest);
            }
        }
    }
}

fn client_key(ip: IpAddr) -> Key {
    match ip {
        IpAddr::V4(_) => Key::Client(ip),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Key::Client(IpAddr::V4(v4)),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Key::Client(IpAddr::V6(prefix.into()))
            }
        },
    }
}

fn account_key(user: &str) -> Key {
    Key::Account(Sha1::digest(user.to_lowercase().as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LoginLimits {
        LoginLimits {
            max_failures_per_client: 5,
            max_failures_per_account: 3,
            failure_window: Duration::from_secs(60),
            ..LoginLimits::default()
        }
    }

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[tokio::test(start_paused = true)]
    async fn an_account_is_refused_after_its_failures_until_the_window_ends() {
        let limiter = FailureLimiter::new(limits());
        for _ in 0..3 {
            assert_eq!(limiter.check(HOME, "admin@example.com"), Ok(()));
            limiter.failed(HOME, "admin@example.com");
        }
        let wait = limiter.check(HOME, "Admin@Example.com").unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));
        // Another client is refused too: the limit is the account's.
        let other = Some(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2)));
        assert!(limiter.check(other, "admin@example.com").is_err());
        // Another account of the same client still may try.
        assert_eq!(limiter.check(HOME, "admin@other.org"), Ok(()));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(limiter.check(HOME, "admin@example.com"), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_is_refused_after_its_failures_on_any_accounts() {
        let limiter = FailureLimiter::new(limits());
        for index in 0..5 {
            limiter.failed(HOME, &format!("admin@d{index}.org"));
        }
        assert!(limiter.check(HOME, "admin@fresh.org").is_err());
        let v6 = |text: &str| Some(text.parse::<IpAddr>().unwrap());
        for index in 0..5 {
            limiter.failed(v6(&format!("2001:db8::{index}")), &format!("u{index}"));
        }
        // The same /64: refused; another /64: not.
        assert!(
            limiter
                .check(v6("2001:db8::ffff"), "admin@fresh.org")
                .is_err()
        );
        assert_eq!(limiter.check(v6("2001:db9::1"), "admin@fresh.org"), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_forgets_the_accounts_failures() {
        let limiter = FailureLimiter::new(limits());
        for _ in 0..2 {
            limiter.failed(None, "admin@example.com");
        }
        limiter.succeeded("admin@example.com");
        for _ in 0..2 {
            limiter.failed(None, "admin@example.com");
        }
        assert_eq!(limiter.check(None, "admin@example.com"), Ok(()));
    }

    #[test]
    fn random_names_cannot_grow_the_limiter() {
        let limiter = FailureLimiter::new(limits());
        for index in 0..(MAX_TRACKED + 100) {
            limiter.failed(None, &format!("u{index}"));
        }
        assert!(limiter.windows.lock().unwrap().len() <= MAX_TRACKED);
    }

    #[test]
    fn the_default_dummy_has_argon2s_default_parameters() {
        let dummy = dummy_hash(None);
        let params = argon2::Params::try_from(&dummy).unwrap();
        let default = argon2::Params::default();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (default.m_cost(), default.t_cost(), default.p_cost())
        );
        assert_eq!(dummy.hash.map(|output| output.len()), Some(32));
        assert_eq!(dummy.algorithm.as_str(), "argon2id");
    }

    #[test]
    fn verifying_in_reused_memory_agrees_with_argon2() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let mut memory = Vec::new();
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        )
        .hash_password(b"cheap")
        .unwrap();
        let default = PasswordHash::new(&crate::admin::hash_password("pw").unwrap()).unwrap();
        // The larger hash first, then the smaller one in the same (larger) memory, and back.
        for (hash, right) in [(&default, "pw"), (&cheap, "cheap"), (&default, "pw")] {
            for password in [right, "wrong", ""] {
                let expected = Argon2::default()
                    .verify_password(password.as_bytes(), hash)
                    .is_ok();
                assert_eq!(verify(password.as_bytes(), hash, &mut memory), expected);
                assert_eq!(expected, password == right);
            }
        }
        let largest = Params::try_from(&default).unwrap().block_count();
        assert_eq!(
            memory.len(),
            largest,
            "the memory is the largest cost, kept"
        );
        let mut no_output = default.clone();
        no_output.hash = None;
        assert!(!verify(b"pw", &no_output, &mut memory));
    }

    #[test]
    fn the_dummy_takes_the_configured_hashes_parameters() {
        let configured = PasswordHash::new(&crate::admin::hash_password("pw").unwrap()).unwrap();
        let cheap = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
        let cheap = PasswordHash::new(cheap).unwrap();
        for template in [configured, cheap] {
            let dummy = dummy_hash(Some(&template));
            assert_eq!(dummy.params, template.params);
            assert_eq!(dummy.salt, template.salt);
            assert_ne!(dummy.hash, template.hash);
            assert!(dummy.hash.unwrap().as_bytes().iter().all(|byte| *byte == 0));
        }
    }
}
