//! Output files written atomically, and what a killed run leaves behind.
//!
//! Every output is staged beside its destination under a name that carries the
//! writer's process id (`.ecospac-<pid>-…`) and renamed over it when complete.
//! Staged files are removed when dropped (an error), by [`close`] when a
//! signal ends the run, and, after a `kill -9`, by the next run in that folder
//! ([`remove_stale`]: entries whose process is gone).
//!
//! ```
//! use std::io::Write;
//! let dir = tempfile::tempdir().unwrap();
//! let mut f = ecospac_ir::staging::file(dir.path()).unwrap();
//! f.write_all(b"weights").unwrap();
//! f.persist(dir.path().join("out.bin")).unwrap();
//! assert_eq!(std::fs::read(dir.path().join("out.bin")).unwrap(), b"weights");
//! assert!(ecospac_ir::staging::remove_stale(dir.path()).unwrap().is_empty());
//! ```

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Folders this process has staged files in, and whether staging is closed
/// (a signal is ending the run). Staging happens under this lock, so an entry
/// is either made before [`close`] looks for it or refused.
static DIRS: Mutex<Staged> = Mutex::new(Staged { dirs: Vec::new(), closed: false });

struct Staged {
    dirs: Vec<PathBuf>,
    closed: bool,
}

const STEM: &str = ".ecospac-";

/// The name prefix of this process's staged files.
pub fn prefix() -> String {
    format!("{STEM}{}-", std::process::id())
}

/// Runs `make` (which creates an entry in `dir`) under the lock, remembering
/// `dir`; refused once staging is closed.
fn staged<T>(dir: &Path, make: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut s = DIRS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if s.closed {
        return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "the run is being interrupted"));
    }
    if !s.dirs.contains(&canonical) {
        s.dirs.push(canonical);
    }
    make()
}

/// A staged file in `dir`, to be persisted over its destination; readable by
/// all like a file written in place (not the 0600 of a private temp file).
pub fn file(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let prefix = prefix();
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o644));
    }
    staged(dir, || b.tempfile_in(dir).map_err(plain))
}

/// The OS error without the staged name `tempfile` appends (the caller names
/// the destination).
fn plain(e: std::io::Error) -> std::io::Error {
    e.raw_os_error()
        .map_or_else(|| std::io::Error::new(e.kind(), e.kind().to_string()), std::io::Error::from_raw_os_error)
}

/// A staged folder in `parent` (for outputs of several files).
pub fn dir(parent: &Path) -> std::io::Result<tempfile::TempDir> {
    let prefix = prefix();
    staged(parent, || tempfile::Builder::new().prefix(&prefix).tempdir_in(parent).map_err(plain))
}

/// Removes every file and folder this process has staged and not yet
/// persisted. Returns how many were removed.
pub fn remove_own() -> usize {
    let s = DIRS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    remove_in(&s.dirs)
}

/// For a signal handler that ends the run: removes what [`remove_own`] does
/// and refuses all staging from then on (an `Interrupted` error), so nothing
/// staged by another thread meanwhile is left behind. Returns how many were removed.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let staged = ecospac_ir::staging::file(dir.path()).unwrap();
/// assert_eq!(ecospac_ir::staging::close(), 1);
/// assert!(!staged.path().exists());
/// let refused = ecospac_ir::staging::file(dir.path()).unwrap_err();
/// assert_eq!(refused.kind(), std::io::ErrorKind::Interrupted);
/// ```
pub fn close() -> usize {
    let mut s = DIRS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    s.closed = true;
    remove_in(&s.dirs)
}

fn remove_in(dirs: &[PathBuf]) -> usize {
    let prefix = prefix();
    let mut n = 0;
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(d) else { continue };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) && remove(&e.path()) {
                n += 1;
            }
        }
    }
    n
}

fn remove(p: &Path) -> bool {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).is_ok(),
        Ok(_) => std::fs::remove_file(p).is_ok(),
        Err(_) => false,
    }
}

/// The process id a staged name carries, if it is one.
fn writer(name: &str) -> Option<u32> {
    name.strip_prefix(STEM)?.split('-').next()?.parse().ok()
}

fn running(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        // No portable check: assume it runs, so nothing of it is removed.
        true
    }
}

/// Removes what killed runs staged in `dir` (entries named by a process that
/// no longer runs) and returns their paths.
pub fn remove_stale(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name();
        let Some(pid) = writer(&name.to_string_lossy()) else { continue };
        if pid != std::process::id() && !running(pid) && remove(&e.path()) {
            removed.push(e.path());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_entries_of_dead_processes_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let own = file(dir.path()).expect("stage");
        // pid 0 is never a user process; pid 1 always runs.
        std::fs::write(dir.path().join(".ecospac-0-abc"), b"x").expect("write");
        std::fs::create_dir(dir.path().join(".ecospac-0-ckpt")).expect("mkdir");
        std::fs::write(dir.path().join(".ecospac-1-live"), b"x").expect("write");
        std::fs::write(dir.path().join("model.onnx"), b"x").expect("write");
        let mut gone = remove_stale(dir.path()).expect("clean");
        gone.sort();
        if cfg!(target_os = "linux") {
            assert_eq!(gone, vec![dir.path().join(".ecospac-0-abc"), dir.path().join(".ecospac-0-ckpt")]);
        }
        assert!(own.path().exists(), "this process's staged file stays");
        assert!(dir.path().join(".ecospac-1-live").exists() && dir.path().join("model.onnx").exists());
        assert_eq!(remove_own(), 1);
        assert!(!own.path().exists());
    }
}
