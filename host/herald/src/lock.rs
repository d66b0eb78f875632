//! One `herald serve` per journal: an exclusive advisory lock on a file next
//! to the journal, held for the process lifetime.
//!
//! Two hosts on one SQLite journal would both claim and deliver the same
//! pending events (SQLite keeps the file consistent, not the workers'
//! claims), so the second one refuses to start and names the first. The
//! kernel drops the lock when the process exits, however it exits, so a
//! crash never leaves a stale lock behind; the pid written in the file is
//! only there to name the holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "{journal} is in use by another herald serve ({holder}; lock file {lock}): \
         stop it first, or give this one another storage.data_dir"
    )]
    Held {
        journal: PathBuf,
        lock: PathBuf,
        /// "pid N", or a note that the pid could not be read.
        holder: String,
    },
    /// The lock file could not be opened, locked or written.
    #[error("cannot lock {lock}: {source}")]
    Io {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct JournalLock {
    _file: File,
    path: PathBuf,
}

impl JournalLock {
    /// The lock file used for `journal`: `<journal>.lock` (`herald.db.lock`).
    pub fn path_for(journal: &Path) -> PathBuf {
        let mut name = journal.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock for `journal` without waiting, creating the journal's
    /// directory and the lock file when missing, and writes this process's
    /// pid into it.
    pub fn acquire(journal: &Path) -> Result<JournalLock, LockError> {
        let path = Self::path_for(journal);
        let io = |source| LockError::Io {
            lock: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Not truncated on open: the holder's pid must survive a failed attempt.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder = match file.read_to_string(&mut text) {
                    Ok(_) if text.trim().parse::<u32>().is_ok() => {
                        format!("pid {}", text.trim())
                    }
                    _ => "pid unknown".to_string(),
                };
                return Err(LockError::Held {
                    journal: journal.to_path_buf(),
                    lock: path,
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(JournalLock { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_journal_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("herald-lock-{}", std::process::id()));
        let journal = dir.join("sub").join("herald.db");
        let first = JournalLock::acquire(&journal).expect("first lock");
        assert_eq!(first.path(), dir.join("sub").join("herald.db.lock"));
        // flock locks belong to the open file description, so a second open
        // in the same process conflicts just as another process would.
        let err = JournalLock::acquire(&journal).expect_err("second lock");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        let again = JournalLock::acquire(&journal).expect("lock after release");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
