//! The configuration file: a TOML document plus `XMPP_BROADCAST_*` environment overrides.
//!
//! Everything is validated here, once, at load time; the rest of the program receives typed
//! values it can trust. Secrets never appear in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use jid::BareJid;
use serde::Deserialize;

/// The shortest lease accepted: shorter leases would make instances renew too often.
pub const MIN_LEASE_TIME_SECS: u64 = 10;

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
    pub component: ComponentConfig,
    pub database: DatabaseConfig,
    pub users: UsersConfig,
    pub admin: AdminConfig,
    /// The domains this instance broadcasts to, in order.
    pub domains: Vec<String>,
    /// Password hashes (argon2 PHC strings) of the domain admins, `admin@<domain>`, by domain.
    pub domain_admins: BTreeMap<String, Secret>,
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
}

/// The layout of the XMPP server's account tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsersSchema {
    /// Prosody's `mod_storage_sql` table `prosody` (store `accounts`).
    Prosody,
}

/// The HTTP listener with the GraphQL admin API, `/health` and `/metrics`.
#[derive(Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub username: String,
    pub password: Secret,
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
];

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
        for (var, key) in ENV_OVERRIDES {
            if let Some((_, value)) = env.iter().find(|(name, _)| name == var) {
                set_key(&mut document, key, value.clone());
            }
        }
        let raw: RawConfig =
            toml::Value::Table(document)
                .try_into()
                .map_err(|err: toml::de::Error| ConfigError::Parse {
                    path: String::new(),
                    message: err.to_string(),
                })?;
        raw.validate()
    }
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
    #[serde(default = "default_lease_time")]
    lease_time: i64,
    #[serde(default = "default_backend")]
    backend: String,
    component: RawComponent,
    database: RawDatabase,
    users: RawUsers,
    admin: RawAdmin,
    #[serde(default)]
    domains: BTreeMap<String, RawDomain>,
}

fn default_lease_time() -> i64 {
    600
}

fn default_backend() -> String {
    "rdbms".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    jid: String,
    secret: String,
    server: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
    #[serde(default = "default_max_connections")]
    max_connections: u32,
}

fn default_max_connections() -> u32 {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    schema: String,
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: String,
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    admin_password_hash: Option<String>,
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        if self.node_name.trim().is_empty() || self.node_name.len() > 250 {
            return Err(invalid("node_name", "must be 1..250 characters"));
        }
        if self.lease_time < MIN_LEASE_TIME_SECS as i64 {
            return Err(invalid(
                "lease_time",
                format!(
                    "{} is below the minimum of {MIN_LEASE_TIME_SECS} seconds",
                    self.lease_time
                ),
            ));
        }
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
        if self.component.secret.is_empty() {
            return Err(invalid("component.secret", "must not be empty"));
        }
        validate_host_port("component.server", &self.component.server)?;
        validate_database_url("database.url", &self.database.url)?;
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        let schema = match self.users.schema.as_str() {
            "prosody" => UsersSchema::Prosody,
            other => {
                return Err(invalid(
                    "users.schema",
                    format!("\"{other}\" is not a known schema; use \"prosody\""),
                ));
            }
        };
        validate_database_url("users.url", &self.users.url)?;
        let listen: SocketAddr = self.admin.listen.parse().map_err(|_| {
            invalid(
                "admin.listen",
                format!(
                    "\"{}\" is not an address such as 127.0.0.1:5551",
                    self.admin.listen
                ),
            )
        })?;
        if self.admin.username.is_empty() {
            return Err(invalid("admin.username", "must not be empty"));
        }
        if self.admin.password.is_empty() {
            return Err(invalid("admin.password", "must not be empty"));
        }
        let mut domains = Vec::with_capacity(self.domains.len());
        let mut domain_admins = BTreeMap::new();
        for (name, settings) in self.domains {
            let key = format!("domains.\"{name}\"");
            let domain = BareJid::new(&name)
                .ok()
                .filter(|jid| jid.node().is_none() && jid.to_string() == name)
                .ok_or_else(|| invalid(&key, "is not a lower-case domain name"))?;
            if let Some(hash) = settings.admin_password_hash {
                if argon2::password_hash::phc::PasswordHash::new(&hash).is_err() {
                    return Err(invalid(
                        &format!("{key}.admin_password_hash"),
                        "is not a password hash; make one with `xmpp-broadcast hash-password`",
                    ));
                }
                domain_admins.insert(domain.to_string(), Secret::new(hash));
            }
            domains.push(domain.to_string());
        }
        if domains.is_empty() {
            return Err(invalid(
                "domains",
                "no domain configured; add a table such as [domains.\"example.com\"]",
            ));
        }
        Ok(Config {
            node_name: self.node_name,
            lease_time: Duration::from_secs(self.lease_time as u64),
            component: ComponentConfig {
                jid,
                secret: Secret::new(self.component.secret),
                server: self.component.server,
            },
            database: DatabaseConfig {
                url: Secret::new(self.database.url),
                max_connections: self.database.max_connections,
            },
            users: UsersConfig {
                schema,
                url: Secret::new(self.users.url),
            },
            admin: AdminConfig {
                listen,
                username: self.admin.username,
                password: Secret::new(self.admin.password),
            },
            domains,
            domain_admins,
        })
    }
}

fn validate_host_port(key: &str, value: &str) -> Result<(), ConfigError> {
    let valid = value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if valid {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("\"{value}\" is not host:port such as 127.0.0.1:5347"),
        ))
    }
}

fn validate_database_url(key: &str, value: &str) -> Result<(), ConfigError> {
    let known = [
        "sqlite:",
        "postgres://",
        "postgresql://",
        "mysql://",
        "mariadb://",
    ];
    if known.iter().any(|prefix| value.starts_with(prefix)) {
        Ok(())
    } else {
        Err(invalid(
            key,
            "must be a sqlite://, postgres:// or mysql:// URL".to_owned(),
        ))
    }
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
    fn minimal_config_gets_defaults() {
        let config = Config::from_toml(MINIMAL, &[]).unwrap();
        assert_eq!(config.lease_time, Duration::from_secs(600));
        assert_eq!(config.domains, vec!["example.com".to_owned()]);
        assert_eq!(config.users.schema, UsersSchema::Prosody);
    }

    #[test]
    fn short_lease_is_refused_by_name() {
        let text = MINIMAL.replace("node_name = \"node1\"", "node_name = \"n\"\nlease_time = 5");
        let message = error_of(&text);
        assert!(message.contains("`lease_time`"), "{message}");
        assert!(message.contains("minimum of 10"), "{message}");
    }

    #[test]
    fn unknown_schema_and_backend_are_named() {
        assert!(error_of(&MINIMAL.replace("\"prosody\"", "\"nope\"")).contains("`users.schema`"));
        let text = MINIMAL.replace(
            "node_name = \"node1\"",
            "node_name = \"n\"\nbackend = \"mnesia\"",
        );
        assert!(error_of(&text).contains("`backend`"));
    }

    #[test]
    fn bad_addresses_are_named() {
        assert!(
            error_of(&MINIMAL.replace("127.0.0.1:5347", "nohost")).contains("`component.server`")
        );
        assert!(error_of(&MINIMAL.replace("127.0.0.1:5551", "x")).contains("`admin.listen`"));
        assert!(
            error_of(&MINIMAL.replace("sqlite:///tmp/jobs.db", "redis://x"))
                .contains("`database.url`")
        );
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
        assert_eq!(config.admin.password.expose(), "fromenv");
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
}
