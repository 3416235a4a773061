//! Exclusive, private ownership of a state dir.
//!
//! The state dir holds every applied manifest, every pod's log and the
//! admin socket, through which anyone who can connect runs programs as the
//! runtime's user. So it is the runtime user's alone: created 0700 whatever
//! the umask, refused when another user owns it or others may write to it
//! (they could have planted the database or the socket), and its files are
//! made 0600. And it is one runtime's at a time: [`StateDir::claim`] takes an
//! exclusive `flock` on `lock` before anything else happens, and keeps it
//! for the runtime's life; the lock file names the holder's pid and start
//! time, which pods' supervisors read to tell whether their runtime lives.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use weir_supervisor::proc_info;

pub use weir_supervisor::lock::{LOCK_FILE, holder};

/// Why a state dir cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another user owns it.
    #[error(
        "state dir {path} belongs to uid {owner}, not to this user (uid {me}): refusing to use it; pass --state-dir with a dir of your own"
    )]
    NotOwned {
        /// The dir.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// Others may write to it (or it is not a directory).
    #[error(
        "state dir {path} is {what}: refusing to use it (others could have planted files there); remove it or `chmod 700` it after checking its contents"
    )]
    Unsafe {
        /// The dir.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// Another runtime holds it.
    #[error("state dir {path} is in use by another `weir up` (pid {pid})")]
    Held {
        /// The dir.
        path: PathBuf,
        /// The holder's pid, as its lock file says (`?` when unreadable).
        pid: String,
    },
    /// The file system refused.
    #[error("state dir {path}: {source}")]
    Io {
        /// The dir.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A claimed state dir: private to this user, locked for this process.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Creates (0700) or checks `path`, takes its lock, records this
    /// process in the lock file, and makes the files already there private.
    pub fn claim(path: &Path) -> Result<Self, ClaimError> {
        let io = |source| ClaimError::Io {
            path: path.to_owned(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(io)?;
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        let me = rustix::process::geteuid().as_raw();
        check_ownership(path, meta.is_dir(), meta.uid(), meta.mode(), me)?;
        if meta.mode() & 0o077 != 0 {
            // Ours, and nobody else could write to it: only readable by
            // others, as an older weir left it. Close it.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path.join(LOCK_FILE))
            .map_err(io)?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut holder = String::new();
            let _ = lock.read_to_string(&mut holder);
            let pid = holder.split_whitespace().next().unwrap_or("?").to_owned();
            return Err(ClaimError::Held {
                path: path.to_owned(),
                pid,
            });
        }
        let me = std::process::id();
        let record = format!("{me} {}\n", proc_info::start_time(me).unwrap_or(0));
        lock.set_len(0).map_err(io)?;
        lock.rewind().map_err(io)?;
        lock.write_all(record.as_bytes()).map_err(io)?;
        make_private(path).map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The dir.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether a dir with this owner and mode may be used by `me`.
fn check_ownership(
    path: &Path,
    is_dir: bool,
    owner: u32,
    mode: u32,
    me: u32,
) -> Result<(), ClaimError> {
    if !is_dir {
        return Err(ClaimError::Unsafe {
            path: path.to_owned(),
            what: "not a directory (a symbolic link or a file)".into(),
        });
    }
    if owner != me {
        return Err(ClaimError::NotOwned {
            path: path.to_owned(),
            owner,
            me,
        });
    }
    if mode & 0o022 != 0 {
        return Err(ClaimError::Unsafe {
            path: path.to_owned(),
            what: format!("writable by group or others (mode {:o})", mode & 0o777),
        });
    }
    Ok(())
}

/// The files and dirs an older weir left with the umask's permissions
/// become 0600 and 0700.
fn make_private(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let wanted = if meta.is_dir() { 0o700 } else { 0o600 };
        if meta.file_type().is_symlink() || meta.mode() & 0o777 == wanted {
            continue;
        }
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(wanted))?;
        if meta.is_dir() {
            make_private(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_private_dir_of_ones_own_is_used() {
        let p = Path::new("/s");
        let cases = [
            // (is dir, owner, mode, usable)
            (true, 1000, 0o700, true),
            (true, 1000, 0o755, true),
            (true, 1000, 0o750, true),
            (true, 1000, 0o775, false),
            (true, 1000, 0o757, false),
            (true, 1000, 0o777, false),
            (true, 0, 0o700, false),
            (true, 1001, 0o700, false),
            (false, 1000, 0o700, false),
        ];
        for (is_dir, owner, mode, usable) in cases {
            assert_eq!(
                check_ownership(p, is_dir, owner, mode, 1000).is_ok(),
                usable,
                "{is_dir} {owner} {mode:o}"
            );
        }
    }

    #[test]
    fn a_state_dir_is_created_private_and_locked_once() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/state");
        let old = rustix::process::umask(rustix::fs::Mode::empty());
        let claimed = StateDir::claim(&dir);
        rustix::process::umask(old);
        let claimed = claimed.unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "under umask 000");
        let lock_mode = std::fs::metadata(dir.join(LOCK_FILE)).unwrap().mode() & 0o777;
        assert_eq!(lock_mode, 0o600);
        assert_eq!(holder(&dir), Some(std::process::id()));
        // flock is per open file: a second claim fails even in this process.
        match StateDir::claim(&dir) {
            Err(ClaimError::Held { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("{other:?}"),
        }
        drop(claimed);
        StateDir::claim(&dir).unwrap();
    }

    #[test]
    fn an_old_readable_dir_is_closed_and_a_writable_one_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("state.db"), b"").unwrap();
        std::fs::set_permissions(dir.join("state.db"), PermissionsExt::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o755)).unwrap();
        drop(StateDir::claim(&dir).unwrap());
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::metadata(dir.join("state.db")).unwrap().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o777)).unwrap();
        let err = StateDir::claim(&dir).unwrap_err();
        assert!(
            err.to_string().contains("writable by group or others"),
            "{err}"
        );
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o700)).unwrap();
        let err = StateDir::claim(&link).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
