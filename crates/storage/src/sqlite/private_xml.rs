//! [`PrivateXmlStore`] on SQLite: the `private_xml` table (schema 0004; XEP-0049, XEP-0054).
//!
//! Each operation is one statement, atomic on its own; a set is an upsert, so concurrent
//! sets of one key leave one of the documents whole.

use super::SqliteStore;
use crate::{PrivateXmlStore, StorageError};

const GET_QUERY: &str =
    "SELECT xml FROM private_xml WHERE domain = $1 AND username = $2 AND doc_key = $3";

#[async_trait::async_trait]
impl PrivateXmlStore for SqliteStore {
    async fn get_private(
        &self,
        domain: &str,
        username: &str,
        key: &str,
    ) -> Result<Option<String>, StorageError> {
        // A point read, inline like the login's credentials (inline.rs).
        let inline = self.inline.as_ref().and_then(|readers| {
            readers.read(|conn| {
                conn.prepare_cached(GET_QUERY)?
                    .query_row((domain, username, key), |r| r.get::<_, String>(0))
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })
            })
        });
        if let Some(xml) = inline {
            return Ok(xml);
        }
        let xml: Option<String> = sqlx::query_scalar(GET_QUERY)
            .bind(domain)
            .bind(username)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(xml)
    }

    async fn set_private(
        &self,
        domain: &str,
        username: &str,
        key: &str,
        xml: &str,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO private_xml (domain, username, doc_key, xml) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (domain, username, doc_key) DO UPDATE SET xml = excluded.xml",
        )
        .bind(domain)
        .bind(username)
        .bind(key)
        .bind(xml)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_private(
        &self,
        domain: &str,
        username: &str,
        key: &str,
    ) -> Result<bool, StorageError> {
        let removed = sqlx::query(
            "DELETE FROM private_xml WHERE domain = $1 AND username = $2 AND doc_key = $3",
        )
        .bind(domain)
        .bind(username)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(removed.rows_affected() > 0)
    }

    async fn accounts_with_private(
        &self,
        key: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        Ok(
            sqlx::query_as("SELECT domain, username FROM private_xml WHERE doc_key = $1")
                .bind(key)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
