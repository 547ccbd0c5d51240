//! One writer per output folder.
//!
//! Two `spray run` on the same folder would clear and rewrite each other's files. A run takes
//! an advisory lock (`flock`) on `<out>/.spray.lock`: a plain run exclusively, the processes of
//! a sharded stage (`--shard i/n`, e.g. a Slurm array) shared, so they run side by side on
//! their own units while no plain run can start; each shard also locks its own
//! `<out>/.shard-<stage>-<i>-of-<n>.lock` exclusively, so the same shard cannot run twice.
//!
//! The kernel drops a lock when its process exits, however it exits: a lock left by a killed
//! run never blocks a restart (the file stays, unlocked). Advisory locks need a filesystem
//! that supports them across the processes involved (local disks do; NFS needs its lock
//! daemon).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::io::io_err;
use crate::{Result, StoreError};

/// How a process uses an output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// A plain run: clears and writes any stage folder.
    Exclusive,
    /// One shard of a stage: writes only its own units, beside other shards.
    Shared,
}

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct OutputLock {
    _files: Vec<File>,
    pub path: PathBuf,
}

/// The lock file of an output folder.
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join(".spray.lock")
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_err(path, e))
}

fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        "the shards of a sharded stage".to_owned()
    } else {
        text.to_owned()
    }
}

fn busy(dir: &Path, who: String, what: &str) -> StoreError {
    StoreError::Busy(format!(
        "{} is in use by another spray process ({who}); {what} cannot start until it ends \
         (or use another output folder)",
        dir.display()
    ))
}

impl OutputLock {
    /// Lock `dir` (created if missing) for `purpose` (e.g. `spray run`, `relevance shard 0/4`).
    /// `shard` names the unit lock a shared holder also takes.
    pub fn acquire(
        dir: &Path,
        mode: LockMode,
        purpose: &str,
        shard: Option<(&str, usize, usize)>,
    ) -> Result<OutputLock> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let path = lock_path(dir);
        let mut file = open(&path)?;
        let attempt = match mode {
            LockMode::Exclusive => file.try_lock(),
            LockMode::Shared => file.try_lock_shared(),
        };
        match attempt {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(busy(dir, holder(&mut file), purpose));
            }
            Err(TryLockError::Error(e)) => return Err(io_err(&path, e)),
        }
        let mut files = Vec::new();
        // Say who holds it, for the message another process will print (shared holders
        // leave it empty: there are several of them).
        let _ = file.set_len(0);
        if mode == LockMode::Exclusive {
            let note = format!("{purpose}, pid {}", std::process::id());
            let _ = file.write_all(note.as_bytes());
            let _ = file.flush();
        }
        files.push(file);
        if let Some((stage, index, count)) = shard {
            let unit = dir.join(format!(".shard-{stage}-{index}-of-{count}.lock"));
            let mut unit_file = open(&unit)?;
            match unit_file.try_lock() {
                Ok(()) => {
                    let _ = unit_file.set_len(0);
                    let _ = unit_file
                        .write_all(format!("{purpose}, pid {}", std::process::id()).as_bytes());
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(busy(dir, holder(&mut unit_file), purpose));
                }
                Err(TryLockError::Error(e)) => return Err(io_err(&unit, e)),
            }
            files.push(unit_file);
        }
        Ok(OutputLock {
            _files: files,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder; a test removes it at its end, so a failing one leaves it to look at.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spray-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    // flock locks belong to the open file description, so two `File`s in one process
    // conflict exactly as two processes do.
    #[test]
    fn exclusive_excludes_everything_and_is_released_on_drop() {
        let dir = scratch("exclusive");
        let held = OutputLock::acquire(&dir, LockMode::Exclusive, "spray run", None).unwrap();
        let e = OutputLock::acquire(&dir, LockMode::Exclusive, "spray run", None).unwrap_err();
        assert!(
            e.to_string()
                .contains("in use by another spray process (spray run, pid"),
            "{e}"
        );
        assert!(
            OutputLock::acquire(&dir, LockMode::Shared, "shard", Some(("relevance", 0, 2)))
                .is_err()
        );
        drop(held);
        OutputLock::acquire(&dir, LockMode::Exclusive, "spray run", None).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn shards_share_but_not_the_same_shard() {
        let dir = scratch("shared");
        let a =
            OutputLock::acquire(&dir, LockMode::Shared, "s0", Some(("relevance", 0, 2))).unwrap();
        let _b =
            OutputLock::acquire(&dir, LockMode::Shared, "s1", Some(("relevance", 1, 2))).unwrap();
        let e = OutputLock::acquire(
            &dir,
            LockMode::Shared,
            "s0 again",
            Some(("relevance", 0, 2)),
        )
        .unwrap_err();
        assert!(e.to_string().contains("s0, pid"), "{e}");
        assert!(OutputLock::acquire(&dir, LockMode::Exclusive, "spray run", None).is_err());
        drop(a);
        OutputLock::acquire(
            &dir,
            LockMode::Shared,
            "s0 again",
            Some(("relevance", 0, 2)),
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
