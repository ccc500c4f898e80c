//! SQLite schema migrations: the embedded, versioned SQL files and the runner that applies them.
//!
//! The applied versions are recorded in `weft_schema_version`. All pending migrations run in
//! one `BEGIN IMMEDIATE` transaction, so a failure leaves the schema as it was and two
//! processes opening the same file cannot migrate it twice. Released migration files are never
//! edited; a schema change is a new file with the next version.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::SqlitePool;

use crate::StorageError;

/// One embedded migration.
pub(crate) struct Migration {
    /// Strictly increasing, starting at 1, without gaps.
    pub(crate) version: i64,
    /// Short name, recorded alongside the version.
    pub(crate) name: &'static str,
    /// The SQL script; may hold several statements.
    pub(crate) sql: &'static str,
    /// Work SQL alone cannot do, run after the script in the same transaction (moving data
    /// into a format of weft's own).
    pub(crate) then: Option<Step>,
}

/// A migration's Rust step.
#[derive(Clone, Copy)]
pub(crate) enum Step {
    /// Schema 0008: archive rows into chunks.
    ArchiveChunks,
}

impl Step {
    async fn run(self, conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
        match self {
            Step::ArchiveChunks => super::archive::move_rows_into_chunks(conn).await,
        }
    }
}

/// Every migration this build knows, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "accounts",
        sql: include_str!("../../migrations/sqlite/0001_accounts.sql"),
        then: None,
    },
    Migration {
        version: 2,
        name: "roster",
        sql: include_str!("../../migrations/sqlite/0002_roster.sql"),
        then: None,
    },
    Migration {
        version: 3,
        name: "offline",
        sql: include_str!("../../migrations/sqlite/0003_offline.sql"),
        then: None,
    },
    Migration {
        version: 4,
        name: "private_xml",
        sql: include_str!("../../migrations/sqlite/0004_private_xml.sql"),
        then: None,
    },
    Migration {
        version: 5,
        name: "archive",
        sql: include_str!("../../migrations/sqlite/0005_archive.sql"),
        then: None,
    },
    Migration {
        version: 6,
        name: "pep",
        sql: include_str!("../../migrations/sqlite/0006_pep.sql"),
        then: None,
    },
    Migration {
        version: 7,
        name: "push",
        sql: include_str!("../../migrations/sqlite/0007_push.sql"),
        then: None,
    },
    Migration {
        version: 8,
        name: "archive_chunks",
        sql: include_str!("../../migrations/sqlite/0008_archive_chunks.sql"),
        then: Some(Step::ArchiveChunks),
    },
    Migration {
        version: 9,
        name: "muc",
        sql: include_str!("../../migrations/sqlite/0009_muc.sql"),
        then: None,
    },
];

/// The schema version this build writes and reads.
#[cfg(test)]
pub(crate) fn latest_version() -> i64 {
    highest_version(MIGRATIONS)
}

/// The schema version a build knowing `known` writes and reads.
fn highest_version(known: &[Migration]) -> i64 {
    known.last().map_or(0, |m| m.version)
}

/// Seconds since the Unix epoch, as stored in `created_at`/`applied_at` columns.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Brings the schema up to the last of [`MIGRATIONS`]; returns how many migrations were applied.
///
/// Refuses, without changing anything, a database whose version is above the latest known.
pub(crate) async fn run(pool: &SqlitePool) -> Result<usize, StorageError> {
    run_known(pool, MIGRATIONS).await
}

/// [`run`] for a build that knows only `known` (a prefix of [`MIGRATIONS`]): tests use it to
/// make the database an earlier weft made.
pub(crate) async fn run_known(
    pool: &SqlitePool,
    known: &[Migration],
) -> Result<usize, StorageError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS weft_schema_version (
            version    INTEGER NOT NULL PRIMARY KEY,
            name       TEXT    NOT NULL,
            applied_at INTEGER NOT NULL
        )",
    )
    .execute(&mut *tx)
    .await?;

    let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM weft_schema_version")
        .fetch_one(&mut *tx)
        .await?;
    let current = current.unwrap_or(0);
    let supported = highest_version(known);
    if current > supported {
        return Err(StorageError::SchemaTooNew {
            found: current,
            supported,
        });
    }

    let mut applied = 0;
    for migration in known.iter().filter(|m| m.version > current) {
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| StorageError::Migration {
                version: migration.version,
                name: migration.name,
                message: e.to_string(),
            })?;
        if let Some(step) = migration.then {
            step.run(&mut tx)
                .await
                .map_err(|e| StorageError::Migration {
                    version: migration.version,
                    name: migration.name,
                    message: e.to_string(),
                })?;
        }
        sqlx::query(
            "INSERT INTO weft_schema_version (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(migration.version)
        .bind(migration.name)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied SQLite schema migration"
        );
        applied += 1;
    }
    tx.commit().await?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_start_at_one_and_have_no_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration {}", m.name);
            assert!(!m.sql.trim().is_empty(), "migration {} is empty", m.name);
        }
        assert_eq!(latest_version(), MIGRATIONS.len() as i64);
    }
}
