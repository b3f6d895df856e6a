//! Helpers: building trees, reading them back for comparison, and
//! locating blobs inside a store.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use vdc_snapshot::{Entry, Manifest, SnapshotMeta, SnapshotStore};

/// Chunk size the tests capture with: small, so ordinary files span
/// several chunks.
pub const CHUNK: usize = 1024;

/// What a tree holds at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(String),
}

/// Reads every entry under `root` (not `root` itself).
pub fn read_tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            out.insert(rel, Node::Dir(mode));
            walk(root, &path, out);
        } else if meta.is_file() {
            out.insert(rel, Node::File(mode, fs::read(&path).unwrap()));
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap().to_str().unwrap().to_string();
            out.insert(rel, Node::Link(target));
        }
    }
}

/// Creates every node of `tree` under `root` (which must exist); modes
/// of directories are set last so read-only ones can be filled.
pub fn write_tree(root: &Path, tree: &BTreeMap<String, Node>) {
    for (path, node) in tree {
        let full = root.join(path);
        match node {
            Node::Dir(_) => fs::create_dir_all(&full).unwrap(),
            Node::File(mode, data) => {
                fs::write(&full, data).unwrap();
                fs::set_permissions(&full, fs::Permissions::from_mode(*mode)).unwrap();
            }
            Node::Link(target) => std::os::unix::fs::symlink(target, &full).unwrap(),
        }
    }
    for (path, node) in tree.iter().rev() {
        if let Node::Dir(mode) = node {
            fs::set_permissions(root.join(path), fs::Permissions::from_mode(*mode)).unwrap();
        }
    }
}

/// A small fixed tree: nested directories, an empty directory, an empty
/// file, a file of several chunks, symlinks and assorted modes.
pub fn sample_tree() -> BTreeMap<String, Node> {
    let mut t = BTreeMap::new();
    t.insert("data".into(), Node::Dir(0o750));
    t.insert(
        "data/big".into(),
        Node::File(0o640, pseudo_random(7, 5 * CHUNK + 100)),
    );
    t.insert("data/small".into(), Node::File(0o600, b"hello\n".to_vec()));
    t.insert("data/empty".into(), Node::File(0o644, Vec::new()));
    t.insert("data/nested".into(), Node::Dir(0o755));
    t.insert("data/nested/deep".into(), Node::Dir(0o700));
    t.insert(
        "data/nested/deep/run.sh".into(),
        Node::File(0o755, b"#!/bin/sh\nexit 0\n".to_vec()),
    );
    t.insert("empty-dir".into(), Node::Dir(0o755));
    t.insert("ro".into(), Node::Dir(0o555));
    t.insert("ro/file".into(), Node::File(0o444, b"read only".to_vec()));
    t.insert("link".into(), Node::Link("data/small".into()));
    t.insert("dangling".into(), Node::Link("/nonexistent/target".into()));
    t
}

/// Deterministic incompressible bytes.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Metadata for a test snapshot.
pub fn meta(name: Option<&str>, created_ms: u64) -> SnapshotMeta {
    SnapshotMeta {
        tenant: "acme".into(),
        app: "shop".into(),
        component: "db".into(),
        index: 0,
        volume: "data".into(),
        name: name.map(str::to_string),
        created_ms,
        frozen_ms: 3,
        node: "node-1".into(),
        kind: "manual".into(),
    }
}

/// A store with small chunks under `root`.
pub fn store(root: &Path) -> SnapshotStore {
    SnapshotStore::open(root).unwrap().with_chunk_size(CHUNK)
}

/// Builds `tree` in a fresh directory under `base` and returns its path.
pub fn make_dir(base: &Path, name: &str, tree: &BTreeMap<String, Node>) -> PathBuf {
    let dir = base.join(name);
    fs::create_dir(&dir).unwrap();
    write_tree(&dir, tree);
    dir
}

/// The hashes of every blob file in the store.
pub fn blobs(store: &SnapshotStore) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for shard in fs::read_dir(store.root().join("blobs")).unwrap() {
        let shard = shard.unwrap();
        let prefix = shard.file_name().to_str().unwrap().to_string();
        for blob in fs::read_dir(shard.path()).unwrap() {
            out.insert(format!(
                "{prefix}{}",
                blob.unwrap().file_name().to_str().unwrap()
            ));
        }
    }
    out
}

/// Where blob `hash` lives.
pub fn blob_path(store: &SnapshotStore, hash: &str) -> PathBuf {
    store.root().join("blobs").join(&hash[..2]).join(&hash[2..])
}

/// The chunks of the file at `path` in `manifest`.
pub fn chunks_of<'a>(manifest: &'a Manifest, path: &str) -> &'a [vdc_snapshot::Chunk] {
    manifest
        .entries
        .iter()
        .find_map(|e| match e {
            Entry::File {
                path: p, chunks, ..
            } if p == path => Some(chunks.as_slice()),
            _ => None,
        })
        .unwrap()
}

/// Names in `dir`, for checking that nothing was left behind.
pub fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .collect()
}
