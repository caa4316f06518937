//! The configuration file: a TOML document plus `XMPP_BROADCAST_*` environment overrides.
//!
//! Everything is validated here, once, at load time; the rest of the program receives typed
//! values it can trust. Every number has a bound (the constants below), every string a length
//! and a character set where a bad one could hurt, and the operator's custom statements may
//! only use the placeholders of the arguments they are given ([`CustomStatement`]). What needs
//! the databases (reaching them, their tables, running the custom statements) is checked by
//! `serve` and `check-config` alike when they connect.
//!
//! Each secret ([`SECRETS`]) may also come from outside the file, so that the file can be
//! world-readable: its environment variable, a systemd credential (`$CREDENTIALS_DIRECTORY/<name>`,
//! `LoadCredential=`), or a file named by its `…_file` key, in that order before the key itself.
//! Those files are the only ones read besides the config. Secrets never appear in `Debug`
//! output, nor in any error: an unreadable file is named by its key and path, never its content.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use jid::BareJid;
use serde::Deserialize;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

/// The shortest lease accepted (`lease_time`, seconds): shorter leases would make instances
/// renew too often.
pub const MIN_LEASE_TIME_SECS: u64 = 10;
/// The longest lease accepted (`lease_time`, seconds): the jobs of an instance that died are
/// taken over by another after this time, so an hour is already a long outage; the lease's
/// expiry must also stay a date every job database can store.
pub const MAX_LEASE_TIME_SECS: u64 = 3600;
/// `lease_time` when the file has none, in seconds.
pub const DEFAULT_LEASE_TIME_SECS: u64 = 600;

/// The longest `count_wait_ms`: a minute, the admin client's own patience is about as long.
pub const MAX_COUNT_WAIT_MS: u64 = 60_000;

/// The most connections to the job database (`database.max_connections`). An instance runs at
/// most one job per domain plus its lease renewal and the admin API, so a few connections
/// suffice; PostgreSQL's own default limit for the whole server is 100. The pool reserves
/// memory for every allowed connection, so the bound also keeps that small.
pub const MAX_DATABASE_CONNECTIONS: u32 = 100;
/// `database.max_connections` when the file has none.
pub const DEFAULT_DATABASE_CONNECTIONS: u32 = 5;

/// The longest `node_name`, in bytes: it is written into every lease (MySQL: `VARCHAR(255)`).
pub const MAX_NODE_NAME_BYTES: usize = 250;
/// The longest `admin.username`, `admin.password` and `component.secret`, in bytes: credentials
/// travel in an HTTP header (Basic auth) or a handshake, where a few hundred bytes is plenty.
pub const MAX_CREDENTIAL_BYTES: usize = 1024;
/// The longest file path in the config (`admin.tls_certificate`, `admin.tls_key`), in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// The longest `users.database_id`, in bytes.
pub const MAX_DATABASE_ID_BYTES: usize = 200;
/// Longest statement of a named group, in bytes.
pub const MAX_STATEMENT_BYTES: usize = 16 * 1024;
/// The longest `users.time_zone`, in bytes (IANA names are shorter than 40).
pub const MAX_TIME_ZONE_BYTES: usize = 64;

/// The most memory (KiB) a domain admin's argon2 hash may ask for: every login with that
/// account costs this much. 64 MiB is over three times the default of `hash-password`
/// (19 MiB, OWASP's recommendation).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// The most passes an argon2 hash may ask for (`t`; the default of `hash-password` is 2).
pub const MAX_ARGON2_PASSES: u32 = 10;
/// The most lanes an argon2 hash may ask for (`p`; the default of `hash-password` is 1). They
/// run one after the other here, so they add to the time of a login.
pub const MAX_ARGON2_LANES: u32 = 8;

/// A configuration problem, phrased so that the operator knows which key to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: String, message: String },
    /// A secret's file or credential cannot be read; never says what the file holds.
    #[error("cannot read `{key}` from {path}: {source}")]
    SecretFile {
        key: String,
        path: String,
        source: std::io::Error,
    },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// The validated configuration of one instance.
#[derive(Debug, Clone)]
pub struct Config {
    /// Unique name of this instance; it is the owner name written into leases.
    pub node_name: String,
    /// How long a lease lasts without renewal.
    pub lease_time: Duration,
    /// How long startBroadcast waits for the recipients to be counted before it answers
    /// (invariant 4a).
    pub count_wait: Duration,
    pub component: ComponentConfig,
    pub database: DatabaseConfig,
    pub users: UsersConfig,
    pub admin: AdminConfig,
    /// The domains this instance broadcasts to, in order.
    pub domains: Vec<String>,
    /// Password hashes (argon2 PHC strings) of the domain admins, `admin@<domain>`, by domain.
    pub domain_admins: BTreeMap<String, Secret>,
    /// How `serve` writes its log.
    pub log_format: LogFormat,
}

/// How log lines are written (`log_format`, `XMPP_BROADCAST_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `time LEVEL target: message key=value …`, every value escaped and cut.
    #[default]
    Text,
    /// One JSON object per line (for journald, Loki, ELK), every value cut.
    Json,
}

impl LogFormat {
    /// The environment variable that chooses the format, over `log_format`.
    pub const ENV: &'static str = "XMPP_BROADCAST_LOG_FORMAT";

    /// `"text"` or `"json"`; anything else is refused naming `key`.
    pub fn parse(key: &str, value: &str) -> Result<Self, ConfigError> {
        match value {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(invalid(
                key,
                format!(
                    "\"{}\" is not a log format; use \"text\" or \"json\"",
                    other.escape_debug()
                ),
            )),
        }
    }
}

/// The XEP-0114 connection to the XMPP server.
#[derive(Clone)]
pub struct ComponentConfig {
    /// The component's own JID, e.g. `broadcast.example.com`.
    pub jid: BareJid,
    pub secret: Secret,
    /// `host:port` of the server's component listener.
    pub server: String,
}

/// Where broadcast jobs are stored.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub max_connections: u32,
}

/// Where the XMPP server keeps its accounts.
#[derive(Debug, Clone)]
pub struct UsersConfig {
    pub schema: UsersSchema,
    pub url: Secret,
    /// The time zone the users database's sessions render `created_at` in (PostgreSQL
    /// `timestamp`, MySQL `DATETIME`); `None` for the default, UTC.
    pub time_zone: Option<String>,
    /// The operator's name for the users database, recorded with each job instead of the
    /// identity the database reports (`directory::identity`): for instances that reach one
    /// database under names that differ, or a database whose identity changes (a MySQL
    /// failover to another host). `None`: the reported identity.
    pub database_id: Option<String>,
    /// The named groups of each domain (`[domains."…".groups.NAME]`): by domain, then by name,
    /// the statement that lists the group's members ([`GROUP_MEMBERS_SQL`]).
    pub groups: BTreeMap<String, BTreeMap<String, String>>,
}

/// The layout of the XMPP server's account tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsersSchema {
    /// Prosody's `mod_storage_sql` table `prosody` (store `accounts`).
    Prosody,
    /// ejabberd's default SQL schema: `users(username, …, created_at)` without a host column,
    /// so the database holds the accounts of the one domain named here.
    Ejabberd { domain: String },
    /// ejabberd with `new_sql_schema: true`: `users(username, server_host, …, created_at)`.
    EjabberdNew,
    /// MongooseIM: `users(username, server, …, created_at)`.
    MongooseIm,
    /// The operator's own statements.
    Custom(CustomQueries),
}

impl UsersSchema {
    /// The schema's name as `users.schema` writes it.
    pub fn name(&self) -> &'static str {
        match self {
            UsersSchema::Prosody => "prosody",
            UsersSchema::Ejabberd { .. } => "ejabberd",
            UsersSchema::EjabberdNew => "ejabberd_new",
            UsersSchema::MongooseIm => "mongooseim",
            UsersSchema::Custom(_) => "custom",
        }
    }
}

/// Operator-supplied SQL for `schema = "custom"`, with numbered placeholders `$1`, `$2`, …
/// (bound parameters only; on MySQL they are rewritten to `?`). The arguments of each are
/// those of [`EXISTS_SQL`], [`COUNT_SQL`] and [`PAGE_SQL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomQueries {
    /// [`EXISTS_SQL`]: one row with the number of such accounts (0 or 1).
    pub exists: String,
    /// [`COUNT_SQL`]: the number of accounts created up to the instant.
    pub count: String,
    /// [`PAGE_SQL`]: the next usernames, in the database's order.
    pub page: String,
}

/// One of the operator's statements of `schema = "custom"`: its key and the arguments the
/// directory binds to it, `$1` first. A statement may leave arguments out, but may use no
/// other placeholder, and must use those in `required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomStatement {
    /// The config key, e.g. `users.exists_sql`.
    pub key: &'static str,
    /// What `$1`, `$2`, … stand for, in order.
    pub parameters: &'static [&'static str],
    /// The placeholders (1-based) the statement must use, with the reason.
    pub required: &'static [(usize, &'static str)],
}

/// `users.exists_sql`: does `username@domain` exist.
pub const EXISTS_SQL: CustomStatement = CustomStatement {
    key: "users.exists_sql",
    parameters: &["domain", "username"],
    required: &[],
};

/// `users.count_sql`: how many accounts of the domain were created up to the instant.
pub const COUNT_SQL: CustomStatement = CustomStatement {
    key: "users.count_sql",
    parameters: &["domain", "snapshot instant"],
    required: &[],
};

/// `users.page_sql`: the next usernames of the domain created up to the instant, after the
/// previous page's last username, at most the page size.
pub const PAGE_SQL: CustomStatement = CustomStatement {
    key: "users.page_sql",
    parameters: &[
        "domain",
        "snapshot instant",
        "last username of the previous page",
        "page size",
    ],
    required: &[(
        PAGE_SQL_CURSOR,
        "without it every page would be the first one and a job would never end",
    )],
};

/// `domains."…".groups.NAME.members_sql`: the usernames of the group's members, accounts of the
/// domain, read in one statement when a job of the group starts.
pub const GROUP_MEMBERS_SQL: CustomStatement = CustomStatement {
    key: "members_sql",
    parameters: &["domain"],
    required: &[],
};

/// The placeholder of `users.page_sql` that carries the previous page's last username.
pub const PAGE_SQL_CURSOR: usize = 3;

impl CustomStatement {
    /// Checks that `sql` uses only this statement's placeholders, and the required ones.
    pub fn check(&self, sql: &str) -> Result<(), ConfigError> {
        self.check_as(self.key, sql)
    }

    /// [`CustomStatement::check`] of the statement at config key `key`.
    pub fn check_as(&self, key: &str, sql: &str) -> Result<(), ConfigError> {
        let used = crate::placeholders::numbers(sql);
        if let Some(&number) = used
            .iter()
            .find(|&&number| number == 0 || number > self.parameters.len())
        {
            let shown = if number == usize::MAX {
                "a placeholder with a huge number".to_owned()
            } else {
                format!("${number}")
            };
            return Err(invalid(
                key,
                format!(
                    "{shown} is not one of its parameters; it may use {}",
                    self.allowed()
                ),
            ));
        }
        for &(number, reason) in self.required {
            if !used.contains(&number) {
                let name = self.parameters.get(number - 1).copied().unwrap_or_default();
                return Err(invalid(
                    key,
                    format!("must use ${number} ({name}): {reason}"),
                ));
            }
        }
        Ok(())
    }

    /// `$1 (domain), $2 (username)`.
    fn allowed(&self) -> String {
        let listed: Vec<String> = self
            .parameters
            .iter()
            .enumerate()
            .map(|(i, name)| format!("${} ({name})", i + 1))
            .collect();
        listed.join(", ")
    }
}

impl CustomQueries {
    /// Checks each statement's placeholders against its arguments.
    pub fn check(&self) -> Result<(), ConfigError> {
        EXISTS_SQL.check(&self.exists)?;
        COUNT_SQL.check(&self.count)?;
        PAGE_SQL.check(&self.page)
    }
}

/// The HTTP listener with the GraphQL admin API, `/health` and `/metrics`.
#[derive(Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub username: String,
    pub password: AdminPassword,
    /// HTTPS instead of plain HTTP, when given.
    pub tls: Option<AdminTls>,
}

/// The PEM files of the admin listener's HTTPS (`admin.tls_certificate`, `admin.tls_key`). They
/// are read by `admin::tls` when `serve` starts and again on SIGHUP, not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTls {
    /// The certificate chain, the server's certificate first.
    pub certificate: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How the global admin's password is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminPassword {
    /// The password itself (`admin.password`).
    Plain(Secret),
    /// Its argon2 hash (`admin.password_hash`), as the domain admins' are given.
    Hash(Secret),
}

impl AdminPassword {
    /// The password, if the config has it rather than its hash (the CLI logs in with it).
    pub fn plain(&self) -> Option<&str> {
        match self {
            AdminPassword::Plain(password) => Some(password.expose()),
            AdminPassword::Hash(_) => None,
        }
    }
}

/// A string that is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl fmt::Debug for ComponentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentConfig")
            .field("jid", &self.jid.to_string())
            .field("secret", &self.secret)
            .field("server", &self.server)
            .finish()
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Environment variables that override keys of the file, for secrets and per-host values.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("XMPP_BROADCAST_NODE_NAME", "node_name"),
    ("XMPP_BROADCAST_COMPONENT_SECRET", "component.secret"),
    ("XMPP_BROADCAST_COMPONENT_SERVER", "component.server"),
    ("XMPP_BROADCAST_DATABASE_URL", "database.url"),
    ("XMPP_BROADCAST_USERS_URL", "users.url"),
    ("XMPP_BROADCAST_ADMIN_LISTEN", "admin.listen"),
    ("XMPP_BROADCAST_ADMIN_PASSWORD", "admin.password"),
    ("XMPP_BROADCAST_ADMIN_PASSWORD_HASH", "admin.password_hash"),
    ("XMPP_BROADCAST_DATABASE_PASSWORD", "database.password"),
    ("XMPP_BROADCAST_USERS_PASSWORD", "users.password"),
    (LogFormat::ENV, "log_format"),
];

/// A secret of the config: its key, and the systemd credential that may hold it instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretSource {
    /// The key in the file; `<key>_file` names a file holding the value.
    pub key: &'static str,
    /// The credential's name (`LoadCredential=<name>:…`), read from `$CREDENTIALS_DIRECTORY`.
    pub credential: &'static str,
}

/// Every secret, and where else it may come from. A value comes from the first of: its
/// environment variable ([`ENV_OVERRIDES`]), its credential, its `_file` key, its key.
pub const SECRETS: &[SecretSource] = &[
    SecretSource {
        key: "component.secret",
        credential: "component-secret",
    },
    SecretSource {
        key: "admin.password",
        credential: "admin-password",
    },
    SecretSource {
        key: "admin.password_hash",
        credential: "admin-password-hash",
    },
    SecretSource {
        key: "database.password",
        credential: "database-password",
    },
    SecretSource {
        key: "users.password",
        credential: "users-password",
    },
];

/// The environment variable naming the directory of the service's credentials (systemd).
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

impl Config {
    /// Reads, overrides from the process environment, and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_toml(&text, &env).map_err(|err| match err {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates a config document; `env` supplies the overrides.
    pub fn from_toml(text: &str, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut document: toml::Table =
            text.parse()
                .map_err(|err: toml::de::Error| ConfigError::Parse {
                    path: String::new(),
                    message: err.to_string(),
                })?;
        let var = |wanted: &str| {
            env.iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, value)| value.clone())
        };
        let mut origins = BTreeMap::new();
        for secret in SECRETS {
            let from_env = ENV_OVERRIDES
                .iter()
                .any(|(name, key)| *key == secret.key && var(name).is_some());
            let origin = resolve_secret(
                &mut document,
                secret,
                from_env,
                var(CREDENTIALS_DIRECTORY).as_deref(),
            )?;
            if let Some(origin) = origin {
                origins.insert(secret.key, origin);
            }
        }
        for (name, key) in ENV_OVERRIDES {
            if let Some(value) = var(name) {
                set_key(&mut document, key, value);
            }
        }
        let raw: RawConfig =
            toml::Value::Table(document)
                .try_into()
                .map_err(|err: toml::de::Error| ConfigError::Parse {
                    path: String::new(),
                    message: err.to_string(),
                })?;
        raw.validate().map_err(|err| match err {
            // A secret read from a file: say which file, so the operator knows what to fix.
            ConfigError::Invalid { key, message } => match origins.get(key.as_str()) {
                Some(origin) => ConfigError::Invalid {
                    key,
                    message: format!("{message} (read from {origin})"),
                },
                None => ConfigError::Invalid { key, message },
            },
            other => other,
        })
    }
}

/// Puts a secret read from its credential or its `_file` into `document` under its key, and
/// takes the `_file` key out; returns the path it was read from. Nothing is read when the
/// environment gives the value (`from_env`). The key and its `_file` together are refused.
fn resolve_secret(
    document: &mut toml::Table,
    secret: &SecretSource,
    from_env: bool,
    credentials: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    let (table_name, name) = secret
        .key
        .split_once('.')
        .expect("secret keys are in a table");
    let file_key = format!("{}_file", secret.key);
    let Some(table) = document
        .get_mut(table_name)
        .and_then(toml::Value::as_table_mut)
    else {
        // No such table: the deserialiser reports it (if a credential exists, it is used).
        let path = credentials.map(|dir| Path::new(dir).join(secret.credential));
        if !from_env && let Some(path) = path.filter(|path| path.exists()) {
            let value = read_secret(secret.key, &path)?;
            set_key(document, secret.key, value);
            return Ok(Some(path.display().to_string()));
        }
        return Ok(None);
    };
    let file = table.remove(&format!("{name}_file"));
    if file.is_some() && table.contains_key(name) {
        return Err(invalid(
            &file_key,
            format!("give either `{}` or `{file_key}`, not both", secret.key),
        ));
    }
    if from_env {
        return Ok(None);
    }
    let credential = credentials
        .map(|dir| Path::new(dir).join(secret.credential))
        .filter(|path| path.exists());
    let path = match (credential, file) {
        (Some(path), _) => path,
        (None, Some(toml::Value::String(path))) if !path.is_empty() => PathBuf::from(path),
        (None, Some(_)) => return Err(invalid(&file_key, "must be the path of a file")),
        (None, None) => return Ok(None),
    };
    let key = if credentials.is_some_and(|dir| path.starts_with(dir)) {
        secret.key.to_owned()
    } else {
        file_key
    };
    let value = read_secret(&key, &path)?;
    table.insert(name.to_owned(), toml::Value::String(value));
    Ok(Some(path.display().to_string()))
}

/// A secret file's content without one line break at its end (as `echo` and editors leave).
fn read_secret(key: &str, path: &Path) -> Result<String, ConfigError> {
    let mut value = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        key: key.to_owned(),
        path: path.display().to_string(),
        source,
    })?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}

fn set_key(document: &mut toml::Table, dotted: &str, value: String) {
    let mut table = document;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            table.insert(part.to_owned(), toml::Value::String(value));
            return;
        }
        let entry = table
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(inner) => table = inner,
            _ => return,
        }
    }
}

/// The file as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node_name: String,
    log_format: Option<String>,
    #[serde(default = "default_lease_time")]
    lease_time: i64,
    #[serde(default = "default_count_wait_ms")]
    count_wait_ms: i64,
    #[serde(default = "default_backend")]
    backend: String,
    component: RawComponent,
    database: RawDatabase,
    users: RawUsers,
    admin: RawAdmin,
    #[serde(default)]
    domains: BTreeMap<String, RawDomain>,
}

fn default_count_wait_ms() -> i64 {
    crate::broadcast::COUNT_WAIT.as_millis() as i64
}

fn default_lease_time() -> i64 {
    DEFAULT_LEASE_TIME_SECS as i64
}

fn default_backend() -> String {
    "rdbms".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    jid: String,
    secret: Option<String>,
    server: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
    password: Option<String>,
    #[serde(default = "default_max_connections")]
    max_connections: i64,
}

fn default_max_connections() -> i64 {
    i64::from(DEFAULT_DATABASE_CONNECTIONS)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    schema: String,
    url: String,
    password: Option<String>,
    domain: Option<String>,
    time_zone: Option<String>,
    database_id: Option<String>,
    exists_sql: Option<String>,
    count_sql: Option<String>,
    page_sql: Option<String>,
}

/// The schema names `users.schema` accepts, as listed in messages.
const SCHEMAS: &str = "\"prosody\", \"ejabberd\", \"ejabberd_new\", \"mongooseim\" or \"custom\"";

impl RawUsers {
    /// Checks the `[users]` keys together with the configured domains.
    fn validate(self, domains: &[String]) -> Result<UsersConfig, ConfigError> {
        let url = with_password("users", self.url, self.password)?;
        validate_database_url("users.url", &url)?;
        let custom_keys = [
            (EXISTS_SQL.key, &self.exists_sql),
            (COUNT_SQL.key, &self.count_sql),
            (PAGE_SQL.key, &self.page_sql),
        ];
        let schema = match self.schema.as_str() {
            "prosody" => UsersSchema::Prosody,
            "ejabberd" => UsersSchema::Ejabberd {
                domain: single_domain(self.domain.as_deref(), domains)?,
            },
            "ejabberd_new" => UsersSchema::EjabberdNew,
            "mongooseim" => UsersSchema::MongooseIm,
            "custom" => {
                let statement =
                    |key: &str, value: &Option<String>| match value.as_deref().map(str::trim) {
                        Some(sql) if !sql.is_empty() => Ok(sql.to_owned()),
                        _ => Err(invalid(
                            key,
                            "schema \"custom\" needs exists_sql, count_sql and page_sql \
                         (see component.toml.example for their parameters)",
                        )),
                    };
                let queries = CustomQueries {
                    exists: statement(EXISTS_SQL.key, &self.exists_sql)?,
                    count: statement(COUNT_SQL.key, &self.count_sql)?,
                    page: statement(PAGE_SQL.key, &self.page_sql)?,
                };
                queries.check()?;
                UsersSchema::Custom(queries)
            }
            other => {
                return Err(invalid(
                    "users.schema",
                    format!("\"{other}\" is not a known schema; use {SCHEMAS}"),
                ));
            }
        };
        if self.domain.is_some() && !matches!(schema, UsersSchema::Ejabberd { .. }) {
            return Err(invalid(
                "users.domain",
                "only applies to schema = \"ejabberd\" (one database per domain); remove it",
            ));
        }
        if !matches!(schema, UsersSchema::Custom(_))
            && let Some((key, _)) = custom_keys.iter().find(|(_, value)| value.is_some())
        {
            return Err(invalid(
                key,
                "only applies to schema = \"custom\"; remove it",
            ));
        }
        if let Some(zone) = &self.time_zone {
            validate_time_zone(zone)?;
        }
        if let Some(id) = &self.database_id {
            validate_database_id(id)?;
        }
        Ok(UsersConfig {
            schema,
            url: Secret::new(url),
            time_zone: self.time_zone,
            database_id: self.database_id,
            groups: BTreeMap::new(),
        })
    }
}

/// ejabberd's default schema has no host column: the database holds one domain's accounts,
/// named by `users.domain`, and that must be the one domain this instance serves.
fn single_domain(domain: Option<&str>, domains: &[String]) -> Result<String, ConfigError> {
    let Some(domain) = domain else {
        return Err(invalid(
            "users.domain",
            "schema \"ejabberd\" (ejabberd's default SQL schema, without a host column) needs \
             the domain whose accounts the database holds, e.g. domain = \"example.com\"; \
             if ejabberd runs with new_sql_schema: true, use schema = \"ejabberd_new\"",
        ));
    };
    if !domains.iter().any(|served| served == domain) {
        return Err(invalid(
            "users.domain",
            format!(
                "\"{domain}\" is not a configured domain ({}); the database's accounts must \
                 belong to a domain in [domains]",
                domains.join(", ")
            ),
        ));
    }
    if let Some(other) = domains.iter().find(|served| *served != domain) {
        return Err(invalid(
            &format!("domains.\"{other}\""),
            format!(
                "schema \"ejabberd\" reads the accounts of one domain (users.domain = \
                 \"{domain}\"); remove [domains.\"{other}\"] and run one instance per domain, \
                 or use ejabberd's new_sql_schema with schema = \"ejabberd_new\""
            ),
        ));
    }
    Ok(domain.to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: String,
    username: String,
    password: Option<String>,
    password_hash: Option<String>,
    tls_certificate: Option<String>,
    tls_key: Option<String>,
}

impl RawAdmin {
    /// `admin.tls_certificate` and `admin.tls_key`: both or neither.
    fn tls(&self) -> Result<Option<AdminTls>, ConfigError> {
        let path = |key: &str, value: &str| {
            validate_text(key, value, MAX_PATH_BYTES).map(|()| PathBuf::from(value))
        };
        match (&self.tls_certificate, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(certificate), Some(key)) => Ok(Some(AdminTls {
                certificate: path("admin.tls_certificate", certificate)?,
                key: path("admin.tls_key", key)?,
            })),
            (Some(_), None) => Err(invalid(
                "admin.tls_key",
                "missing: admin.tls_certificate needs its private key (PEM file)",
            )),
            (None, Some(_)) => Err(invalid(
                "admin.tls_certificate",
                "missing: admin.tls_key needs its certificate chain (PEM file)",
            )),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    admin_password_hash: Option<String>,
    #[serde(default)]
    groups: BTreeMap<String, RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    members_sql: String,
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        validate_text("node_name", &self.node_name, MAX_NODE_NAME_BYTES)?;
        if self.node_name.trim().is_empty() {
            return Err(invalid("node_name", "must not be blank"));
        }
        let lease_time = in_range(
            "lease_time",
            self.lease_time,
            MIN_LEASE_TIME_SECS..=MAX_LEASE_TIME_SECS,
            " seconds",
        )?;
        let count_wait_ms = in_range(
            "count_wait_ms",
            self.count_wait_ms,
            0..=MAX_COUNT_WAIT_MS,
            " milliseconds",
        )?;
        if self.backend != "rdbms" {
            return Err(invalid(
                "backend",
                format!(
                    "\"{}\" is not supported; the only backend is \"rdbms\"",
                    self.backend
                ),
            ));
        }
        let jid = BareJid::new(&self.component.jid)
            .ok()
            .filter(|jid| jid.node().is_none())
            .ok_or_else(|| {
                invalid(
                    "component.jid",
                    format!(
                        "\"{}\" is not a domain JID such as broadcast.example.com",
                        self.component.jid
                    ),
                )
            })?;
        let log_format = match &self.log_format {
            Some(value) => LogFormat::parse("log_format", value)?,
            None => LogFormat::default(),
        };
        let component_secret = self
            .component
            .secret
            .ok_or_else(|| missing_secret("component.secret"))?;
        if component_secret.is_empty() {
            return Err(invalid("component.secret", "must not be empty"));
        }
        if component_secret.len() > MAX_CREDENTIAL_BYTES {
            return Err(invalid(
                "component.secret",
                format!("must be at most {MAX_CREDENTIAL_BYTES} bytes"),
            ));
        }
        validate_host_port("component.server", &self.component.server)?;
        let database_url = with_password("database", self.database.url, self.database.password)?;
        validate_database_url("database.url", &database_url)?;
        let max_connections = in_range(
            "database.max_connections",
            self.database.max_connections,
            1..=u64::from(MAX_DATABASE_CONNECTIONS),
            "",
        )?;
        let listen: SocketAddr = self.admin.listen.parse().map_err(|_| {
            invalid(
                "admin.listen",
                format!(
                    "\"{}\" is not an address such as 127.0.0.1:5551",
                    self.admin.listen
                ),
            )
        })?;
        validate_text("admin.username", &self.admin.username, MAX_CREDENTIAL_BYTES)?;
        if self.admin.username.contains(':') {
            return Err(invalid(
                "admin.username",
                "must not contain ':' (HTTP Basic authentication could not send it)",
            ));
        }
        let admin_tls = self.admin.tls()?;
        let admin_password = match (self.admin.password, self.admin.password_hash) {
            (Some(password), None) => {
                validate_text("admin.password", &password, MAX_CREDENTIAL_BYTES)?;
                AdminPassword::Plain(Secret::new(password))
            }
            (None, Some(hash)) => {
                validate_password_hash("admin.password_hash", &hash)?;
                AdminPassword::Hash(Secret::new(hash))
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "admin.password_hash",
                    "give either `admin.password` or `admin.password_hash`, not both",
                ));
            }
            (None, None) => return Err(missing_secret("admin.password")),
        };
        let mut domains = Vec::with_capacity(self.domains.len());
        let mut domain_admins = BTreeMap::new();
        let mut groups = BTreeMap::new();
        for (name, settings) in self.domains {
            let key = format!("domains.\"{}\"", name.escape_debug());
            let domain = BareJid::new(&name)
                .ok()
                .filter(|jid| jid.node().is_none() && jid.to_string() == name)
                .ok_or_else(|| invalid(&key, "is not a lower-case domain name"))?;
            if let Some(hash) = settings.admin_password_hash {
                validate_password_hash(&format!("{key}.admin_password_hash"), &hash)?;
                domain_admins.insert(domain.to_string(), Secret::new(hash));
            }
            let mut domain_groups = BTreeMap::new();
            for (group, raw) in settings.groups {
                let group_key = format!("{key}.groups.\"{}\"", group.escape_debug());
                if !crate::job::audience::is_group_name(&group) {
                    return Err(invalid(
                        &group_key,
                        "is not a group name: 1-64 ASCII letters, digits, '_', '-' or '.'",
                    ));
                }
                let sql_key = format!("{group_key}.{}", GROUP_MEMBERS_SQL.key);
                let sql = raw.members_sql.trim();
                if sql.is_empty() {
                    return Err(invalid(&sql_key, "must not be empty"));
                }
                if sql.len() > MAX_STATEMENT_BYTES {
                    return Err(invalid(
                        &sql_key,
                        format!("must be at most {MAX_STATEMENT_BYTES} bytes"),
                    ));
                }
                GROUP_MEMBERS_SQL.check_as(&sql_key, sql)?;
                domain_groups.insert(group, sql.to_owned());
            }
            if !domain_groups.is_empty() {
                groups.insert(domain.to_string(), domain_groups);
            }
            domains.push(domain.to_string());
        }
        if domains.is_empty() {
            return Err(invalid(
                "domains",
                "no domain configured; add a table such as [domains.\"example.com\"]",
            ));
        }
        let mut users = self.users.validate(&domains)?;
        users.groups = groups;
        Ok(Config {
            node_name: self.node_name,
            lease_time: Duration::from_secs(lease_time),
            count_wait: Duration::from_millis(count_wait_ms),
            component: ComponentConfig {
                jid,
                secret: Secret::new(component_secret),
                server: self.component.server,
            },
            database: DatabaseConfig {
                url: Secret::new(database_url),
                max_connections: u32::try_from(max_connections)
                    .unwrap_or(DEFAULT_DATABASE_CONNECTIONS),
            },
            users,
            admin: AdminConfig {
                listen,
                username: self.admin.username,
                password: admin_password,
                tls: admin_tls,
            },
            domains,
            domain_admins,
            log_format,
        })
    }
}

/// A secret that no source gave: where it may come from.
fn missing_secret(key: &str) -> ConfigError {
    let source = SECRETS
        .iter()
        .find(|secret| secret.key == key)
        .expect("a secret");
    let env = ENV_OVERRIDES
        .iter()
        .find(|(_, overridden)| *overridden == key)
        .map_or(String::new(), |(name, _)| format!(", {name}"));
    invalid(
        key,
        format!(
            "missing: give it in the file, as a file (`{key}_file`), as the systemd credential \
             {}{env}",
            source.credential
        ),
    )
}

/// `url` with `password` (`<table>.password`) put in as its user's password, percent-encoded;
/// refused for a URL without a user, one that has a password already, or SQLite.
fn with_password(
    table: &str,
    url: String,
    password: Option<String>,
) -> Result<String, ConfigError> {
    let Some(password) = password else {
        return Ok(url);
    };
    let key = format!("{table}.password");
    if password.is_empty() {
        return Err(invalid(&key, "must not be empty"));
    }
    let Some((scheme, rest)) = url
        .split_once("://")
        .filter(|(scheme, _)| *scheme != "sqlite")
    else {
        return Err(invalid(
            &key,
            format!("only a postgres:// or mysql:// `{table}.url` takes a password"),
        ));
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((user, host)) = authority.rsplit_once('@') else {
        return Err(invalid(
            &key,
            format!("`{table}.url` names no user for the password (postgres://user@host/database)"),
        ));
    };
    if user.contains(':') {
        return Err(invalid(
            &key,
            format!("`{table}.url` has a password already; give it in one place only"),
        ));
    }
    let mut encoded = String::with_capacity(password.len() * 3);
    for byte in password.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(format!("{scheme}://{user}:{encoded}@{host}{path}"))
}

/// `value` if it lies in `range`, or an error naming the key and the range (`unit` follows the
/// numbers, e.g. `" seconds"`).
fn in_range(
    key: &str,
    value: i64,
    range: RangeInclusive<u64>,
    unit: &str,
) -> Result<u64, ConfigError> {
    match u64::try_from(value) {
        Ok(value) if range.contains(&value) => Ok(value),
        _ => Err(invalid(
            key,
            format!(
                "must be between {} and {}{unit}, not {value}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// A non-empty text of at most `max_bytes` bytes without control characters (which would
/// forge log lines, or could not be sent in an HTTP header).
fn validate_text(key: &str, value: &str, max_bytes: usize) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if value.len() > max_bytes {
        return Err(invalid(
            key,
            format!("must be at most {max_bytes} bytes, not {}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(key, "must not contain control characters"));
    }
    Ok(())
}

fn validate_host_port(key: &str, value: &str) -> Result<(), ConfigError> {
    let valid = value.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.chars().any(|c| c.is_whitespace() || c.is_control())
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if valid {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "\"{}\" is not host:port such as 127.0.0.1:5347 (port 1 to 65535)",
                value.escape_debug()
            ),
        ))
    }
}

/// A zone name or offset as PostgreSQL and MySQL take them: `Europe/Berlin`, `UTC`, `+02:00`.
fn validate_time_zone(zone: &str) -> Result<(), ConfigError> {
    const KEY: &str = "users.time_zone";
    if zone.trim().is_empty() {
        return Err(invalid(KEY, "must not be empty; leave it out for UTC"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '+' | '-' | ':');
    if zone.len() > MAX_TIME_ZONE_BYTES || !zone.chars().all(allowed) {
        return Err(invalid(
            KEY,
            format!(
                "\"{}\" is not a time zone such as \"Europe/Berlin\" or \"+02:00\" (at most \
                 {MAX_TIME_ZONE_BYTES} letters, digits and / _ + - :)",
                zone.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// `users.database_id`: a name recorded with every job and shown in messages, so printable
/// and short.
fn validate_database_id(id: &str) -> Result<(), ConfigError> {
    const KEY: &str = "users.database_id";
    let allowed = |c: char| c.is_ascii_graphic();
    if id.is_empty() || id.len() > MAX_DATABASE_ID_BYTES || !id.chars().all(allowed) {
        return Err(invalid(
            KEY,
            format!(
                "\"{}\" is not a database name such as \"users-primary\" (1 to \
                 {MAX_DATABASE_ID_BYTES} printable ASCII characters, no spaces)",
                id.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// An argon2 hash (PHC string) whose cost stays within the `MAX_ARGON2_*` bounds: every login
/// of the account pays it.
fn validate_password_hash(key: &str, hash: &str) -> Result<(), ConfigError> {
    let not_a_hash = || {
        invalid(
            key,
            "is not an argon2 password hash; make one with `xmpp-broadcast hash-password`",
        )
    };
    let parsed = argon2::password_hash::phc::PasswordHash::new(hash).map_err(|_| not_a_hash())?;
    argon2::Algorithm::new(parsed.algorithm.as_str()).map_err(|_| not_a_hash())?;
    let params = argon2::Params::try_from(&parsed).map_err(|_| not_a_hash())?;
    let limits = [
        ("m (memory, KiB)", params.m_cost(), MAX_ARGON2_MEMORY_KIB),
        ("t (passes)", params.t_cost(), MAX_ARGON2_PASSES),
        ("p (lanes)", params.p_cost(), MAX_ARGON2_LANES),
    ];
    for (name, value, max) in limits {
        if value > max {
            return Err(invalid(
                key,
                format!(
                    "the hash's cost {name} = {value} is above the maximum of {max}: every \
                     login would pay it; make a hash with `xmpp-broadcast hash-password`"
                ),
            ));
        }
    }
    Ok(())
}

fn validate_database_url(key: &str, value: &str) -> Result<(), ConfigError> {
    let known = [
        "sqlite:",
        "postgres://",
        "postgresql://",
        "mysql://",
        "mariadb://",
    ];
    if !known.iter().any(|prefix| value.starts_with(prefix)) {
        return Err(invalid(
            key,
            "must be a sqlite://, postgres:// or mysql:// URL".to_owned(),
        ));
    }
    // Parsed as the driver will parse it (no connection): a wrong port or parameter shows here,
    // without a database. The driver's message never quotes the URL, so not its password.
    let parsed = if value.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(value).map(drop)
    } else if value.starts_with("mysql:") || value.starts_with("mariadb:") {
        MySqlConnectOptions::from_str(value).map(drop)
    } else {
        PgConnectOptions::from_str(value).map(drop)
    };
    parsed.map_err(|err| {
        let cause = match err {
            sqlx::Error::Configuration(cause) => cause.to_string(),
            other => other.to_string(),
        };
        invalid(key, format!("is not a valid database URL: {cause}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        node_name = "node1"
        [component]
        jid = "broadcast.example.com"
        secret = "s3cret"
        server = "127.0.0.1:5347"
        [database]
        url = "sqlite:///tmp/jobs.db"
        [users]
        schema = "prosody"
        url = "sqlite:///var/lib/prosody/prosody.sqlite"
        [admin]
        listen = "127.0.0.1:5551"
        username = "admin"
        password = "pw"
        [domains."example.com"]
    "#;

    fn error_of(text: &str) -> String {
        Config::from_toml(text, &[]).unwrap_err().to_string()
    }

    #[test]
    fn groups_are_named_statements_of_their_domain() {
        let group = |name: &str, body: &str| {
            format!("{MINIMAL}\n[domains.\"example.com\".groups.{name}]\n{body}\n")
        };
        let config = Config::from_toml(
            &group(
                "staff",
                "members_sql = \"\"\"\nSELECT username FROM staff\n WHERE domain = $1\n\"\"\"",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(
            config.users.groups["example.com"]["staff"],
            "SELECT username FROM staff\n WHERE domain = $1"
        );
        assert_refused(
            &group("staff", "members_sql = \"SELECT u FROM t WHERE d = $2\""),
            "domains.\"example.com\".groups.\"staff\".members_sql",
            &["$2 is not one of its parameters", "$1 (domain)"],
        );
        assert_refused(
            &group("staff", "members_sql = \"  \""),
            "domains.\"example.com\".groups.\"staff\".members_sql",
            &["must not be empty"],
        );
        assert_refused(
            &group("\"two words\"", "members_sql = \"SELECT 1\""),
            "domains.\"example.com\".groups.\"two words\"",
            &["is not a group name"],
        );
        let unknown_key = error_of(&group("staff", "members = \"SELECT 1\""));
        assert!(unknown_key.contains("members"), "{unknown_key}");
        let missing = error_of(&group("staff", ""));
        assert!(missing.contains("members_sql"), "{missing}");
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = Config::from_toml(MINIMAL, &[]).unwrap();
        assert_eq!(config.lease_time, Duration::from_secs(600));
        assert_eq!(config.domains, vec!["example.com".to_owned()]);
        assert_eq!(config.users.schema, UsersSchema::Prosody);
    }

    /// `MINIMAL` with `line` added at the top level.
    fn with_top(line: &str) -> String {
        MINIMAL.replace(
            "node_name = \"node1\"",
            &format!("node_name = \"node1\"\n{line}"),
        )
    }

    /// `MINIMAL` with `line` added to the table `[table]`.
    fn with_in(table: &str, line: &str) -> String {
        MINIMAL.replace(&format!("[{table}]"), &format!("[{table}]\n{line}"))
    }

    /// Asserts that `text` is refused with a message naming `key` and saying each of `needles`.
    fn assert_refused(text: &str, key: &str, needles: &[&str]) {
        let message = error_of(text);
        assert!(message.contains(&format!("`{key}`")), "{message}");
        for needle in needles {
            assert!(message.contains(needle), "no {needle:?} in: {message}");
        }
    }

    #[test]
    fn lease_time_is_bounded() {
        for bad in [
            "5",
            "9",
            "3601",
            "-1",
            "1000000000000000",
            "9223372036854775807",
        ] {
            assert_refused(
                &with_top(&format!("lease_time = {bad}")),
                "lease_time",
                &["between 10 and 3600 seconds", bad],
            );
        }
        for good in [MIN_LEASE_TIME_SECS, 60, MAX_LEASE_TIME_SECS] {
            let config =
                Config::from_toml(&with_top(&format!("lease_time = {good}")), &[]).unwrap();
            assert_eq!(config.lease_time, Duration::from_secs(good));
        }
    }

    #[test]
    fn count_wait_is_bounded() {
        let config = Config::from_toml(&with_top(""), &[]).unwrap();
        assert_eq!(config.count_wait, crate::broadcast::COUNT_WAIT);
        for bad in ["-1", "60001", "9223372036854775807"] {
            assert_refused(
                &with_top(&format!("count_wait_ms = {bad}")),
                "count_wait_ms",
                &["between 0 and 60000 milliseconds", bad],
            );
        }
        for good in [0, 1500, MAX_COUNT_WAIT_MS] {
            let config =
                Config::from_toml(&with_top(&format!("count_wait_ms = {good}")), &[]).unwrap();
            assert_eq!(config.count_wait, Duration::from_millis(good));
        }
    }

    #[test]
    fn max_connections_is_bounded() {
        for bad in ["0", "-3", "101", "1000000000", "9223372036854775807"] {
            assert_refused(
                &with_in("database", &format!("max_connections = {bad}")),
                "database.max_connections",
                &["between 1 and 100", bad],
            );
        }
        for good in [1, MAX_DATABASE_CONNECTIONS] {
            let text = with_in("database", &format!("max_connections = {good}"));
            assert_eq!(
                Config::from_toml(&text, &[])
                    .unwrap()
                    .database
                    .max_connections,
                good
            );
        }
        let config = Config::from_toml(MINIMAL, &[]).unwrap();
        assert_eq!(
            config.database.max_connections,
            DEFAULT_DATABASE_CONNECTIONS
        );
    }

    #[test]
    fn node_name_is_bounded_text() {
        let long = "n".repeat(MAX_NODE_NAME_BYTES + 1);
        let cases = [
            ("\"\"", "must not be empty"),
            ("\"  \"", "must not be blank"),
            (&format!("\"{long}\"") as &str, "at most 250 bytes"),
            ("\"node1\\nforged log line\"", "control characters"),
        ];
        for (value, needle) in cases {
            let text = MINIMAL.replace("\"node1\"", value);
            assert_refused(&text, "node_name", &[needle]);
        }
        let longest = "n".repeat(MAX_NODE_NAME_BYTES);
        Config::from_toml(&MINIMAL.replace("node1", &longest), &[]).unwrap();
    }

    #[test]
    fn credentials_are_bounded_text() {
        let long = "x".repeat(MAX_CREDENTIAL_BYTES + 1);
        assert_refused(
            &MINIMAL.replace("username = \"admin\"", "username = \"ad:min\""),
            "admin.username",
            &["':'"],
        );
        assert_refused(
            &MINIMAL.replace("username = \"admin\"", "username = \"ad\\tmin\""),
            "admin.username",
            &["control characters"],
        );
        assert_refused(
            &MINIMAL.replace("password = \"pw\"", "password = \"p\\r\\nw\""),
            "admin.password",
            &["control characters"],
        );
        assert_refused(
            &MINIMAL.replace("password = \"pw\"", &format!("password = \"{long}\"")),
            "admin.password",
            &["at most 1024 bytes"],
        );
        assert_refused(
            &MINIMAL.replace("secret = \"s3cret\"", &format!("secret = \"{long}\"")),
            "component.secret",
            &["at most 1024 bytes"],
        );
    }

    #[test]
    fn database_urls_are_parsed_without_showing_the_password() {
        let cases = [
            (
                "sqlite:///tmp/jobs.db",
                "postgres://u:hunter2@127.0.0.1:99999/jobs",
            ),
            (
                "sqlite:///tmp/jobs.db",
                "mysql://u:hunter2@127.0.0.1:5432/jobs?sslmode=nope",
            ),
            ("sqlite:///tmp/jobs.db?mode=nope", "sqlite:///tmp/jobs.db"),
        ];
        for (jobs, users) in cases {
            let text = MINIMAL
                .replace("sqlite:///tmp/jobs.db", jobs)
                .replace("sqlite:///var/lib/prosody/prosody.sqlite", users);
            let message = error_of(&text);
            assert!(message.contains("is not a valid database URL"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        let text = MINIMAL.replace("sqlite:///tmp/jobs.db", "postgres://u:p@[::1]:5432/jobs");
        Config::from_toml(&text, &[]).unwrap();
    }

    #[test]
    fn users_database_id_is_a_short_printable_name() {
        let text = with_in("users", "database_id = \"users-primary\"");
        let config = Config::from_toml(&text, &[]).unwrap();
        assert_eq!(config.users.database_id.as_deref(), Some("users-primary"));
        let long = "x".repeat(MAX_DATABASE_ID_BYTES + 1);
        for bad in ["", "two words", "line\\nbreak", long.as_str()] {
            let text = with_in("users", &format!("database_id = \"{bad}\""));
            assert_refused(&text, "users.database_id", &["printable ASCII"]);
        }
    }

    #[test]
    fn component_server_needs_a_host_and_a_port() {
        for bad in [
            "127.0.0.1:0",
            "127.0.0.1:65536",
            ":5347",
            "bad host:5347",
            "127.0.0.1",
        ] {
            assert_refused(
                &MINIMAL.replace("127.0.0.1:5347", bad),
                "component.server",
                &["host:port"],
            );
        }
        for good in ["[::1]:5347", "xmpp.example.com:5347", "127.0.0.1:65535"] {
            Config::from_toml(&MINIMAL.replace("127.0.0.1:5347", good), &[]).unwrap();
        }
    }

    #[test]
    fn time_zones_are_names_or_offsets() {
        for good in [
            "UTC",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "+02:00",
            "Etc/GMT-3",
        ] {
            let text = with_in("users", &format!("time_zone = \"{good}\""));
            let config = Config::from_toml(&text, &[]).unwrap();
            assert_eq!(config.users.time_zone.as_deref(), Some(good));
        }
        let long = "A".repeat(MAX_TIME_ZONE_BYTES + 1);
        for bad in [
            "",
            " ",
            "UTC'; DROP TABLE users; --",
            "Europe/Berlin\\n",
            &long,
        ] {
            let text = with_in("users", &format!("time_zone = \"{bad}\""));
            assert_refused(&text, "users.time_zone", &[]);
        }
    }

    /// `hash-password`'s output for "secret", with its parameters replaced by `params`.
    fn hash_with(params: &str) -> String {
        format!(
            "$argon2id$v=19${params}$c2FsdHNhbHRzYWx0$O5UYdPHmNKfyVV1Z8cZ2AcyGC2/dC8ZNQoHgGJFpAX8"
        )
    }

    #[test]
    fn domain_admin_hashes_have_a_bounded_cost() {
        let key = "domains.\"example.com\".admin_password_hash";
        let cases = [
            (hash_with("m=4194304,t=2,p=1"), "m (memory, KiB) = 4194304"),
            (hash_with("m=19456,t=1000,p=1"), "t (passes) = 1000"),
            (hash_with("m=19456,t=2,p=64"), "p (lanes) = 64"),
            (
                "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$O5UYdPHmNKfyVV1Z8cZ2AcyGC2/dC8ZNQoHgGJFpAX8"
                    .to_owned(),
                "is not an argon2 password hash",
            ),
        ];
        for (hash, needle) in cases {
            let text = format!("{MINIMAL}admin_password_hash = \"{hash}\"\n");
            assert_refused(&text, key, &[needle]);
        }
        let top = hash_with(&format!(
            "m={MAX_ARGON2_MEMORY_KIB},t={MAX_ARGON2_PASSES},p={MAX_ARGON2_LANES}"
        ));
        Config::from_toml(&format!("{MINIMAL}admin_password_hash = \"{top}\"\n"), &[]).unwrap();
    }

    /// `MINIMAL` with `schema = "custom"` and these statements.
    fn custom(exists: &str, count: &str, page: &str) -> String {
        MINIMAL.replace(
            "schema = \"prosody\"",
            &format!(
                "schema = \"custom\"\nexists_sql = \"{exists}\"\ncount_sql = \"{count}\"\n\
                 page_sql = \"{page}\""
            ),
        )
    }

    const EXISTS: &str = "SELECT COUNT(*) FROM a WHERE d = $1 AND n = $2";
    const COUNT: &str = "SELECT COUNT(*) FROM a WHERE d = $1 AND c <= $2";
    const PAGE: &str = "SELECT n FROM a WHERE d = $1 AND c <= $2 AND n > $3 ORDER BY n LIMIT $4";

    #[test]
    fn custom_statements_use_only_their_parameters() {
        let config = Config::from_toml(&custom(EXISTS, COUNT, PAGE), &[]).unwrap();
        assert!(matches!(config.users.schema, UsersSchema::Custom(_)));
        // Arguments may be left out, and a `$N` inside quotes is no placeholder.
        let sparse = custom(
            "SELECT COUNT(*) FROM a WHERE n = $2 AND x <> '$9'",
            "SELECT COUNT(*) FROM a",
            "SELECT n FROM a WHERE n > $3 ORDER BY n",
        );
        Config::from_toml(&sparse, &[]).unwrap();

        let exists_3 = custom(&format!("{EXISTS} AND x = $3"), COUNT, PAGE);
        assert_refused(
            &exists_3,
            "users.exists_sql",
            &[
                "$3 is not one of its parameters",
                "$1 (domain), $2 (username)",
            ],
        );
        let count_0 = custom(EXISTS, &format!("{COUNT} AND x = $0"), PAGE);
        assert_refused(
            &count_0,
            "users.count_sql",
            &["$0", "$1 (domain), $2 (snapshot instant)"],
        );
        let page_5 = custom(EXISTS, COUNT, &format!("{PAGE} OFFSET $5"));
        assert_refused(&page_5, "users.page_sql", &["$5", "$4 (page size)"]);
        let huge = custom(
            EXISTS,
            COUNT,
            &format!("{PAGE} OFFSET $99999999999999999999999"),
        );
        assert_refused(&huge, "users.page_sql", &["huge number"]);
        let no_cursor = custom(EXISTS, COUNT, "SELECT n FROM a WHERE d = $1 LIMIT $4");
        assert_refused(
            &no_cursor,
            "users.page_sql",
            &[
                "must use $3 (last username of the previous page)",
                "never end",
            ],
        );
    }

    #[test]
    fn ejabberd_schema_maps_its_database_to_one_configured_domain() {
        let ejabberd = MINIMAL.replace("schema = \"prosody\"", "schema = \"ejabberd\"");
        let message = error_of(&ejabberd);
        assert!(
            message.contains("`users.domain`") && message.contains("ejabberd_new"),
            "{message}"
        );

        let mapped = ejabberd.replace("[admin]", "domain = \"example.com\"\n[admin]");
        let config = Config::from_toml(&mapped, &[]).unwrap();
        assert_eq!(
            config.users.schema,
            UsersSchema::Ejabberd {
                domain: "example.com".into()
            }
        );

        let wrong = ejabberd.replace("[admin]", "domain = \"example.org\"\n[admin]");
        let message = error_of(&wrong);
        assert!(
            message.contains("`users.domain`") && message.contains("example.com"),
            "{message}"
        );

        let two = format!("{mapped}\n[domains.\"other.org\"]\n");
        let message = error_of(&two);
        assert!(message.contains("`domains.\"other.org\"`"), "{message}");
    }

    #[test]
    fn users_keys_of_other_schemas_are_refused() {
        let message = error_of(&MINIMAL.replace("[admin]", "domain = \"example.com\"\n[admin]"));
        assert!(message.contains("`users.domain`"), "{message}");
        let message = error_of(&MINIMAL.replace("[admin]", "page_sql = \"SELECT 1\"\n[admin]"));
        assert!(message.contains("`users.page_sql`"), "{message}");
        let custom = MINIMAL.replace("schema = \"prosody\"", "schema = \"custom\"");
        let message = error_of(&custom.replace("[admin]", "exists_sql = \"SELECT 1\"\n[admin]"));
        assert!(message.contains("`users.count_sql`"), "{message}");
        for schema in ["ejabberd_new", "mongooseim"] {
            let text = MINIMAL.replace("\"prosody\"", &format!("\"{schema}\""));
            Config::from_toml(&text, &[]).unwrap();
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let message = error_of(&MINIMAL.replace("[admin]", "[admin]\nport = 1"));
        assert!(message.contains("port"), "{message}");
    }

    #[test]
    fn domain_admin_hashes_are_checked() {
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$O5UYdPHmNKfyVV1Z8cZ2AcyGC2/dC8ZNQoHgGJFpAX8";
        let text = format!("{MINIMAL}admin_password_hash = \"{hash}\"\n");
        let config = Config::from_toml(&text, &[]).unwrap();
        assert_eq!(config.domain_admins["example.com"].expose(), hash);
        let message = error_of(&format!("{MINIMAL}admin_password_hash = \"secret\"\n"));
        assert!(
            message.contains("`domains.\"example.com\".admin_password_hash`"),
            "{message}"
        );
    }

    #[test]
    fn environment_overrides_secrets() {
        let env = vec![(
            "XMPP_BROADCAST_ADMIN_PASSWORD".to_owned(),
            "fromenv".to_owned(),
        )];
        let config = Config::from_toml(MINIMAL, &env).unwrap();
        assert_eq!(config.admin.password.plain(), Some("fromenv"));
    }

    /// A file in `dir` holding `content`; its path.
    fn secret_file(dir: &Path, name: &str, content: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    fn env_of(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn secrets_come_from_files_credentials_and_the_environment_in_that_order() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("credentials");
        std::fs::create_dir(&credentials).unwrap();
        let from_file = secret_file(dir.path(), "component", "from-file\n");
        let text = MINIMAL.replace(
            "secret = \"s3cret\"",
            &format!("secret_file = {from_file:?}"),
        );
        let config = Config::from_toml(&text, &[]).unwrap();
        assert_eq!(config.component.secret.expose(), "from-file");

        // A credential wins over the file's key and `_file`, and lacks no table.
        secret_file(&credentials, "component-secret", "from-credential\r\n");
        secret_file(&credentials, "admin-password", "admin-from-credential");
        let env = env_of(&[(CREDENTIALS_DIRECTORY, credentials.to_str().unwrap())]);
        let config = Config::from_toml(&text, &env).unwrap();
        assert_eq!(config.component.secret.expose(), "from-credential");
        assert_eq!(config.admin.password.plain(), Some("admin-from-credential"));
        let without_password = MINIMAL.replace("password = \"pw\"", "");
        let config = Config::from_toml(&without_password, &env).unwrap();
        assert_eq!(config.admin.password.plain(), Some("admin-from-credential"));

        // The environment wins over everything.
        let mut env = env;
        env.push(("XMPP_BROADCAST_COMPONENT_SECRET".into(), "from-env".into()));
        let config = Config::from_toml(&text, &env).unwrap();
        assert_eq!(config.component.secret.expose(), "from-env");
    }

    #[test]
    fn an_unreadable_secret_file_is_named_by_key_and_path_never_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing").display().to_string();
        let text = MINIMAL.replace("secret = \"s3cret\"", &format!("secret_file = {missing:?}"));
        let message = error_of(&text);
        assert!(message.contains("`component.secret_file`"), "{message}");
        assert!(message.contains(&missing), "{message}");
        assert!(message.contains("No such file"), "{message}");

        // Not UTF-8: refused, and the bytes are not shown.
        let binary = dir.path().join("binary");
        std::fs::write(&binary, b"leak\xffme").unwrap();
        let text = MINIMAL.replace(
            "password = \"pw\"",
            &format!("password_file = {:?}", binary.display().to_string()),
        );
        let message = error_of(&text);
        assert!(message.contains("`admin.password_file`"), "{message}");
        assert!(!message.contains("leak"), "{message}");

        // A value that fails validation names its key and the file, not the value.
        let bad = secret_file(dir.path(), "bad", "leak\u{7}me");
        let text = MINIMAL.replace("password = \"pw\"", &format!("password_file = {bad:?}"));
        let message = error_of(&text);
        assert!(message.contains("`admin.password`"), "{message}");
        assert!(message.contains(&bad), "{message}");
        assert!(!message.contains("leak"), "{message}");
    }

    #[test]
    fn a_secret_and_its_file_together_are_refused() {
        let text = MINIMAL.replace(
            "secret = \"s3cret\"",
            "secret = \"s3cret\"\nsecret_file = \"/x\"",
        );
        assert_refused(&text, "component.secret_file", &["not both"]);
        let text = MINIMAL.replace("secret = \"s3cret\"", "secret_file = 3");
        assert_refused(&text, "component.secret_file", &["path of a file"]);
    }

    #[test]
    fn a_missing_secret_says_where_it_may_come_from() {
        let text = MINIMAL.replace("secret = \"s3cret\"", "");
        assert_refused(
            &text,
            "component.secret",
            &[
                "component.secret_file",
                "component-secret",
                "XMPP_BROADCAST_COMPONENT_SECRET",
            ],
        );
        let text = MINIMAL.replace("password = \"pw\"", "");
        assert_refused(&text, "admin.password", &["admin-password"]);
    }

    #[test]
    fn the_global_admin_may_be_given_by_a_hash() {
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$O5UYdPHmNKfyVV1Z8cZ2AcyGC2/dC8ZNQoHgGJFpAX8";
        let text = MINIMAL.replace("password = \"pw\"", &format!("password_hash = \"{hash}\""));
        let config = Config::from_toml(&text, &[]).unwrap();
        assert_eq!(
            config.admin.password,
            AdminPassword::Hash(Secret::new(hash))
        );
        assert_eq!(config.admin.password.plain(), None);
        let both = MINIMAL.replace(
            "password = \"pw\"",
            &format!("password = \"pw\"\npassword_hash = \"{hash}\""),
        );
        assert_refused(&both, "admin.password_hash", &["not both"]);
        let wrong = MINIMAL.replace("password = \"pw\"", "password_hash = \"pw\"");
        assert_refused(
            &wrong,
            "admin.password_hash",
            &["not an argon2 password hash"],
        );
    }

    #[test]
    fn a_database_password_is_put_into_its_url() {
        let dir = tempfile::tempdir().unwrap();
        let file = secret_file(dir.path(), "db", "p@ss:w/rd é\n");
        let text = MINIMAL
            .replace(
                "sqlite:///tmp/jobs.db",
                "postgres://xb@127.0.0.1:5432/jobs?sslmode=disable",
            )
            .replace(
                "[database]",
                &format!("[database]\npassword_file = {file:?}"),
            );
        let config = Config::from_toml(&text, &[]).unwrap();
        assert_eq!(
            config.database.url.expose(),
            "postgres://xb:p%40ss%3Aw%2Frd%20%C3%A9@127.0.0.1:5432/jobs?sslmode=disable"
        );
        let options = PgConnectOptions::from_str(config.database.url.expose()).unwrap();
        assert_eq!(options.get_username(), "xb");

        let users = MINIMAL
            .replace(
                "sqlite:///var/lib/prosody/prosody.sqlite",
                "mysql://reader@db/prosody",
            )
            .replace("[users]", "[users]\npassword = \"pw2\"");
        let config = Config::from_toml(&users, &[]).unwrap();
        assert_eq!(config.users.url.expose(), "mysql://reader:pw2@db/prosody");

        let cases = [
            ("postgres://127.0.0.1/jobs", "names no user"),
            (
                "postgres://xb:other@127.0.0.1/jobs",
                "has a password already",
            ),
            ("sqlite:///tmp/jobs.db", "only a postgres:// or mysql://"),
        ];
        for (url, needle) in cases {
            let text = MINIMAL
                .replace("sqlite:///tmp/jobs.db", url)
                .replace("[database]", "[database]\npassword = \"hunter2\"");
            assert_refused(&text, "database.password", &[needle]);
            assert!(!error_of(&text).contains("hunter2"));
        }
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        assert_eq!(
            Config::from_toml(MINIMAL, &[]).unwrap().log_format,
            LogFormat::Text
        );
        let json = with_top("log_format = \"json\"");
        assert_eq!(
            Config::from_toml(&json, &[]).unwrap().log_format,
            LogFormat::Json
        );
        let env = env_of(&[(LogFormat::ENV, "text")]);
        assert_eq!(
            Config::from_toml(&json, &env).unwrap().log_format,
            LogFormat::Text
        );
        assert_refused(
            &with_top("log_format = \"xml\""),
            "log_format",
            &["\"xml\""],
        );
        let env = env_of(&[(LogFormat::ENV, "yaml")]);
        let message = Config::from_toml(MINIMAL, &env).unwrap_err().to_string();
        assert!(message.contains("`log_format`"), "{message}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let config = Config::from_toml(MINIMAL, &[]).unwrap();
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("s3cret") && !printed.contains("\"pw\""),
            "{printed}"
        );
    }
    #[test]
    fn admin_tls_takes_both_files_or_neither() {
        assert_eq!(Config::from_toml(MINIMAL, &[]).unwrap().admin.tls, None);
        let both = with_in(
            "admin",
            "tls_certificate = \"/etc/x/cert.pem\"\ntls_key = \"/etc/x/key.pem\"",
        );
        assert_eq!(
            Config::from_toml(&both, &[]).unwrap().admin.tls,
            Some(AdminTls {
                certificate: "/etc/x/cert.pem".into(),
                key: "/etc/x/key.pem".into(),
            })
        );
        let certificate_only = with_in("admin", "tls_certificate = \"/etc/x/cert.pem\"");
        assert_refused(&certificate_only, "admin.tls_key", &["missing"]);
        let key_only = with_in("admin", "tls_key = \"/etc/x/key.pem\"");
        assert_refused(&key_only, "admin.tls_certificate", &["missing"]);
        let empty = with_in(
            "admin",
            "tls_certificate = \"\"\ntls_key = \"/etc/x/key.pem\"",
        );
        assert_refused(&empty, "admin.tls_certificate", &["must not be empty"]);
    }
}
