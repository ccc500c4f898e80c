//! [`OfflineStore`] on SQLite: the `offline_messages` table (schema 0003; XEP-0160).
//!
//! Arrival order is the `AUTOINCREMENT` id, assigned inside the write transaction, so it is
//! exact also for messages stored within one second. A quota'd store counts and inserts in
//! one `BEGIN IMMEDIATE` transaction: writers are serialised, so two stores racing at
//! `n - 1` cannot both pass the check.

use super::migrate::unix_now;
use super::SqliteStore;
use crate::{OfflineMessage, OfflineStore, StorageError};

/// Ids removed per `DELETE` statement: far below SQLite's limit of bound parameters, and a
/// normal delivery (up to the quota) takes one or a few statements.
const REMOVE_CHUNK: usize = 500;

#[async_trait::async_trait]
impl OfflineStore for SqliteStore {
    async fn store_offline(
        &self,
        domain: &str,
        username: &str,
        stanza: &str,
        max_messages: Option<usize>,
    ) -> Result<i64, StorageError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(max) = max_messages {
            let held: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM offline_messages WHERE domain = $1 AND username = $2",
            )
            .bind(domain)
            .bind(username)
            .fetch_one(&mut *tx)
            .await?;
            if held.max(0) as u64 >= max as u64 {
                return Err(StorageError::LimitReached);
            }
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO offline_messages (domain, username, stanza, stored_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(domain)
        .bind(username)
        .bind(stanza)
        .bind(unix_now())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn offline_messages(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Vec<OfflineMessage>, StorageError> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT id, stanza, stored_at FROM offline_messages \
             WHERE domain = $1 AND username = $2 ORDER BY id",
        )
        .bind(domain)
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, stanza, stored_at)| OfflineMessage {
                id,
                stanza,
                stored_at,
            })
            .collect())
    }

    async fn remove_offline(
        &self,
        domain: &str,
        username: &str,
        ids: &[i64],
    ) -> Result<usize, StorageError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut removed = 0;
        for chunk in ids.chunks(REMOVE_CHUNK) {
            // `$3, $4, …`: one placeholder per id.
            let placeholders: Vec<String> = (3..3 + chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "DELETE FROM offline_messages WHERE domain = $1 AND username = $2 \
                 AND id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(domain).bind(username);
            for id in chunk {
                query = query.bind(*id);
            }
            removed += query.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    async fn count_offline(&self, domain: &str, username: &str) -> Result<u64, StorageError> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM offline_messages WHERE domain = $1 AND username = $2",
        )
        .bind(domain)
        .bind(username)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }

    async fn accounts_with_offline(&self) -> Result<Vec<(String, String)>, StorageError> {
        Ok(
            sqlx::query_as("SELECT DISTINCT domain, username FROM offline_messages")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
