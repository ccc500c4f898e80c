//! [`PepStore`] on SQLite: the `pep_nodes` and `pep_items` tables (schema 0006, XEP-0163).

use super::SqliteStore;
use crate::{PepItem, PepStore, StorageError};

#[async_trait::async_trait]
impl PepStore for SqliteStore {
    async fn pep_nodes(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT node, config FROM pep_nodes WHERE domain = $1 AND username = $2 ORDER BY node",
        )
        .bind(domain)
        .bind(username)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn pep_node(
        &self,
        domain: &str,
        username: &str,
        node: &str,
    ) -> Result<Option<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT config FROM pep_nodes WHERE domain = $1 AND username = $2 AND node = $3",
        )
        .bind(domain)
        .bind(username)
        .bind(node)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn create_pep_node(
        &self,
        domain: &str,
        username: &str,
        node: &str,
        config: &str,
    ) -> Result<(), StorageError> {
        let created = sqlx::query(
            "INSERT INTO pep_nodes (domain, username, node, config) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (domain, username, node) DO NOTHING",
        )
        .bind(domain)
        .bind(username)
        .bind(node)
        .bind(config)
        .execute(&self.pool)
        .await?;
        if created.rows_affected() == 0 {
            return Err(StorageError::AlreadyExists);
        }
        Ok(())
    }

    async fn configure_pep_node(
        &self,
        domain: &str,
        username: &str,
        node: &str,
        config: &str,
        max_items: usize,
    ) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE pep_nodes SET config = $4 WHERE domain = $1 AND username = $2 AND node = $3",
        )
        .bind(domain)
        .bind(username)
        .bind(node)
        .bind(config)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 0 {
            return Ok(false);
        }
        trim(&mut tx, domain, username, node, max_items).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_pep_node(
        &self,
        domain: &str,
        username: &str,
        node: &str,
    ) -> Result<bool, StorageError> {
        let removed =
            sqlx::query("DELETE FROM pep_nodes WHERE domain = $1 AND username = $2 AND node = $3")
                .bind(domain)
                .bind(username)
                .bind(node)
                .execute(&self.pool)
                .await?;
        Ok(removed.rows_affected() > 0)
    }

    async fn publish_pep_item(
        &self,
        domain: &str,
        username: &str,
        node: &str,
        item: &PepItem,
        max_items: usize,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO pep_items (domain, username, node, item_id, seq, publisher, payload) \
             VALUES ($1, $2, $3, $4, \
                (SELECT COALESCE(MAX(seq), 0) + 1 FROM pep_items WHERE domain = $1 AND username = $2), \
                $5, $6) \
             ON CONFLICT (domain, username, node, item_id) DO UPDATE SET \
                seq = excluded.seq, publisher = excluded.publisher, payload = excluded.payload",
        )
        .bind(domain)
        .bind(username)
        .bind(node)
        .bind(&item.id)
        .bind(&item.publisher)
        .bind(&item.payload)
        .execute(&mut *tx)
        .await?;
        trim(&mut tx, domain, username, node, max_items).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn retract_pep_item(
        &self,
        domain: &str,
        username: &str,
        node: &str,
        id: &str,
    ) -> Result<bool, StorageError> {
        let removed = sqlx::query(
            "DELETE FROM pep_items WHERE domain = $1 AND username = $2 AND node = $3 AND item_id = $4",
        )
        .bind(domain)
        .bind(username)
        .bind(node)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(removed.rows_affected() > 0)
    }

    async fn purge_pep_node(
        &self,
        domain: &str,
        username: &str,
        node: &str,
    ) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM pep_items WHERE domain = $1 AND username = $2 AND node = $3")
            .bind(domain)
            .bind(username)
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn pep_items(
        &self,
        domain: &str,
        username: &str,
        node: &str,
        last: Option<usize>,
    ) -> Result<Vec<PepItem>, StorageError> {
        let limit = last.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT item_id, publisher, payload FROM pep_items \
             WHERE domain = $1 AND username = $2 AND node = $3 ORDER BY seq DESC LIMIT $4",
        )
        .bind(domain)
        .bind(username)
        .bind(node)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.reverse();
        Ok(rows.into_iter().map(item).collect())
    }

    async fn pep_last_items(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Vec<(String, PepItem)>, StorageError> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT i.node, i.item_id, i.publisher, i.payload FROM pep_items i \
             WHERE i.domain = $1 AND i.username = $2 AND i.seq = \
                (SELECT MAX(seq) FROM pep_items j \
                 WHERE j.domain = i.domain AND j.username = i.username AND j.node = i.node) \
             ORDER BY i.node",
        )
        .bind(domain)
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(node, id, publisher, payload)| (node, item((id, publisher, payload))))
            .collect())
    }

    async fn accounts_with_pep(&self) -> Result<Vec<(String, String)>, StorageError> {
        Ok(
            sqlx::query_as("SELECT DISTINCT domain, username FROM pep_nodes")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

fn item((id, publisher, payload): (String, String, String)) -> PepItem {
    PepItem {
        id,
        publisher,
        payload,
    }
}

/// Keeps the node's `max_items` newest items.
async fn trim(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    domain: &str,
    username: &str,
    node: &str,
    max_items: usize,
) -> Result<(), StorageError> {
    let keep = i64::try_from(max_items).unwrap_or(i64::MAX);
    sqlx::query(
        "DELETE FROM pep_items WHERE domain = $1 AND username = $2 AND node = $3 AND seq NOT IN \
            (SELECT seq FROM pep_items WHERE domain = $1 AND username = $2 AND node = $3 \
             ORDER BY seq DESC LIMIT $4)",
    )
    .bind(domain)
    .bind(username)
    .bind(node)
    .bind(keep)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
