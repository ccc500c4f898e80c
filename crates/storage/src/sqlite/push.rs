//! [`PushStore`] on SQLite: the `push_registrations` table (schema 0007; XEP-0357).
//!
//! A bounded put counts and writes in one `BEGIN IMMEDIATE` transaction, so concurrent enables
//! never pass the limit.

use super::migrate::unix_now;
use super::SqliteStore;
use crate::{PushRegistration, PushStore, StorageError};

type Row = (String, String, String, Option<String>);

fn registration((service, node, enabled_by, publish_options): Row) -> PushRegistration {
    PushRegistration {
        service,
        node,
        enabled_by,
        publish_options,
    }
}

#[async_trait::async_trait]
impl PushStore for SqliteStore {
    async fn put_push(
        &self,
        domain: &str,
        username: &str,
        r: &PushRegistration,
        max: Option<usize>,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(max) = max {
            let (others,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM push_registrations WHERE domain = $1 AND username = $2 \
                 AND NOT (service = $3 AND node = $4)",
            )
            .bind(domain)
            .bind(username)
            .bind(&r.service)
            .bind(&r.node)
            .fetch_one(&mut *tx)
            .await?;
            if others.max(0) as u64 >= max as u64 {
                return Err(StorageError::LimitReached);
            }
        }
        sqlx::query(
            "INSERT INTO push_registrations \
             (domain, username, service, node, enabled_by, publish_options, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (domain, username, service, node) DO UPDATE SET \
             enabled_by = excluded.enabled_by, publish_options = excluded.publish_options",
        )
        .bind(domain)
        .bind(username)
        .bind(&r.service)
        .bind(&r.node)
        .bind(&r.enabled_by)
        .bind(&r.publish_options)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_push(
        &self,
        domain: &str,
        username: &str,
        service: &str,
        node: Option<&str>,
    ) -> Result<usize, StorageError> {
        let done = sqlx::query(
            "DELETE FROM push_registrations WHERE domain = $1 AND username = $2 \
             AND service = $3 AND ($4 IS NULL OR node = $4)",
        )
        .bind(domain)
        .bind(username)
        .bind(service)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn push_registrations(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Vec<PushRegistration>, StorageError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT service, node, enabled_by, publish_options FROM push_registrations \
             WHERE domain = $1 AND username = $2 ORDER BY created_at, rowid",
        )
        .bind(domain)
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(registration).collect())
    }

    async fn all_push_registrations(
        &self,
    ) -> Result<Vec<(String, String, PushRegistration)>, StorageError> {
        let rows: Vec<(String, String, String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT domain, username, service, node, enabled_by, publish_options \
             FROM push_registrations ORDER BY domain, username, created_at, rowid",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(domain, username, s, n, e, p)| (domain, username, registration((s, n, e, p))))
            .collect())
    }
}
