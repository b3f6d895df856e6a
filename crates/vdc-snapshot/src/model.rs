//! The data that travels: snapshot metadata, manifests and their entries,
//! and the reports of `stage` and `restore`. A manifest's id is the sha256
//! of its canonical body, so a manifest is checked against its own id every
//! time it is read.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::SnapshotError;
use crate::util::{is_hash, sha256_hex};

// === Types ===

/// What `stage` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageReport {
    /// Regular files copied.
    pub files: u64,
    /// Bytes in those files.
    pub bytes: u64,
    /// True if every regular file was cloned with a reflink (copy-on-write)
    /// rather than copied; false as soon as one file was copied, and for a
    /// volume with no regular files.
    pub reflinked: bool,
    /// Entries that were neither directories, regular files nor symlinks
    /// (sockets, FIFOs, device nodes): left out of the copy.
    pub skipped: u64,
}

/// What `restore` wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Snapshot that was restored.
    pub id: String,
    /// Regular files written.
    pub files: u64,
    /// Bytes in those files.
    pub bytes: u64,
    /// Directories created (not counting the target itself).
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links made to files restored earlier in the tree.
    #[serde(default)]
    pub links: u64,
    /// Entries left to the restoring user instead of their recorded owner
    /// (a restore by a user other than root); 0 as root.
    #[serde(default)]
    pub owners_not_kept: u64,
    /// Extended attributes not written for lack of privilege.
    #[serde(default)]
    pub xattrs_not_kept: u64,
}

/// What the caller says about a snapshot when it captures it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Tenant owning the application (who may see the snapshot).
    #[serde(default)]
    pub tenant: String,
    /// Application the volume belongs to.
    pub app: String,
    /// Component of the application.
    pub component: String,
    /// Instance index within the component.
    pub index: u32,
    /// Volume name.
    pub volume: String,
    /// Optional human name; `find` accepts it in place of an id.
    pub name: Option<String>,
    /// When the snapshot was taken (ms since the Unix epoch).
    pub created_ms: u64,
    /// How long the instance was frozen for `stage` (ms).
    pub frozen_ms: u64,
    /// Node the snapshot was taken on.
    pub node: String,
    /// Why it was taken: "manual", "backup" or "move".
    pub kind: String,
}

/// A snapshot: its metadata and every entry of the volume, each file as a
/// list of content-addressed chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Hex sha256 of the canonical manifest body (everything but the id).
    pub id: String,
    /// What the caller said about the snapshot.
    pub meta: SnapshotMeta,
    /// Every directory, file and symlink of the volume, sorted by path.
    pub entries: Vec<Entry>,
    /// Compressed bytes of the distinct blobs the snapshot references
    /// (whether they were new or already in the store).
    pub stored_bytes: u64,
    /// Sum of the sizes of the snapshot's files.
    pub logical_bytes: u64,
}

/// One entry of a volume. Paths are relative to the volume root, with `/`
/// separators and no `.`/`..` components.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// A directory and its permission bits.
    Dir {
        /// Relative path.
        path: String,
        /// Permission bits (`mode & 0o7777`).
        mode: u32,
        /// Owner, times and extended attributes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attrs: Option<Attrs>,
    },
    /// A regular file: its permission bits, size and content chunks. A run
    /// of zeros in a chunk is restored as a hole, so a sparse file stays
    /// sparse.
    File {
        /// Relative path.
        path: String,
        /// Permission bits (`mode & 0o7777`).
        mode: u32,
        /// Size in bytes (the sum of the chunk lengths).
        size: u64,
        /// The content, in order.
        chunks: Vec<Chunk>,
        /// Owner, times and extended attributes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attrs: Option<Attrs>,
    },
    /// A symbolic link, stored as its target text (never followed).
    Symlink {
        /// Relative path.
        path: String,
        /// What the link points to, verbatim.
        target: String,
        /// Owner and times (a symlink's mode means nothing).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attrs: Option<Attrs>,
    },
    /// Another name of a regular file earlier in the manifest (a hard
    /// link): restored as a link to it, sharing its data and attributes.
    Link {
        /// Relative path.
        path: String,
        /// The path of the file entry it names too.
        target: String,
    },
}

/// What a snapshot keeps of an entry besides its data and mode. Absent
/// from entries of snapshots taken before vdc kept them: a restore then
/// leaves owner and times to the restoring user and the clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    /// Last modification.
    pub mtime: Time,
    /// Last access.
    pub atime: Time,
    /// Extended attributes (ACLs included), sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

/// A point in time: seconds since the Unix epoch and nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    pub s: i64,
    pub ns: u32,
}

/// One extended attribute: its full name (`user.origin`,
/// `system.posix_acl_access`) and its value in hex.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: String,
    pub value: String,
}

/// One piece of a file's content, stored as the blob named by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chunk {
    /// Hex sha256 of the uncompressed chunk.
    pub hash: String,
    /// Uncompressed length in bytes.
    pub len: u64,
}

/// The part of a manifest its id is computed from. Field order is part of
/// the format: serde_json writes fields in declaration order, which makes
/// this serialization canonical.
#[derive(Serialize)]
struct Body<'a> {
    meta: &'a SnapshotMeta,
    entries: &'a [Entry],
    stored_bytes: u64,
    logical_bytes: u64,
}

// === impl Entry ===

impl Entry {
    /// The entry's path relative to the volume root.
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. }
            | Entry::File { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::Link { path, .. } => path,
        }
    }

    /// The owner, times and extended attributes recorded for the entry.
    pub fn attrs(&self) -> Option<&Attrs> {
        match self {
            Entry::Dir { attrs, .. } | Entry::File { attrs, .. } | Entry::Symlink { attrs, .. } => {
                attrs.as_ref()
            }
            Entry::Link { .. } => None,
        }
    }
}

// === impl Manifest ===

impl Manifest {
    /// Builds a manifest and computes its id.
    pub fn seal(
        meta: SnapshotMeta,
        entries: Vec<Entry>,
        stored_bytes: u64,
        logical_bytes: u64,
    ) -> Manifest {
        let mut manifest = Manifest {
            id: String::new(),
            meta,
            entries,
            stored_bytes,
            logical_bytes,
        };
        manifest.id = manifest.compute_id();
        manifest
    }

    /// The id this manifest's content hashes to.
    pub fn compute_id(&self) -> String {
        let body = Body {
            meta: &self.meta,
            entries: &self.entries,
            stored_bytes: self.stored_bytes,
            logical_bytes: self.logical_bytes,
        };
        // Serializing plain structs of strings and integers cannot fail;
        // an empty body would only make the id check fail, never pass.
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        sha256_hex(&bytes)
    }

    /// The distinct blobs the manifest references, in order of first use,
    /// each with its uncompressed length.
    pub fn blobs(&self) -> Vec<&Chunk> {
        let mut seen = HashSet::new();
        self.chunks()
            .filter(|c| seen.insert(c.hash.as_str()))
            .collect()
    }

    /// Every chunk of every file, in order (with repeats).
    pub fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.entries.iter().flat_map(|e| match e {
            Entry::File { chunks, .. } => chunks.as_slice(),
            _ => &[],
        })
    }

    /// Checks that the id matches the content and that the entries describe
    /// a tree that can be restored safely: normalized relative paths in
    /// strictly increasing order, each under a directory entry (so no entry
    /// is ever written through a symlink), valid hashes and consistent sizes.
    pub fn check(&self) -> Result<(), SnapshotError> {
        self.problem()
            .map_err(|reason| SnapshotError::InvalidManifest {
                what: self.id.clone(),
                reason,
            })
    }

    /// [`Manifest::check`], with the reason as text.
    pub(crate) fn problem(&self) -> Result<(), String> {
        if !is_hash(&self.id) {
            return Err(format!(
                "id {:?} is not 64 lowercase hex characters",
                self.id
            ));
        }
        let actual = self.compute_id();
        if actual != self.id {
            return Err(format!(
                "content hashes to {actual}, not to its id {} (the manifest was altered)",
                self.id
            ));
        }
        self.check_entries()
    }

    fn check_entries(&self) -> Result<(), String> {
        let mut dirs: HashSet<&str> = HashSet::new();
        let mut files: HashSet<&str> = HashSet::new();
        let mut previous: Option<&str> = None;
        let mut logical = 0u64;
        for entry in &self.entries {
            let path = entry.path();
            check_path(path)?;
            if let Some(prev) = previous {
                if prev >= path {
                    return Err(format!(
                        "entries not strictly sorted: {prev:?} before {path:?}"
                    ));
                }
            }
            previous = Some(path);
            if let Some((parent, _)) = path.rsplit_once('/') {
                if !dirs.contains(parent) {
                    return Err(format!("entry {path:?} is not under a directory entry"));
                }
            }
            match entry {
                Entry::Dir { mode, .. } => {
                    check_mode(path, *mode)?;
                    dirs.insert(path);
                }
                Entry::File {
                    mode, size, chunks, ..
                } => {
                    check_mode(path, *mode)?;
                    let mut sum = 0u64;
                    for chunk in chunks {
                        if !is_hash(&chunk.hash) {
                            return Err(format!("file {path:?}: bad chunk hash {:?}", chunk.hash));
                        }
                        if chunk.len == 0 {
                            return Err(format!("file {path:?}: empty chunk"));
                        }
                        sum = sum.saturating_add(chunk.len);
                    }
                    if sum != *size {
                        return Err(format!(
                            "file {path:?}: size {size} but chunks add up to {sum}"
                        ));
                    }
                    logical = logical.saturating_add(*size);
                    files.insert(path);
                }
                Entry::Link { target, .. } => {
                    // Only to a file already written: a restore makes the
                    // link inside the tree, never elsewhere.
                    if !files.contains(target.as_str()) {
                        return Err(format!(
                            "hard link {path:?}: {target:?} is not a file earlier in the snapshot"
                        ));
                    }
                }
                Entry::Symlink { target, .. } => {
                    if target.is_empty() || target.contains('\0') {
                        return Err(format!("symlink {path:?}: bad target {target:?}"));
                    }
                }
            }
        }
        if logical != self.logical_bytes {
            return Err(format!(
                "logical_bytes is {} but files add up to {logical}",
                self.logical_bytes
            ));
        }
        Ok(())
    }
}

/// A path must be relative, `/`-separated, with only normal components.
fn check_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "entry path {path:?} is not a normalized relative path"
        ))
    }
}

fn check_mode(path: &str, mode: u32) -> Result<(), String> {
    if mode & !0o7777 == 0 {
        Ok(())
    } else {
        Err(format!(
            "entry {path:?}: mode {mode:o} has bits beyond 0o7777"
        ))
    }
}
