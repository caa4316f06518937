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
    /// The time zone the users database's sessions render `created_at` in (PostgreSQL
    /// `timestamp`, MySQL `DATETIME`); `None` for the default, UTC.
    pub time_zone: Option<String>,
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

/// Operator-supplied SQL for `schema = "custom"`, with numbered placeholders `$1`, `$2`, …
/// (bound parameters only; on MySQL they are rewritten to `?`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomQueries {
    /// `$1` domain, `$2` username: one row with the number of such accounts (0 or 1).
    pub exists: String,
    /// `$1` domain, `$2` snapshot instant (text): the number of accounts created up to it.
    pub count: String,
    /// `$1` domain, `$2` snapshot instant (text), `$3` last username of the previous page
    /// ('' for the first), `$4` page size: the next usernames, in the database's order.
    pub page: String,
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
    domain: Option<String>,
    time_zone: Option<String>,
    exists_sql: Option<String>,
    count_sql: Option<String>,
    page_sql: Option<String>,
}

/// The schema names `users.schema` accepts, as listed in messages.
const SCHEMAS: &str = "\"prosody\", \"ejabberd\", \"ejabberd_new\", \"mongooseim\" or \"custom\"";

impl RawUsers {
    /// Checks the `[users]` keys together with the configured domains.
    fn validate(self, domains: &[String]) -> Result<UsersConfig, ConfigError> {
        validate_database_url("users.url", &self.url)?;
        let custom_keys = [
            ("users.exists_sql", &self.exists_sql),
            ("users.count_sql", &self.count_sql),
            ("users.page_sql", &self.page_sql),
        ];
        let schema = match self.schema.as_str() {
            "prosody" => UsersSchema::Prosody,
            "ejabberd" => UsersSchema::Ejabberd {
                domain: single_domain(self.domain.as_deref(), domains)?,
            },
            "ejabberd_new" => UsersSchema::EjabberdNew,
            "mongooseim" => UsersSchema::MongooseIm,
            "custom" => {
                let mut statements = Vec::new();
                for (key, value) in custom_keys {
                    match value.as_deref().map(str::trim) {
                        Some(sql) if !sql.is_empty() => statements.push(sql.to_owned()),
                        _ => {
                            return Err(invalid(
                                key,
                                "schema \"custom\" needs exists_sql, count_sql and page_sql \
                                 (see component.toml.example for their parameters)",
                            ));
                        }
                    }
                }
                let [exists, count, page] =
                    <[String; 3]>::try_from(statements).expect("three statements were checked");
                UsersSchema::Custom(CustomQueries {
                    exists,
                    count,
                    page,
                })
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
        if self
            .time_zone
            .as_deref()
            .is_some_and(|zone| zone.trim().is_empty())
        {
            return Err(invalid(
                "users.time_zone",
                "must not be empty; leave it out for UTC",
            ));
        }
        Ok(UsersConfig {
            schema,
            url: Secret::new(self.url),
            time_zone: self.time_zone,
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
        let users = self.users.validate(&domains)?;
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
            users,
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
