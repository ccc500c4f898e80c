//! [`AccountStore`] on SQLite: the `accounts` and `scram_credentials` tables (schema 0001).
//!
//! Writes run in `BEGIN IMMEDIATE` transactions: the write lock is taken up front, so
//! concurrent writers queue on the busy timeout instead of failing on a lock upgrade.

use rusqlite::OptionalExtension;
use sqlx::SqliteConnection;
use weft_sasl::{Hash, ScramCredentials};

use super::migrate::unix_now;
use super::SqliteStore;
use crate::{hash_name, AccountName, AccountStore, StorageError};

/// One account's credential for one hash; read on every SCRAM login, so also inline
/// (`inline.rs`). `$n` placeholders suit both sqlx and rusqlite.
const SCRAM_CREDENTIALS_QUERY: &str =
    "SELECT salt, iterations, stored_key, server_key FROM scram_credentials \
     WHERE domain = $1 AND username = $2 AND hash = $3";

/// Fails with [`StorageError::DuplicateHash`] when two entries share a hash.
fn check_one_per_hash(credentials: &[ScramCredentials]) -> Result<(), StorageError> {
    for (i, c) in credentials.iter().enumerate() {
        if credentials[..i]
            .iter()
            .any(|earlier| earlier.hash == c.hash)
        {
            return Err(StorageError::DuplicateHash(c.hash));
        }
    }
    Ok(())
}

async fn insert_credentials(
    conn: &mut SqliteConnection,
    domain: &str,
    username: &str,
    credentials: &[ScramCredentials],
) -> Result<(), StorageError> {
    for c in credentials {
        sqlx::query(
            "INSERT INTO scram_credentials \
             (domain, username, hash, salt, iterations, stored_key, server_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(domain)
        .bind(username)
        .bind(hash_name(c.hash))
        .bind(c.salt.as_slice())
        .bind(i64::from(c.iterations))
        .bind(c.stored_key.as_slice())
        .bind(c.server_key.as_slice())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl AccountStore for SqliteStore {
    async fn create_account(
        &self,
        domain: &str,
        username: &str,
        credentials: &[ScramCredentials],
    ) -> Result<(), StorageError> {
        check_one_per_hash(credentials)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let inserted = sqlx::query(
            "INSERT INTO accounts (domain, username, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (domain, username) DO NOTHING",
        )
        .bind(domain)
        .bind(username)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StorageError::AlreadyExists);
        }
        insert_credentials(&mut tx, domain, username, credentials).await?;
        tx.commit().await?;
        tracing::debug!(domain, username, "account created");
        Ok(())
    }

    async fn remove_account(&self, domain: &str, username: &str) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // The archive has no foreign key (rooms have archives too): its chunks go here.
        sqlx::query("DELETE FROM archive_chunks WHERE domain = $1 AND username = $2")
            .bind(domain)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query("DELETE FROM accounts WHERE domain = $1 AND username = $2")
            .bind(domain)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let removed = removed.rows_affected() > 0;
        if removed {
            tracing::debug!(domain, username, "account removed");
        }
        Ok(removed)
    }

    async fn set_credentials(
        &self,
        domain: &str,
        username: &str,
        credentials: &[ScramCredentials],
    ) -> Result<bool, StorageError> {
        check_one_per_hash(credentials)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM accounts WHERE domain = $1 AND username = $2")
                .bind(domain)
                .bind(username)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM scram_credentials WHERE domain = $1 AND username = $2")
            .bind(domain)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        insert_credentials(&mut tx, domain, username, credentials).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn scram_credentials(
        &self,
        domain: &str,
        username: &str,
        hash: Hash,
    ) -> Result<Option<ScramCredentials>, StorageError> {
        let inline_row = self.inline.as_ref().and_then(|readers| {
            readers.read(|conn| {
                conn.prepare_cached(SCRAM_CREDENTIALS_QUERY)?
                    .query_row((domain, username, hash_name(hash)), |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })
                    .optional()
            })
        });
        let row: Option<(Vec<u8>, i64, Vec<u8>, Vec<u8>)> = match inline_row {
            Some(row) => row,
            None => {
                sqlx::query_as(SCRAM_CREDENTIALS_QUERY)
                    .bind(domain)
                    .bind(username)
                    .bind(hash_name(hash))
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        let Some((salt, iterations, stored_key, server_key)) = row else {
            return Ok(None);
        };
        let iterations = u32::try_from(iterations).map_err(|_| {
            StorageError::Corrupt(format!(
                "SCRAM iteration count {iterations} of {username}@{domain} is out of range"
            ))
        })?;
        Ok(Some(ScramCredentials {
            hash,
            salt,
            iterations,
            stored_key,
            server_key,
        }))
    }

    async fn account_exists(&self, domain: &str, username: &str) -> Result<bool, StorageError> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM accounts WHERE domain = $1 AND username = $2")
                .bind(domain)
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn list_accounts(&self, domain: Option<&str>) -> Result<Vec<AccountName>, StorageError> {
        let rows: Vec<(String, String)> = match domain {
            Some(domain) => {
                sqlx::query_as(
                    "SELECT domain, username FROM accounts WHERE domain = $1 \
                     ORDER BY domain, username",
                )
                .bind(domain)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as("SELECT domain, username FROM accounts ORDER BY domain, username")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(domain, username)| AccountName { username, domain })
            .collect())
    }

    async fn count_accounts(&self) -> Result<u64, StorageError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM accounts")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }
}
