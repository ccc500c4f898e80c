//! Tests of the roster store (RFC 6121 §2): round trips, versions, the size limit, cascades.

use super::{account_rows, file_and_memory};
use crate::sqlite::SqliteStore;
use crate::{AccountStore, RosterItem, RosterStore, Storage, StorageError, Subscription};

const D: &str = "example.org";

/// A store with the accounts juliet and romeo.
async fn with_accounts(store: &SqliteStore) {
    for user in ["juliet", "romeo"] {
        store.create_account(D, user, &[]).await.unwrap();
    }
}

fn item(contact: &str, groups: &[&str]) -> RosterItem {
    RosterItem {
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..RosterItem::new(contact)
    }
}

#[test]
fn subscription_strings_round_trip() {
    for s in [
        Subscription::None,
        Subscription::To,
        Subscription::From,
        Subscription::Both,
    ] {
        assert_eq!(Subscription::parse(s.as_str()), Some(s));
    }
    assert_eq!(Subscription::default(), Subscription::None);
    assert_eq!(Subscription::parse("remove"), None);
    assert_eq!(Subscription::parse("Both"), None);
}

#[tokio::test]
async fn items_round_trip_sorted_with_sorted_unique_groups() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        with_accounts(&store).await;
        assert_eq!(store.roster(D, "juliet").await.unwrap(), (0, vec![]));
        assert_eq!(store.roster_version(D, "juliet").await.unwrap(), 0);

        let full = RosterItem {
            contact: "nurse@example.com".into(),
            name: Some("Nurse «Angelica» 'n' \"co\"".into()),
            groups: vec![
                "Servants".into(),
                "Family, extended".into(),
                "Servants".into(),
            ],
            subscription: Subscription::Both,
            pending_out: true,
            pending_in: true,
            approved: true,
            listed: true,
            pending_in_stanza: Some(
                "<presence from='nurse@example.com' type='subscribe'><status>é</status></presence>"
                    .into(),
            ),
        };
        let bare = RosterItem::new("benvolio@example.net");
        let to = RosterItem {
            subscription: Subscription::To,
            ..item("mercutio@example.com", &["Friends"])
        };
        let from = RosterItem {
            subscription: Subscription::From,
            ..item("apothecary@example.com", &[])
        };
        assert_eq!(
            store
                .put_roster_item(D, "juliet", &full, None)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .put_roster_item(D, "juliet", &bare, None)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store.put_roster_item(D, "juliet", &to, None).await.unwrap(),
            3
        );
        assert_eq!(
            store
                .put_roster_item(D, "juliet", &from, None)
                .await
                .unwrap(),
            4
        );

        let mut full_stored = full.clone();
        full_stored.groups = vec!["Family, extended".into(), "Servants".into()];
        let (version, items) = store.roster(D, "juliet").await.unwrap();
        assert_eq!(version, 4);
        assert_eq!(
            items,
            vec![from.clone(), bare.clone(), to.clone(), full_stored.clone()]
        );
        assert_eq!(
            store
                .roster_item(D, "juliet", "nurse@example.com")
                .await
                .unwrap(),
            Some(full_stored)
        );
        assert_eq!(
            store
                .roster_item(D, "juliet", "benvolio@example.net")
                .await
                .unwrap(),
            Some(bare)
        );
        assert_eq!(
            store
                .roster_item(D, "juliet", "tybalt@example.com")
                .await
                .unwrap(),
            None
        );
        // Another account's roster is its own.
        assert_eq!(store.roster(D, "romeo").await.unwrap(), (0, vec![]));
        assert_eq!(
            store
                .roster_item(D, "romeo", "nurse@example.com")
                .await
                .unwrap(),
            None
        );

        // Replacing replaces every field, groups included.
        let replaced = RosterItem {
            name: None,
            subscription: Subscription::From,
            ..item("nurse@example.com", &["Household"])
        };
        assert_eq!(
            store
                .put_roster_item(D, "juliet", &replaced, None)
                .await
                .unwrap(),
            5
        );
        assert_eq!(
            store
                .roster_item(D, "juliet", "nurse@example.com")
                .await
                .unwrap(),
            Some(replaced)
        );
        assert_eq!(store.roster(D, "juliet").await.unwrap().1.len(), 4);
        assert_eq!(account_rows(&store, "roster_groups", D, "juliet").await, 2);
    }
}

#[tokio::test]
async fn a_large_roster_loads_whole() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        with_accounts(&store).await;
        let mut want = Vec::new();
        for i in 0..200 {
            let it = RosterItem {
                name: (i % 3 == 0).then(|| format!("Contact {i}")),
                subscription: Subscription::Both,
                ..item(
                    &format!("c{i:03}@example.com"),
                    match i % 4 {
                        0 => &[],
                        1 => &["A"],
                        _ => &["A", "B", "C"],
                    },
                )
            };
            store.put_roster_item(D, "juliet", &it, None).await.unwrap();
            want.push(it);
        }
        assert_eq!(store.roster(D, "juliet").await.unwrap(), (200, want));
    }
}

#[tokio::test]
async fn versions_rise_with_every_change_and_only_then() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        with_accounts(&store).await;
        let a = item("a@example.com", &["G"]);
        let b = item("b@example.com", &[]);
        assert_eq!(
            store.put_roster_item(D, "juliet", &a, None).await.unwrap(),
            1
        );
        assert_eq!(
            store.put_roster_item(D, "juliet", &b, None).await.unwrap(),
            2
        );
        // Putting an identical item is still a change of the roster.
        assert_eq!(
            store.put_roster_item(D, "juliet", &a, None).await.unwrap(),
            3
        );
        assert_eq!(
            store
                .remove_roster_item(D, "juliet", "a@example.com")
                .await
                .unwrap(),
            Some(4)
        );
        assert_eq!(account_rows(&store, "roster_groups", D, "juliet").await, 0);
        // Removing what is not there changes nothing.
        assert_eq!(
            store
                .remove_roster_item(D, "juliet", "a@example.com")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .remove_roster_item(D, "romeo", "b@example.com")
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.roster_version(D, "juliet").await.unwrap(), 4);
        assert_eq!(store.roster_version(D, "romeo").await.unwrap(), 0);
        assert_eq!(
            store.put_roster_item(D, "juliet", &a, None).await.unwrap(),
            5
        );
        // Versions are per account.
        assert_eq!(
            store.put_roster_item(D, "romeo", &a, None).await.unwrap(),
            1
        );
        assert_eq!(store.roster(D, "juliet").await.unwrap(), (5, vec![a, b]));
    }
}

#[tokio::test]
async fn the_size_limit_refuses_new_contacts_only() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        with_accounts(&store).await;
        let max = Some(2);
        for contact in ["a@example.com", "b@example.com"] {
            store
                .put_roster_item(D, "juliet", &item(contact, &["G"]), max)
                .await
                .unwrap();
        }
        let err = store
            .put_roster_item(D, "juliet", &item("c@example.com", &["G"]), max)
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::LimitReached), "{err:?}");
        assert_eq!(store.roster_version(D, "juliet").await.unwrap(), 2);
        assert_eq!(
            store
                .roster_item(D, "juliet", "c@example.com")
                .await
                .unwrap(),
            None
        );
        assert_eq!(account_rows(&store, "roster_groups", D, "juliet").await, 2);

        // Replacing an item at the limit (and beyond it) is allowed.
        let renamed = RosterItem {
            name: Some("A".into()),
            ..item("a@example.com", &[])
        };
        assert_eq!(
            store
                .put_roster_item(D, "juliet", &renamed, max)
                .await
                .unwrap(),
            3
        );
        assert_eq!(
            store
                .put_roster_item(D, "juliet", &renamed, Some(1))
                .await
                .unwrap(),
            4
        );
        // The limit is per account and only applies when given.
        store
            .put_roster_item(D, "romeo", &item("c@example.com", &[]), max)
            .await
            .unwrap();
        assert_eq!(
            store
                .put_roster_item(D, "juliet", &item("c@example.com", &[]), None)
                .await
                .unwrap(),
            5
        );
        let err = store
            .put_roster_item(D, "juliet", &item("d@example.com", &[]), Some(0))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::LimitReached), "{err:?}");
        // Below the limit again after a removal.
        store
            .remove_roster_item(D, "juliet", "b@example.com")
            .await
            .unwrap();
        store
            .remove_roster_item(D, "juliet", "c@example.com")
            .await
            .unwrap();
        assert_eq!(
            store
                .put_roster_item(D, "juliet", &item("d@example.com", &[]), max)
                .await
                .unwrap(),
            8
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_never_share_a_version() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        with_accounts(&store).await;
        // Half the tasks remove items put here, half put new ones.
        for i in 0..8 {
            let contact = format!("old{i}@example.com");
            store
                .put_roster_item(D, "juliet", &item(&contact, &["G"]), None)
                .await
                .unwrap();
        }
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    if i % 2 == 0 {
                        let contact = format!("new{i}@example.com");
                        store
                            .put_roster_item(D, "juliet", &item(&contact, &["H"]), None)
                            .await
                            .unwrap()
                    } else {
                        let contact = format!("old{}@example.com", i / 2);
                        store
                            .remove_roster_item(D, "juliet", &contact)
                            .await
                            .unwrap()
                            .unwrap()
                    }
                })
            })
            .collect();
        let mut versions = Vec::new();
        for task in tasks {
            versions.push(task.await.unwrap());
        }
        versions.sort_unstable();
        assert_eq!(versions, (9..=24).collect::<Vec<u64>>());
        let (version, items) = store.roster(D, "juliet").await.unwrap();
        assert_eq!(version, 24);
        assert_eq!(items.len(), 8);
        assert!(items.iter().all(|i| i.contact.starts_with("new")));
    }
}

#[tokio::test]
async fn removing_the_account_removes_its_roster() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        with_accounts(&store).await;
        for user in ["juliet", "romeo"] {
            store
                .put_roster_item(D, user, &item("nurse@example.com", &["A", "B"]), None)
                .await
                .unwrap();
        }
        assert!(store.remove_account(D, "juliet").await.unwrap());
        for table in ["roster_items", "roster_groups", "roster_versions"] {
            assert_eq!(account_rows(&store, table, D, "juliet").await, 0, "{table}");
        }
        assert_eq!(store.roster(D, "juliet").await.unwrap(), (0, vec![]));
        // The neighbour is untouched.
        assert_eq!(store.roster(D, "romeo").await.unwrap().1.len(), 1);
        assert_eq!(account_rows(&store, "roster_groups", D, "romeo").await, 2);
        // A re-created account starts with an empty roster at version 0.
        store.create_account(D, "juliet", &[]).await.unwrap();
        assert_eq!(store.roster(D, "juliet").await.unwrap(), (0, vec![]));
    }
}

#[tokio::test]
async fn writing_for_a_missing_account_fails_without_writing() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        let err = store
            .put_roster_item(D, "ghost", &item("a@example.com", &["G"]), None)
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Backend(_)), "{err:?}");
        for table in ["roster_items", "roster_groups", "roster_versions"] {
            assert_eq!(account_rows(&store, table, D, "ghost").await, 0, "{table}");
        }
        assert_eq!(
            store
                .remove_roster_item(D, "ghost", "a@example.com")
                .await
                .unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn the_bundle_holds_the_roster_store() {
    let storage = Storage::in_memory().await.unwrap();
    storage
        .accounts
        .create_account(D, "juliet", &[])
        .await
        .unwrap();
    let a = item("a@example.com", &[]);
    assert_eq!(
        storage
            .roster
            .put_roster_item(D, "juliet", &a, None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        storage.roster.roster(D, "juliet").await.unwrap(),
        (1, vec![a])
    );
}
