//! Tests of the message archive store (XEP-0313): batched appends, paging both ways, filters,
//! preferences, retention, the per-account cap and cascades.

use std::sync::Arc;

use super::file_and_memory;
use crate::sqlite::SqliteStore;
use crate::{
    AccountStore, ArchiveDefault, ArchiveEntry, ArchivePrefs, ArchiveQuery, ArchiveStore,
    ArchivedMessage,
};

const D: &str = "example.org";

fn entry(user: &str, id: i64, with: &str, outgoing: bool) -> ArchiveEntry {
    let message = ArchivedMessage {
        id,
        with: with.into(),
        with_resource: Some("phone".into()),
        outgoing,
        stanza: format!("<message xmlns='jabber:client'><body>{id}</body></message>").into(),
    };
    ArchiveEntry::of_message(D, user, false, &message)
}

async fn juliet_with_ten(store: &SqliteStore) {
    for user in ["juliet", "romeo"] {
        store.create_account(D, user, &[]).await.unwrap();
    }
    // Ids 10, 20, …, 100; odd tens with romeo, even ones with nurse.
    let entries: Vec<_> = (1..=10)
        .map(|i| {
            let with = if i % 2 == 1 {
                "romeo@example.org"
            } else {
                "nurse@example.org"
            };
            entry("juliet", i * 10, with, i % 3 == 0)
        })
        .collect();
    store.append_archive(Arc::new(entries)).await.unwrap();
}

/// Messages stored for the account, over all its chunks.
async fn archived(store: &SqliteStore, username: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE(SUM(count), 0) FROM archive_chunks WHERE domain = $1 AND username = $2",
    )
    .bind(D)
    .bind(username)
    .fetch_one(&store.pool)
    .await
    .unwrap()
}

fn ids(page: &crate::ArchivePage) -> Vec<i64> {
    page.messages.iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn pages_forward_and_backward_with_complete() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        juliet_with_ten(&store).await;
        let q = |after, before, from_end| ArchiveQuery {
            after,
            before,
            from_end,
            max: 4,
            ..Default::default()
        };
        let first = store
            .query_archive(D, "juliet", &q(None, None, false))
            .await
            .unwrap();
        assert_eq!(ids(&first), [10, 20, 30, 40]);
        assert!(!first.complete);
        let next = store
            .query_archive(D, "juliet", &q(Some(40), None, false))
            .await
            .unwrap();
        assert_eq!(ids(&next), [50, 60, 70, 80]);
        let last = store
            .query_archive(D, "juliet", &q(Some(80), None, false))
            .await
            .unwrap();
        assert_eq!(ids(&last), [90, 100]);
        assert!(last.complete);
        // Backwards: the newest page first, each page in archive order.
        let newest = store
            .query_archive(D, "juliet", &q(None, None, true))
            .await
            .unwrap();
        assert_eq!(ids(&newest), [70, 80, 90, 100]);
        assert!(!newest.complete);
        let older = store
            .query_archive(D, "juliet", &q(None, Some(70), true))
            .await
            .unwrap();
        assert_eq!(ids(&older), [30, 40, 50, 60]);
        let oldest = store
            .query_archive(D, "juliet", &q(None, Some(30), true))
            .await
            .unwrap();
        assert_eq!(ids(&oldest), [10, 20]);
        assert!(oldest.complete);
        // A page that ends exactly at the last message is complete.
        let exact = ArchiveQuery {
            after: Some(60),
            max: 4,
            ..Default::default()
        };
        assert!(
            store
                .query_archive(D, "juliet", &exact)
                .await
                .unwrap()
                .complete
        );
        // Other accounts see nothing of it.
        let romeo = store
            .query_archive(D, "romeo", &q(None, None, false))
            .await
            .unwrap();
        assert!(romeo.messages.is_empty() && romeo.complete);
    }
}

#[tokio::test]
async fn filters_by_with_time_and_ids() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        juliet_with_ten(&store).await;
        let all = |q: ArchiveQuery| ArchiveQuery { max: 100, ..q };
        let with_romeo = all(ArchiveQuery {
            with: Some(("romeo@example.org".into(), None)),
            ..Default::default()
        });
        let page = store.query_archive(D, "juliet", &with_romeo).await.unwrap();
        assert_eq!(ids(&page), [10, 30, 50, 70, 90]);
        assert_eq!(page.messages[1].with_resource.as_deref(), Some("phone"));
        assert!(page.messages[1].outgoing && !page.messages[0].outgoing);
        let other_resource = all(ArchiveQuery {
            with: Some(("romeo@example.org".into(), Some("laptop".into()))),
            ..Default::default()
        });
        assert!(store
            .query_archive(D, "juliet", &other_resource)
            .await
            .unwrap()
            .messages
            .is_empty());
        let window = all(ArchiveQuery {
            start: Some(30),
            end: Some(60),
            ..Default::default()
        });
        assert_eq!(
            ids(&store.query_archive(D, "juliet", &window).await.unwrap()),
            [30, 40, 50, 60]
        );
        let chosen = all(ArchiveQuery {
            ids: Some(vec![20, 90, 95]),
            ..Default::default()
        });
        assert_eq!(
            ids(&store.query_archive(D, "juliet", &chosen).await.unwrap()),
            [20, 90]
        );
        assert!(store.archive_has(D, "juliet", 40).await.unwrap());
        assert!(!store.archive_has(D, "juliet", 45).await.unwrap());
        assert!(!store.archive_has(D, "romeo", 40).await.unwrap());
        let (first, last) = store.archive_bounds(D, "juliet").await.unwrap().unwrap();
        assert_eq!((first.id, last.id), (10, 100));
        assert_eq!(store.archive_bounds(D, "romeo").await.unwrap(), None);
        assert_eq!(store.archive_last_id().await.unwrap(), 100);
    }
}

#[tokio::test]
async fn retried_batches_and_deleted_accounts_write_nothing_twice() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        juliet_with_ten(&store).await;
        // A batch given again (a retry after a commit that reported failure), with one entry
        // for an account that does not exist.
        let batch = Arc::new(vec![
            entry("juliet", 110, "x@example.org", false),
            entry("juliet", 120, "x@example.org", true),
            entry("ghost", 5, "x@example.org", false),
        ]);
        store.append_archive(batch.clone()).await.unwrap();
        store.append_archive(batch).await.unwrap();
        let page = store
            .query_archive(
                D,
                "juliet",
                &ArchiveQuery {
                    max: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(page.messages.len(), 12);
        assert_eq!(page.messages[0].with, "romeo@example.org");
        assert_eq!(archived(&store, "juliet").await, 12);
        assert_eq!(archived(&store, "ghost").await, 0);
        store.remove_account(D, "juliet").await.unwrap();
        assert_eq!(archived(&store, "juliet").await, 0);
    }
}

/// Many messages with several parties, in batches whose chunks interleave in id order:
/// every page, both ways, with and without `with`, is what one sorted list says.
#[tokio::test]
async fn pages_over_many_interleaved_chunks_match_a_sorted_list() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        store.create_account(D, "juliet", &[]).await.unwrap();
        let parties = [
            "romeo@example.org",
            "nurse@example.org",
            "tybalt@example.org",
        ];
        let mut all = Vec::new();
        for batch in 0..4 {
            let entries: Vec<_> = (0..150)
                .map(|i| {
                    let id = 1_000_000 + batch * 10_000 + i * 7;
                    entry(
                        "juliet",
                        id,
                        parties[(i % 3 + i / 40) as usize % 3],
                        i % 2 == 0,
                    )
                })
                .collect();
            all.extend(entries.iter().map(|e| e.message()));
            store.append_archive(Arc::new(entries)).await.unwrap();
        }
        assert_eq!(archived(&store, "juliet").await, 600);
        for with in [None, Some("nurse@example.org")] {
            let want: Vec<i64> = all
                .iter()
                .filter(|m| with.is_none_or(|w| m.with == w))
                .map(|m| m.id)
                .collect();
            for from_end in [false, true] {
                // Page through everything, 25 at a time.
                let mut got = Vec::new();
                let mut anchor = None;
                loop {
                    let q = ArchiveQuery {
                        with: with.map(|w| (w.to_string(), None)),
                        after: anchor.filter(|_| !from_end),
                        before: anchor.filter(|_| from_end),
                        max: 25,
                        from_end,
                        ..Default::default()
                    };
                    let page = store.query_archive(D, "juliet", &q).await.unwrap();
                    let page_ids = ids(&page);
                    assert!(page_ids.windows(2).all(|w| w[0] < w[1]));
                    if from_end {
                        anchor = page_ids.first().copied();
                        got.splice(0..0, page_ids);
                    } else {
                        anchor = page_ids.last().copied();
                        got.extend(page_ids);
                    }
                    if page.complete {
                        break;
                    }
                }
                assert_eq!(got, want, "with {with:?}, from_end {from_end}");
            }
        }
        // Single ids, far apart, and one that is not there.
        let q = ArchiveQuery {
            ids: Some(vec![all[0].id, all[599].id, all[300].id + 1]),
            max: 10,
            ..Default::default()
        };
        let page = store.query_archive(D, "juliet", &q).await.unwrap();
        assert_eq!(ids(&page), [all[0].id, all[599].id]);
        assert!(store.archive_has(D, "juliet", all[451].id).await.unwrap());
        assert!(!store
            .archive_has(D, "juliet", all[451].id + 1)
            .await
            .unwrap());
    }
}

#[tokio::test]
async fn retention_and_per_account_cap() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        juliet_with_ten(&store).await;
        store
            .append_archive(Arc::new(vec![entry(
                "romeo",
                15,
                "juliet@example.org",
                true,
            )]))
            .await
            .unwrap();
        assert_eq!(store.expire_archive(31).await.unwrap(), 4); // 10, 15, 20, 30
        assert_eq!(archived(&store, "romeo").await, 0);
        assert_eq!(store.trim_archives(3).await.unwrap(), 4); // 40..70 go, 80..100 stay
        let page = store
            .query_archive(
                D,
                "juliet",
                &ArchiveQuery {
                    max: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(ids(&page), [80, 90, 100]);
        assert_eq!(store.trim_archives(3).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn preferences_round_trip() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        juliet_with_ten(&store).await;
        assert_eq!(store.archive_prefs(D, "juliet").await.unwrap(), None);
        let prefs = ArchivePrefs {
            default: ArchiveDefault::Roster,
            always: vec!["romeo@example.org".into()],
            never: vec!["tybalt@example.org".into(), "paris@example.org".into()],
        };
        store.set_archive_prefs(D, "juliet", &prefs).await.unwrap();
        assert_eq!(
            store.archive_prefs(D, "juliet").await.unwrap(),
            Some(prefs.clone())
        );
        let never = ArchivePrefs {
            default: ArchiveDefault::Never,
            always: vec![],
            never: vec![],
        };
        store.set_archive_prefs(D, "juliet", &never).await.unwrap();
        assert_eq!(
            store.all_archive_prefs().await.unwrap(),
            vec![(D.to_string(), "juliet".to_string(), never)]
        );
        store.remove_account(D, "juliet").await.unwrap();
        assert!(store.all_archive_prefs().await.unwrap().is_empty());
    }
}

/// A database of schema 7 keeps its archive: the rows of the `archive` table become chunks,
/// read back alike, and the table goes.
#[tokio::test]
async fn rows_of_schema_5_move_into_chunks() {
    use crate::sqlite::migrate;
    use sqlx::sqlite::SqliteConnectOptions;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.db");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .foreign_keys(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    migrate::run_known(&pool, &migrate::MIGRATIONS[..7])
        .await
        .unwrap();
    let old = SqliteStore {
        pool,
        inline: None,
        archive_writer: None,
    };
    old.create_account(D, "juliet", &[]).await.unwrap();
    old.create_account(D, "romeo", &[]).await.unwrap();
    let mut want = Vec::new();
    // More than one batch of the move (8192), two accounts, two parties.
    for i in 0..9000i64 {
        let (user, with) = if i % 5 == 0 {
            ("romeo", "juliet@example.org")
        } else {
            (
                "juliet",
                ["romeo@example.org", "nurse@example.org"][(i % 2) as usize],
            )
        };
        let e = entry(user, 1_000 + i * 3, with, i % 4 == 0);
        sqlx::query(
            "INSERT INTO archive (domain, username, id, with_jid, with_resource, outgoing, stanza) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.domain())
        .bind(e.username())
        .bind(e.id)
        .bind(e.with())
        .bind(e.with_resource())
        .bind(e.outgoing)
        .bind(&*e.stanza)
        .execute(&old.pool)
        .await
        .unwrap();
        if user == "juliet" {
            want.push(e.message());
        }
    }
    old.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    let page = store
        .query_archive(
            D,
            "juliet",
            &ArchiveQuery {
                max: 10_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(page.complete);
    assert_eq!(page.messages, want);
    assert_eq!(archived(&store, "romeo").await, 1800);
    assert_eq!(store.archive_last_id().await.unwrap(), 1_000 + 8999 * 3);
    let left: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name = 'archive'")
            .fetch_optional(&store.pool)
            .await
            .unwrap();
    assert_eq!(left, None);
}

/// A room's archive (XEP-0045): no account behind it, written, read and removed as a whole.
#[tokio::test]
async fn room_archives_need_no_account() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        let mut e = entry("coven", 10, "coven@example.org", false);
        e.of_room = true;
        let mut ghost = entry("ghost", 11, "x@example.org", false);
        ghost.of_room = false;
        store
            .append_archive(Arc::new(vec![e, ghost]))
            .await
            .unwrap();
        assert_eq!(archived(&store, "coven").await, 1);
        assert_eq!(archived(&store, "ghost").await, 0);
        assert_eq!(store.remove_archive(D, "coven").await.unwrap(), 1);
        assert_eq!(archived(&store, "coven").await, 0);
    }
}
