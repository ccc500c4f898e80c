//! Tests of the push registration store (XEP-0357): replace by (service, node), the limit,
//! removal by service or node, the cascade from accounts.

use super::{account_rows, file_and_memory};
use crate::{AccountStore, PushRegistration, PushStore, StorageError};

const D: &str = "example.org";

fn reg(service: &str, node: &str, by: &str, options: Option<&str>) -> PushRegistration {
    PushRegistration {
        service: service.into(),
        node: node.into(),
        enabled_by: by.into(),
        publish_options: options.map(str::to_string),
    }
}

#[tokio::test]
async fn registrations_are_replaced_bounded_and_removed() {
    let (_dir, stores) = file_and_memory().await;
    for store in stores {
        store.create_account(D, "juliet", &[]).await.unwrap();
        store.create_account(D, "romeo", &[]).await.unwrap();
        let a = reg("push.example", "a", "juliet@example.org/phone", None);
        store.put_push(D, "juliet", &a, Some(2)).await.unwrap();
        // The same (service, node) again replaces: session and options, no second row.
        let a2 = reg("push.example", "a", "juliet@example.org/tab", Some("<x/>"));
        store.put_push(D, "juliet", &a2, Some(1)).await.unwrap();
        assert_eq!(
            store.push_registrations(D, "juliet").await.unwrap(),
            std::slice::from_ref(&a2)
        );
        let b = reg("push.example", "b", "juliet@example.org/tab", None);
        store.put_push(D, "juliet", &b, Some(2)).await.unwrap();
        let c = reg("other.example", "c", "juliet@example.org/tab", None);
        assert!(matches!(
            store.put_push(D, "juliet", &c, Some(2)).await,
            Err(StorageError::LimitReached)
        ));
        // Another account's limit is its own.
        store.put_push(D, "romeo", &c, Some(1)).await.unwrap();
        assert_eq!(
            store.push_registrations(D, "juliet").await.unwrap(),
            [a2.clone(), b.clone()]
        );
        assert_eq!(store.all_push_registrations().await.unwrap().len(), 3);
        // By node, then every node of a service.
        assert_eq!(
            store
                .remove_push(D, "juliet", "push.example", Some("zzz"))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .remove_push(D, "juliet", "push.example", Some("a"))
                .await
                .unwrap(),
            1
        );
        store.put_push(D, "juliet", &a, None).await.unwrap();
        assert_eq!(
            store
                .remove_push(D, "juliet", "push.example", None)
                .await
                .unwrap(),
            2
        );
        assert!(store
            .push_registrations(D, "juliet")
            .await
            .unwrap()
            .is_empty());
        // Removing the account removes its registrations.
        assert!(store.remove_account(D, "romeo").await.unwrap());
        assert_eq!(
            account_rows(&store, "push_registrations", D, "romeo").await,
            0
        );
        assert!(store.all_push_registrations().await.unwrap().is_empty());
    }
}
