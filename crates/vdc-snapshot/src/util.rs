//! Small helpers shared by the modules: hex hashes, a scoped worker pool,
//! directory fsync and a removal that copes with read-only directories.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::error::{IoContext, SnapshotError};

// === Hashes ===

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Parses hex (either case, an even number of digits) into bytes.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// Parses 64 lowercase hex characters into 32 bytes.
pub(crate) fn unhex32(s: &str) -> Option<[u8; 32]> {
    if !is_hash(s) {
        return None;
    }
    unhex(s)?.try_into().ok()
}

/// Hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// True for 64 lowercase hex characters (a sha256 as this crate writes it).
pub(crate) fn is_hash(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

/// True if every character is a lowercase hex digit.
pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// === Worker pool ===

/// Runs `work` on every job with up to `threads` scoped threads, each with
/// its own state from `init` (buffers, a zstd context), and returns the
/// results in job order. Stops handing out jobs after the first error and
/// returns the error of the lowest-numbered failing job.
pub(crate) fn parallel_map<J, R, S>(
    threads: usize,
    jobs: &[J],
    init: impl Fn() -> Result<S, SnapshotError> + Sync,
    work: impl Fn(&mut S, &J) -> Result<R, SnapshotError> + Sync,
) -> Result<Vec<R>, SnapshotError>
where
    J: Sync,
    R: Send,
{
    let threads = threads.clamp(1, jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(jobs.len()));
    let failure: Mutex<Option<(usize, SnapshotError)>> = Mutex::new(None);

    let run = || {
        let fail = |index: usize, error: SnapshotError| {
            stop.store(true, Ordering::Relaxed);
            let mut slot = failure.lock().unwrap_or_else(|e| e.into_inner());
            if !matches!(slot.as_ref(), Some((i, _)) if *i <= index) {
                *slot = Some((index, error));
            }
        };
        let mut state = match init() {
            Ok(state) => state,
            Err(error) => return fail(0, error),
        };
        let mut mine = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(index) else { break };
            match work(&mut state, job) {
                Ok(result) => mine.push((index, result)),
                Err(error) => fail(index, error),
            }
        }
        results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(mine);
    };
    if threads == 1 {
        run();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(run);
            }
        });
    }

    if let Some((_, error)) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(error);
    }
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_unstable_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

/// How many worker threads to use by default: the machine's cores, at most 4.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}

// === Files ===

/// Makes a directory's entries durable.
pub(crate) fn fsync_dir(path: &Path) -> Result<(), SnapshotError> {
    fs::File::open(path)
        .and_then(|d| d.sync_all())
        .ctx("fsync directory", path)
}

/// Removes a tree, first making any directory in it writable if that is
/// what stands in the way (a restored volume may hold read-only
/// directories, which even their owner cannot empty).
pub(crate) fn remove_tree(path: &Path) -> Result<(), SnapshotError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Ok(meta) if !meta.is_dir() => return fs::remove_file(path).ctx("remove", path),
        _ => {}
    }
    match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    make_dirs_writable(path);
    fs::remove_dir_all(path).ctx("remove directory tree", path)
}

fn make_dirs_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}

/// Removes a directory tree when dropped, unless disarmed: cleans up a
/// half-written restore or import on every error path.
pub(crate) struct TreeGuard {
    path: Option<std::path::PathBuf>,
}

impl TreeGuard {
    pub(crate) fn new(path: std::path::PathBuf) -> Self {
        Self { path: Some(path) }
    }

    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Keeps the tree: the caller has moved it into place.
    pub(crate) fn disarm(&mut self) {
        self.path = None;
    }
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = remove_tree(&path);
        }
    }
}

// === Tests ===

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip() {
        let bytes: Vec<u8> = (0..32).map(|i| i * 7 + 3).collect();
        let text = hex(&bytes);
        assert!(is_hash(&text));
        assert_eq!(unhex32(&text).map(|a| a.to_vec()), Some(bytes));
        assert_eq!(unhex32(&text.to_uppercase()), None);
        assert_eq!(unhex32("ab"), None);
    }

    #[test]
    fn parallel_map_keeps_order_and_reports_the_first_failing_job() {
        let jobs: Vec<u32> = (0..100).collect();
        let doubled = parallel_map(3, &jobs, || Ok(()), |(), j| Ok(j * 2)).unwrap();
        assert_eq!(doubled, jobs.iter().map(|j| j * 2).collect::<Vec<_>>());

        let failing = |(): &mut (), j: &u32| {
            if *j == 10 || *j == 60 {
                Err(SnapshotError::InvalidHash(j.to_string()))
            } else {
                Ok(*j)
            }
        };
        for threads in [1, 2, 4] {
            let err = parallel_map(threads, &jobs, || Ok(()), failing).unwrap_err();
            assert!(
                matches!(err, SnapshotError::InvalidHash(ref s) if s == "10"),
                "{err}"
            );
        }
        let none: Vec<u32> = parallel_map(4, &[] as &[u32], || Ok(()), |(), j| Ok(*j)).unwrap();
        assert!(none.is_empty());
    }
}
