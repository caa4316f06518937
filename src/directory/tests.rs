//! The directory's contract on every schema and every database its server supports here:
//! Prosody, ejabberd (default schema and new_sql_schema, tables loaded from Debian's
//! /usr/share/ejabberd/sql/) and custom statements on SQLite, PostgreSQL and MySQL/MariaDB;
//! MongooseIM (its published `users` table) on PostgreSQL and MySQL/MariaDB.

use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, mysql::MySqlPool, postgres::PgPool, sqlite::SqlitePool};

use super::{Arg, Dialect, Directory, DirectoryError, Query, UsersPool};
use crate::config::{CustomQueries, Secret, UsersConfig, UsersSchema};
use crate::job::Snapshot;
use crate::test_support::Scratch;

const DOMAIN: &str = "example.com";
const OTHER: &str = "other.org";
const EJABBERD_SQL: &str = "/usr/share/ejabberd/sql";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Prosody,
    Ejabberd,
    EjabberdNew,
    MongooseIm,
    Custom,
}

/// A users database of one schema, with a writable pool to play the XMPP server.
struct Case {
    kind: Kind,
    dialect: Dialect,
    url: String,
    writer: UsersPool,
    scratch: Option<Scratch>,
    _dir: Option<tempfile::TempDir>,
}

impl Case {
    /// An empty database of `dialect`, without tables.
    async fn empty(kind: Kind, dialect: Dialect) -> Self {
        let (url, scratch, dir) = match dialect {
            Dialect::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/users.db", dir.path().display());
                (url, None, Some(dir))
            }
            Dialect::Postgres => {
                let scratch = Scratch::postgres("xb_users").await;
                (scratch.url(), Some(scratch), None)
            }
            Dialect::MySql => {
                let scratch = Scratch::mysql("xb_users").await;
                (scratch.url(), Some(scratch), None)
            }
        };
        let writer = match dialect {
            Dialect::Sqlite => {
                let options = SqliteConnectOptions::from_str(&url)
                    .unwrap()
                    .create_if_missing(true);
                UsersPool::Sqlite(SqlitePool::connect_with(options).await.unwrap())
            }
            Dialect::Postgres => UsersPool::Postgres(PgPool::connect(&url).await.unwrap()),
            Dialect::MySql => UsersPool::MySql(MySqlPool::connect(&url).await.unwrap()),
        };
        Case {
            kind,
            dialect,
            url,
            writer,
            scratch,
            _dir: dir,
        }
    }

    /// A database with the schema's tables, as the server creates them.
    async fn new(kind: Kind, dialect: Dialect) -> Self {
        let case = Case::empty(kind, dialect).await;
        case.create_tables(kind).await;
        case
    }

    async fn create_tables(&self, kind: Kind) {
        let ddl = match (kind, self.dialect) {
            (Kind::Ejabberd | Kind::EjabberdNew, dialect) => {
                let base = match dialect {
                    Dialect::Postgres => "pg",
                    Dialect::MySql => "mysql",
                    Dialect::Sqlite => "lite",
                };
                let new = if kind == Kind::EjabberdNew {
                    ".new"
                } else {
                    ""
                };
                let path = format!("{EJABBERD_SQL}/{base}{new}.sql");
                std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    panic!("{path}: {e}; install ejabberd (`bash .ci/run` does)")
                })
            }
            (Kind::Prosody, Dialect::MySql) => "CREATE TABLE prosody (host TEXT NOT NULL, \
                 `user` TEXT NOT NULL, store TEXT NOT NULL, `key` TEXT NOT NULL, \
                 type TEXT NOT NULL, value MEDIUMTEXT NOT NULL) CHARSET utf8mb4 COLLATE utf8mb4_bin"
                .into(),
            (Kind::Prosody, _) => {
                "CREATE TABLE prosody (host TEXT NOT NULL, \"user\" TEXT NOT NULL, \
                 store TEXT NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL)"
                    .into()
            }
            // MongooseIM's priv/pg.sql and priv/mysql.sql (5.0 … 6.8).
            (Kind::MongooseIm, Dialect::MySql) => "CREATE TABLE users (username varchar(250), \
                 server varchar(250), password text NOT NULL, pass_details text, \
                 created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP, \
                 PRIMARY KEY (server, username)) CHARACTER SET utf8mb4 ROW_FORMAT=DYNAMIC"
                .into(),
            (Kind::MongooseIm, _) => "CREATE TABLE users (username varchar(250), \
                 server varchar(250), \"password\" text NOT NULL, pass_details text, \
                 created_at TIMESTAMP NOT NULL DEFAULT now(), PRIMARY KEY (server, username))"
                .into(),
            // An operator's own table, with microseconds on every database.
            (Kind::Custom, Dialect::Postgres) => "CREATE TABLE accounts (domain text NOT NULL, \
                 name text NOT NULL, registered_at timestamptz NOT NULL DEFAULT now(), \
                 PRIMARY KEY (domain, name))"
                .into(),
            (Kind::Custom, Dialect::MySql) => {
                "CREATE TABLE accounts (domain varchar(255) NOT NULL, \
                 name varchar(255) NOT NULL, \
                 registered_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
                 PRIMARY KEY (domain, name)) CHARSET utf8mb4 COLLATE utf8mb4_bin"
                    .into()
            }
            (Kind::Custom, Dialect::Sqlite) => "CREATE TABLE accounts (domain TEXT NOT NULL, \
                 name TEXT NOT NULL, \
                 registered_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')), \
                 PRIMARY KEY (domain, name))"
                .into(),
        };
        let ddl = AssertSqlSafe(ddl);
        on_pool!(&self.writer, pool => sqlx::raw_sql(ddl).execute(pool).await.map(drop)).unwrap();
    }

    fn config(&self) -> UsersConfig {
        let instant = match self.dialect {
            Dialect::Postgres => "CAST($2 AS timestamptz)",
            Dialect::MySql => "CAST($2 AS DATETIME(6))",
            Dialect::Sqlite => "$2",
        };
        let schema = match self.kind {
            Kind::Prosody => UsersSchema::Prosody,
            Kind::Ejabberd => UsersSchema::Ejabberd {
                domain: DOMAIN.into(),
            },
            Kind::EjabberdNew => UsersSchema::EjabberdNew,
            Kind::MongooseIm => UsersSchema::MongooseIm,
            Kind::Custom => UsersSchema::Custom(CustomQueries {
                exists: "SELECT COUNT(*) FROM accounts WHERE domain = $1 AND name = $2".into(),
                count: format!(
                    "SELECT COUNT(*) FROM accounts WHERE domain = $1 AND registered_at <= {instant}"
                ),
                page: format!(
                    "SELECT name FROM accounts WHERE domain = $1 AND registered_at <= {instant} \
                     AND name > $3 ORDER BY name LIMIT $4"
                ),
            }),
        };
        UsersConfig {
            schema,
            url: Secret::new(self.url.clone()),
            time_zone: None,
            database_id: None,
            groups: Default::default(),
        }
    }

    async fn directory(&self) -> Directory {
        Directory::connect(&self.config()).await.unwrap()
    }

    /// Registers `username@domain` as the server would; `created_at` (in the database's
    /// rendering) replaces the database's default creation time.
    async fn register(&self, username: &str, domain: &str, created_at: Option<&str>) {
        let (columns, values) = match self.kind {
            Kind::Prosody => (
                r#""host", "user", "store", "key", "type", "value""#,
                "$1, $2, 'accounts', 'salt', 'string', 'x'",
            ),
            Kind::Ejabberd => ("username, password", "$2, 'x'"),
            Kind::EjabberdNew => ("server_host, username, password", "$1, $2, 'x'"),
            Kind::MongooseIm => ("server, username, password", "$1, $2, 'x'"),
            Kind::Custom => ("domain, name", "$1, $2"),
        };
        let column = if self.kind == Kind::Custom {
            "registered_at"
        } else {
            "created_at"
        };
        let instant = match self.dialect {
            Dialect::Postgres => "CAST($3 AS timestamp)",
            Dialect::MySql => "CAST($3 AS DATETIME(6))",
            Dialect::Sqlite => "$3",
        };
        let table = if self.kind == Kind::Prosody {
            "\"prosody\""
        } else if self.kind == Kind::Custom {
            "accounts"
        } else {
            "users"
        };
        let sql = match created_at {
            Some(_) => {
                format!("INSERT INTO {table} ({columns}, {column}) VALUES ({values}, {instant})")
            }
            None => format!("INSERT INTO {table} ({columns}) VALUES ({values})"),
        };
        let query = Query::new(&sql, self.dialect);
        let args = [
            Arg::Text(domain),
            Arg::Text(username),
            Arg::Text(created_at.unwrap_or_default()),
        ];
        on_pool!(&self.writer, pool => {
            let args = query.arguments(&args).expect("three arguments");
            bound!(sqlx::query(query.text()), args).execute(pool).await.map(drop)
        })
        .unwrap_or_else(|e| panic!("register {username}@{domain}: {e}"));
    }

    async fn finish(self) {
        on_pool!(&self.writer, pool => pool.close().await);
        if let Some(scratch) = self.scratch {
            scratch.drop_database().await;
        }
    }
}

/// Every account of a dated snapshot, read page by page as the worker does.
async fn all_pages(directory: &Directory, at: &str, limit: u32) -> Vec<String> {
    let mut users: Vec<String> = Vec::new();
    loop {
        let after = users.last().map(String::as_str);
        let page = directory.page(DOMAIN, at, after, limit).await.unwrap();
        assert!(page.len() <= limit as usize);
        if page.is_empty() {
            return users;
        }
        users.extend(page);
    }
}

/// One microsecond before or after `instant`, in the `YYYY-MM-DD HH:MM:SS.ffffff` rendering.
fn shifted(instant: &str, micros: i64) -> String {
    let at = chrono::NaiveDateTime::parse_from_str(instant, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("snapshot instant {instant:?}: {e}"));
    (at + chrono::Duration::microseconds(micros))
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// Accounts created a moment before the snapshot are recipients, accounts created a moment
/// after are not, compared in the users database's clock; the count is the snapshot's size.
async fn the_snapshot_instant_is_exact(case: Case) {
    for name in ["carol", "alice", "bob"] {
        case.register(name, DOMAIN, None).await;
    }
    if case.kind != Kind::Ejabberd {
        case.register("mallory", OTHER, None).await;
    }
    let directory = case.directory().await;
    let Snapshot::CreatedBy { at, count } = directory.snapshot(DOMAIN).await.unwrap() else {
        panic!("{:?} has creation times", case.kind);
    };
    assert_eq!(count, 3, "accounts of {DOMAIN} at {at}");
    case.register("late", DOMAIN, None).await;
    case.register("justbefore", DOMAIN, Some(&shifted(&at, -1)))
        .await;
    case.register("justafter", DOMAIN, Some(&shifted(&at, 1)))
        .await;
    let users = all_pages(&directory, &at, 2).await;
    assert_eq!(
        users,
        ["alice", "bob", "carol", "justbefore"],
        "snapshot at {at}"
    );
    case.finish().await;
}

/// Pages follow the database's order without repeats or gaps; other domains never show.
async fn pages_cover_the_domain_once(case: Case) {
    let names: Vec<String> = (1..=23).map(|i| format!("user{i:02}")).collect();
    for name in &names {
        case.register(name, DOMAIN, None).await;
    }
    if case.kind != Kind::Ejabberd {
        case.register("user00", OTHER, None).await;
    }
    let directory = case.directory().await;
    let Snapshot::CreatedBy { at, count } = directory.snapshot(DOMAIN).await.unwrap() else {
        panic!("dated snapshot expected");
    };
    assert_eq!(count, 23);
    assert_eq!(all_pages(&directory, &at, 5).await, names);
    assert_eq!(all_pages(&directory, &at, 1000).await, names);
    case.finish().await;
}

/// The sender check: an account exists only in its own domain.
async fn accounts_exist_in_their_domain(case: Case) {
    case.register("admin", DOMAIN, None).await;
    if case.kind != Kind::Ejabberd {
        case.register("stranger", OTHER, None).await;
    }
    let directory = case.directory().await;
    assert!(directory.user_exists(DOMAIN, "admin").await.unwrap());
    assert!(!directory.user_exists(DOMAIN, "nobody").await.unwrap());
    assert!(!directory.user_exists(DOMAIN, "stranger").await.unwrap());
    assert!(!directory.user_exists(OTHER, "admin").await.unwrap());
    case.finish().await;
}

/// A list is checked in statements of [`super::EXISTING_CHUNK`] names: those that are
/// accounts of the domain come back, in byte order, and nothing of another domain.
async fn listed_names_are_checked_in_chunks(case: Case) {
    let accounts: Vec<String> = (0..520).map(|i| format!("u{i:03}")).collect();
    for name in &accounts {
        case.register(name, DOMAIN, None).await;
    }
    if case.kind != Kind::Ejabberd {
        case.register("stranger", OTHER, None).await;
    }
    let directory = case.directory().await;
    let mut asked: Vec<String> = accounts.iter().step_by(2).cloned().collect();
    asked.extend((0..300).map(|i| format!("x{i:03}")));
    asked.push("stranger".into());
    asked.push("U000".into()); // another spelling of an account is not that account
    asked.sort();
    let expected: Vec<String> = accounts.iter().step_by(2).cloned().collect();
    assert_eq!(directory.existing(DOMAIN, &asked).await.unwrap(), expected);
    assert_eq!(
        directory.existing(DOMAIN, &["u001".into()]).await.unwrap(),
        ["u001"]
    );
    case.finish().await;
}

/// A new job's recipients are fixed at the request and counted after it (invariant 4a): an
/// account registered before [`Directory::fix`] is a recipient, one registered after it is
/// not, however late the set is counted or listed; a domain without accounts fixes nothing.
/// A SQLite file is put in WAL mode, as Prosody's should be, so that the registration can
/// commit while the read is open (in rollback-journal mode it would wait for the read).
async fn a_new_jobs_recipients_are_fixed_at_the_request(case: Case) {
    if case.dialect == Dialect::Sqlite {
        on_pool!(&case.writer, pool => sqlx::raw_sql("PRAGMA journal_mode=WAL").execute(pool).await.map(drop)).unwrap();
    }
    for name in ["carol", "alice", "bob"] {
        case.register(name, DOMAIN, None).await;
    }
    if case.kind != Kind::Ejabberd {
        case.register("mallory", OTHER, None).await;
    }
    if case.kind == Kind::Prosody {
        // A second row of an account, apart from its first: read twice on MySQL, kept once.
        case.register("carol", DOMAIN, None).await;
        case.register("bob", DOMAIN, None).await;
    }
    let directory = case.directory().await;
    assert!(directory.fix("empty.net").await.unwrap().is_none());
    let fixed = directory
        .fix(DOMAIN)
        .await
        .unwrap()
        .expect("the domain has accounts");
    case.register("late", DOMAIN, None).await;
    let listed = matches!(fixed, super::Fixed::Listed(_));
    assert_eq!(
        listed,
        case.kind == Kind::Prosody || case.dialect == Dialect::Sqlite,
        "{:?} on {:?}",
        case.kind,
        case.dialect
    );
    match fixed {
        super::Fixed::Listed(list) => {
            // As the worker takes them: sorted, each once.
            let names = list.read().await.unwrap().sorted();
            assert_eq!(names.page(None, 10), ["alice", "bob", "carol"]);
            assert_eq!(names.len(), 3);
        }
        super::Fixed::CreatedBy { at } => {
            assert_eq!(directory.count(DOMAIN, &at).await.unwrap(), 3);
            assert_eq!(
                all_pages(&directory, &at, 2).await,
                ["alice", "bob", "carol"]
            );
        }
    }
    // A list opened again, as a worker that resumes the job does, sees the accounts now.
    let again = directory.open_list(DOMAIN).await.unwrap().unwrap();
    assert_eq!(again.read().await.unwrap().sorted().len(), 4);
    case.finish().await;
}

macro_rules! cases {
    ($($name:ident => ($kind:ident, $dialect:ident): [$($test:ident),*]),* $(,)?) => {
        $(mod $name {
            use super::*;
            $(#[tokio::test]
            async fn $test() {
                super::$test(Case::new(Kind::$kind, Dialect::$dialect).await).await
            })*
        })*
    };
}

cases!(
    prosody_sqlite => (Prosody, Sqlite): [a_new_jobs_recipients_are_fixed_at_the_request, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
    prosody_postgres => (Prosody, Postgres): [a_new_jobs_recipients_are_fixed_at_the_request, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
    prosody_mysql => (Prosody, MySql): [a_new_jobs_recipients_are_fixed_at_the_request, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
    ejabberd_sqlite => (Ejabberd, Sqlite): [a_new_jobs_recipients_are_fixed_at_the_request, the_snapshot_instant_is_exact, pages_cover_the_domain_once, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
    ejabberd_postgres => (Ejabberd, Postgres): [a_new_jobs_recipients_are_fixed_at_the_request, the_snapshot_instant_is_exact, pages_cover_the_domain_once, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
    ejabberd_mysql => (Ejabberd, MySql): [a_new_jobs_recipients_are_fixed_at_the_request, the_snapshot_instant_is_exact, pages_cover_the_domain_once, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
    ejabberd_new_sqlite => (EjabberdNew, Sqlite): [a_new_jobs_recipients_are_fixed_at_the_request, the_snapshot_instant_is_exact, pages_cover_the_domain_once, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
    ejabberd_new_postgres => (EjabberdNew, Postgres): [a_new_jobs_recipients_are_fixed_at_the_request, the_snapshot_instant_is_exact, pages_cover_the_domain_once, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
    ejabberd_new_mysql => (EjabberdNew, MySql): [a_new_jobs_recipients_are_fixed_at_the_request, the_snapshot_instant_is_exact, pages_cover_the_domain_once, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
    mongooseim_postgres => (MongooseIm, Postgres): [a_new_jobs_recipients_are_fixed_at_the_request, the_snapshot_instant_is_exact, pages_cover_the_domain_once, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
    mongooseim_mysql => (MongooseIm, MySql): [a_new_jobs_recipients_are_fixed_at_the_request, the_snapshot_instant_is_exact, pages_cover_the_domain_once, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
    custom_sqlite => (Custom, Sqlite): [a_new_jobs_recipients_are_fixed_at_the_request, the_snapshot_instant_is_exact, pages_cover_the_domain_once, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
    custom_postgres => (Custom, Postgres): [a_new_jobs_recipients_are_fixed_at_the_request, the_snapshot_instant_is_exact, pages_cover_the_domain_once, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
    custom_mysql => (Custom, MySql): [a_new_jobs_recipients_are_fixed_at_the_request, the_snapshot_instant_is_exact, pages_cover_the_domain_once, accounts_exist_in_their_domain, listed_names_are_checked_in_chunks],
);

/// A group's statement runs once and its members come back in byte order, once each; a
/// statement that fails is refused at connection, naming its key; an unknown group is `None`.
#[tokio::test]
async fn groups_are_read_in_one_statement() {
    on_dialects(
        &[Dialect::Sqlite, Dialect::Postgres, Dialect::MySql],
        |dialect| async move {
            let case = Case::new(Kind::Prosody, dialect).await;
            for name in ["zoë", "bob", "alice", "carol"] {
                case.register(name, DOMAIN, None).await;
            }
            let ddl = "CREATE TABLE staff (domain VARCHAR(255), name VARCHAR(255))";
            let rows = "INSERT INTO staff VALUES ('example.com', 'zoë'), \
                        ('example.com', 'alice'), ('example.com', 'zoë'), ('other.org', 'bob')";
            for sql in [ddl, rows] {
                let sql = AssertSqlSafe(sql);
                on_pool!(&case.writer, pool => sqlx::raw_sql(sql).execute(pool).await.map(drop))
                    .unwrap();
            }
            let mut config = case.config();
            let members = "SELECT name FROM staff WHERE domain = $1";
            config.groups = [(
                DOMAIN.to_owned(),
                [("staff".to_owned(), members.to_owned())].into(),
            )]
            .into();
            let directory = Directory::connect(&config).await.unwrap();
            assert_eq!(
                directory.group_members(DOMAIN, "staff").await.unwrap(),
                Some(vec!["alice".to_owned(), "zoë".to_owned()]),
                "{dialect:?}"
            );
            assert_eq!(
                directory.group_members(DOMAIN, "nobody").await.unwrap(),
                None
            );
            assert_eq!(directory.group_members(OTHER, "staff").await.unwrap(), None);
            assert_eq!(directory.groups(DOMAIN), ["staff"]);

            config.groups = [(
                DOMAIN.to_owned(),
                [(
                    "broken".to_owned(),
                    "SELECT name FROM no_such_table".to_owned(),
                )]
                .into(),
            )]
            .into();
            let refused = Directory::connect(&config).await.unwrap_err().to_string();
            assert!(
                refused.contains("domains.\"example.com\".groups.\"broken\".members_sql fails"),
                "{refused}"
            );
            case.finish().await;
        },
    )
    .await;
}

/// Runs `test` on each of `dialects` at once.
async fn on_dialects<F: Future<Output = ()>>(dialects: &[Dialect], test: impl Fn(Dialect) -> F) {
    futures::future::join_all(dialects.iter().map(|&dialect| test(dialect))).await;
}

/// Prosody's snapshot lists the domain's usernames in byte order, once each.
#[tokio::test]
async fn prosody_lists_usernames_in_byte_order() {
    on_dialects(
        &[Dialect::Sqlite, Dialect::Postgres, Dialect::MySql],
        |dialect| async move {
            let case = Case::new(Kind::Prosody, dialect).await;
            for name in ["zoë", "bob", "Émile", "alice"] {
                case.register(name, DOMAIN, None).await;
            }
            case.register("bob", DOMAIN, None).await; // a second row of the same account
            case.register("mallory", OTHER, None).await;
            let snapshot = case.directory().await.snapshot(DOMAIN).await.unwrap();
            let expected = ["alice", "bob", "zoë", "Émile"].map(String::from).to_vec();
            assert_eq!(snapshot, Snapshot::Listed(expected), "{dialect:?}");
            case.finish().await;
        },
    )
    .await;
}

async fn layout_error(case: &Case, config: UsersConfig) -> String {
    match Directory::connect(&config).await {
        Err(DirectoryError::Layout(message)) => message,
        other => panic!("{:?} on {:?}: {other:?}", case.kind, case.dialect),
    }
}

/// A schema whose tables are missing, or that is the other ejabberd variant, is refused at
/// connection with a message that says which key to change.
#[tokio::test]
async fn a_wrong_schema_is_refused_with_the_key_to_fix() {
    on_dialects(
        &[Dialect::Sqlite, Dialect::Postgres, Dialect::MySql],
        |dialect| async move {
            for kind in [
                Kind::Prosody,
                Kind::Ejabberd,
                Kind::EjabberdNew,
                Kind::Custom,
            ] {
                let case = Case::empty(kind, dialect).await;
                let message = layout_error(&case, case.config()).await;
                let key = if kind == Kind::Custom {
                    "users.exists_sql"
                } else {
                    "users.url"
                };
                assert!(message.contains(key), "{kind:?} {dialect:?}: {message}");
                case.finish().await;
            }
            let new = Case::new(Kind::EjabberdNew, dialect).await;
            let mut config = new.config();
            config.schema = UsersSchema::Ejabberd {
                domain: DOMAIN.into(),
            };
            let message = layout_error(&new, config).await;
            assert!(message.contains("schema = \"ejabberd_new\""), "{message}");
            new.finish().await;

            let old = Case::new(Kind::Ejabberd, dialect).await;
            let mut config = old.config();
            config.schema = UsersSchema::EjabberdNew;
            let message = layout_error(&old, config).await;
            assert!(message.contains("schema = \"ejabberd\""), "{message}");
            old.finish().await;
        },
    )
    .await;
}

/// The users database's sessions take the configured time zone; a zone it does not know is
/// refused at connection.
#[tokio::test]
async fn the_time_zone_is_checked_at_connection() {
    on_dialects(&[Dialect::Postgres, Dialect::MySql], |dialect| async move {
        let case = Case::new(Kind::EjabberdNew, dialect).await;
        let mut config = case.config();
        config.time_zone = Some("Mars/Olympus_Mons".into());
        let message = layout_error(&case, config.clone()).await;
        assert!(message.contains("users.time_zone"), "{message}");
        config.time_zone = Some("+02:00".into());
        Directory::connect(&config).await.unwrap();
        case.finish().await;
    })
    .await;
}

/// The users database may also be the job database: our tables are `xb_*` and the directory
/// only reads, so a job stored beside ejabberd's tables pages them as usual.
#[tokio::test]
async fn the_users_database_can_hold_the_jobs() {
    use crate::job::{JobSpec, RecipientGroup};
    use crate::store::Store;

    on_dialects(
        &[Dialect::Postgres, Dialect::MySql, Dialect::Sqlite],
        |dialect| async move {
            let case = Case::new(Kind::EjabberdNew, dialect).await;
            for name in ["admin", "bob"] {
                case.register(name, DOMAIN, None).await;
            }
            let store = Store::connect(&case.url, 2).await.unwrap();
            let directory = case.directory().await;
            let snapshot = directory.snapshot(DOMAIN).await.unwrap();
            let spec = JobSpec {
                name: "same database".into(),
                domain: DOMAIN.into(),
                subject: String::new(),
                body: "hello".into(),
                sender: jid::BareJid::new("admin@example.com").unwrap(),
                rate: 10,
                recipient_group: RecipientGroup::AllUsersInDomain,
                group: None,
                language: None,
                translations: Vec::new(),
            };
            let id = store
                .create_job(
                    &spec,
                    "node1",
                    std::time::Duration::from_secs(60),
                    &snapshot,
                    &crate::job::UsersDatabase::new("prosody@test"),
                )
                .await
                .unwrap();
            let job = store.get_job(id).await.unwrap().unwrap();
            assert_eq!(job.recipient_count, 2, "{dialect:?}");
            let at = job.snapshot_at.expect("a dated snapshot");
            assert_eq!(all_pages(&directory, &at, 1).await, ["admin", "bob"]);
            store.close().await;
            case.finish().await;
        },
    )
    .await;
}

/// A `created_at` written in a zone east of the session's looks like the future: the
/// directory notices (and `serve` warns at start-up) instead of silently moving the snapshot.
#[tokio::test]
async fn a_wrong_time_zone_shows_as_accounts_from_the_future() {
    let case = Case::new(Kind::EjabberdNew, Dialect::Postgres).await;
    case.register("early", DOMAIN, None).await;
    let directory = case.directory().await;
    let super::Layout::Dated(dated) = &*directory.layout else {
        panic!("ejabberd is dated");
    };
    assert_eq!(
        dated
            .accounts_from_the_future(&directory.pool)
            .await
            .unwrap(),
        0
    );
    // What a server whose sessions run at UTC+09:00 writes, read by a UTC session.
    let mut config = case.config();
    config.time_zone = Some("Asia/Tokyo".into());
    let east = Directory::connect(&config).await.unwrap();
    let super::Layout::Dated(east_dated) = &*east.layout else {
        unreachable!()
    };
    let Snapshot::CreatedBy { at, .. } = east.snapshot(DOMAIN).await.unwrap() else {
        unreachable!()
    };
    case.register("east", DOMAIN, Some(&at)).await;
    assert_eq!(
        dated
            .accounts_from_the_future(&directory.pool)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        east_dated
            .accounts_from_the_future(&east.pool)
            .await
            .unwrap(),
        0
    );
    case.finish().await;
}

/// A statement with a placeholder beyond its arguments is an error when bound, never a panic
/// (an index out of bounds before), on every dialect's rewriting.
#[test]
fn a_placeholder_without_an_argument_is_an_error() {
    for dialect in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
        let args = [Arg::Text(DOMAIN), Arg::Text("alice")];
        let query = Query::operator("SELECT COUNT(*) FROM a WHERE d = $1 AND n = $3", dialect);
        match query.arguments(&args) {
            Err(DirectoryError::Placeholder {
                number: 3,
                given: 2,
            }) => {}
            other => panic!("{dialect:?}: {other:?}"),
        }
        // `$0` is not the first argument.
        let query = Query::operator("SELECT COUNT(*) FROM a WHERE d = $0", dialect);
        assert!(query.arguments(&args).is_err(), "{dialect:?}");
        let query = Query::operator("SELECT COUNT(*) FROM a WHERE n = $2", dialect);
        assert_eq!(query.arguments(&args).unwrap().len(), 1, "{dialect:?}");
    }
}

/// A hand-made `[users]` section with a placeholder its statement is not given is refused
/// when the directory connects, by key, before any statement runs.
#[tokio::test]
async fn custom_statements_with_foreign_placeholders_are_refused_at_connection() {
    let case = Case::new(Kind::Custom, Dialect::Sqlite).await;
    let mut config = case.config();
    let UsersSchema::Custom(custom) = &mut config.schema else {
        unreachable!("a custom case")
    };
    custom.exists.push_str(" AND name <> $3");
    match Directory::connect(&config).await {
        Err(DirectoryError::Config(err)) => {
            let message = err.to_string();
            assert!(
                message.contains("`users.exists_sql`") && message.contains("$3"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    case.finish().await;
}

/// A custom page statement that ignores the previous page's last username would return the
/// same page forever: the second page is refused instead.
#[tokio::test]
async fn a_page_that_does_not_advance_is_refused() {
    let case = Case::new(Kind::Custom, Dialect::Sqlite).await;
    for name in ["alice", "bob"] {
        case.register(name, DOMAIN, None).await;
    }
    let mut config = case.config();
    let UsersSchema::Custom(custom) = &mut config.schema else {
        unreachable!("a custom case")
    };
    // Uses $3, but so that it filters nothing.
    custom.page = "SELECT name FROM accounts WHERE domain = $1 AND registered_at <= $2 \
                   AND (name > $3 OR 1 = 1) ORDER BY name LIMIT $4"
        .into();
    let directory = Directory::connect(&config).await.unwrap();
    let Snapshot::CreatedBy { at, .. } = directory.snapshot(DOMAIN).await.unwrap() else {
        panic!("a custom schema's snapshot is an instant")
    };
    let first = directory.page(DOMAIN, &at, None, 2).await.unwrap();
    assert_eq!(first, ["alice", "bob"]);
    match directory.page(DOMAIN, &at, Some("bob"), 2).await {
        Err(DirectoryError::Layout(message)) => {
            assert!(
                message.contains("users.page_sql") && message.contains("$3"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    case.finish().await;
}
