//! [`MucStore`] on SQLite: the `muc_rooms` table (schema 0009; XEP-0045).

use super::migrate::unix_now;
use super::SqliteStore;
use crate::{MucStore, StorageError, StoredRoom};

#[async_trait::async_trait]
impl MucStore for SqliteStore {
    async fn muc_rooms(&self, service: &str) -> Result<Vec<StoredRoom>, StorageError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, data FROM muc_rooms WHERE service = $1 ORDER BY name")
                .bind(service)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(name, data)| StoredRoom {
                service: service.to_owned(),
                name,
                data,
            })
            .collect())
    }

    async fn save_muc_room(&self, room: &StoredRoom) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO muc_rooms (service, name, data, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (service, name) DO UPDATE SET data = excluded.data, \
             updated_at = excluded.updated_at",
        )
        .bind(&room.service)
        .bind(&room.name)
        .bind(&room.data)
        .bind(unix_now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_muc_room(&self, service: &str, name: &str) -> Result<bool, StorageError> {
        let done = sqlx::query("DELETE FROM muc_rooms WHERE service = $1 AND name = $2")
            .bind(service)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rooms_round_trip_per_service() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let room = |name: &str, data: &str| StoredRoom {
            service: "conference.example.org".into(),
            name: name.into(),
            data: data.into(),
        };
        store.save_muc_room(&room("coven", "{}")).await.unwrap();
        store
            .save_muc_room(&room("coven", "{\"a\":1}"))
            .await
            .unwrap();
        store.save_muc_room(&room("attic", "{}")).await.unwrap();
        let rooms = store.muc_rooms("conference.example.org").await.unwrap();
        assert_eq!(rooms, vec![room("attic", "{}"), room("coven", "{\"a\":1}")]);
        assert!(store
            .muc_rooms("chat.example.org")
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .remove_muc_room("conference.example.org", "coven")
            .await
            .unwrap());
        assert!(!store
            .remove_muc_room("conference.example.org", "coven")
            .await
            .unwrap());
        assert_eq!(
            store
                .muc_rooms("conference.example.org")
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
