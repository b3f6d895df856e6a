//! Host-side snapshots of instance volumes: a fast copy while the instance
//! is frozen, then a content-addressed, zstd-compressed, checksummed store
//! of those copies that can verify, restore, export and move them.
//!
//! The life of a snapshot:
//! 1. [`stage`] copies the volume directory next to itself (reflinks where
//!    the filesystem has them) while the instance is frozen;
//! 2. [`SnapshotStore::capture`] cuts the staged files into 4 MiB chunks,
//!    stores each distinct chunk once as a zstd blob named by its sha256,
//!    and writes a [`Manifest`] whose id is the sha256 of its own content;
//! 3. [`SnapshotStore::verify`] and [`SnapshotStore::restore`] read it
//!    back, checking every chunk; [`SnapshotStore::export`] /
//!    [`SnapshotStore::import`] and [`SnapshotStore::missing_in`] /
//!    [`SnapshotStore::write_blob`] / [`SnapshotStore::write_manifest`]
//!    move it to another node; [`SnapshotStore::delete`] and
//!    [`SnapshotStore::retain`] drop snapshots and collect unreferenced
//!    blobs.
//!
//! Code map:
//! - `model`: the serializable data ([`SnapshotMeta`], [`Manifest`],
//!   [`Entry`], [`Chunk`], reports) and the manifest id and checks;
//! - `stage`: [`stage`];
//! - `store`: [`SnapshotStore`], the on-disk layout, lookup, blobs,
//!   deletion and garbage collection;
//! - `capture`, `restore`, `archive`: the three ways data moves in and out;
//! - `util`: hex, the scoped worker pool, fsync and tree removal.
//!
//! **Architecture invariant:** nothing read back from the store is trusted
//! unchecked. A manifest is refused unless it hashes to its id and its
//! entries form a safe tree (normalized relative paths, every entry under a
//! directory entry, so nothing is ever written through a symlink); a chunk
//! is used only after its blob decompressed to the recorded length and
//! sha256. A restore or import that finds damage leaves the target and the
//! store as they were.
//!
//! Every function blocks: async callers use `spawn_blocking`. A snapshot
//! keeps what a backup must: contents (sparse files stay sparse), modes,
//! owners and groups, modification and access times, symlinks, hard links
//! and extended attributes (ACLs, SELinux labels). Run as root, a restore
//! gives all of them back; run by another user, every entry belongs to that
//! user and privileged attributes are left out (the report counts both).
//! Sockets, FIFOs and device nodes are not kept.

#![forbid(unsafe_code)]

mod archive;
mod attrs;
mod capture;
mod error;
mod model;
mod restore;
mod stage;
mod store;
mod util;

pub use error::{BlobProblem, SnapshotError};
pub use model::{
    Attrs, Chunk, Entry, Manifest, RestoreReport, SnapshotMeta, StageReport, Time, Xattr,
};
pub use stage::{stage, stage_with_threads};
pub use store::{SnapshotStore, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE};
