//! [`ArchiveStore`] on SQLite: the `archive_chunks` and `archive_prefs` tables (schemas 0005
//! and 0008; XEP-0313). Messages are stored in chunks (`archive_chunk.rs`): one row holds what
//! one batch archived for one account with one other party.
//!
//! Appends come in batches from the server's archive writer. On a file database they run on
//! a blocking thread through one rusqlite connection kept for them, with cached prepared
//! statements, in one transaction per batch; reads go through the pool.
//!
//! That connection leaves foreign keys off and checks each account of a batch once, in the
//! batch's transaction, instead of SQLite looking the account up for every row; and it
//! checkpoints the WAL less often than SQLite's default, so that the pages the appends keep
//! rewriting (the ends of the indexes) are copied into the database once per checkpoint
//! rather than once per few batches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use sqlx::{Row, SqliteConnection};

use super::SqliteStore;
use crate::archive_chunk::{self, Chunk, Group, Page, MAX_SPAN};
use crate::{
    ArchiveDefault, ArchiveEntry, ArchivePage, ArchivePrefs, ArchiveQuery, ArchiveStore,
    ArchivedMessage, StorageError,
};

/// `OR IGNORE` skips a chunk already stored (a retried batch makes the same chunks).
const INSERT: &str = "INSERT OR IGNORE INTO archive_chunks \
     (domain, username, with_jid, first_id, last_id, count, messages) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Whether an account exists: once per account of a batch, in its transaction.
const ACCOUNT_EXISTS: &str = "SELECT 1 FROM accounts WHERE domain = ?1 AND username = ?2";

/// WAL pages after which the writer's commit checkpoints (SQLite's default: 1000, 4 MiB).
/// Appends at tens of thousands of messages per second rewrite the same index pages in every
/// batch; with the default, each checkpoint copied them again a few batches later.
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
                for g in archive_chunk::groups(entries) {
                    let key = (g.domain, g.username);
                    let known = g.of_room
                        || match checked.get(&key) {
                            Some(known) => *known,
                            None => {
                                let known = exists.exists(key)?;
                                if !known {
                                    not_archived(&g);
                                }
                                checked.insert(key, known);
                                known
                            }
                        };
                    if !known {
                        continue;
                    }
                    for c in archive_chunk::chunks(&g) {
                        insert.execute((
                            g.domain,
                            g.username,
                            g.with,
                            c.first_id,
                            c.last_id,
                            c.count,
                            &c.messages,
                        ))?;
                    }
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

fn not_archived(g: &Group<'_>) {
    tracing::debug!(
        domain = g.domain,
        user = g.username,
        messages = g.messages.len(),
        "not archived: no such account"
    );
}

/// Appends through sqlx (the in-memory database of tests, and the schema migration), skipping
/// the groups of accounts that do not exist.
async fn append_with(
    conn: &mut SqliteConnection,
    entries: &[ArchiveEntry],
) -> Result<(), sqlx::Error> {
    /// One group of the batch, owned before the first await: a future holding the batch's
    /// borrowed groups across sqlx calls is not provably Send (rust-lang/rust#102211).
    struct Owned {
        domain: String,
        username: String,
        with: String,
        of_room: bool,
        chunks: Vec<Chunk>,
    }
    let groups: Vec<Owned> = archive_chunk::groups(entries)
        .iter()
        .map(|g| Owned {
            domain: g.domain.to_owned(),
            username: g.username.to_owned(),
            with: g.with.to_owned(),
            of_room: g.of_room,
            chunks: archive_chunk::chunks(g),
        })
        .collect();
    let mut checked: HashMap<(String, String), bool> = HashMap::new();
    for g in groups {
        let (with, chunks) = (g.with, g.chunks);
        let key = (g.domain, g.username);
        let known = g.of_room
            || match checked.get(&key) {
                Some(known) => *known,
                None => {
                    let known: Option<i64> = sqlx::query_scalar(
                        "SELECT 1 FROM accounts WHERE domain = $1 AND username = $2",
                    )
                    .bind(&key.0)
                    .bind(&key.1)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if known.is_none() {
                        tracing::debug!(
                            domain = key.0,
                            user = key.1,
                            "not archived: no such account"
                        );
                    }
                    *checked.entry(key.clone()).or_insert(known.is_some())
                }
            };
        if !known {
            continue;
        }
        for c in chunks {
            sqlx::query(INSERT)
                .bind(&key.0)
                .bind(&key.1)
                .bind(&with)
                .bind(c.first_id)
                .bind(c.last_id)
                .bind(c.count)
                .bind(c.messages)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Schema 0008's Rust step: the rows of schema 0005's `archive` table, taken in id order a
/// batch at a time as the archive writer would have written them, become chunks; then the
/// table goes.
pub(super) async fn move_rows_into_chunks(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    const BATCH: i64 = 8192;
    let mut after = i64::MIN;
    let mut moved = 0usize;
    loop {
        let rows = sqlx::query(
            "SELECT id, domain, username, with_jid, with_resource, outgoing, stanza \
                 FROM archive WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(BATCH)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get("id")?;
        let entries = rows
            .iter()
            .map(|r| {
                let message = ArchivedMessage {
                    id: r.try_get("id")?,
                    with: r.try_get("with_jid")?,
                    with_resource: r.try_get("with_resource")?,
                    outgoing: r.try_get("outgoing")?,
                    stanza: r.try_get::<String, _>("stanza")?.into(),
                };
                let domain: String = r.try_get("domain")?;
                let username: String = r.try_get("username")?;
                Ok(ArchiveEntry::of_message(
                    &domain, &username, false, &message,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        moved += entries.len();
        append_with(&mut *conn, &entries).await?;
    }
    sqlx::raw_sql("DROP TABLE archive")
        .execute(&mut *conn)
        .await?;
    if moved > 0 {
        tracing::info!("moved {moved} archived messages into chunks");
    }
    Ok(())
}

/// The chunks a query reads, in the order [`Page`] wants them: the account's (or only those
/// with one party) starting at or after `$3` by first id, ascending, when going forward; ending
/// at or before `$4` by last id, descending, when going backward.
fn scan_sql(with: bool, from_end: bool) -> String {
    let with = if with { " AND with_jid = $5" } else { "" };
    if from_end {
        format!(
            "SELECT with_jid, first_id, last_id, messages FROM archive_chunks \
             WHERE domain = $1 AND username = $2 AND last_id >= $3 AND last_id <= $4{with} \
             ORDER BY last_id DESC"
        )
    } else {
        format!(
            "SELECT with_jid, first_id, last_id, messages FROM archive_chunks \
             WHERE domain = $1 AND username = $2 AND first_id >= $3 AND first_id <= $4{with} \
             ORDER BY first_id ASC"
        )
    }
}

/// The chunks a query's bound falls inside of, which [`scan_sql`] leaves out: going forward,
/// those starting before `$3` and ending at or after it (within MAX_SPAN: `$4` = `$3` +
/// MAX_SPAN); going backward, those ending after `$4` and starting at or before it (`$3` =
/// `$4` - MAX_SPAN).
fn straddling_sql(with: bool, from_end: bool) -> String {
    let with = if with { " AND with_jid = $5" } else { "" };
    if from_end {
        format!(
            "SELECT with_jid, first_id, last_id, messages FROM archive_chunks \
             WHERE domain = $1 AND username = $2 AND first_id >= $3 AND first_id <= $4 \
             AND last_id > $4{with}"
        )
    } else {
        format!(
            "SELECT with_jid, first_id, last_id, messages FROM archive_chunks \
             WHERE domain = $1 AND username = $2 AND last_id >= $3 AND last_id <= $4 \
             AND first_id < $3{with}"
        )
    }
}

/// The chunks that may hold `id`.
fn probe_sql(with: bool) -> String {
    format!(
        "SELECT chunk, with_jid, first_id, messages FROM archive_chunks \
         WHERE domain = $1 AND username = $2 AND first_id >= $3 AND first_id <= $4 \
         AND last_id >= $4{}",
        if with { " AND with_jid = $5" } else { "" }
    )
}

impl SqliteStore {
    async fn query_chunks(
        &self,
        domain: &str,
        username: &str,
        q: &ArchiveQuery,
    ) -> Result<ArchivePage, StorageError> {
        let mut page = Page::new(q);
        let with = q.with.as_ref().map(|(w, _)| w.as_str());
        if let Some(ids) = &q.ids {
            // Each id on its own: the ids of one query may lie far apart.
            let sql = probe_sql(with.is_some());
            let mut seen = Vec::new();
            for &id in ids {
                let mut query = sqlx::query(&sql)
                    .bind(domain)
                    .bind(username)
                    .bind(id.saturating_sub(MAX_SPAN))
                    .bind(id);
                if let Some(w) = with {
                    query = query.bind(w);
                }
                for row in query.fetch_all(&self.pool).await? {
                    let chunk: i64 = row.try_get("chunk")?;
                    if seen.contains(&chunk) {
                        continue;
                    }
                    seen.push(chunk);
                    page.take(
                        row.try_get("with_jid")?,
                        row.try_get("first_id")?,
                        row.try_get("messages")?,
                    )?;
                }
            }
            return Ok(page.finish());
        }
        let (lo, hi) = archive_chunk::id_range(q);
        if lo > hi {
            return Ok(page.finish());
        }
        fn bind<'q>(
            sql: &'q str,
            names: (&'q str, &'q str, Option<&'q str>),
            a: i64,
            b: i64,
        ) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
            let mut query = sqlx::query(sql).bind(names.0).bind(names.1).bind(a).bind(b);
            if let Some(w) = names.2 {
                query = query.bind(w);
            }
            query
        }
        let names = (domain, username, with);
        // The chunks the bound falls inside of first, then the rest in order.
        let (edge, span) = if q.from_end {
            (hi, (hi.saturating_sub(MAX_SPAN), hi))
        } else {
            (lo, (lo, lo.saturating_add(MAX_SPAN)))
        };
        if edge != i64::MIN && edge != i64::MAX {
            let sql = straddling_sql(with.is_some(), q.from_end);
            for row in bind(&sql, names, span.0, span.1)
                .fetch_all(&self.pool)
                .await?
            {
                page.take(
                    row.try_get("with_jid")?,
                    row.try_get("first_id")?,
                    row.try_get("messages")?,
                )?;
            }
        }
        let sql = scan_sql(with.is_some(), q.from_end);
        let mut rows = bind(&sql, names, lo, hi).fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            let (first_id, last_id): (i64, i64) =
                (row.try_get("first_id")?, row.try_get("last_id")?);
            if page.done(first_id, last_id) {
                break;
            }
            page.take(row.try_get("with_jid")?, first_id, row.try_get("messages")?)?;
        }
        Ok(page.finish())
    }

    /// Rewrites `chunk` with only the messages `keep` accepts (deleting it when none is
    /// left); returns how many went.
    async fn cut_chunk(
        conn: &mut SqliteConnection,
        chunk: i64,
        first_id: i64,
        count: i64,
        blob: &[u8],
        keep: impl Fn(i64) -> bool,
    ) -> Result<u64, StorageError> {
        match archive_chunk::rewrite(first_id, blob, keep)? {
            Some(c) => {
                let left = c.count;
                sqlx::query(
                    "UPDATE archive_chunks SET first_id = $1, last_id = $2, count = $3, \
                     messages = $4 WHERE chunk = $5",
                )
                .bind(c.first_id)
                .bind(c.last_id)
                .bind(c.count)
                .bind(c.messages)
                .bind(chunk)
                .execute(&mut *conn)
                .await?;
                Ok(u64::try_from(count - left).unwrap_or(0))
            }
            None => {
                sqlx::query("DELETE FROM archive_chunks WHERE chunk = $1")
                    .bind(chunk)
                    .execute(&mut *conn)
                    .await?;
                Ok(u64::try_from(count).unwrap_or(0))
            }
        }
    }

    /// Removes the account's messages with an id at or below `cutoff`.
    async fn cut_account(
        conn: &mut SqliteConnection,
        domain: &str,
        username: &str,
        cutoff: i64,
    ) -> Result<u64, StorageError> {
        let (whole,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(SUM(count), 0) FROM archive_chunks \
             WHERE domain = $1 AND username = $2 AND last_id <= $3",
        )
        .bind(domain)
        .bind(username)
        .bind(cutoff)
        .fetch_one(&mut *conn)
        .await?;
        sqlx::query(
            "DELETE FROM archive_chunks WHERE domain = $1 AND username = $2 AND last_id <= $3",
        )
        .bind(domain)
        .bind(username)
        .bind(cutoff)
        .execute(&mut *conn)
        .await?;
        let mut removed = u64::try_from(whole).unwrap_or(0);
        let straddling: Vec<(i64, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT chunk, first_id, count, messages FROM archive_chunks \
             WHERE domain = $1 AND username = $2 AND first_id >= $3 AND first_id <= $4",
        )
        .bind(domain)
        .bind(username)
        .bind(cutoff.saturating_sub(MAX_SPAN))
        .bind(cutoff)
        .fetch_all(&mut *conn)
        .await?;
        for (chunk, first_id, count, blob) in straddling {
            removed += Self::cut_chunk(&mut *conn, chunk, first_id, count, &blob, |id| id > cutoff)
                .await?;
        }
        Ok(removed)
    }
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
        // In memory (tests): through the pool.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        append_with(&mut tx, &entries).await?;
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
        self.query_chunks(domain, username, q).await
    }

    async fn archive_has(
        &self,
        domain: &str,
        username: &str,
        id: i64,
    ) -> Result<bool, StorageError> {
        let page = self
            .query_chunks(
                domain,
                username,
                &ArchiveQuery {
                    ids: Some(vec![id]),
                    max: 1,
                    ..Default::default()
                },
            )
            .await?;
        Ok(!page.messages.is_empty())
    }

    async fn archive_bounds(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Option<(ArchivedMessage, ArchivedMessage)>, StorageError> {
        let end = |from_end| ArchiveQuery {
            max: 1,
            from_end,
            ..Default::default()
        };
        let first = self.query_chunks(domain, username, &end(false)).await?;
        let last = self.query_chunks(domain, username, &end(true)).await?;
        match (
            first.messages.into_iter().next(),
            last.messages.into_iter().next(),
        ) {
            (Some(f), Some(l)) => Ok(Some((f, l))),
            _ => Ok(None),
        }
    }

    async fn expire_archive(&self, before: i64) -> Result<u64, StorageError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let (whole,): (i64,) =
            sqlx::query_as("SELECT COALESCE(SUM(count), 0) FROM archive_chunks WHERE last_id < $1")
                .bind(before)
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM archive_chunks WHERE last_id < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        let mut removed = u64::try_from(whole).unwrap_or(0);
        // Chunks holding messages on both sides of `before` end less than MAX_SPAN after it.
        let straddling: Vec<(i64, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT chunk, first_id, count, messages FROM archive_chunks \
             WHERE last_id >= $1 AND last_id <= $2 AND first_id < $1",
        )
        .bind(before)
        .bind(before.saturating_add(MAX_SPAN))
        .fetch_all(&mut *tx)
        .await?;
        for (chunk, first_id, count, blob) in straddling {
            removed +=
                Self::cut_chunk(&mut tx, chunk, first_id, count, &blob, |id| id >= before).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    async fn trim_archives(&self, keep: u64) -> Result<u64, StorageError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let over: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT domain, username, SUM(count) FROM archive_chunks \
             GROUP BY domain, username HAVING SUM(count) > $1",
        )
        .bind(keep)
        .fetch_all(&self.pool)
        .await?;
        let mut removed = 0;
        for (domain, username, total) in over {
            let excess = usize::try_from(total - keep).unwrap_or(0);
            // The id of the excess-th oldest message: it and everything older go. Chunks come
            // by first id; one starting after the highest of the oldest found so far holds
            // none older.
            let mut oldest: Vec<i64> = Vec::new();
            let mut rows = sqlx::query(
                "SELECT first_id, messages FROM archive_chunks \
                 WHERE domain = $1 AND username = $2 ORDER BY first_id",
            )
            .bind(&domain)
            .bind(&username)
            .fetch(&self.pool);
            while let Some(row) = rows.try_next().await? {
                let first_id: i64 = row.try_get("first_id")?;
                if oldest.len() == excess && oldest.last().is_some_and(|&m| first_id > m) {
                    break;
                }
                let records = archive_chunk::records(row.try_get("messages")?)?;
                oldest.extend(
                    archive_chunk::decode(first_id, &records)?
                        .iter()
                        .map(|m| m.id),
                );
                oldest.sort_unstable();
                oldest.truncate(excess);
            }
            drop(rows);
            let Some(&cutoff) = oldest.last() else {
                continue;
            };
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            removed += Self::cut_account(&mut tx, &domain, &username, cutoff).await?;
            tx.commit().await?;
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

    async fn remove_archive(&self, domain: &str, username: &str) -> Result<u64, StorageError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(SUM(count), 0) FROM archive_chunks WHERE domain = $1 AND username = $2",
        )
        .bind(domain)
        .bind(username)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM archive_chunks WHERE domain = $1 AND username = $2")
            .bind(domain)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn archive_last_id(&self) -> Result<i64, StorageError> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(last_id) FROM archive_chunks")
            .fetch_one(&self.pool)
            .await?;
        Ok(last.unwrap_or(0))
    }
}
