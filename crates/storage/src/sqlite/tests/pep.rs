//! Tests of the PEP store (XEP-0163): nodes, publish order, trimming, retraction, cascades.

use super::file_and_memory;
use crate::{AccountStore, PepItem, PepStore, StorageError};

const D: &str = "example.org";

fn item(id: &str, payload: &str) -> PepItem {
    PepItem {
        id: id.into(),
        publisher: "juliet@example.org/balcony".into(),
        payload: payload.into(),
    }
}

fn ids(items: &[PepItem]) -> Vec<&str> {
    items.iter().map(|i| i.id.as_str()).collect()
}

#[tokio::test]
async fn nodes_items_order_and_trimming() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        store.create_account(D, "juliet", &[]).await.unwrap();
        store.create_account(D, "romeo", &[]).await.unwrap();
        assert_eq!(store.pep_node(D, "juliet", "n").await.unwrap(), None);
        store.create_pep_node(D, "juliet", "n", "c1").await.unwrap();
        assert!(matches!(
            store.create_pep_node(D, "juliet", "n", "c2").await,
            Err(StorageError::AlreadyExists)
        ));
        store.create_pep_node(D, "juliet", "m", "cm").await.unwrap();
        assert_eq!(
            store.pep_node(D, "juliet", "n").await.unwrap().as_deref(),
            Some("c1")
        );

        for id in ["a", "b", "c"] {
            store
                .publish_pep_item(D, "juliet", "n", &item(id, &format!("<x>{id}</x>")), 10)
                .await
                .unwrap();
        }
        store
            .publish_pep_item(D, "juliet", "m", &item("z", ""), 10)
            .await
            .unwrap();
        // Republishing an id replaces it and makes it the newest.
        store
            .publish_pep_item(D, "juliet", "n", &item("a", "<x>a2</x>"), 10)
            .await
            .unwrap();
        let all = store.pep_items(D, "juliet", "n", None).await.unwrap();
        assert_eq!(ids(&all), ["b", "c", "a"]);
        assert_eq!(all[2].payload, "<x>a2</x>");
        assert_eq!(
            ids(&store.pep_items(D, "juliet", "n", Some(2)).await.unwrap()),
            ["c", "a"]
        );
        let last = store.pep_last_items(D, "juliet").await.unwrap();
        assert_eq!(last.len(), 2);
        assert_eq!((last[0].0.as_str(), last[0].1.id.as_str()), ("m", "z"));
        assert_eq!((last[1].0.as_str(), last[1].1.id.as_str()), ("n", "a"));

        // Publishing over max_items drops the oldest; a new configuration trims too.
        store
            .publish_pep_item(D, "juliet", "n", &item("d", ""), 3)
            .await
            .unwrap();
        assert_eq!(
            ids(&store.pep_items(D, "juliet", "n", None).await.unwrap()),
            ["c", "a", "d"]
        );
        assert!(store
            .configure_pep_node(D, "juliet", "n", "c3", 1)
            .await
            .unwrap());
        assert_eq!(
            ids(&store.pep_items(D, "juliet", "n", None).await.unwrap()),
            ["d"]
        );
        assert!(!store
            .configure_pep_node(D, "juliet", "nope", "c", 1)
            .await
            .unwrap());

        assert!(store.retract_pep_item(D, "juliet", "n", "d").await.unwrap());
        assert!(!store.retract_pep_item(D, "juliet", "n", "d").await.unwrap());
        store.purge_pep_node(D, "juliet", "m").await.unwrap();
        assert!(store
            .pep_items(D, "juliet", "m", None)
            .await
            .unwrap()
            .is_empty());

        // Other accounts see nothing of it.
        assert!(store.pep_nodes(D, "romeo").await.unwrap().is_empty());
        assert_eq!(
            store.accounts_with_pep().await.unwrap(),
            vec![(D.to_string(), "juliet".to_string())]
        );
        // Deleting a node takes its items; deleting the account its nodes.
        store
            .publish_pep_item(D, "juliet", "m", &item("y", ""), 10)
            .await
            .unwrap();
        assert!(store.delete_pep_node(D, "juliet", "m").await.unwrap());
        assert!(!store.delete_pep_node(D, "juliet", "m").await.unwrap());
        store
            .create_pep_node(D, "juliet", "m", "again")
            .await
            .unwrap();
        assert!(store
            .pep_items(D, "juliet", "m", None)
            .await
            .unwrap()
            .is_empty());
        store.remove_account(D, "juliet").await.unwrap();
        assert!(store.pep_nodes(D, "juliet").await.unwrap().is_empty());
        assert!(store.accounts_with_pep().await.unwrap().is_empty());
    }
}
