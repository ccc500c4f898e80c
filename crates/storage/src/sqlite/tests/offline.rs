//! Tests of the offline message store (XEP-0160): order, removal, the quota, cascades.

use super::{account_rows, file_and_memory};
use crate::sqlite::migrate::unix_now;
use crate::sqlite::SqliteStore;
use crate::{AccountStore, OfflineStore, Storage, StorageError};

const D: &str = "example.org";

async fn with_accounts(store: &SqliteStore) {
    for user in ["juliet", "romeo"] {
        store.create_account(D, user, &[]).await.unwrap();
    }
}

fn stanza(i: usize) -> String {
    format!("<message to='juliet@example.org' id='m{i}'><body>«{i}» 'n' \"q\"</body></message>")
}

async fn stanzas(store: &SqliteStore, user: &str) -> Vec<String> {
    store
        .offline_messages(D, user)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.stanza)
        .collect()
}

#[tokio::test]
async fn messages_come_back_in_arrival_order() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        with_accounts(&store).await;
        assert!(store
            .offline_messages(D, "juliet")
            .await
            .unwrap()
            .is_empty());
        let before = unix_now();
        let mut ids = Vec::new();
        // Many within one second: the order is still exact. Interleaved with another
        // account's messages.
        for i in 0..20 {
            ids.push(
                store
                    .store_offline(D, "juliet", &stanza(i), None)
                    .await
                    .unwrap(),
            );
            store
                .store_offline(D, "romeo", &stanza(100 + i), None)
                .await
                .unwrap();
        }
        store.store_offline(D, "juliet", "", None).await.unwrap();
        let after = unix_now();

        let got = store.offline_messages(D, "juliet").await.unwrap();
        assert_eq!(got.len(), 21);
        let mut want: Vec<String> = (0..20).map(stanza).collect();
        want.push(String::new());
        assert_eq!(
            got.iter().map(|m| m.stanza.clone()).collect::<Vec<_>>(),
            want
        );
        assert_eq!(got[..20].iter().map(|m| m.id).collect::<Vec<_>>(), ids);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert!(got.iter().all(|m| (before..=after).contains(&m.stored_at)));
        // Reading does not remove.
        assert_eq!(store.count_offline(D, "juliet").await.unwrap(), 21);
        assert_eq!(store.count_offline(D, "romeo").await.unwrap(), 20);
        assert_eq!(
            stanzas(&store, "romeo").await,
            (100..120).map(stanza).collect::<Vec<_>>()
        );
        assert_eq!(store.count_offline(D, "nobody").await.unwrap(), 0);
    }
}

#[tokio::test]
async fn removal_takes_only_the_accounts_given_ids() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        with_accounts(&store).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                store
                    .store_offline(D, "juliet", &stanza(i), None)
                    .await
                    .unwrap(),
            );
        }
        let romeos = store
            .store_offline(D, "romeo", &stanza(9), None)
            .await
            .unwrap();

        assert_eq!(store.remove_offline(D, "juliet", &[]).await.unwrap(), 0);
        // Another account's id is not removed through juliet, nor juliet's through romeo.
        assert_eq!(
            store.remove_offline(D, "juliet", &[romeos]).await.unwrap(),
            0
        );
        assert_eq!(store.remove_offline(D, "romeo", &ids).await.unwrap(), 0);
        // A repeated id counts once; an unknown one is ignored.
        assert_eq!(
            store
                .remove_offline(D, "juliet", &[ids[1], ids[3], ids[1], romeos + 1000])
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            stanzas(&store, "juliet").await,
            vec![stanza(0), stanza(2), stanza(4)]
        );
        assert_eq!(store.remove_offline(D, "juliet", &ids).await.unwrap(), 3);
        assert_eq!(store.count_offline(D, "juliet").await.unwrap(), 0);
        assert_eq!(store.count_offline(D, "romeo").await.unwrap(), 1);

        // Ids are not reused after the newest message was removed.
        let newer = store
            .store_offline(D, "juliet", &stanza(5), None)
            .await
            .unwrap();
        assert!(newer > ids[4] && newer > romeos, "{newer} after {ids:?}");
    }
}

#[tokio::test]
async fn removing_more_ids_than_one_statement_holds() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    with_accounts(&store).await;
    let mut ids = Vec::new();
    for i in 0..1200 {
        ids.push(
            store
                .store_offline(D, "juliet", &stanza(i), None)
                .await
                .unwrap(),
        );
    }
    let kept = ids.remove(700);
    assert_eq!(store.remove_offline(D, "juliet", &ids).await.unwrap(), 1199);
    assert_eq!(stanzas(&store, "juliet").await, vec![stanza(700)]);
    assert_eq!(
        store.offline_messages(D, "juliet").await.unwrap()[0].id,
        kept
    );
}

#[tokio::test]
async fn the_quota_refuses_messages_beyond_it() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        with_accounts(&store).await;
        let max = Some(3);
        for i in 0..3 {
            store
                .store_offline(D, "juliet", &stanza(i), max)
                .await
                .unwrap();
        }
        let err = store
            .store_offline(D, "juliet", &stanza(3), max)
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::LimitReached), "{err:?}");
        assert_eq!(
            stanzas(&store, "juliet").await,
            (0..3).map(stanza).collect::<Vec<_>>()
        );
        let err = store
            .store_offline(D, "juliet", &stanza(3), Some(2))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::LimitReached), "{err:?}");
        let err = store
            .store_offline(D, "romeo", &stanza(3), Some(0))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::LimitReached), "{err:?}");
        // Per account, only when given, and room again after a delivery.
        store
            .store_offline(D, "romeo", &stanza(3), max)
            .await
            .unwrap();
        store
            .store_offline(D, "juliet", &stanza(3), None)
            .await
            .unwrap();
        let first = store.offline_messages(D, "juliet").await.unwrap()[..2]
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>();
        store.remove_offline(D, "juliet", &first).await.unwrap();
        store
            .store_offline(D, "juliet", &stanza(4), max)
            .await
            .unwrap();
        assert_eq!(store.count_offline(D, "juliet").await.unwrap(), 3);
    }
}

/// `tasks` stores race for the account's messages under quota `max`, `held` being stored
/// already; returns how many succeeded. Every failure must be `LimitReached`.
async fn race(store: &SqliteStore, user: &str, held: usize, max: usize, tasks: usize) -> usize {
    for i in 0..held {
        store
            .store_offline(D, user, &stanza(i), None)
            .await
            .unwrap();
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            let user = user.to_string();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .store_offline(D, &user, &stanza(1000 + i), Some(max))
                    .await
            })
        })
        .collect();
    let mut stored = 0;
    for handle in handles {
        match handle.await.unwrap() {
            Ok(_) => stored += 1,
            Err(StorageError::LimitReached) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stores_never_exceed_the_quota() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        with_accounts(&store).await;
        // At n - 1, exactly one of the racing stores gets the last place.
        assert_eq!(race(&store, "juliet", 4, 5, 8).await, 1);
        assert_eq!(store.count_offline(D, "juliet").await.unwrap(), 5);
        // From empty, exactly n of them.
        assert_eq!(race(&store, "romeo", 0, 3, 12).await, 3);
        assert_eq!(store.count_offline(D, "romeo").await.unwrap(), 3);
    }
}

#[tokio::test]
async fn removing_the_account_removes_its_messages() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        with_accounts(&store).await;
        for user in ["juliet", "romeo"] {
            store
                .store_offline(D, user, &stanza(1), None)
                .await
                .unwrap();
        }
        assert!(store.remove_account(D, "juliet").await.unwrap());
        assert_eq!(
            account_rows(&store, "offline_messages", D, "juliet").await,
            0
        );
        assert_eq!(store.count_offline(D, "romeo").await.unwrap(), 1);
        store.create_account(D, "juliet", &[]).await.unwrap();
        assert!(store
            .offline_messages(D, "juliet")
            .await
            .unwrap()
            .is_empty());
    }
}

#[tokio::test]
async fn storing_for_a_missing_account_fails_without_storing() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        let err = store
            .store_offline(D, "ghost", &stanza(1), None)
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Backend(_)), "{err:?}");
        assert_eq!(
            account_rows(&store, "offline_messages", D, "ghost").await,
            0
        );
    }
}

#[tokio::test]
async fn the_bundle_holds_the_offline_store() {
    let storage = Storage::in_memory().await.unwrap();
    storage
        .accounts
        .create_account(D, "juliet", &[])
        .await
        .unwrap();
    let id = storage
        .offline
        .store_offline(D, "juliet", &stanza(1), Some(1))
        .await
        .unwrap();
    let got = storage.offline.offline_messages(D, "juliet").await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].id, got[0].stanza.as_str()),
        (id, stanza(1).as_str())
    );
}
