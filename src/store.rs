//! Local state on disk: the config dir, checked rather than followed, and
//! every change to it as one transaction.
//!
//! **Checked, not followed.** The config dir is opened (it may itself be
//! a symbolic link, as `/etc/wireguard` is on some systems), checked to be
//! a dir of ours, and every entry in it is opened relative to it (`openat`, `renameat`,
//! `unlinkat`, `fstatat` with `AT_SYMLINK_NOFOLLOW`). An entry that is a
//! symbolic link, not a regular file, or owned by another user is refused
//! with one line naming the path and the fix. The one exception is a
//! top-level `*.conf` that is a symbolic link (a wg-quick config kept
//! elsewhere, e.g. in a git checkout): it is written through, atomically,
//! by replacing its target in the target's own directory, so the link
//! stays and keeps pointing at the new content. Modes are checked by every
//! command that changes something (files 0600, dirs 0700); `install`
//! repairs them instead.
//!
//! **Locking.** A change holds an exclusive `flock` on the config dir
//! itself, so there is no lock file that could be a symlink or be deleted
//! under a queued run.
//!
//! **Transactions.** A [`Change`] is a list of file writes and removals.
//! One operation is one atomic rename. Several are made one transaction by
//! a journal: the whole change (every new file's bytes) is first written to
//! `.wgp2p-journal` atomically (temp file, fsync, rename, fsync of the dir),
//! then each file is replaced atomically, then the journal is removed.
//! Killed before the journal's rename, nothing changed; killed after, the
//! next run under the lock replays the journal (each step is idempotent)
//! before it reads anything, so the change completes. Temp files
//! (`.wgp2p-*`) left by a killed run are deleted by the next locked run,
//! in the dir and in `provisioned-peers/`.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// The journal of the change being made, in the config dir.
pub const JOURNAL: &str = ".wgp2p-journal";
/// Every temp file wgp2p makes starts with this; `JOURNAL` too, but it is
/// replayed, not swept.
const TEMP_PREFIX: &str = ".wgp2p-";
/// The sub-dir of device confs made by `provision-peer`.
pub const PROVISIONED: &str = "provisioned-peers";

const JOURNAL_MAGIC: &str = "wgp2p-journal 1\n";
const JOURNAL_END: &str = "end\n";

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `openat(dir, name, flags, mode)` that retries on EINTR.
fn open_at(dir: BorrowedFd, name: &str, flags: libc::c_int, mode: u32) -> std::io::Result<OwnedFd> {
    let flags = OFlags::from_bits_retain(flags.cast_unsigned()) | OFlags::CLOEXEC;
    loop {
        match rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(mode)) {
            Err(Errno::INTR) => {}
            done => return done.map_err(Into::into),
        }
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; `None` when it does not exist.
fn lstat_at(dir: BorrowedFd, name: &str) -> std::io::Result<Option<Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn fstat(fd: BorrowedFd) -> std::io::Result<Stat> {
    rustix::fs::fstat(fd).map_err(Into::into)
}

fn is_kind(st: &Stat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

fn refuse_link(path: &Path) -> Error {
    Error::BadConfig(format!(
        "{} is a symbolic link: expected a regular file or directory; replace the link with what it points to (wgp2p does not follow links in its config dir)",
        path.display()
    ))
}

fn refuse_owner(path: &Path, uid: u32) -> Error {
    Error::BadConfig(format!(
        "{} is owned by uid {uid}: expected uid {} (the user running wgp2p); fix with `chown {} {}`",
        path.display(),
        euid(),
        euid(),
        path.display()
    ))
}

fn refuse_mode(path: &Path, mode: u32, want: u32) -> Error {
    Error::BadConfig(format!(
        "{} has mode {mode:04o}: expected {want:04o} (it holds or guards private keys); fix with `chmod {want:o} {}` or run `wgp2p install` again",
        path.display(),
        path.display()
    ))
}

/// The checks every entry passes: not a link (unless allowed), the right
/// type, owned by us.
fn check_stat(path: &Path, st: &Stat, want_dir: bool) -> Result<()> {
    if is_kind(st, libc::S_IFLNK) {
        return Err(refuse_link(path));
    }
    let ok_kind = if want_dir {
        is_kind(st, libc::S_IFDIR)
    } else {
        is_kind(st, libc::S_IFREG)
    };
    if !ok_kind {
        let what = if want_dir {
            "a directory"
        } else {
            "a regular file"
        };
        return Err(Error::BadConfig(format!(
            "{} is not {what}: expected {what}; move it away",
            path.display()
        )));
    }
    if st.st_uid != euid() {
        return Err(refuse_owner(path, st.st_uid));
    }
    Ok(())
}

/// Open the config dir (a symbolic link to it is fine: what is *in* it is
/// never followed) and check it is a dir of ours.
fn open_dir(path: &Path) -> Result<OwnedFd> {
    let opened = loop {
        match rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Err(Errno::INTR) => {}
            done => break done,
        }
    };
    let fd = match opened {
        Ok(fd) => fd,
        Err(Errno::NOTDIR) => {
            return Err(Error::BadConfig(format!(
                "{} is not a directory: expected the config directory",
                path.display()
            )));
        }
        Err(e) => return Err(Error::io("open directory", path, e.into())),
    };
    let st = fstat(fd.as_fd()).map_err(|e| Error::io("stat", path, e))?;
    check_stat(path, &st, true)?;
    Ok(fd)
}

/// Open `name` in `dir` (not following a link) and return its bytes;
/// `None` when it does not exist.
fn read_at(dir: BorrowedFd, dir_path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = dir_path.join(name);
    let fd = match open_at(
        dir,
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        0,
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(refuse_link(&path)),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let st = fstat(fd.as_fd()).map_err(|e| Error::io("stat", &path, e))?;
    check_stat(&path, &st, false)?;
    let mut bytes = Vec::new();
    File::from(fd)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", &path, e))?;
    Ok(Some(bytes))
}

/// The one reader of the agent's state files (`<iface>.agent.json`,
/// `<iface>.membership.json`): a regular file of ours in `path`'s dir,
/// never a symbolic link, opened without blocking (a FIFO or a device is
/// refused, never opened for reading), and at most `cap` bytes. `None`
/// when it does not exist. Every refusal is a `BadConfig` (exit 6) that
/// names the file and what is expected.
pub fn read_state(path: &Path, cap: u64) -> Result<Option<Vec<u8>>> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Invalid(format!(
            "{} is not a file path",
            path.display()
        )));
    };
    if !parent.exists() {
        return Ok(None);
    }
    let name = name.to_string_lossy();
    let dir = open_dir(parent)?;
    let fd = match open_at(
        dir.as_fd(),
        &name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        0,
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(refuse_link(path)),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let st = fstat(fd.as_fd()).map_err(|e| Error::io("stat", path, e))?;
    check_stat(path, &st, false)?;
    let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
    if size > cap {
        return Err(too_big(path, size, cap));
    }
    let mut bytes = Vec::new();
    File::from(fd)
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    if bytes.len() as u64 > cap {
        return Err(too_big(path, bytes.len() as u64, cap));
    }
    Ok(Some(bytes))
}

fn too_big(path: &Path, size: u64, cap: u64) -> Error {
    Error::BadConfig(format!(
        "{} is {size} bytes: expected at most {cap} (the agent rewrites it; move it away)",
        path.display()
    ))
}

/// Whether a top-level entry may be a symbolic link that is written
/// through: a wg-quick config only.
fn may_be_link(name: &str) -> bool {
    !name.contains('/') && Path::new(name).extension().is_some_and(|e| e == "conf")
}

/// The target of a symlinked config, checked: a regular file of ours.
fn link_target(path: &Path) -> Result<PathBuf> {
    let target = fs::canonicalize(path).map_err(|e| {
        Error::BadConfig(format!(
            "{} is a symbolic link whose target cannot be resolved ({e}): expected a link to an existing config, or the file itself",
            path.display()
        ))
    })?;
    let meta = fs::metadata(&target).map_err(|e| Error::io("stat", &target, e))?;
    if !meta.is_file() {
        return Err(Error::BadConfig(format!(
            "{} links to {}, which is not a regular file: expected a link to a config file",
            path.display(),
            target.display()
        )));
    }
    if meta.uid() != euid() {
        return Err(refuse_owner(&target, meta.uid()));
    }
    Ok(target)
}

/// Read a file of the config dir, never following a link, except for a
/// `*.conf` (see the module doc). `None` when it does not exist. The
/// config dir itself must already be known to be ours.
pub fn read_entry(path: &Path) -> Result<Option<Vec<u8>>> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Invalid(format!(
            "{} is not a file path",
            path.display()
        )));
    };
    let name = name.to_string_lossy();
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    if !parent.exists() {
        return Ok(None);
    }
    // A file of `provisioned-peers/`: that dir is an entry, never followed.
    if parent.file_name().is_some_and(|n| n == PROVISIONED)
        && let Some(top) = parent.parent()
    {
        let top_fd = open_dir(top)?;
        return match open_sub(top_fd.as_fd(), top, PROVISIONED)? {
            Some(sub) => read_at(sub.as_fd(), parent, &name),
            None => Ok(None),
        };
    }
    let dir = open_dir(parent)?;
    if may_be_link(&name) {
        let st = lstat_at(dir.as_fd(), &name).map_err(|e| Error::io("stat", path, e))?;
        if st.is_some_and(|st| is_kind(&st, libc::S_IFLNK)) {
            let target = link_target(path)?;
            return fs::read(&target)
                .map(Some)
                .map_err(|e| Error::io("read", &target, e));
        }
    }
    read_at(dir.as_fd(), parent, &name)
}

/// Create the config dir if needed and make it 0700 (also when it existed
/// with looser rights: it holds private keys). A symlink or a dir of
/// another user is refused.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| Error::io("create directory", parent, e))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create directory", dir, e)),
    }
    let fd = open_dir(dir)?;
    chmod_fd(fd.as_fd(), dir, 0o700)
}

fn chmod_fd(fd: BorrowedFd, path: &Path, mode: u32) -> Result<()> {
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))
        .map_err(|e| Error::io(&format!("set mode {mode:04o} on"), path, e.into()))
}

/// An exclusive lock on the config dir, held until dropped.
pub struct DirLock {
    _dir: OwnedFd,
}

/// Take the lock, waiting for any other wgp2p run on the same dir, then
/// finish or clean up what a killed run left: replay its journal, delete
/// its temp files.
pub fn lock(dir: &Path) -> Result<DirLock> {
    let fd = open_dir(dir)?;
    loop {
        match rustix::fs::flock(&fd, FlockOperation::LockExclusive) {
            Ok(()) => break,
            Err(Errno::INTR) => {}
            Err(e) => return Err(Error::io("lock", dir, e.into())),
        }
    }
    recover(dir)?;
    Ok(DirLock { _dir: fd })
}

/// As [`lock`], waiting at most `wait` for another run to release the
/// lock (the agent: a pass never waits on a stuck command for ever). The
/// lock is tried every few milliseconds until the deadline.
pub fn lock_within(dir: &Path, wait: std::time::Duration) -> Result<DirLock> {
    let fd = open_dir(dir)?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(Errno::INTR | Errno::WOULDBLOCK) => {}
            Err(e) => return Err(Error::io("lock", dir, e.into())),
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::System(format!(
                "another wgp2p run held the lock of {} for more than {} s: expected it to finish; trying again later",
                dir.display(),
                wait.as_secs()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    recover(dir)?;
    Ok(DirLock { _dir: fd })
}

/// Replay a journal left by a killed run, then sweep temp files.
fn recover(dir: &Path) -> Result<()> {
    let fd = open_dir(dir)?;
    if let Some(bytes) = read_at(fd.as_fd(), dir, JOURNAL)? {
        let change = Change::decode(&bytes).ok_or_else(|| {
            Error::BadConfig(format!(
                "{} is not a complete wgp2p journal: expected one written by wgp2p; delete it to keep the files as they are",
                dir.join(JOURNAL).display()
            ))
        })?;
        run_ops(dir, &change)?;
        unlink_at(fd.as_fd(), dir, JOURNAL)?;
        sync_fd(fd.as_fd(), dir)?;
    }
    sweep(fd.as_fd(), dir);
    if let Ok(Some(st)) = lstat_at(fd.as_fd(), PROVISIONED)
        && is_kind(&st, libc::S_IFDIR)
        && let Ok(sub) = open_at(
            fd.as_fd(),
            PROVISIONED,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )
    {
        sweep(sub.as_fd(), &dir.join(PROVISIONED));
    }
    // A symlinked config is replaced in its target's dir: a temp file
    // there is ours too.
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if may_be_link(&name)
                && entry.file_type().is_ok_and(|t| t.is_symlink())
                && let Ok(target) = link_target(&entry.path())
                && let (Some(parent), Some(base)) = (target.parent(), target.file_name())
                && let Ok(pfd) = open_dir(parent)
            {
                let prefix = temp_prefix_for(&base.to_string_lossy());
                sweep_matching(pfd.as_fd(), |n| n.starts_with(&prefix));
            }
        }
    }
    Ok(())
}

/// Delete orphaned temp files. Only the lock holder writes, so once we
/// hold it any temp file is an orphan. Best effort: a file that cannot be
/// removed is harmless (the next run tries again).
fn sweep(dir: BorrowedFd, _path: &Path) {
    sweep_matching(dir, |n| n.starts_with(TEMP_PREFIX) && n != JOURNAL);
}

fn sweep_matching(dir: BorrowedFd, matches: impl Fn(&str) -> bool) {
    let Ok(dup) = dir.try_clone_to_owned() else {
        return;
    };
    let path = PathBuf::from(format!("/proc/self/fd/{}", dup.as_raw_fd()));
    let Ok(entries) = fs::read_dir(&path) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches(&name)
            && let Ok(Some(st)) = lstat_at(dir, &name)
            && is_kind(&st, libc::S_IFREG)
        {
            let _ = unlink_at(dir, &path, &name);
        }
    }
}

fn temp_prefix_for(name: &str) -> String {
    format!("{TEMP_PREFIX}tmp-{name}.")
}

fn sync_fd(fd: BorrowedFd, path: &Path) -> Result<()> {
    rustix::fs::fsync(fd).map_err(|e| Error::io("sync", path, e.into()))
}

fn unlink_at(dir: BorrowedFd, dir_path: &Path, name: &str) -> Result<bool> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(Error::io("remove", &dir_path.join(name), e.into())),
    }
}

static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Replace `name` in the open dir `dir` with `contents`: a 0600 temp file
/// in the same dir, fsync, rename over the old file, fsync the dir. A
/// crash leaves either the old or the new file, never a mix.
fn replace_at(dir: BorrowedFd, dir_path: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let target = dir_path.join(name);
    let (temp_name, fd) = loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp_name = format!("{}{}.{n}", temp_prefix_for(name), std::process::id());
        match open_at(
            dir,
            &temp_name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
        ) {
            Ok(fd) => break (temp_name, fd),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create a temporary file in", dir_path, e)),
        }
    };
    let mut file = File::from(fd);
    // The umask may have narrowed the mode; never widened it. Make it exact.
    let written = file
        .set_permissions(fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = unlink_at(dir, dir_path, &temp_name);
        return Err(Error::io("write", &target, e));
    }
    drop(file);
    if let Err(e) = rustix::fs::renameat(dir, temp_name.as_str(), dir, name) {
        let _ = unlink_at(dir, dir_path, &temp_name);
        return Err(Error::io("replace", &target, e.into()));
    }
    sync_fd(dir, dir_path)
}

/// The temp file through which [`replace_unlocked`] replaces the file
/// `name` (for `uninstall`, which removes one a killed writer left).
pub fn unlocked_temp_name(name: &str) -> String {
    format!(".{name}.tmp")
}

/// Replace the file at `path` with `contents` without the config lock, by
/// its one writer (the agent's state and book): a 0600 temp file
/// [`unlocked_temp_name`] beside it (never through a link), then a rename,
/// so a reader sees the old file or the new one. Not fsynced: what it
/// holds is rebuilt if a crash loses it.
pub fn replace_unlocked(path: &Path, contents: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(unlocked_temp_name(&name));
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temp)
        .map_err(|e| Error::io("create", &temp, e))?;
    file.write_all(contents)
        .map_err(|e| Error::io("write", &temp, e))?;
    fs::rename(&temp, path).map_err(|e| Error::io("replace", path, e))
}

/// Replace `dir/name` atomically, `name` being a top-level entry or one
/// under `provisioned-peers/`; a symlinked `*.conf` is replaced at its
/// target (see the module doc), any other link is refused.
fn write_entry(dir_fd: BorrowedFd, dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let (sub, base) = split_name(name)?;
    let sub_fd;
    let (fd, fd_path) = match sub {
        None => (dir_fd, dir.to_path_buf()),
        Some(sub) => {
            sub_fd = ensure_sub(dir_fd, dir, sub)?;
            (sub_fd.as_fd(), dir.join(sub))
        }
    };
    let path = fd_path.join(base);
    match lstat_at(fd, base).map_err(|e| Error::io("stat", &path, e))? {
        Some(st) if is_kind(&st, libc::S_IFLNK) && sub.is_none() && may_be_link(base) => {
            let target = link_target(&path)?;
            let (Some(parent), Some(file)) = (target.parent(), target.file_name()) else {
                return Err(refuse_link(&path));
            };
            let parent_fd = open_dir(parent)?;
            return replace_at(parent_fd.as_fd(), parent, &file.to_string_lossy(), contents);
        }
        Some(st) => check_stat(&path, &st, false)?,
        None => {}
    }
    replace_at(fd, &fd_path, base, contents)
}

/// `provisioned-peers` (created 0700 when missing), checked, as an open dir.
fn ensure_sub(dir_fd: BorrowedFd, dir: &Path, sub: &str) -> Result<OwnedFd> {
    let path = dir.join(sub);
    match rustix::fs::mkdirat(dir_fd, sub, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(Error::io("create directory", &path, e.into())),
    }
    open_sub(dir_fd, dir, sub)?
        .ok_or_else(|| Error::io("open directory", &path, ErrorKind::NotFound.into()))
}

/// A sub-dir, opened without following a link and checked; `None` when it
/// does not exist.
fn open_sub(dir_fd: BorrowedFd, dir: &Path, sub: &str) -> Result<Option<OwnedFd>> {
    let path = dir.join(sub);
    match open_at(
        dir_fd,
        sub,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    ) {
        Ok(fd) => {
            let st = fstat(fd.as_fd()).map_err(|e| Error::io("stat", &path, e))?;
            check_stat(&path, &st, true)?;
            Ok(Some(fd))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            match lstat_at(dir_fd, sub) {
                Ok(Some(st)) => {
                    check_stat(&path, &st, true)?;
                    Err(Error::io("open directory", &path, e))
                }
                _ => Err(Error::io("open directory", &path, e)),
            }
        }
        Err(e) => Err(Error::io("open directory", &path, e)),
    }
}

/// A change's file name: `name` or `provisioned-peers/name`, nothing that
/// could leave the config dir.
fn split_name(name: &str) -> Result<(Option<&str>, &str)> {
    let (sub, base) = match name.split_once('/') {
        Some((sub, base)) if sub == PROVISIONED => (Some(sub), base),
        Some(_) => {
            return Err(Error::Invalid(format!(
                "{name:?} is outside the config dir"
            )));
        }
        None => (None, name),
    };
    if base.is_empty() || base == "." || base == ".." || base.contains('/') || base.contains('\0') {
        return Err(Error::Invalid(format!("{name:?} is not a file name")));
    }
    Ok((sub, base))
}

fn remove_entry(dir_fd: BorrowedFd, dir: &Path, name: &str) -> Result<()> {
    let (sub, base) = split_name(name)?;
    match sub {
        None => unlink_at(dir_fd, dir, base).map(|_| ()),
        Some(sub) => match open_sub(dir_fd, dir, sub)? {
            Some(fd) => {
                unlink_at(fd.as_fd(), &dir.join(sub), base)?;
                sync_fd(fd.as_fd(), &dir.join(sub))
            }
            None => Ok(()),
        },
    }
}

fn remove_dir_entry(dir_fd: BorrowedFd, dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    if name != PROVISIONED {
        return Err(Error::Invalid(format!("{name:?} is not a dir wgp2p owns")));
    }
    let Some(sub) = open_sub(dir_fd, dir, name)? else {
        return Ok(());
    };
    // Its temp files are ours; anything else left in it stays, and so does the dir.
    sweep(sub.as_fd(), &path);
    drop(sub);
    match rustix::fs::unlinkat(dir_fd, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT | Errno::NOTEMPTY | Errno::EXIST) => {}
        Err(e) => return Err(Error::io("remove", &path, e.into())),
    }
    Ok(())
}

/// One step of a change.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Write(String, Vec<u8>),
    Remove(String),
    RemoveDir(String),
}

/// A set of file changes in the config dir made as one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    ops: Vec<Op>,
}

impl Change {
    pub fn new() -> Change {
        Change::default()
    }

    /// Write `name` (`file` or `provisioned-peers/file`) with `bytes`, mode 0600.
    pub fn write(&mut self, name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> &mut Change {
        self.ops.push(Op::Write(name.into(), bytes.into()));
        self
    }

    /// Remove the file `name` (a missing file is fine).
    pub fn remove(&mut self, name: impl Into<String>) -> &mut Change {
        self.ops.push(Op::Remove(name.into()));
        self
    }

    /// Remove `provisioned-peers` once empty (after the files removed
    /// before it).
    pub fn remove_dir(&mut self, name: impl Into<String>) -> &mut Change {
        self.ops.push(Op::RemoveDir(name.into()));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// What the change writes last into `name`, if it writes it.
    pub fn written(&self, name: &str) -> Option<&[u8]> {
        self.ops.iter().rev().find_map(|op| match op {
            Op::Write(n, bytes) if n == name => Some(bytes.as_slice()),
            _ => None,
        })
    }

    /// The names this change writes or removes, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().map(|op| match op {
            Op::Write(n, _) | Op::Remove(n) | Op::RemoveDir(n) => n.as_str(),
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = JOURNAL_MAGIC.as_bytes().to_vec();
        for op in &self.ops {
            match op {
                Op::Write(name, bytes) => {
                    out.extend(format!("write {} {name}\n", bytes.len()).as_bytes());
                    out.extend(bytes);
                    out.push(b'\n');
                }
                Op::Remove(name) => out.extend(format!("remove {name}\n").as_bytes()),
                Op::RemoveDir(name) => out.extend(format!("rmdir {name}\n").as_bytes()),
            }
        }
        out.extend(JOURNAL_END.as_bytes());
        out
    }

    fn decode(mut bytes: &[u8]) -> Option<Change> {
        bytes = bytes.strip_prefix(JOURNAL_MAGIC.as_bytes())?;
        let mut ops = Vec::new();
        loop {
            if bytes == JOURNAL_END.as_bytes() {
                return Some(Change { ops });
            }
            let end = bytes.iter().position(|b| *b == b'\n')?;
            let line = std::str::from_utf8(&bytes[..end]).ok()?;
            bytes = &bytes[end + 1..];
            let (verb, rest) = line.split_once(' ')?;
            let op = match verb {
                "write" => {
                    let (len, name) = rest.split_once(' ')?;
                    let len: usize = len.parse().ok()?;
                    let data = bytes.get(..len)?.to_vec();
                    if bytes.get(len) != Some(&b'\n') {
                        return None;
                    }
                    bytes = &bytes[len + 1..];
                    Op::Write(name.to_string(), data)
                }
                "remove" => Op::Remove(rest.to_string()),
                "rmdir" => Op::RemoveDir(rest.to_string()),
                _ => return None,
            };
            ops.push(op);
        }
    }
}

fn run_ops(dir: &Path, change: &Change) -> Result<()> {
    let fd = open_dir(dir)?;
    for op in &change.ops {
        match op {
            Op::Write(name, bytes) => write_entry(fd.as_fd(), dir, name, bytes)?,
            Op::Remove(name) => remove_entry(fd.as_fd(), dir, name)?,
            Op::RemoveDir(name) => remove_dir_entry(fd.as_fd(), dir, name)?,
        }
    }
    sync_fd(fd.as_fd(), dir)
}

/// Make `change` in the config dir `dir` as one transaction (see the module
/// doc); the caller holds the lock.
pub fn apply(dir: &Path, change: &Change) -> Result<()> {
    for name in change.names() {
        split_name(name)?;
    }
    if change.is_empty() {
        return Ok(());
    }
    if change.ops.len() == 1 {
        return run_ops(dir, change);
    }
    let undo = undo_of(dir, change)?;
    let fd = open_dir(dir)?;
    replace_at(fd.as_fd(), dir, JOURNAL, &change.encode())?;
    if let Err(e) = run_ops(dir, change) {
        // A step failed (a full disk): put back what was replaced. If that
        // fails too, the journal stays and the next run completes it.
        if run_ops(dir, &undo).is_ok() {
            let _ = unlink_at(fd.as_fd(), dir, JOURNAL).and_then(|_| sync_fd(fd.as_fd(), dir));
        }
        return Err(e);
    }
    unlink_at(fd.as_fd(), dir, JOURNAL)?;
    sync_fd(fd.as_fd(), dir)
}

/// The change that puts back what `change` replaces or removes.
pub fn undo_of(dir: &Path, change: &Change) -> Result<Change> {
    let mut undo = Change::new();
    for op in &change.ops {
        match op {
            Op::Write(name, _) | Op::Remove(name) => match current(dir, name)? {
                Some(bytes) => undo.write(name.as_str(), bytes),
                None => undo.remove(name.as_str()),
            },
            // The files written back recreate the dir.
            Op::RemoveDir(_) => continue,
        };
    }
    Ok(undo)
}

/// The bytes `name` holds now (`None`: absent), for a change's undo.
pub fn current(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let (sub, base) = split_name(name)?;
    match sub {
        None => read_entry(&dir.join(base)),
        Some(sub) => read_entry(&dir.join(sub).join(base)),
    }
}

/// A mode problem found by [`check_modes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeFinding {
    pub path: PathBuf,
    pub mode: u32,
    pub want: u32,
}

impl ModeFinding {
    pub fn error(&self) -> Error {
        refuse_mode(&self.path, self.mode, self.want)
    }
}

/// Entries of the config dir (the dir itself, `files`, `provisioned-peers/`
/// and its files) whose mode is not 0700 (dirs) or 0600 (files). With
/// `repair`, each is set right and nothing is reported. Links, foreign
/// owners and odd file types are errors either way.
pub fn check_modes(dir: &Path, files: &[&str], repair: bool) -> Result<Vec<ModeFinding>> {
    let mut found = Vec::new();
    let fd = open_dir(dir)?;
    let mut check = |fd: BorrowedFd, path: &Path, st: &Stat, want: u32| -> Result<()> {
        let mode = st.st_mode & 0o7777;
        if mode != want {
            if repair {
                chmod_fd(fd, path, want)?;
            } else {
                found.push(ModeFinding {
                    path: path.to_path_buf(),
                    mode,
                    want,
                });
            }
        }
        Ok(())
    };
    let st = fstat(fd.as_fd()).map_err(|e| Error::io("stat", dir, e))?;
    check(fd.as_fd(), dir, &st, 0o700)?;
    for name in files {
        let path = dir.join(name);
        let Some(st) = lstat_at(fd.as_fd(), name).map_err(|e| Error::io("stat", &path, e))? else {
            continue;
        };
        if is_kind(&st, libc::S_IFLNK) && may_be_link(name) {
            // A linked config: its target's mode is checked.
            let target = link_target(&path)?;
            let file = File::open(&target).map_err(|e| Error::io("open", &target, e))?;
            let st = fstat(file.as_fd()).map_err(|e| Error::io("stat", &target, e))?;
            check(file.as_fd(), &target, &st, 0o600)?;
            continue;
        }
        check_stat(&path, &st, false)?;
        let file = open_at(
            fd.as_fd(),
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        )
        .map_err(|e| Error::io("open", &path, e))?;
        check(file.as_fd(), &path, &st, 0o600)?;
    }
    if let Some(sub) = open_sub(fd.as_fd(), dir, PROVISIONED)? {
        let sub_path = dir.join(PROVISIONED);
        let st = fstat(sub.as_fd()).map_err(|e| Error::io("stat", &sub_path, e))?;
        check(sub.as_fd(), &sub_path, &st, 0o700)?;
        let entries = fs::read_dir(&sub_path).map_err(|e| Error::io("list", &sub_path, e))?;
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let path = sub_path.join(&name);
            let Some(st) = lstat_at(sub.as_fd(), &name).map_err(|e| Error::io("stat", &path, e))?
            else {
                continue;
            };
            check_stat(&path, &st, false)?;
            let file = open_at(
                sub.as_fd(),
                &name,
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
                0,
            )
            .map_err(|e| Error::io("open", &path, e))?;
            check(file.as_fd(), &path, &st, 0o600)?;
        }
    }
    Ok(found)
}

/// Whether a killed run left its journal: a change that the next run
/// under the lock completes. Read without the lock (`status`, `doctor`).
pub fn journal_pending(dir: &Path) -> bool {
    fs::symlink_metadata(dir.join(JOURNAL)).is_ok()
}

/// The regular files in `provisioned-peers/` (names only, sorted); a
/// linked or foreign dir is refused.
pub fn provisioned_files(dir: &Path) -> Result<Vec<String>> {
    let fd = open_dir(dir)?;
    let Some(_sub) = open_sub(fd.as_fd(), dir, PROVISIONED)? else {
        return Ok(Vec::new());
    };
    let path = dir.join(PROVISIONED);
    let mut names: Vec<String> = fs::read_dir(&path)
        .map_err(|e| Error::io("list", &path, e))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(TEMP_PREFIX))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn one(name: &str, bytes: &[u8]) -> Change {
        let mut change = Change::new();
        change.write(name, bytes);
        change
    }

    #[test]
    fn atomic_write_is_0600_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        apply(dir.path(), &one("f", b"one")).unwrap();
        apply(dir.path(), &one("f", b"two")).unwrap();
        let path = dir.path().join("f");
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // Only the target is left: no temp files, no journal.
        assert_eq!(names(dir.path()), ["f"]);
    }

    #[test]
    fn multi_file_change_leaves_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("gone"), b"x").unwrap();
        let mut change = Change::new();
        change
            .write("a", "1")
            .write("provisioned-peers/p.conf", "2")
            .remove("gone");
        apply(dir.path(), &change).unwrap();
        assert_eq!(names(dir.path()), ["a", PROVISIONED]);
        let sub = dir.path().join(PROVISIONED);
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::read(sub.join("p.conf")).unwrap(), b"2");
    }

    #[test]
    fn journal_round_trips_and_rejects_truncation() {
        let mut change = Change::new();
        change
            .write("wg0.conf", "[Interface]\nend\nwrite 3 x\n")
            .write("privatekey", "")
            .remove("address")
            .remove_dir(PROVISIONED);
        let bytes = change.encode();
        assert_eq!(Change::decode(&bytes), Some(change));
        for cut in 0..bytes.len() {
            assert_eq!(Change::decode(&bytes[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_left_journal_is_replayed_by_the_next_lock() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(dir.path().join("privatekey"), b"old").unwrap();
        let mut change = Change::new();
        change.write("privatekey", "new").write("wg0.conf", "conf");
        // A run killed after writing its journal and one temp file.
        fs::write(dir.path().join(JOURNAL), change.encode()).unwrap();
        fs::write(dir.path().join(".wgp2p-tmp-privatekey.1.0"), b"new").unwrap();
        let _held = lock(dir.path()).unwrap();
        assert_eq!(names(dir.path()), ["privatekey", "wg0.conf"]);
        assert_eq!(fs::read(dir.path().join("privatekey")).unwrap(), b"new");
    }

    #[test]
    fn a_failing_step_puts_back_what_was_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), b"old").unwrap();
        // A file where the dir should be: the second step fails.
        fs::write(dir.path().join(PROVISIONED), b"not a dir").unwrap();
        let mut change = Change::new();
        change
            .write("a", "new")
            .write("provisioned-peers/p.conf", "x");
        assert!(apply(dir.path(), &change).is_err());
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["a", PROVISIONED]);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "../x",
            "/etc/x",
            "a/b",
            "provisioned-peers/../x",
            "",
            "provisioned-peers/",
        ] {
            let dir = tempfile::tempdir().unwrap();
            assert!(apply(dir.path(), &one(bad, b"x")).is_err(), "{bad}");
        }
    }

    #[test]
    fn ensure_dir_tightens_mode_and_follows_a_linked_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("wg");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&sub).unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.path().join("link");
        symlink(&sub, &link).unwrap();
        ensure_dir(&link).unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
        // What is in it is an entry: a linked provisioned-peers is refused.
        symlink(dir.path(), sub.join(PROVISIONED)).unwrap();
        let err = read_entry(&link.join(PROVISIONED).join("x.conf"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("provisioned-peers"), "{err}");
    }

    #[test]
    fn lock_sweeps_orphaned_temp_files_here_and_in_provisioned_peers() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".wgp2p-abc123"), b"half").unwrap();
        fs::write(dir.path().join("wg0.conf"), b"keep").unwrap();
        let sub = dir.path().join(PROVISIONED);
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join(".wgp2p-tmp-phone.conf.9.0"), b"secret").unwrap();
        fs::write(sub.join("tablet.conf"), b"keep").unwrap();
        let _held = lock(dir.path()).unwrap();
        assert_eq!(names(dir.path()), [PROVISIONED, "wg0.conf"]);
        assert_eq!(names(&sub), ["tablet.conf"]);
    }

    #[test]
    fn lock_is_exclusive_and_creates_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        assert!(names(dir.path()).is_empty());
        let other = File::open(dir.path()).unwrap();
        assert!(other.try_lock().is_err());
        drop(held);
        assert!(other.try_lock().is_ok());
    }

    #[test]
    fn links_are_refused_except_a_conf_which_is_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("real.conf");
        fs::write(&target, b"old").unwrap();
        symlink(&target, dir.path().join("wg0.conf")).unwrap();
        symlink(&target, dir.path().join("endpoint")).unwrap();
        assert_eq!(
            read_entry(&dir.path().join("wg0.conf")).unwrap().unwrap(),
            b"old"
        );
        let err = read_entry(&dir.path().join("endpoint"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is a symbolic link") && !err.contains("old"),
            "{err}"
        );
        apply(dir.path(), &one("wg0.conf", b"new")).unwrap();
        assert!(
            fs::symlink_metadata(dir.path().join("wg0.conf"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert!(apply(dir.path(), &one("endpoint", b"x")).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(names(elsewhere.path()), ["real.conf"]);
    }

    #[test]
    fn modes_are_reported_or_repaired() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.path().join("privatekey"), b"k").unwrap();
        fs::set_permissions(
            dir.path().join("privatekey"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let found = check_modes(dir.path(), &["privatekey", "publickey"], false).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[1].error().to_string().contains("mode 0644"));
        assert!(
            check_modes(dir.path(), &["privatekey"], true)
                .unwrap()
                .is_empty()
        );
        assert!(
            check_modes(dir.path(), &["privatekey"], false)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            fs::metadata(dir.path().join("privatekey")).unwrap().mode() & 0o777,
            0o600
        );
    }
}
