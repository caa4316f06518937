//! The snapshot instant of a job, in the users database's own clock, time zone and rendering.
//!
//! The instant is compared with `created_at` in the users database, never converted here. On
//! PostgreSQL `created_at` has microseconds and the instant is `LOCALTIMESTAMP`. On MySQL/MariaDB
//! and SQLite it usually has whole seconds only (`TIMESTAMP` and `CURRENT_TIMESTAMP`): there the
//! instant is the last microsecond of the current second (`…:SS.999999`), and the snapshot
//! waits until the database clock has passed it (at most one second). An account created before
//! the wait ends has `created_at` at or before the instant and is a recipient; one created later
//! has a later second and is not: the boundary is exact whatever the precision of `created_at`.

use std::time::Duration;

use super::{Arg, Dialect, DirectoryError, Query, UsersPool};

/// Longest wait for the users database's clock to pass a snapshot instant.
const MAX_WAIT: Duration = Duration::from_secs(3);
/// Pause between looks at the clock once the computed wait is over.
const POLL: Duration = Duration::from_millis(5);

#[derive(Debug)]
pub(super) struct Clock {
    /// The instant, and the microseconds until the database clock passes it.
    instant: Query,
    /// `$1` instant: 1 once the database clock is past it.
    passed: Query,
}

impl Clock {
    pub(super) fn new(dialect: Dialect) -> Self {
        let (instant, passed) = match dialect {
            Dialect::Postgres => (
                "SELECT CAST(LOCALTIMESTAMP AS text), CAST(0 AS bigint)",
                "SELECT CAST(CASE WHEN LOCALTIMESTAMP > CAST($1 AS timestamp) THEN 1 ELSE 0 END \
                 AS bigint)",
            ),
            Dialect::MySql => (
                "SELECT DATE_FORMAT(NOW(6), '%Y-%m-%d %H:%i:%s.999999'), \
                 CAST(1000000 - MICROSECOND(NOW(6)) AS SIGNED)",
                "SELECT CAST(NOW(6) > CAST($1 AS DATETIME(6)) AS SIGNED)",
            ),
            Dialect::Sqlite => (
                "SELECT strftime('%Y-%m-%d %H:%M:%S', 'now') || '.999999', \
                 1000000 - 1000 * CAST(substr(strftime('%f', 'now'), 4) AS INTEGER)",
                "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now') > $1",
            ),
        };
        Clock {
            instant: Query::new(instant, dialect),
            passed: Query::new(passed, dialect),
        }
    }

    /// Takes the instant and returns once the database clock has passed it.
    pub(super) async fn snapshot_instant(
        &self,
        pool: &UsersPool,
    ) -> Result<String, DirectoryError> {
        let (instant, wait_micros) = self.instant.text_and_integer(pool, &[]).await?;
        tokio::time::sleep(Duration::from_micros(wait_micros.max(0) as u64)).await;
        let started = tokio::time::Instant::now();
        while self.passed.integer(pool, &[Arg::Text(&instant)]).await? != 1 {
            if started.elapsed() > MAX_WAIT {
                return Err(DirectoryError::Layout(format!(
                    "the users database's clock did not pass {instant} within {MAX_WAIT:?}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(instant)
    }
}
