//! Tests of the message archive store (XEP-0313): batched appends, paging both ways, filters,
//! preferences, retention, the per-account cap and cascades.

use std::sync::Arc;

use super::{account_rows, file_and_memory};
use crate::sqlite::SqliteStore;
use crate::{
    AccountStore, ArchiveDefault, ArchiveEntry, ArchivePrefs, ArchiveQuery, ArchiveStore,
    ArchivedMessage,
};

const D: &str = "example.org";

fn entry(user: &str, id: i64, with: &str, outgoing: bool) -> ArchiveEntry {
    ArchiveEntry {
        domain: D.into(),
        username: user.into(),
        message: ArchivedMessage {
            id,
            with: with.into(),
            with_resource: Some("phone".into()),
            outgoing,
            stanza: format!("<message xmlns='jabber:client'><body>{id}</body></message>"),
        },
    }
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
        // The same ids again, and one for an account that does not exist.
        let again = vec![
            entry("juliet", 10, "x@example.org", false),
            entry("ghost", 5, "x@example.org", false),
        ];
        store.append_archive(Arc::new(again)).await.unwrap();
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
        assert_eq!(page.messages.len(), 10);
        assert_eq!(
            page.messages[0].with,
            "nurse@example.org".replace("nurse", "romeo")
        );
        assert_eq!(account_rows(&store, "archive", D, "juliet").await, 10);
        store.remove_account(D, "juliet").await.unwrap();
        assert_eq!(account_rows(&store, "archive", D, "juliet").await, 0);
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
        assert_eq!(account_rows(&store, "archive", D, "romeo").await, 0);
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
