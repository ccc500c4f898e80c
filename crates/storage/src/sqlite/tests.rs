//! Tests of the SQLite backend: account store behaviour, migrations on file databases, concurrency.
//! The other stores' tests are in `tests/<feature>.rs`.

use std::path::Path;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use weft_sasl::{Hash, ScramCredentials};

use super::migrate::{self, latest_version};
use super::SqliteStore;
use crate::{AccountName, AccountStore, Storage, StorageError};

/// Credentials with bytes derived from `seed`, including 0x00 and 0xff to catch text mangling.
fn creds(hash: Hash, seed: u8) -> ScramCredentials {
    let key_len = match hash {
        Hash::Sha1 => 20,
        Hash::Sha256 => 32,
    };
    let bytes = |tag: u8, len: usize| -> Vec<u8> {
        let mut v: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed ^ tag))
            .collect();
        v[0] = 0x00;
        v[len - 1] = 0xff;
        v
    };
    ScramCredentials {
        hash,
        salt: bytes(1, 16),
        iterations: 4096 + u32::from(seed),
        stored_key: bytes(2, key_len),
        server_key: bytes(3, key_len),
    }
}

fn both(seed: u8) -> Vec<ScramCredentials> {
    vec![creds(Hash::Sha1, seed), creds(Hash::Sha256, seed)]
}

fn assert_same(got: &ScramCredentials, want: &ScramCredentials) {
    assert_eq!(got.hash, want.hash);
    assert_eq!(got.salt, want.salt);
    assert_eq!(got.iterations, want.iterations);
    assert_eq!(got.stored_key, want.stored_key);
    assert_eq!(got.server_key, want.server_key);
}

mod archive;
mod offline;
mod pep;
mod private_xml;
mod push;
mod roster;

/// A file store in a fresh temporary directory (removed when the returned guard drops) and
/// an in-memory store: each store test runs on both.
async fn file_and_memory() -> (tempfile::TempDir, [SqliteStore; 2]) {
    let dir = tempfile::tempdir().unwrap();
    let file = SqliteStore::open(&dir.path().join("weft.db"))
        .await
        .unwrap();
    let memory = SqliteStore::open_in_memory().await.unwrap();
    (dir, [file, memory])
}

/// Rows of `table` that belong to the account.
async fn account_rows(store: &SqliteStore, table: &str, domain: &str, username: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {table} WHERE domain = $1 AND username = $2"
    ))
    .bind(domain)
    .bind(username)
    .fetch_one(&store.pool)
    .await
    .unwrap()
}

fn name(username: &str, domain: &str) -> AccountName {
    AccountName {
        username: username.into(),
        domain: domain.into(),
    }
}

async fn credential_rows(store: &SqliteStore, domain: &str, username: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM scram_credentials WHERE domain = $1 AND username = $2")
        .bind(domain)
        .bind(username)
        .fetch_one(&store.pool)
        .await
        .unwrap()
}

async fn raw_connection(path: &Path) -> SqliteConnection {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    SqliteConnection::connect_with(&options).await.unwrap()
}

#[tokio::test]
async fn create_exists_list_and_credentials_round_trip() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let given = both(7);
    store
        .create_account("example.org", "juliet", &given)
        .await
        .unwrap();

    assert!(store.account_exists("example.org", "juliet").await.unwrap());
    assert!(!store.account_exists("example.org", "romeo").await.unwrap());
    assert!(!store.account_exists("example.net", "juliet").await.unwrap());
    assert_eq!(
        store.list_accounts(None).await.unwrap(),
        vec![name("juliet", "example.org")]
    );
    for want in &given {
        let got = store
            .scram_credentials("example.org", "juliet", want.hash)
            .await
            .unwrap()
            .expect("stored credentials");
        assert_same(&got, want);
    }
    assert!(store
        .scram_credentials("example.org", "romeo", Hash::Sha256)
        .await
        .unwrap()
        .is_none());

    // Only one hash given: the other one is absent, not invented.
    store
        .create_account("example.org", "nurse", &[creds(Hash::Sha256, 9)])
        .await
        .unwrap();
    assert!(store
        .scram_credentials("example.org", "nurse", Hash::Sha1)
        .await
        .unwrap()
        .is_none());
    assert_same(
        &store
            .scram_credentials("example.org", "nurse", Hash::Sha256)
            .await
            .unwrap()
            .unwrap(),
        &creds(Hash::Sha256, 9),
    );
}

#[tokio::test]
async fn duplicate_create_is_already_exists_and_keeps_the_original() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    store
        .create_account("example.org", "juliet", &both(1))
        .await
        .unwrap();
    let err = store
        .create_account("example.org", "juliet", &both(2))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists), "{err:?}");
    let kept = store
        .scram_credentials("example.org", "juliet", Hash::Sha1)
        .await
        .unwrap()
        .unwrap();
    assert_same(&kept, &creds(Hash::Sha1, 1));
    // Same username on another domain is another account.
    store
        .create_account("example.net", "juliet", &both(3))
        .await
        .unwrap();
}

#[tokio::test]
async fn two_credentials_for_one_hash_are_refused_without_writing() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let twice = [creds(Hash::Sha256, 1), creds(Hash::Sha256, 2)];
    let err = store
        .create_account("example.org", "juliet", &twice)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::DuplicateHash(Hash::Sha256)),
        "{err:?}"
    );
    assert!(!store.account_exists("example.org", "juliet").await.unwrap());

    store
        .create_account("example.org", "juliet", &both(1))
        .await
        .unwrap();
    let err = store
        .set_credentials("example.org", "juliet", &twice)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::DuplicateHash(Hash::Sha256)),
        "{err:?}"
    );
    assert_eq!(credential_rows(&store, "example.org", "juliet").await, 2);
}

#[tokio::test]
async fn set_credentials_replaces_all_of_them() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    store
        .create_account("example.org", "juliet", &both(1))
        .await
        .unwrap();

    let new = creds(Hash::Sha256, 42);
    assert!(store
        .set_credentials("example.org", "juliet", std::slice::from_ref(&new))
        .await
        .unwrap());
    assert!(store
        .scram_credentials("example.org", "juliet", Hash::Sha1)
        .await
        .unwrap()
        .is_none());
    assert_same(
        &store
            .scram_credentials("example.org", "juliet", Hash::Sha256)
            .await
            .unwrap()
            .unwrap(),
        &new,
    );
    assert_eq!(credential_rows(&store, "example.org", "juliet").await, 1);

    assert!(store
        .set_credentials("example.org", "juliet", &both(5))
        .await
        .unwrap());
    assert_eq!(credential_rows(&store, "example.org", "juliet").await, 2);

    // No such account: nothing is created.
    assert!(!store
        .set_credentials("example.org", "romeo", &both(5))
        .await
        .unwrap());
    assert!(!store.account_exists("example.org", "romeo").await.unwrap());
    assert_eq!(credential_rows(&store, "example.org", "romeo").await, 0);
}

#[tokio::test]
async fn remove_cascades_to_credentials() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    store
        .create_account("example.org", "juliet", &both(1))
        .await
        .unwrap();
    store
        .create_account("example.org", "romeo", &both(2))
        .await
        .unwrap();
    assert_eq!(credential_rows(&store, "example.org", "juliet").await, 2);

    assert!(store.remove_account("example.org", "juliet").await.unwrap());
    assert_eq!(credential_rows(&store, "example.org", "juliet").await, 0);
    assert!(!store.account_exists("example.org", "juliet").await.unwrap());
    assert!(!store.remove_account("example.org", "juliet").await.unwrap());
    // The neighbour is untouched.
    assert_eq!(credential_rows(&store, "example.org", "romeo").await, 2);

    // A re-created account starts without the old credentials.
    store
        .create_account("example.org", "juliet", &[])
        .await
        .unwrap();
    assert_eq!(credential_rows(&store, "example.org", "juliet").await, 0);
}

#[tokio::test]
async fn list_filters_by_domain_and_sorts() {
    let storage = Storage::in_memory().await.unwrap();
    let accounts = &storage.accounts;
    for (domain, user) in [
        ("b.example", "zed"),
        ("a.example", "mallory"),
        ("b.example", "alice"),
        ("a.example", "bob"),
        ("a.example", "alice"),
        ("a.example.org", "aaron"),
    ] {
        accounts.create_account(domain, user, &[]).await.unwrap();
    }
    assert_eq!(
        accounts.list_accounts(None).await.unwrap(),
        vec![
            name("alice", "a.example"),
            name("bob", "a.example"),
            name("mallory", "a.example"),
            name("aaron", "a.example.org"),
            name("alice", "b.example"),
            name("zed", "b.example"),
        ]
    );
    assert_eq!(
        accounts.list_accounts(Some("b.example")).await.unwrap(),
        vec![name("alice", "b.example"), name("zed", "b.example")]
    );
    assert!(accounts
        .list_accounts(Some("c.example"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(accounts.count_accounts().await.unwrap(), 6);
}

#[tokio::test]
async fn in_memory_stores_are_independent() {
    let one = SqliteStore::open_in_memory().await.unwrap();
    let two = SqliteStore::open_in_memory().await.unwrap();
    one.create_account("example.org", "juliet", &[])
        .await
        .unwrap();
    assert!(!two.account_exists("example.org", "juliet").await.unwrap());
    // Clones share the data.
    assert!(one
        .clone()
        .account_exists("example.org", "juliet")
        .await
        .unwrap());
}

#[tokio::test]
async fn reopening_a_file_keeps_data_and_does_not_migrate_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not/yet/there/weft.db");

    let store = SqliteStore::open(&path).await.unwrap();
    store
        .create_account("example.org", "juliet", &both(3))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(foreign_keys, 1);
    let first: Vec<(i64, i64)> =
        sqlx::query_as("SELECT version, applied_at FROM weft_schema_version ORDER BY version")
            .fetch_all(&store.pool)
            .await
            .unwrap();
    assert_eq!(first.len() as i64, latest_version());
    store.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(migrate::run(&store.pool).await.unwrap(), 0);
    let again: Vec<(i64, i64)> =
        sqlx::query_as("SELECT version, applied_at FROM weft_schema_version ORDER BY version")
            .fetch_all(&store.pool)
            .await
            .unwrap();
    assert_eq!(again, first);
    assert_eq!(
        store.list_accounts(None).await.unwrap(),
        vec![name("juliet", "example.org")]
    );
    assert_same(
        &store
            .scram_credentials("example.org", "juliet", Hash::Sha256)
            .await
            .unwrap()
            .unwrap(),
        &creds(Hash::Sha256, 3),
    );
    store.close().await;

    // Through the bundle too.
    let storage = Storage::open_sqlite(&path).await.unwrap();
    assert!(storage
        .accounts
        .account_exists("example.org", "juliet")
        .await
        .unwrap());
}

/// A database made by each earlier weft (schema versions up to k), with an account in it,
/// is brought to the latest version on open; its data is kept and the new stores work on it.
#[tokio::test]
async fn a_database_from_an_earlier_weft_is_migrated() {
    use crate::{OfflineStore, PrivateXmlStore, RosterItem, RosterStore};
    for known in 1..latest_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let applied = migrate::run_known(&pool, &migrate::MIGRATIONS[..known as usize])
            .await
            .unwrap();
        assert_eq!(applied as i64, known);
        let old = SqliteStore {
            pool,
            inline: None,
            archive_writer: None,
        };
        old.create_account("example.org", "juliet", &both(4))
            .await
            .unwrap();
        old.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM weft_schema_version ORDER BY version")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(versions, (1..=latest_version()).collect::<Vec<_>>());
        assert_same(
            &store
                .scram_credentials("example.org", "juliet", Hash::Sha256)
                .await
                .unwrap()
                .unwrap(),
            &creds(Hash::Sha256, 4),
        );
        // The new tables reference the account made before them.
        let item = RosterItem::new("romeo@example.net");
        assert_eq!(
            store
                .put_roster_item("example.org", "juliet", &item, None)
                .await
                .unwrap(),
            1
        );
        store
            .store_offline("example.org", "juliet", "<message/>", None)
            .await
            .unwrap();
        store
            .set_private("example.org", "juliet", "vcard-temp", "<vCard/>")
            .await
            .unwrap();
        assert!(store.remove_account("example.org", "juliet").await.unwrap());
        for table in ["roster_items", "offline_messages", "private_xml"] {
            assert_eq!(
                account_rows(&store, table, "example.org", "juliet").await,
                0,
                "{table}"
            );
        }
        store.close().await;
    }
}

#[tokio::test]
async fn a_database_from_a_newer_weft_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let future = latest_version() + 1;
    sqlx::query("INSERT INTO weft_schema_version (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(future)
        .bind("from the future")
        .bind(0_i64)
        .execute(&store.pool)
        .await
        .unwrap();
    store.close().await;

    let err = SqliteStore::open(&path).await.unwrap_err();
    match &err {
        StorageError::SchemaTooNew { found, supported } => {
            assert_eq!(*found, future);
            assert_eq!(*supported, latest_version());
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert!(err.to_string().contains("newer than this weft supports"));
}

#[tokio::test]
async fn a_failing_migration_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.db");
    // A foreign `accounts` table makes migration 1 fail half-way.
    let mut conn = raw_connection(&path).await;
    sqlx::raw_sql("CREATE TABLE accounts (x INTEGER)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Migration { version: 1, .. }),
        "{err:?}"
    );

    let mut conn = raw_connection(&path).await;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(tables, vec!["accounts".to_string()]);
    conn.close().await.unwrap();
}

fn inline_idle(store: &SqliteStore) -> usize {
    store.inline.as_ref().map_or(0, |r| r.idle_connections())
}

#[tokio::test]
async fn a_file_store_reads_credentials_inline_and_sees_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("weft.db"))
        .await
        .unwrap();
    assert_eq!(inline_idle(&store), 0);
    store
        .create_account("example.org", "juliet", &both(1))
        .await
        .unwrap();
    let read = |hash| store.scram_credentials("example.org", "juliet", hash);
    assert_same(
        &read(Hash::Sha1).await.unwrap().unwrap(),
        &creds(Hash::Sha1, 1),
    );
    // The read ran on an inline connection, which is now idle for reuse.
    assert_eq!(inline_idle(&store), 1);

    // Writes through the pool are seen by the next inline read (a fresh read transaction).
    let new = creds(Hash::Sha256, 42);
    store
        .set_credentials("example.org", "juliet", std::slice::from_ref(&new))
        .await
        .unwrap();
    assert!(read(Hash::Sha1).await.unwrap().is_none());
    assert_same(&read(Hash::Sha256).await.unwrap().unwrap(), &new);
    store.remove_account("example.org", "juliet").await.unwrap();
    assert!(read(Hash::Sha256).await.unwrap().is_none());
    // One connection served all of them.
    assert_eq!(inline_idle(&store), 1);
}

#[tokio::test]
async fn a_file_store_reads_roster_items_inline_and_sees_every_write() {
    use crate::{RosterItem, RosterStore, Subscription};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("weft.db"))
        .await
        .unwrap();
    store
        .create_account("example.org", "juliet", &both(1))
        .await
        .unwrap();
    let read = || store.roster_item("example.org", "juliet", "romeo@example.net");
    assert_eq!(read().await.unwrap(), None);
    let mut item = RosterItem::new("romeo@example.net");
    item.groups = vec!["a".into(), "b".into()];
    item.subscription = Subscription::Both;
    item.listed = true;
    store
        .put_roster_item("example.org", "juliet", &item, None)
        .await
        .unwrap();
    assert_eq!(read().await.unwrap().as_ref(), Some(&item));
    // The reads ran on an inline connection, now idle for reuse.
    assert_eq!(inline_idle(&store), 1);
    store
        .remove_roster_item("example.org", "juliet", "romeo@example.net")
        .await
        .unwrap();
    assert_eq!(read().await.unwrap(), None);
    assert_eq!(inline_idle(&store), 1);
}

#[tokio::test]
async fn an_inline_reader_that_cannot_open_leaves_the_read_to_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("weft.db"))
        .await
        .unwrap();
    // Read-only connections never create the file, so this one cannot open.
    store.inline = Some(std::sync::Arc::new(super::inline::InlineReaders::new(
        &dir.path().join("missing.db"),
    )));
    store
        .create_account("example.org", "juliet", &both(3))
        .await
        .unwrap();
    let got = store
        .scram_credentials("example.org", "juliet", Hash::Sha256)
        .await
        .unwrap()
        .unwrap();
    assert_same(&got, &creds(Hash::Sha256, 3));
    assert_eq!(inline_idle(&store), 0);
    assert!(!dir.path().join("missing.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_account_give_exactly_one_success() {
    let dir = tempfile::tempdir().unwrap();
    let file = SqliteStore::open(&dir.path().join("weft.db"))
        .await
        .unwrap();
    let memory = SqliteStore::open_in_memory().await.unwrap();
    for store in [file, memory] {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8u8)
            .map(|seed| {
                let store = store.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let result = store
                        .create_account("example.org", "juliet", &both(seed))
                        .await;
                    (seed, result)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (seed, Ok(())) => winners.push(seed),
                (_, Err(StorageError::AlreadyExists)) => {}
                (_, Err(other)) => panic!("unexpected error: {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        // The stored credentials are all the winner's.
        assert_eq!(credential_rows(&store, "example.org", "juliet").await, 2);
        for want in both(winners[0]) {
            let got = store
                .scram_credentials("example.org", "juliet", want.hash)
                .await
                .unwrap()
                .unwrap();
            assert_same(&got, &want);
        }
    }
}

/// The database holds SCRAM credentials: it, its WAL and shared-memory files and the
/// directory made for it are private to weft's user, whatever the umask.
#[cfg(unix)]
#[tokio::test]
async fn database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = data.join("weft.sqlite");
    let store = SqliteStore::open(&path).await.unwrap();
    store
        .create_account("example.org", "juliet", &[creds(Hash::Sha256, 1)])
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for file in ["weft.sqlite", "weft.sqlite-wal", "weft.sqlite-shm"] {
        let p = data.join(file);
        assert!(p.exists(), "{file} exists while the database is open");
        assert_eq!(mode(&p), 0o600, "{file}");
    }
    store.close().await;
}
