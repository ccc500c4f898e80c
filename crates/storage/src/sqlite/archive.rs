//! [`ArchiveStore`] on SQLite: the `archive` and `archive_prefs` tables (schema 0005;
//! XEP-0313).
//!
//! Appends come in batches from the server's archive writer. On a file database they run on
//! a blocking thread through one rusqlite connection kept for them, with a cached prepared
//! statement, in one transaction per batch: through sqlx every row would be a round trip to
//! its worker thread, which at tens of thousands of messages per second cost more than the
//! inserts. Reads go through the pool.
//!
//! That connection leaves foreign keys off and checks each account of a batch once, in the
//! batch's transaction, instead of SQLite looking the account up for every row; and it
//! checkpoints the WAL less often than SQLite's default, so that the pages the appends keep
//! rewriting (the ends of the indexes) are copied into the database once per checkpoint
//! rather than once per few batches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::SqliteStore;
use crate::{
    ArchiveDefault, ArchiveEntry, ArchivePage, ArchivePrefs, ArchiveQuery, ArchiveStore,
    ArchivedMessage, StorageError,
};

/// `OR IGNORE` skips an id already archived (a retried batch).
const INSERT: &str = "INSERT OR IGNORE INTO archive \
     (domain, username, id, with_jid, with_resource, outgoing, stanza) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

const COLUMNS: &str = "id, with_jid, with_resource, outgoing, stanza";

/// Whether an account exists: once per account of a batch, in its transaction.
const ACCOUNT_EXISTS: &str = "SELECT 1 FROM accounts WHERE domain = ?1 AND username = ?2";

/// WAL pages after which the writer's commit checkpoints (SQLite's default: 1000, 4 MiB).
/// Appends at tens of thousands of rows per second rewrite the same index pages in every
/// batch; with the default, each checkpoint copied them again a few batches later (9% of
/// weft's CPU at 10 pairs with everything archived).
const WRITER_CHECKPOINT_PAGES: i64 = 16_384;

/// The connection batched appends use on a file database.
#[derive(Debug)]
pub(super) struct ArchiveWriter {
    path: PathBuf,
    conn: Mutex<Option<rusqlite::Connection>>,
}

impl ArchiveWriter {
    pub(super) fn new(path: &Path) -> Self {
        ArchiveWriter {
            path: path.to_owned(),
            conn: Mutex::new(None),
        }
    }

    /// Writes `entries` in one transaction (on the calling thread: a blocking one), skipping
    /// those of accounts that do not exist (deleted since the message was routed).
    fn append(&self, entries: &[ArchiveEntry]) -> Result<(), StorageError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let conn = rusqlite::Connection::open(&self.path)?;
            conn.busy_timeout(super::BUSY_TIMEOUT)?;
            // Checked per account below; this connection only appends archive rows.
            conn.pragma_update(None, "foreign_keys", false)?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
            *guard = Some(conn);
        }
        let conn = guard.as_mut().expect("opened above");
        let result = (|| {
            // IMMEDIATE: no account can be removed between its check and the commit.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut exists = tx.prepare_cached(ACCOUNT_EXISTS)?;
                let mut insert = tx.prepare_cached(INSERT)?;
                let mut checked: HashMap<(&str, &str), bool> = HashMap::new();
                for e in entries {
                    let key = (e.domain.as_str(), e.username.as_str());
                    let known = match checked.get(&key) {
                        Some(known) => *known,
                        None => {
                            let known = exists.exists(key)?;
                            if !known {
                                tracing::debug!(
                                    domain = key.0,
                                    user = key.1,
                                    "not archived: no such account"
                                );
                            }
                            checked.insert(key, known);
                            known
                        }
                    };
                    if !known {
                        continue;
                    }
                    let m = &e.message;
                    insert.execute((
                        &e.domain,
                        &e.username,
                        m.id,
                        &m.with,
                        &m.with_resource,
                        m.outgoing,
                        &m.stanza,
                    ))?;
                }
            }
            tx.commit()
        })();
        if result.is_err() {
            // Reopened for the next batch: the connection may be in a bad state.
            *guard = None;
        }
        Ok(result?)
    }
}

fn message_from(row: &SqliteRow) -> Result<ArchivedMessage, sqlx::Error> {
    Ok(ArchivedMessage {
        id: row.try_get("id")?,
        with: row.try_get("with_jid")?,
        with_resource: row.try_get("with_resource")?,
        outgoing: row.try_get("outgoing")?,
        stanza: row.try_get("stanza")?,
    })
}

fn lines(list: &[String]) -> String {
    list.join("\n")
}

fn unlines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn prefs_from(default: &str, always: &str, never: &str) -> Result<ArchivePrefs, StorageError> {
    Ok(ArchivePrefs {
        default: ArchiveDefault::parse(default)
            .ok_or_else(|| StorageError::Corrupt(format!("archive default '{default}'")))?,
        always: unlines(always),
        never: unlines(never),
    })
}

#[async_trait::async_trait]
impl ArchiveStore for SqliteStore {
    async fn append_archive(&self, entries: Arc<Vec<ArchiveEntry>>) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        if let Some(writer) = &self.archive_writer {
            let writer: Arc<ArchiveWriter> = writer.clone();
            return tokio::task::spawn_blocking(move || writer.append(&entries))
                .await
                .map_err(|e| StorageError::Task(e.to_string()))?;
        }
        // In memory (tests): through the pool, skipping rows of accounts that are gone.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for e in entries.iter() {
            let known: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM accounts WHERE domain = $1 AND username = $2")
                    .bind(&e.domain)
                    .bind(&e.username)
                    .fetch_optional(&mut *tx)
                    .await?;
            if known.is_none() {
                continue;
            }
            let m = &e.message;
            sqlx::query(INSERT)
                .bind(&e.domain)
                .bind(&e.username)
                .bind(m.id)
                .bind(&m.with)
                .bind(&m.with_resource)
                .bind(m.outgoing)
                .bind(&m.stanza)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn query_archive(
        &self,
        domain: &str,
        username: &str,
        q: &ArchiveQuery,
    ) -> Result<ArchivePage, StorageError> {
        if q.ids.as_ref().is_some_and(Vec::is_empty) || q.max == 0 && q.ids.is_some() {
            return Ok(ArchivePage {
                messages: Vec::new(),
                complete: true,
            });
        }
        // The conditions, numbered as they are bound below.
        let mut sql = format!("SELECT {COLUMNS} FROM archive WHERE domain = $1 AND username = $2");
        let mut n = 2;
        let mut next = |sql: &mut String, cond: &str| {
            n += 1;
            sql.push_str(&cond.replace('?', &format!("${n}")));
        };
        if let Some((_, resource)) = &q.with {
            next(&mut sql, " AND with_jid = ?");
            if resource.is_some() {
                next(&mut sql, " AND with_resource = ?");
            }
        }
        for (value, cond) in [
            (q.start, " AND id >= ?"),
            (q.end, " AND id <= ?"),
            (q.after, " AND id > ?"),
            (q.before, " AND id < ?"),
        ] {
            if value.is_some() {
                next(&mut sql, cond);
            }
        }
        if let Some(ids) = &q.ids {
            sql.push_str(" AND id IN (");
            for i in 0..ids.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                next(&mut sql, "?");
            }
            sql.push(')');
        }
        let order = if q.from_end { "DESC" } else { "ASC" };
        // One more than the page: whether it exists says if the page is the last one.
        sql.push_str(&format!(" ORDER BY id {order} LIMIT {}", q.max as u64 + 1));

        let mut query = sqlx::query(&sql).bind(domain).bind(username);
        if let Some((with, resource)) = &q.with {
            query = query.bind(with);
            if let Some(r) = resource {
                query = query.bind(r);
            }
        }
        for value in [q.start, q.end, q.after, q.before].into_iter().flatten() {
            query = query.bind(value);
        }
        for id in q.ids.iter().flatten() {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let complete = rows.len() <= q.max;
        let mut messages = rows
            .iter()
            .take(q.max)
            .map(message_from)
            .collect::<Result<Vec<_>, _>>()?;
        if q.from_end {
            messages.reverse();
        }
        Ok(ArchivePage { messages, complete })
    }

    async fn archive_has(
        &self,
        domain: &str,
        username: &str,
        id: i64,
    ) -> Result<bool, StorageError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM archive WHERE domain = $1 AND username = $2 AND id = $3",
        )
        .bind(domain)
        .bind(username)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn archive_bounds(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Option<(ArchivedMessage, ArchivedMessage)>, StorageError> {
        let end = |order: &str| {
            format!(
                "SELECT {COLUMNS} FROM archive WHERE domain = $1 AND username = $2 \
                 ORDER BY id {order} LIMIT 1"
            )
        };
        let first = sqlx::query(&end("ASC"))
            .bind(domain)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        let last = sqlx::query(&end("DESC"))
            .bind(domain)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        match (first, last) {
            (Some(f), Some(l)) => Ok(Some((message_from(&f)?, message_from(&l)?))),
            _ => Ok(None),
        }
    }

    async fn expire_archive(&self, before: i64) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM archive WHERE id < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn trim_archives(&self, keep: u64) -> Result<u64, StorageError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let over: Vec<(String, String)> = sqlx::query_as(
            "SELECT domain, username FROM archive GROUP BY domain, username HAVING COUNT(*) > $1",
        )
        .bind(keep)
        .fetch_all(&self.pool)
        .await?;
        let mut removed = 0;
        for (domain, username) in over {
            // Everything older than the keep-th newest message.
            let done = sqlx::query(
                "DELETE FROM archive WHERE domain = $1 AND username = $2 AND id <= \
                 (SELECT id FROM archive WHERE domain = $1 AND username = $2 \
                  ORDER BY id DESC LIMIT 1 OFFSET $3)",
            )
            .bind(&domain)
            .bind(&username)
            .bind(keep)
            .execute(&self.pool)
            .await?;
            removed += done.rows_affected();
        }
        Ok(removed)
    }

    async fn archive_prefs(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Option<ArchivePrefs>, StorageError> {
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT default_mode, always_jids, never_jids FROM archive_prefs \
             WHERE domain = $1 AND username = $2",
        )
        .bind(domain)
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(d, a, n)| prefs_from(&d, &a, &n)).transpose()
    }

    async fn set_archive_prefs(
        &self,
        domain: &str,
        username: &str,
        prefs: &ArchivePrefs,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO archive_prefs (domain, username, default_mode, always_jids, never_jids) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (domain, username) DO UPDATE SET \
             default_mode = excluded.default_mode, always_jids = excluded.always_jids, \
             never_jids = excluded.never_jids",
        )
        .bind(domain)
        .bind(username)
        .bind(prefs.default.as_str())
        .bind(lines(&prefs.always))
        .bind(lines(&prefs.never))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn all_archive_prefs(&self) -> Result<Vec<(String, String, ArchivePrefs)>, StorageError> {
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT domain, username, default_mode, always_jids, never_jids FROM archive_prefs",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(domain, username, d, a, n)| Ok((domain, username, prefs_from(&d, &a, &n)?)))
            .collect()
    }

    async fn archive_last_id(&self) -> Result<i64, StorageError> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM archive")
            .fetch_one(&self.pool)
            .await?;
        Ok(last.unwrap_or(0))
    }
}
