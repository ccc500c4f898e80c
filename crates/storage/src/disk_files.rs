//! [`FileStore`] in a directory: `<root>/<first two characters of the id>/<id>.data` holds
//! the bytes and `<id>.meta` the [`StoredFile`] as JSON; a file is stored when its `.meta`
//! exists.
//!
//! An upload writes `<id>.part` (created exclusively, so a second upload to the same id
//! fails), hard-links it to `<id>.data` (which fails if another upload got there first,
//! never replacing a stored file), then writes the metadata (through a temporary file and a
//! rename). Opening the store removes what a crash left between those steps and sums each
//! account's usage from the metadata, which is then kept in memory.
//!
//! Directories are created 0700 and files 0600, like the rest of the data directory.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;

use crate::files::{valid_file_id, FileReader, FileStore, FileUpload, StoredFile};
use crate::StorageError;

/// Uploaded files in a directory (see the module documentation).
#[derive(Clone, Debug)]
pub struct DiskFileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    /// Per owner: bytes of stored files and of uploads under way.
    usage: Mutex<HashMap<String, Usage>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    stored: u64,
    reserved: u64,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl DiskFileStore {
    /// Opens the store in `root` (created when the first file is stored): removes unfinished
    /// uploads and sums the usage of every account. Blocking: reads every file's metadata.
    pub fn open(root: &Path) -> Result<DiskFileStore, StorageError> {
        let mut usage: HashMap<String, Usage> = HashMap::new();
        let shards = match std::fs::read_dir(root) {
            Ok(shards) => shards,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(DiskFileStore::with_usage(root, usage))
            }
            Err(e) => return Err(io_error(root)(e)),
        };
        for shard in shards.flatten() {
            let dir = shard.path();
            if !dir.is_dir() {
                continue;
            }
            let entries = std::fs::read_dir(&dir).map_err(io_error(&dir))?;
            let mut data = Vec::new();
            let mut metas = std::collections::HashSet::new();
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(id) = name.strip_suffix(".meta") {
                    match read_meta(&path) {
                        Ok(file) => {
                            usage.entry(file.owner).or_default().stored += file.size;
                            metas.insert(id.to_string());
                        }
                        Err(e) => tracing::warn!("unreadable upload metadata, ignored: {e}"),
                    }
                } else if let Some(id) = name.strip_suffix(".data") {
                    data.push((id.to_string(), path));
                } else if name.ends_with(".part") || name.ends_with(".tmp") {
                    // An upload a crash or a restart interrupted.
                    let _ = std::fs::remove_file(&path);
                }
            }
            // Bytes linked but never described: the upload did not finish.
            for (id, path) in data {
                if !metas.contains(&id) {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(DiskFileStore::with_usage(root, usage))
    }

    fn with_usage(root: &Path, usage: HashMap<String, Usage>) -> DiskFileStore {
        DiskFileStore {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                usage: Mutex::new(usage),
            }),
        }
    }

    /// The directory of `id`'s files and the path of one of them.
    fn path(&self, id: &str, suffix: &str) -> PathBuf {
        self.inner
            .root
            .join(&id[..2])
            .join(format!("{id}.{suffix}"))
    }
}

impl Inner {
    fn usage(&self) -> std::sync::MutexGuard<'_, HashMap<String, Usage>> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self, owner: &str, reserved: u64, stored: u64) {
        let mut usage = self.usage();
        if let Some(u) = usage.get_mut(owner) {
            u.reserved = u.reserved.saturating_sub(reserved);
            u.stored = u.stored.saturating_sub(stored);
            if u.reserved == 0 && u.stored == 0 {
                usage.remove(owner);
            }
        }
    }
}

fn read_meta(path: &Path) -> Result<StoredFile, StorageError> {
    let text = std::fs::read(path).map_err(io_error(path))?;
    serde_json::from_slice(&text)
        .map_err(|e| StorageError::Corrupt(format!("{}: {e}", path.display())))
}

async fn read_meta_async(path: &Path) -> Result<Option<StoredFile>, StorageError> {
    match tokio::fs::read(path).await {
        Ok(text) => serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| StorageError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Creates `path` exclusively, 0600.
async fn create_new(path: &Path) -> io::Result<tokio::fs::File> {
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(crate::private::FILE_MODE);
    opts.open(path).await
}

#[async_trait::async_trait]
impl FileStore for DiskFileStore {
    async fn begin(
        &self,
        id: &str,
        file: StoredFile,
        quota: Option<u64>,
    ) -> Result<Box<dyn FileUpload>, StorageError> {
        if !valid_file_id(id) {
            return Err(StorageError::Corrupt(format!("not a file id: {id:?}")));
        }
        {
            let mut usage = self.inner.usage();
            let u = usage.entry(file.owner.clone()).or_default();
            let after = u
                .stored
                .saturating_add(u.reserved)
                .saturating_add(file.size);
            if quota.is_some_and(|q| after > q) {
                if u.stored == 0 && u.reserved == 0 {
                    usage.remove(&file.owner);
                }
                return Err(StorageError::LimitReached);
            }
            u.reserved += file.size;
        }
        let part = self.path(id, "part");
        let created = async {
            let dir = self.inner.root.join(&id[..2]);
            tokio::task::spawn_blocking(move || crate::private::create_dir(&dir))
                .await
                .map_err(io::Error::other)??;
            if tokio::fs::try_exists(self.path(id, "meta")).await?
                || tokio::fs::try_exists(self.path(id, "data")).await?
            {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            // Exclusive: a second upload to the id fails here.
            create_new(&part).await
        }
        .await;
        let out = match created {
            Ok(out) => out,
            Err(e) => {
                self.inner.release(&file.owner, file.size, 0);
                return Err(match e.kind() {
                    io::ErrorKind::AlreadyExists => StorageError::AlreadyExists,
                    _ => io_error(&part)(e),
                });
            }
        };
        // From here on, dropping the upload removes its part and gives the reservation back.
        Ok(Box::new(DiskUpload {
            store: self.inner.clone(),
            part,
            data: self.path(id, "data"),
            meta: self.path(id, "meta"),
            out: Some(out),
            written: 0,
            file,
            done: false,
        }))
    }

    async fn stat(&self, id: &str) -> Result<Option<StoredFile>, StorageError> {
        if !valid_file_id(id) {
            return Ok(None);
        }
        read_meta_async(&self.path(id, "meta")).await
    }

    async fn open(&self, id: &str) -> Result<Option<(StoredFile, FileReader)>, StorageError> {
        let Some(file) = self.stat(id).await? else {
            return Ok(None);
        };
        let data = self.path(id, "data");
        match tokio::fs::File::open(&data).await {
            Ok(reader) => Ok(Some((file, Box::pin(reader)))),
            // Deleted in between.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&data)(e)),
        }
    }

    async fn delete(&self, id: &str) -> Result<bool, StorageError> {
        let Some(file) = self.stat(id).await? else {
            return Ok(false);
        };
        let meta = self.path(id, "meta");
        match tokio::fs::remove_file(&meta).await {
            Ok(()) => {}
            // Another delete won.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error(&meta)(e)),
        }
        let data = self.path(id, "data");
        match tokio::fs::remove_file(&data).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing {}: {e}", data.display()),
        }
        self.inner.release(&file.owner, 0, file.size);
        Ok(true)
    }

    async fn created_before(&self, before: i64) -> Result<Vec<String>, StorageError> {
        let root = self.inner.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut old = Vec::new();
            let shards = match std::fs::read_dir(&root) {
                Ok(shards) => shards,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(old),
                Err(e) => return Err(io_error(&root)(e)),
            };
            for shard in shards.flatten() {
                let Ok(entries) = std::fs::read_dir(shard.path()) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let Some(id) = name.strip_suffix(".meta") else {
                        continue;
                    };
                    if let Ok(file) = read_meta(&entry.path()) {
                        if file.created < before && valid_file_id(id) {
                            old.push(id.to_string());
                        }
                    }
                }
            }
            Ok(old)
        })
        .await
        .map_err(|e| io_error(&self.inner.root)(io::Error::other(e)))?
    }

    async fn usage(&self, owner: &str) -> Result<u64, StorageError> {
        Ok(self
            .inner
            .usage()
            .get(owner)
            .map_or(0, |u| u.stored.saturating_add(u.reserved)))
    }
}

/// An upload into `<id>.part`.
struct DiskUpload {
    store: Arc<Inner>,
    part: PathBuf,
    data: PathBuf,
    meta: PathBuf,
    out: Option<tokio::fs::File>,
    written: u64,
    file: StoredFile,
    /// Finished: nothing to undo on drop.
    done: bool,
}

impl Drop for DiskUpload {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.store.release(&self.file.owner, self.file.size, 0);
        let _ = std::fs::remove_file(&self.part);
    }
}

#[async_trait::async_trait]
impl FileUpload for DiskUpload {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        if self.written + chunk.len() as u64 > self.file.size {
            return Err(StorageError::LimitReached);
        }
        let Some(out) = self.out.as_mut() else {
            return Err(StorageError::Corrupt("upload already ended".into()));
        };
        out.write_all(chunk).await.map_err(io_error(&self.part))?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<(), StorageError> {
        if self.written != self.file.size {
            return Err(StorageError::Corrupt(format!(
                "{} of {} bytes uploaded",
                self.written, self.file.size
            )));
        }
        if let Some(mut out) = self.out.take() {
            out.flush().await.map_err(io_error(&self.part))?;
            out.sync_all().await.map_err(io_error(&self.part))?;
        }
        // Never replaces a stored file: the link fails if the data exists.
        match tokio::fs::hard_link(&self.part, &self.data).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StorageError::AlreadyExists)
            }
            Err(e) => return Err(io_error(&self.data)(e)),
        }
        let _ = tokio::fs::remove_file(&self.part).await;
        self.file.created = unix_now();
        let json = serde_json::to_vec(&self.file)
            .map_err(|e| StorageError::Corrupt(format!("metadata: {e}")))?;
        let tmp = self.meta.with_extension("meta.tmp");
        let written = async {
            let mut out = create_new(&tmp).await?;
            out.write_all(&json).await?;
            out.sync_all().await?;
            tokio::fs::rename(&tmp, &self.meta).await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            let _ = tokio::fs::remove_file(&self.data).await;
            return Err(io_error(&self.meta)(e));
        }
        self.done = true;
        let mut usage = self.store.usage();
        let u = usage.entry(self.file.owner.clone()).or_default();
        u.reserved = u.reserved.saturating_sub(self.file.size);
        u.stored += self.file.size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";
    const ID2: &str = "fedcba9876543210fedcba9876543210";

    fn file(size: u64) -> StoredFile {
        StoredFile {
            owner: "alice@example.org".into(),
            filename: "très cool.jpg".into(),
            size,
            content_type: "image/jpeg".into(),
            created: 0,
        }
    }

    async fn put(store: &DiskFileStore, id: &str, bytes: &[u8], quota: Option<u64>) {
        let mut up = store
            .begin(id, file(bytes.len() as u64), quota)
            .await
            .expect("begin");
        for chunk in bytes.chunks(3) {
            up.write(chunk).await.expect("write");
        }
        up.finish().await.expect("finish");
    }

    #[tokio::test]
    async fn stores_reads_counts_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskFileStore::open(&dir.path().join("upload")).unwrap();
        assert_eq!(store.stat(ID).await.unwrap(), None);
        put(&store, ID, b"hello world", None).await;
        let (meta, mut reader) = store.open(ID).await.unwrap().expect("stored");
        assert_eq!((meta.size, meta.filename.as_str()), (11, "très cool.jpg"));
        assert!(meta.created > 0);
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).await.unwrap();
        assert_eq!(bytes, b"hello world");
        assert_eq!(store.usage("alice@example.org").await.unwrap(), 11);

        // The same id again: refused, the stored file untouched.
        assert!(matches!(
            store.begin(ID, file(3), None).await.err(),
            Some(StorageError::AlreadyExists)
        ));
        assert_eq!(store.usage("alice@example.org").await.unwrap(), 11);

        // Usage survives reopening.
        let reopened = DiskFileStore::open(&dir.path().join("upload")).unwrap();
        assert_eq!(reopened.usage("alice@example.org").await.unwrap(), 11);
        assert_eq!(
            reopened.created_before(i64::MAX).await.unwrap(),
            vec![ID.to_string()]
        );
        assert!(reopened
            .created_before(meta.created)
            .await
            .unwrap()
            .is_empty());

        assert!(reopened.delete(ID).await.unwrap());
        assert!(!reopened.delete(ID).await.unwrap());
        assert_eq!(reopened.usage("alice@example.org").await.unwrap(), 0);
        assert_eq!(reopened.stat(ID).await.unwrap(), None);
    }

    #[tokio::test]
    async fn quota_counts_uploads_under_way_and_dropped_uploads_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskFileStore::open(dir.path()).unwrap();
        let mut first = store.begin(ID, file(6), Some(10)).await.unwrap();
        first.write(b"abc").await.unwrap();
        assert!(matches!(
            store.begin(ID2, file(6), Some(10)).await.err(),
            Some(StorageError::LimitReached)
        ));
        // A second upload to the same id while the first runs.
        assert!(matches!(
            store.begin(ID, file(1), None).await.err(),
            Some(StorageError::AlreadyExists)
        ));
        // Too many bytes, then too few.
        assert!(matches!(
            first.write(b"abcd").await,
            Err(StorageError::LimitReached)
        ));
        assert!(first.finish().await.is_err());
        assert_eq!(store.usage("alice@example.org").await.unwrap(), 0);
        assert_eq!(store.stat(ID).await.unwrap(), None);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("01"))
            .unwrap()
            .flatten()
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        put(&store, ID2, b"123456", Some(10)).await;
        assert_eq!(store.usage("alice@example.org").await.unwrap(), 6);
    }

    #[tokio::test]
    async fn ids_that_could_leave_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskFileStore::open(dir.path()).unwrap();
        for id in ["../../../../etc/passwd", "short", "0123456789ABCDEF0123"] {
            assert!(store.begin(id, file(1), None).await.is_err());
            assert_eq!(store.stat(id).await.unwrap(), None);
        }
    }
}
