//! Prosody's `mod_storage_sql` layout: one key-value table `prosody(host, user, store, key,
//! type, value)`; an account is the set of rows with `store = 'accounts'`.

use super::{DirectoryError, UsersPool, on_pool};

const CHECK_LAYOUT: &str = r#"SELECT "host", "user", "store" FROM "prosody" LIMIT 0"#;

const USER_EXISTS: &str = r#"SELECT COUNT(*) FROM "prosody"
    WHERE "host" = $1 AND "user" = $2 AND "store" = 'accounts'"#;

const USERNAMES: &str = r#"SELECT DISTINCT "user" FROM "prosody"
    WHERE "host" = $1 AND "store" = 'accounts'"#;

pub(super) async fn check_layout(pool: &UsersPool) -> Result<(), DirectoryError> {
    let result = on_pool!(pool, pool => sqlx::query(CHECK_LAYOUT).execute(pool).await.map(drop));
    result.map_err(|err| {
        DirectoryError::Layout(format!(
            "the table \"prosody\" of Prosody's SQL storage cannot be read ({err}); check that \
             [users] url points at the database Prosody uses with storage = \"sql\""
        ))
    })
}

pub(super) async fn user_exists(
    pool: &UsersPool,
    domain: &str,
    username: &str,
) -> Result<bool, DirectoryError> {
    let rows: i64 = on_pool!(pool, pool => {
        sqlx::query_scalar(USER_EXISTS)
            .bind(domain)
            .bind(username)
            .fetch_one(pool)
            .await?
    });
    Ok(rows > 0)
}

pub(super) async fn usernames(
    pool: &UsersPool,
    domain: &str,
) -> Result<Vec<String>, DirectoryError> {
    let users = on_pool!(pool, pool => {
        sqlx::query_scalar(USERNAMES).bind(domain).fetch_all(pool).await?
    });
    Ok(users)
}
