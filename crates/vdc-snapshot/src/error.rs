//! The one error type of the crate, and what can be wrong with a stored blob.

use std::io;
use std::path::{Path, PathBuf};

// === Types ===

/// Everything that can go wrong while staging, capturing, checking, restoring
/// or moving a snapshot. Every variant names what it was working on (a path,
/// a snapshot id, a file inside the snapshot, a blob hash) and what it
/// expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A system call on `path` failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done, as a verb phrase ("read blob", "create directory").
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The error the system returned.
        #[source]
        source: io::Error,
    },
    /// `stage` was given a destination that already exists.
    #[error("stage destination {0} already exists (expected a path that does not exist)")]
    DestinationExists(PathBuf),
    /// A directory to stage or capture holds something snapshots cannot
    /// represent (a name that is not UTF-8, a root that is not a directory).
    #[error("cannot snapshot {path}: {reason}")]
    Unsupported {
        /// The offending path.
        path: PathBuf,
        /// Why it cannot be represented.
        reason: String,
    },
    /// No snapshot has this id, id prefix or name.
    #[error("no snapshot matches {key:?} (expected a full id, a unique id prefix of at least 6 hex characters, or a name)")]
    NotFound {
        /// The key that was looked up.
        key: String,
    },
    /// An id prefix or name matches more than one snapshot.
    #[error("snapshot key {key:?} is ambiguous: it matches {}", candidates.join(", "))]
    Ambiguous {
        /// The key that was looked up.
        key: String,
        /// The ids of every snapshot it matches.
        candidates: Vec<String>,
    },
    /// A manifest is malformed, or its id does not match its content (it
    /// was altered after it was written).
    #[error("manifest {what} refused: {reason}")]
    InvalidManifest {
        /// Where the manifest came from: a file path, an id, or "archive".
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A chunk of a file in a snapshot cannot be read back as stored.
    #[error("snapshot {snapshot}: file {file:?} chunk {chunk} (blob {hash}): {problem}")]
    Chunk {
        /// The snapshot id.
        snapshot: String,
        /// The file's path inside the snapshot.
        file: String,
        /// The chunk's index in the file (0-based).
        chunk: usize,
        /// The blob the chunk is stored as.
        hash: String,
        /// What is wrong with it.
        problem: BlobProblem,
    },
    /// A blob handed to the store (`write_blob`, `import`) does not hold
    /// what its hash says.
    #[error("blob {hash} refused: {problem}")]
    Blob {
        /// The hash the blob was offered under.
        hash: String,
        /// What is wrong with it.
        problem: BlobProblem,
    },
    /// A manifest handed to `write_manifest` references a blob the store
    /// lacks.
    #[error("manifest {id} refused: it references blob {hash}, which the store lacks (write the blob first)")]
    MissingBlob {
        /// The manifest's id.
        id: String,
        /// The first missing blob.
        hash: String,
    },
    /// A string used as a blob hash is not one.
    #[error("invalid blob hash {0:?}: expected 64 lowercase hex characters")]
    InvalidHash(String),
    /// An exported snapshot file is truncated, altered, or not one at all.
    #[error("snapshot archive refused at byte {offset}: {reason}")]
    Archive {
        /// How far into the input the problem was found.
        offset: u64,
        /// What was expected there.
        reason: String,
    },
}

/// What is wrong with one stored blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobProblem {
    /// The blob file does not exist.
    #[error("blob is missing")]
    Missing,
    /// The blob is not a complete zstd frame (truncated or overwritten).
    #[error("blob is truncated or not a valid zstd frame: {0}")]
    Corrupt(String),
    /// The blob decompresses to a different length than recorded.
    #[error("length mismatch: expected {expected} bytes, found {actual}")]
    LengthMismatch {
        /// The length recorded in the manifest.
        expected: u64,
        /// The length found.
        actual: u64,
    },
    /// The blob decompresses to content with another hash.
    #[error("checksum mismatch: content hashes to {actual}")]
    ChecksumMismatch {
        /// The sha256 of what the blob holds.
        actual: String,
    },
}

// === impl SnapshotError ===

impl SnapshotError {
    /// Builds an [`SnapshotError::Io`].
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// True if this is an error about a missing or damaged blob of a
    /// snapshot (as opposed to, say, a full disk).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Self::Chunk { .. } | Self::Blob { .. } | Self::InvalidManifest { .. }
        )
    }
}

/// Adds "what and where" to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Maps the error into [`SnapshotError::Io`] naming `op` and `path`.
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, SnapshotError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, SnapshotError> {
        self.map_err(|e| SnapshotError::io(op, path, e))
    }
}
