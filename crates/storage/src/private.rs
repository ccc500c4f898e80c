//! The data directory's privacy: it holds SCRAM credentials, private keys and (later) users'
//! files, so it is created 0700 and every file weft writes in it 0600, whatever the umask.
//!
//! SQLite creates its `-wal` and `-shm` files with the permissions of the database file, so a
//! database file created here 0600 keeps its companions private too.

use std::io;
use std::path::{Path, PathBuf};

/// Mode of directories weft creates for its data.
pub const DIR_MODE: u32 = 0o700;
/// Mode of files weft creates in them.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents; the directories created here get [`DIR_MODE`]
/// (existing ones are left as they are: [`exposure`] reports them).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    match builder.create(dir) {
        Ok(()) => set_mode(dir, DIR_MODE),
        // Created by someone else in between: fine, it exists.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `path` empty with [`FILE_MODE`] if it does not exist; returns whether it did.
pub fn create_file(path: &Path) -> io::Result<bool> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, FILE_MODE);
    match opts.open(path) {
        Ok(_) => set_mode(path, FILE_MODE).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `data` to `path` (replacing it), readable by the owner only.
pub fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, FILE_MODE);
    opts.open(path)?.write_all(data)?;
    set_mode(path, FILE_MODE)
}

/// The umask only takes bits away; this makes the mode exact (and fixes an existing file
/// that `write_file` truncated).
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// A path in the data directory that others than its owner may read or enter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

/// What in `dir` (the directory itself and the files directly in it) group or others can
/// access. Empty when everything is private, or on systems without Unix modes.
pub fn exposure(dir: &Path) -> Vec<Exposed> {
    let mut out = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut check = |path: PathBuf| {
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    out.push(Exposed { path, mode });
                }
            }
        };
        check(dir.to_path_buf());
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            paths.into_iter().for_each(&mut check);
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    out
}

/// The shell command that makes `dir` and everything in it private.
pub fn fix_command(dir: &Path) -> String {
    format!(
        "chmod -R go-rwx {}",
        shell_quote(&dir.display().to_string())
    )
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_private_and_exposure_found() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        let f = dir.join("db");
        assert!(create_file(&f).unwrap());
        assert!(!create_file(&f).unwrap());
        assert_eq!(mode(&f), 0o600);
        assert!(exposure(&dir).is_empty());

        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_file(&f, b"x").unwrap();
        assert_eq!(mode(&f), 0o600, "write_file tightens an existing file");

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let loose = dir.join("loose");
        std::fs::write(&loose, b"").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o640)).unwrap();
        let found = exposure(&dir);
        assert_eq!(
            found,
            vec![
                Exposed {
                    path: dir.clone(),
                    mode: 0o755
                },
                Exposed {
                    path: loose,
                    mode: 0o640
                }
            ]
        );
        assert_eq!(
            fix_command(Path::new("/srv/my data")),
            "chmod -R go-rwx '/srv/my data'"
        );
    }
}
