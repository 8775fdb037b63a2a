//! Durable file changes: the config dir (0700), atomic 0600 writes, and the
//! lock that makes concurrent runs queue.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

const LOCK_FILE: &str = ".wgp2p.lock";
/// Prefix of the temp files of `write_atomic`.
const TEMP_PREFIX: &str = ".wgp2p-";

/// Create the config dir if needed and make it 0700 (also when it existed
/// with looser rights: it holds private keys).
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("set mode 0700 on", dir, e))
}

/// An exclusive lock on the config dir, held until dropped.
pub struct DirLock {
    _file: File,
}

/// Take the lock, waiting for any other wgp2p run on the same dir.
pub fn lock(dir: &Path) -> Result<DirLock> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    file.lock().map_err(|e| Error::io("lock", &path, e))?;
    remove_stale_temp_files(dir);
    Ok(DirLock { _file: file })
}

/// Delete the lock file, releasing the lock.
pub fn remove_lock(dir: &Path, lock: DirLock) -> Result<()> {
    remove_file(&dir.join(LOCK_FILE))?;
    drop(lock);
    Ok(())
}

/// Temp files left by a run that was killed mid-write. Only the lock
/// holder writes, so once we hold it any temp file is an orphan. Best
/// effort: a file that cannot be removed is harmless.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

/// Replace `dir/name` with `contents` atomically: a 0600 temp file in the
/// same dir, fsync, rename over the old file, fsync the dir. A crash leaves
/// either the old or the new file, never a mix.
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let target = dir.join(name);
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temporary file in", dir, e))?;
    temp.write_all(contents)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| Error::io("write", &target, e))?;
    temp.persist(&target)
        .map_err(|e| Error::io("replace", &target, e.error))?;
    sync_dir(dir)
}

/// Remove a file; a missing file is fine.
pub fn remove_file(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn atomic_write_is_0600_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"one").unwrap();
        write_atomic(dir.path(), "f", b"two").unwrap();
        let path = dir.path().join("f");
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // Only the target is left: no temp files.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn ensure_dir_tightens_mode() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("wg");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&sub).unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn lock_sweeps_orphaned_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".wgp2p-abc123"), b"half").unwrap();
        fs::write(dir.path().join("wg0.conf"), b"keep").unwrap();
        let _held = lock(dir.path()).unwrap();
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, [LOCK_FILE, "wg0.conf"]);
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        let path = dir.path().join(LOCK_FILE);
        let other = File::options().write(true).open(&path).unwrap();
        assert!(other.try_lock().is_err());
        drop(held);
        assert!(other.try_lock().is_ok());
    }
}
