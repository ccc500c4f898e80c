//! [`RosterStore`] on SQLite: the `roster_items`, `roster_groups` and `roster_versions`
//! tables (schema 0002; RFC 6121 §2 rosters, §2.6 versioning).
//!
//! Writes run in `BEGIN IMMEDIATE` transactions (see `accounts.rs`), so the limit check, the
//! change and the version bump of one write are atomic and writers are serialised: two
//! concurrent changes never get the same version. A whole roster is read with two queries in
//! one read transaction: the items joined with their groups, and the version.

use sqlx::SqliteConnection;

use super::SqliteStore;
use crate::{RosterItem, RosterStore, StorageError, Subscription};

/// The items of one account joined with their groups (a row per group, or one row with a
/// NULL group), ordered by contact then group; `$cond` narrows the `WHERE` clause.
macro_rules! items_query {
    ($cond:literal) => {
        concat!(
            "SELECT i.contact, i.name, i.subscription, i.pending_out, i.pending_in, \
             i.approved, i.listed, i.pending_in_stanza, g.group_name \
             FROM roster_items i LEFT JOIN roster_groups g \
             ON g.domain = i.domain AND g.username = i.username AND g.contact = i.contact \
             WHERE i.domain = $1 AND i.username = $2",
            $cond,
            " ORDER BY i.contact, g.group_name"
        )
    };
}

/// The whole roster.
const ROSTER_QUERY: &str = items_query!("");

/// One item.
const ITEM_QUERY: &str = items_query!(" AND i.contact = $3");

/// One row of [`ROSTER_QUERY`] and [`ITEM_QUERY`].
type ItemRow = (
    String,
    Option<String>,
    String,
    bool,
    bool,
    bool,
    bool,
    Option<String>,
    Option<String>,
);

/// Folds query rows (consecutive per contact) into items.
fn items_from_rows(rows: Vec<ItemRow>) -> Result<Vec<RosterItem>, StorageError> {
    let mut items: Vec<RosterItem> = Vec::new();
    for (contact, name, subscription, pending_out, pending_in, approved, listed, stanza, group) in
        rows
    {
        let same = items.last().is_some_and(|last| last.contact == contact);
        if !same {
            let subscription = Subscription::parse(&subscription).ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "unknown roster subscription {subscription:?} for {contact}"
                ))
            })?;
            items.push(RosterItem {
                contact,
                name,
                groups: Vec::new(),
                subscription,
                pending_out,
                pending_in,
                approved,
                listed,
                pending_in_stanza: stanza,
            });
        }
        if let (Some(group), Some(item)) = (group, items.last_mut()) {
            item.groups.push(group);
        }
    }
    Ok(items)
}

/// A stored version as the `u64` of the API.
fn version_from(stored: i64) -> Result<u64, StorageError> {
    u64::try_from(stored)
        .map_err(|_| StorageError::Corrupt(format!("negative roster version {stored}")))
}

/// An account's roster version row.
const VERSION_QUERY: &str =
    "SELECT version FROM roster_versions WHERE domain = $1 AND username = $2";

/// The version row on an inline reader (see `inline.rs`); `None` when there is none.
fn inline_version(
    conn: &rusqlite::Connection,
    domain: &str,
    username: &str,
) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(VERSION_QUERY)?
        .query_row((domain, username), |r| r.get(0))
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
}

async fn read_version(
    conn: &mut SqliteConnection,
    domain: &str,
    username: &str,
) -> Result<u64, StorageError> {
    let stored: Option<i64> = sqlx::query_scalar(VERSION_QUERY)
        .bind(domain)
        .bind(username)
        .fetch_optional(&mut *conn)
        .await?;
    stored.map_or(Ok(0), version_from)
}

/// Raises the account's roster version (from 0 to 1 when it has no row yet) and returns it.
/// Called inside the transaction of the change.
async fn bump_version(
    conn: &mut SqliteConnection,
    domain: &str,
    username: &str,
) -> Result<u64, StorageError> {
    let version: i64 = sqlx::query_scalar(
        "INSERT INTO roster_versions (domain, username, version) VALUES ($1, $2, 1) \
         ON CONFLICT (domain, username) DO UPDATE SET version = roster_versions.version + 1 \
         RETURNING version",
    )
    .bind(domain)
    .bind(username)
    .fetch_one(&mut *conn)
    .await?;
    version_from(version)
}

#[async_trait::async_trait]
impl RosterStore for SqliteStore {
    async fn roster(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<(u64, Vec<RosterItem>), StorageError> {
        // Read at every login's first presence: inline, like the credentials (inline.rs).
        let inline = self.inline.as_ref().and_then(|readers| {
            readers.read(|conn| {
                // One read transaction (a WAL snapshot): the version of exactly these items.
                conn.execute_batch("BEGIN")?;
                let read = (|| {
                    let mut stmt = conn.prepare_cached(ROSTER_QUERY)?;
                    let rows = stmt
                        .query_map((domain, username), item_row)?
                        .collect::<rusqlite::Result<Vec<ItemRow>>>()?;
                    let version = inline_version(conn, domain, username)?;
                    Ok((rows, version))
                })();
                let _ = conn.execute_batch("COMMIT");
                read
            })
        });
        if let Some((rows, version)) = inline {
            return Ok((version.map_or(Ok(0), version_from)?, items_from_rows(rows)?));
        }
        // One read transaction: the version is the one of exactly these items.
        let mut tx = self.pool.begin().await?;
        let rows: Vec<ItemRow> = sqlx::query_as(ROSTER_QUERY)
            .bind(domain)
            .bind(username)
            .fetch_all(&mut *tx)
            .await?;
        let version = read_version(&mut tx, domain, username).await?;
        tx.commit().await?;
        Ok((version, items_from_rows(rows)?))
    }

    async fn roster_version(&self, domain: &str, username: &str) -> Result<u64, StorageError> {
        // Read at every presence broadcast, to check the server's copy of the subscribers:
        // inline, as the hop to sqlx's worker thread cost more than the indexed point read.
        let inline = self
            .inline
            .as_ref()
            .and_then(|readers| readers.read(|conn| inline_version(conn, domain, username)));
        if let Some(version) = inline {
            return version.map_or(Ok(0), version_from);
        }
        let mut conn = self.pool.acquire().await?;
        read_version(&mut conn, domain, username).await
    }

    async fn roster_item(
        &self,
        domain: &str,
        username: &str,
        contact: &str,
    ) -> Result<Option<RosterItem>, StorageError> {
        // Read for every probe a login's initial presence sends to a local contact (one per
        // contact with a subscription): inline too, as a hop to sqlx's worker thread per item
        // made a 200-contact login cost about 15 ms of server CPU.
        let inline = self.inline.as_ref().and_then(|readers| {
            readers.read(|conn| {
                let mut stmt = conn.prepare_cached(ITEM_QUERY)?;
                let rows = stmt
                    .query_map((domain, username, contact), item_row)?
                    .collect::<rusqlite::Result<Vec<ItemRow>>>();
                rows
            })
        });
        if let Some(rows) = inline {
            return Ok(items_from_rows(rows)?.pop());
        }
        let rows: Vec<ItemRow> = sqlx::query_as(ITEM_QUERY)
            .bind(domain)
            .bind(username)
            .bind(contact)
            .fetch_all(&self.pool)
            .await?;
        Ok(items_from_rows(rows)?.pop())
    }

    async fn put_roster_item(
        &self,
        domain: &str,
        username: &str,
        item: &RosterItem,
        max_items: Option<usize>,
    ) -> Result<u64, StorageError> {
        let mut groups: Vec<&str> = item.groups.iter().map(String::as_str).collect();
        groups.sort_unstable();
        groups.dedup();

        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(max) = max_items {
            let exists: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM roster_items WHERE domain = $1 AND username = $2 AND contact = $3",
            )
            .bind(domain)
            .bind(username)
            .bind(&item.contact)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                let held: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM roster_items WHERE domain = $1 AND username = $2",
                )
                .bind(domain)
                .bind(username)
                .fetch_one(&mut *tx)
                .await?;
                if held.max(0) as u64 >= max as u64 {
                    return Err(StorageError::LimitReached);
                }
            }
        }
        sqlx::query(
            "INSERT INTO roster_items (domain, username, contact, name, subscription, \
             pending_out, pending_in, approved, listed, pending_in_stanza) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (domain, username, contact) DO UPDATE SET \
             name = excluded.name, subscription = excluded.subscription, \
             pending_out = excluded.pending_out, pending_in = excluded.pending_in, \
             approved = excluded.approved, listed = excluded.listed, \
             pending_in_stanza = excluded.pending_in_stanza",
        )
        .bind(domain)
        .bind(username)
        .bind(&item.contact)
        .bind(item.name.as_deref())
        .bind(item.subscription.as_str())
        .bind(item.pending_out)
        .bind(item.pending_in)
        .bind(item.approved)
        .bind(item.listed)
        .bind(item.pending_in_stanza.as_deref())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM roster_groups WHERE domain = $1 AND username = $2 AND contact = $3",
        )
        .bind(domain)
        .bind(username)
        .bind(&item.contact)
        .execute(&mut *tx)
        .await?;
        for group in groups {
            sqlx::query(
                "INSERT INTO roster_groups (domain, username, contact, group_name) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(domain)
            .bind(username)
            .bind(&item.contact)
            .bind(group)
            .execute(&mut *tx)
            .await?;
        }
        let version = bump_version(&mut tx, domain, username).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn remove_roster_item(
        &self,
        domain: &str,
        username: &str,
        contact: &str,
    ) -> Result<Option<u64>, StorageError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // The item's groups go with it (ON DELETE CASCADE).
        let removed = sqlx::query(
            "DELETE FROM roster_items WHERE domain = $1 AND username = $2 AND contact = $3",
        )
        .bind(domain)
        .bind(username)
        .bind(contact)
        .execute(&mut *tx)
        .await?;
        if removed.rows_affected() == 0 {
            return Ok(None);
        }
        let version = bump_version(&mut tx, domain, username).await?;
        tx.commit().await?;
        Ok(Some(version))
    }
}

/// One row of `ROSTER_QUERY` or `ITEM_QUERY`, read inline.
fn item_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ItemRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}
