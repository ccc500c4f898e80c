//! Tests of the private XML store (XEP-0049, XEP-0054): round trips, replacement, cascades.

use super::{account_rows, file_and_memory};
use crate::sqlite::SqliteStore;
use crate::{AccountStore, PrivateXmlStore, Storage, StorageError};

const D: &str = "example.org";
const BOOKMARKS: &str = "jabber:iq:private storage:bookmarks";
const VCARD: &str = "vcard-temp";

async fn with_accounts(store: &SqliteStore) {
    for user in ["juliet", "romeo"] {
        store.create_account(D, user, &[]).await.unwrap();
    }
}

#[tokio::test]
async fn documents_round_trip_per_account_and_key() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        with_accounts(&store).await;
        assert_eq!(store.get_private(D, "juliet", VCARD).await.unwrap(), None);

        let vcard = "<vCard xmlns='vcard-temp'><FN>Juliet «Capulet» &amp; 'co'</FN></vCard>";
        let marks = "<storage xmlns='storage:bookmarks'/>";
        store.set_private(D, "juliet", VCARD, vcard).await.unwrap();
        store
            .set_private(D, "juliet", BOOKMARKS, marks)
            .await
            .unwrap();
        assert_eq!(
            store
                .get_private(D, "juliet", VCARD)
                .await
                .unwrap()
                .as_deref(),
            Some(vcard)
        );
        assert_eq!(
            store
                .get_private(D, "juliet", BOOKMARKS)
                .await
                .unwrap()
                .as_deref(),
            Some(marks)
        );
        // Keys and accounts are separate.
        assert_eq!(store.get_private(D, "romeo", VCARD).await.unwrap(), None);
        assert_eq!(
            store
                .get_private(D, "juliet", "jabber:iq:private storage:rosternotes")
                .await
                .unwrap(),
            None
        );

        // Replacing, also by an empty document, which is kept as such.
        store.set_private(D, "juliet", VCARD, "").await.unwrap();
        assert_eq!(
            store
                .get_private(D, "juliet", VCARD)
                .await
                .unwrap()
                .as_deref(),
            Some("")
        );
        assert_eq!(account_rows(&store, "private_xml", D, "juliet").await, 2);

        assert!(store.remove_private(D, "juliet", VCARD).await.unwrap());
        assert!(!store.remove_private(D, "juliet", VCARD).await.unwrap());
        assert!(!store.remove_private(D, "romeo", BOOKMARKS).await.unwrap());
        assert_eq!(store.get_private(D, "juliet", VCARD).await.unwrap(), None);
        assert_eq!(
            store
                .get_private(D, "juliet", BOOKMARKS)
                .await
                .unwrap()
                .as_deref(),
            Some(marks)
        );
    }
}

#[tokio::test]
async fn removing_the_account_removes_its_documents() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        with_accounts(&store).await;
        for user in ["juliet", "romeo"] {
            store.set_private(D, user, VCARD, "<vCard/>").await.unwrap();
            store.set_private(D, user, BOOKMARKS, "<x/>").await.unwrap();
        }
        assert!(store.remove_account(D, "juliet").await.unwrap());
        assert_eq!(account_rows(&store, "private_xml", D, "juliet").await, 0);
        assert_eq!(account_rows(&store, "private_xml", D, "romeo").await, 2);
        store.create_account(D, "juliet", &[]).await.unwrap();
        assert_eq!(store.get_private(D, "juliet", VCARD).await.unwrap(), None);
    }
}

#[tokio::test]
async fn setting_for_a_missing_account_fails_without_writing() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        let err = store
            .set_private(D, "ghost", VCARD, "<vCard/>")
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Backend(_)), "{err:?}");
        assert_eq!(account_rows(&store, "private_xml", D, "ghost").await, 0);
    }
}

#[tokio::test]
async fn the_bundle_holds_the_private_xml_store() {
    let storage = Storage::in_memory().await.unwrap();
    storage
        .accounts
        .create_account(D, "juliet", &[])
        .await
        .unwrap();
    storage
        .private_xml
        .set_private(D, "juliet", VCARD, "<vCard/>")
        .await
        .unwrap();
    assert_eq!(
        storage
            .private_xml
            .get_private(D, "juliet", VCARD)
            .await
            .unwrap()
            .as_deref(),
        Some("<vCard/>")
    );
}
