//! The snapshot store on disk: where blobs and manifests live, how they are
//! written atomically, found, listed, deleted and garbage-collected, and the
//! lock that keeps garbage collection from racing writers.
//!
//! Layout under the root:
//! - `blobs/ab/cdef…`: one zstd frame per distinct chunk, named by the
//!   sha256 of the uncompressed chunk (`ab` is its first two hex digits);
//! - `manifests/<id>.json`: one manifest per snapshot;
//! - `tmp/`: files being written, renamed into place when complete;
//! - `lock`: `flock`ed shared by writers and exclusively by garbage
//!   collection, so a sweep never removes a blob a capture, an import or a
//!   restore is relying on.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use crate::error::{BlobProblem, IoContext, SnapshotError};
use crate::model::Manifest;
use crate::util::{default_threads, fsync_dir, hex, is_hash, is_lower_hex, remove_tree};

// === Types ===

/// Chunks files are cut into by default: 4 MiB.
pub const DEFAULT_CHUNK_SIZE: usize = 4 << 20;

/// The largest chunk the store accepts (a blob declaring more is refused,
/// so a hostile blob cannot make it allocate without bound).
pub const MAX_CHUNK_SIZE: usize = 64 << 20;

/// The zstd level blobs are compressed at.
pub(crate) const ZSTD_LEVEL: i32 = 3;

/// A content-addressed store of snapshots in a directory on the node.
///
/// Every method is blocking (call it from `spawn_blocking`). Several
/// `SnapshotStore` values, in one process or several, may share a root:
/// writers take a shared `flock` on `root/lock` and garbage collection an
/// exclusive one.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    root: PathBuf,
    chunk_size: usize,
    threads: usize,
}

/// A held lock on the store; released when dropped.
pub(crate) struct StoreLock {
    _lock: Flock<File>,
}

/// Reads blobs and checks them against their hash, with buffers and a zstd
/// context reused from one blob to the next.
pub(crate) struct BlobReader {
    dctx: zstd::bulk::Decompressor<'static>,
    compressed: Vec<u8>,
    plain: Vec<u8>,
}

// === impl SnapshotStore ===

impl SnapshotStore {
    /// Opens the store at `root`, creating `root`, `root/blobs`,
    /// `root/manifests` and `root/tmp` as needed.
    pub fn open(root: &Path) -> Result<Self, SnapshotError> {
        for dir in ["", "blobs", "manifests", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).ctx("create directory", &path)?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            threads: default_threads(),
        })
    }

    /// Cuts files into chunks of `chunk_size` bytes (clamped to
    /// 1..=[`MAX_CHUNK_SIZE`]) in later captures. Stores with different
    /// chunk sizes read each other's snapshots; only deduplication between
    /// them suffers. Tests use small chunks to exercise multi-chunk files.
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size.clamp(1, MAX_CHUNK_SIZE);
        self
    }

    /// Uses `threads` threads (at least 1) to hash, compress, check and
    /// write chunks. The default is the number of cores, at most 4.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub(crate) fn manifest_path(&self, id: &str) -> PathBuf {
        self.manifests_dir().join(format!("{id}.json"))
    }

    /// Where the blob `hash` lives. `hash` must have been checked with
    /// `is_hash`, so it cannot name anything outside `blobs/`.
    pub(crate) fn blob_path(&self, hash: &str) -> PathBuf {
        let (shard, rest) = hash.split_at(2.min(hash.len()));
        self.blobs_dir().join(shard).join(rest)
    }

    /// Takes the store lock: shared for writers, exclusive for garbage
    /// collection.
    pub(crate) fn lock(&self, exclusive: bool) -> Result<StoreLock, SnapshotError> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("open lock file", &path)?;
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        let lock = Flock::lock(file, arg)
            .map_err(|(_, errno)| SnapshotError::io("lock", &path, io::Error::from(errno)))?;
        Ok(StoreLock { _lock: lock })
    }

    // --- Manifests ---

    /// Every snapshot in the store, newest (`created_ms`) first. Fails if any
    /// manifest is unreadable or does not match its id.
    pub fn list(&self) -> Result<Vec<Manifest>, SnapshotError> {
        let mut manifests = self
            .manifest_ids()?
            .iter()
            .map(|id| self.load_manifest(id))
            .collect::<Result<Vec<_>, _>>()?;
        manifests.sort_by(|a, b| {
            b.meta
                .created_ms
                .cmp(&a.meta.created_ms)
                .then_with(|| b.id.cmp(&a.id))
        });
        Ok(manifests)
    }

    /// Finds a snapshot by full id, by an id prefix of at least 6 hex
    /// characters that only one snapshot has, or by name. A key matching
    /// several snapshots is an error that names them all.
    pub fn find(&self, key: &str) -> Result<Manifest, SnapshotError> {
        let not_found = || SnapshotError::NotFound {
            key: key.to_string(),
        };
        if key.is_empty() {
            return Err(not_found());
        }
        if is_hash(key) && self.manifest_path(key).exists() {
            return self.load_manifest(key);
        }
        let prefix = key.to_ascii_lowercase();
        let by_prefix = key.len() >= 6 && is_lower_hex(&prefix);
        let mut found: Vec<Manifest> = self
            .list()?
            .into_iter()
            .filter(|m| {
                (by_prefix && m.id.starts_with(&prefix)) || m.meta.name.as_deref() == Some(key)
            })
            .collect();
        match found.len() {
            0 => Err(not_found()),
            1 => Ok(found.remove(0)),
            _ => {
                let mut candidates: Vec<String> = found.into_iter().map(|m| m.id).collect();
                candidates.sort();
                Err(SnapshotError::Ambiguous {
                    key: key.to_string(),
                    candidates,
                })
            }
        }
    }

    /// Reads `manifests/<id>.json` and checks it against its id.
    pub(crate) fn load_manifest(&self, id: &str) -> Result<Manifest, SnapshotError> {
        if !is_hash(id) {
            return Err(SnapshotError::NotFound {
                key: id.to_string(),
            });
        }
        let path = self.manifest_path(id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SnapshotError::NotFound {
                    key: id.to_string(),
                })
            }
            Err(e) => return Err(SnapshotError::io("read manifest", &path, e)),
        };
        let invalid = |reason: String| SnapshotError::InvalidManifest {
            what: path.display().to_string(),
            reason,
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not a manifest: {e}")))?;
        manifest.problem().map_err(invalid)?;
        if manifest.id != id {
            return Err(invalid(format!(
                "file is named {id} but holds manifest {}",
                manifest.id
            )));
        }
        Ok(manifest)
    }

    /// The ids of the manifest files present, unchecked.
    fn manifest_ids(&self) -> Result<Vec<String>, SnapshotError> {
        let dir = self.manifests_dir();
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let entry = entry.ctx("read directory", &dir)?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) {
                if is_hash(id) {
                    ids.push(id.to_string());
                }
            }
        }
        Ok(ids)
    }

    /// Stores a manifest received from another store (moving a snapshot
    /// between nodes), after checking its id, its entries, and that every
    /// blob it references is already here.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), SnapshotError> {
        manifest
            .problem()
            .map_err(|reason| SnapshotError::InvalidManifest {
                what: manifest.id.clone(),
                reason,
            })?;
        let _lock = self.lock(false)?;
        if let Some(chunk) = manifest
            .blobs()
            .into_iter()
            .find(|c| !self.has_blob(&c.hash))
        {
            return Err(SnapshotError::MissingBlob {
                id: manifest.id.clone(),
                hash: chunk.hash.clone(),
            });
        }
        self.write_manifest_file(manifest)
    }

    /// Writes a checked manifest atomically: temp file, fsync, rename,
    /// fsync of the directory.
    pub(crate) fn write_manifest_file(&self, manifest: &Manifest) -> Result<(), SnapshotError> {
        let path = self.manifest_path(&manifest.id);
        let json = serde_json::to_vec(manifest).map_err(|e| SnapshotError::InvalidManifest {
            what: manifest.id.clone(),
            reason: format!("cannot serialize: {e}"),
        })?;
        self.write_atomically(&json, &path)?;
        fsync_dir(&self.manifests_dir())
    }

    /// Deletes a snapshot (by full id, unique prefix or name), then removes
    /// every blob no remaining manifest references. A manifest that fails
    /// its id check can still be deleted by its full id.
    pub fn delete(&self, key: &str) -> Result<(), SnapshotError> {
        let _lock = self.lock(true)?;
        let id = if is_hash(key) && self.manifest_path(key).exists() {
            key.to_string()
        } else {
            self.find(key)?.id
        };
        let path = self.manifest_path(&id);
        fs::remove_file(&path).ctx("remove manifest", &path)?;
        fsync_dir(&self.manifests_dir())?;
        self.sweep()?;
        Ok(())
    }

    /// Keeps the newest `keep` snapshots whose metadata has this app,
    /// component, index, volume and kind, deletes the older ones (then
    /// collects garbage) and returns the deleted ids, newest first.
    pub fn retain(
        &self,
        app: &str,
        component: &str,
        index: u32,
        volume: &str,
        kind: &str,
        keep: usize,
    ) -> Result<Vec<String>, SnapshotError> {
        let _lock = self.lock(true)?;
        let doomed: Vec<String> = self
            .list()?
            .into_iter()
            .filter(|m| {
                m.meta.app == app
                    && m.meta.component == component
                    && m.meta.index == index
                    && m.meta.volume == volume
                    && m.meta.kind == kind
            })
            .skip(keep)
            .map(|m| m.id)
            .collect();
        if doomed.is_empty() {
            return Ok(doomed);
        }
        for id in &doomed {
            let path = self.manifest_path(id);
            fs::remove_file(&path).ctx("remove manifest", &path)?;
        }
        fsync_dir(&self.manifests_dir())?;
        self.sweep()?;
        Ok(doomed)
    }

    /// Removes every blob no manifest references, and leftovers of
    /// interrupted writes in `tmp/`. Returns how many blobs were removed.
    pub fn collect_garbage(&self) -> Result<u64, SnapshotError> {
        let _lock = self.lock(true)?;
        self.sweep()
    }

    /// Mark and sweep; the caller holds the exclusive lock. Marking reads
    /// every manifest without checking its id (a manifest that fails the
    /// check still protects its blobs until it is deleted); a manifest that
    /// is not even JSON stops the sweep, since what it references is unknown.
    fn sweep(&self) -> Result<u64, SnapshotError> {
        let mut marked: HashSet<String> = HashSet::new();
        for id in self.manifest_ids()? {
            let path = self.manifest_path(&id);
            let bytes = fs::read(&path).ctx("read manifest", &path)?;
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| SnapshotError::InvalidManifest {
                    what: path.display().to_string(),
                    reason: format!(
                        "not a manifest, so garbage collection cannot tell what it references: {e}"
                    ),
                })?;
            marked.extend(manifest.chunks().map(|c| c.hash.clone()));
        }

        let mut removed = 0;
        let blobs = self.blobs_dir();
        for shard in fs::read_dir(&blobs).ctx("read directory", &blobs)? {
            let shard = shard.ctx("read directory", &blobs)?.path();
            let Some(prefix) = shard
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
            else {
                continue;
            };
            if !shard.is_dir() {
                continue;
            }
            for blob in fs::read_dir(&shard).ctx("read directory", &shard)? {
                let blob = blob.ctx("read directory", &shard)?;
                let Some(rest) = blob.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let hash = format!("{prefix}{rest}");
                if is_hash(&hash) && !marked.contains(&hash) {
                    let path = blob.path();
                    fs::remove_file(&path).ctx("remove blob", &path)?;
                    removed += 1;
                }
            }
        }

        // Writers hold the shared lock while anything of theirs is in tmp/,
        // so under the exclusive lock whatever is there is abandoned.
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).ctx("read directory", &tmp)? {
            remove_tree(&entry.ctx("read directory", &tmp)?.path())?;
        }
        Ok(removed)
    }

    // --- Blobs ---

    /// True if the blob `hash` is in the store (its content is not checked).
    pub fn has_blob(&self, hash: &str) -> bool {
        is_hash(hash) && fs::symlink_metadata(self.blob_path(hash)).is_ok()
    }

    /// The blobs snapshot `key` references that `other` lacks: what has to
    /// be copied (`read_blob` here, `write_blob` there) before
    /// `other.write_manifest` can accept the manifest.
    pub fn missing_in(
        &self,
        key: &str,
        other: &SnapshotStore,
    ) -> Result<Vec<String>, SnapshotError> {
        let manifest = self.find(key)?;
        Ok(manifest
            .blobs()
            .into_iter()
            .filter(|c| !other.has_blob(&c.hash))
            .map(|c| c.hash.clone())
            .collect())
    }

    /// The stored (zstd-compressed) bytes of blob `hash`.
    pub fn read_blob(&self, hash: &str) -> Result<Vec<u8>, SnapshotError> {
        if !is_hash(hash) {
            return Err(SnapshotError::InvalidHash(hash.to_string()));
        }
        let path = self.blob_path(hash);
        match fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SnapshotError::Blob {
                hash: hash.to_string(),
                problem: BlobProblem::Missing,
            }),
            Err(e) => Err(SnapshotError::io("read blob", &path, e)),
        }
    }

    /// Stores a blob received from another store, after checking that it
    /// is one zstd frame whose content hashes to `hash`. A blob already
    /// present is left as it is.
    pub fn write_blob(&self, hash: &str, compressed: &[u8]) -> Result<(), SnapshotError> {
        if !is_hash(hash) {
            return Err(SnapshotError::InvalidHash(hash.to_string()));
        }
        BlobReader::new()?
            .check(compressed, hash, None)
            .map_err(|problem| SnapshotError::Blob {
                hash: hash.to_string(),
                problem,
            })?;
        let _lock = self.lock(false)?;
        if !self.has_blob(hash) {
            self.put_blob(hash, compressed)?;
            let path = self.blob_path(hash);
            if let Some(shard) = path.parent() {
                fsync_dir(shard)?;
            }
        }
        Ok(())
    }

    /// Writes a blob atomically (temp file, fsync, rename). The caller
    /// fsyncs the shard directory, once for many blobs.
    pub(crate) fn put_blob(&self, hash: &str, compressed: &[u8]) -> Result<(), SnapshotError> {
        let path = self.blob_path(hash);
        if let Some(shard) = path.parent() {
            fs::create_dir_all(shard).ctx("create directory", shard)?;
        }
        self.write_atomically(compressed, &path)
    }

    /// Writes `bytes` to a new file in `tmp/`, without fsync; the file is
    /// removed when the returned path is dropped, unless it is committed
    /// with [`SnapshotStore::commit_blob`].
    pub(crate) fn write_temp(&self, bytes: &[u8]) -> Result<tempfile::TempPath, SnapshotError> {
        let tmp = self.tmp_dir();
        let mut file = tempfile::NamedTempFile::new_in(&tmp).ctx("create temp file in", &tmp)?;
        file.write_all(bytes).ctx("write", file.path())?;
        Ok(file.into_temp_path())
    }

    /// Moves a temp file written by `write_temp` (and fsynced by the caller)
    /// into place as blob `hash`. The caller fsyncs the shard directory.
    pub(crate) fn commit_blob(
        &self,
        hash: &str,
        temp: tempfile::TempPath,
    ) -> Result<(), SnapshotError> {
        let path = self.blob_path(hash);
        if let Some(shard) = path.parent() {
            fs::create_dir_all(shard).ctx("create directory", shard)?;
        }
        temp.persist(&path)
            .map_err(|e| SnapshotError::io("rename temp file to", &path, e.error))
    }

    /// Writes `bytes` to a temp file in `tmp/`, fsyncs it and renames it to
    /// `path`.
    fn write_atomically(&self, bytes: &[u8], path: &Path) -> Result<(), SnapshotError> {
        let tmp = self.tmp_dir();
        let mut file = tempfile::NamedTempFile::new_in(&tmp).ctx("create temp file in", &tmp)?;
        file.write_all(bytes).ctx("write", file.path())?;
        file.as_file().sync_data().ctx("fsync", file.path())?;
        file.persist(path)
            .map_err(|e| SnapshotError::io("rename temp file to", path, e.error))?;
        Ok(())
    }
}

// === impl BlobReader ===

impl BlobReader {
    pub(crate) fn new() -> Result<Self, SnapshotError> {
        let dctx = zstd::bulk::Decompressor::new()
            .map_err(|e| SnapshotError::io("create zstd context for", Path::new("<memory>"), e))?;
        Ok(Self {
            dctx,
            compressed: Vec::new(),
            plain: Vec::new(),
        })
    }

    /// Reads blob `hash` from `store` and checks it; returns its content.
    pub(crate) fn load(
        &mut self,
        store: &SnapshotStore,
        hash: &str,
        len: u64,
    ) -> Result<&[u8], LoadError> {
        let path = store.blob_path(hash);
        self.compressed.clear();
        match File::open(&path).and_then(|mut f| f.read_to_end(&mut self.compressed)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LoadError::Problem(BlobProblem::Missing))
            }
            Err(e) => return Err(LoadError::Io(SnapshotError::io("read blob", &path, e))),
        }
        let compressed = std::mem::take(&mut self.compressed);
        let result = self.check(&compressed, hash, Some(len)).map(|_| ());
        self.compressed = compressed;
        result.map_err(LoadError::Problem)?;
        Ok(&self.plain)
    }

    /// The compressed bytes of the blob last loaded.
    pub(crate) fn compressed(&self) -> &[u8] {
        &self.compressed
    }

    /// Checks that `compressed` is one zstd frame holding `expected_len`
    /// bytes (if given; at most [`MAX_CHUNK_SIZE`] otherwise) that hash to
    /// `hash`; returns the content.
    pub(crate) fn check(
        &mut self,
        compressed: &[u8],
        hash: &str,
        expected_len: Option<u64>,
    ) -> Result<&[u8], BlobProblem> {
        let declared = match zstd::zstd_safe::get_frame_content_size(compressed) {
            Ok(Some(n)) => n,
            Ok(None) => {
                return Err(BlobProblem::Corrupt(
                    "frame does not record its size".into(),
                ))
            }
            Err(_) => return Err(BlobProblem::Corrupt("no readable zstd frame header".into())),
        };
        if let Some(expected) = expected_len {
            if declared != expected {
                return Err(BlobProblem::LengthMismatch {
                    expected,
                    actual: declared,
                });
            }
        }
        let limit = u64::try_from(MAX_CHUNK_SIZE).unwrap_or(u64::MAX);
        if declared > limit {
            return Err(BlobProblem::Corrupt(format!(
                "frame declares {declared} bytes, more than the {limit}-byte limit"
            )));
        }
        let capacity = usize::try_from(declared).unwrap_or(MAX_CHUNK_SIZE);
        self.plain.clear();
        self.plain.reserve(capacity);
        // The output buffer has exactly the declared capacity, so a frame
        // that holds more than it declares fails here instead of growing.
        self.dctx
            .decompress_to_buffer(compressed, &mut self.plain)
            .map_err(|e| BlobProblem::Corrupt(e.to_string()))?;
        let actual = self.plain.len() as u64;
        if actual != declared {
            return Err(BlobProblem::LengthMismatch {
                expected: declared,
                actual,
            });
        }
        let digest = hex(&Sha256::digest(&self.plain));
        if digest != hash {
            return Err(BlobProblem::ChecksumMismatch { actual: digest });
        }
        Ok(&self.plain)
    }
}

/// Why a blob could not be loaded: it is damaged (reported with the file
/// and chunk it belongs to), or the system failed.
pub(crate) enum LoadError {
    Problem(BlobProblem),
    Io(SnapshotError),
}
