//! Each distinct chunk is stored once, across files and snapshots.

use std::collections::BTreeMap;
use std::fs;

use crate::support::{
    blobs, chunks_of, make_dir, meta, pseudo_random, sample_tree, store, Node, CHUNK,
};

#[test]
fn two_snapshots_of_the_same_tree_store_blobs_once() {
    let base = tempfile::tempdir().unwrap();
    let src = make_dir(base.path(), "src", &sample_tree());
    let store = store(&base.path().join("store"));

    let first = store.capture(&src, meta(None, 1)).unwrap();
    let after_first = blobs(&store);
    let second = store.capture(&src, meta(None, 2)).unwrap();

    assert_ne!(
        first.id, second.id,
        "different metadata, different snapshot"
    );
    assert_eq!(blobs(&store), after_first, "no blob written twice");
    assert_eq!(
        first.stored_bytes, second.stored_bytes,
        "reused blobs still count"
    );
    let referenced: std::collections::BTreeSet<String> =
        first.blobs().iter().map(|c| c.hash.clone()).collect();
    assert_eq!(after_first, referenced);
}

#[test]
fn changing_one_byte_of_a_large_file_adds_one_chunk() {
    let base = tempfile::tempdir().unwrap();
    let mut data = pseudo_random(1, 20 * CHUNK);
    let mut tree = BTreeMap::new();
    tree.insert("big".to_string(), Node::File(0o644, data.clone()));
    let src = make_dir(base.path(), "src", &tree);
    let store = store(&base.path().join("store"));

    let first = store.capture(&src, meta(None, 1)).unwrap();
    assert_eq!(chunks_of(&first, "big").len(), 20);
    assert_eq!(blobs(&store).len(), 20);

    data[7 * CHUNK + 3] ^= 0xff;
    fs::write(src.join("big"), &data).unwrap();
    let second = store.capture(&src, meta(None, 2)).unwrap();

    assert_eq!(blobs(&store).len(), 21);
    let (a, b) = (chunks_of(&first, "big"), chunks_of(&second, "big"));
    let differing: Vec<usize> = (0..20).filter(|&i| a[i] != b[i]).collect();
    assert_eq!(differing, vec![7]);
}

#[test]
fn repeated_chunks_in_one_snapshot_are_stored_once() {
    let base = tempfile::tempdir().unwrap();
    let mut tree = BTreeMap::new();
    tree.insert(
        "zeros".to_string(),
        Node::File(0o644, vec![0; 8 * CHUNK + 5]),
    );
    tree.insert("copy".to_string(), Node::File(0o644, vec![0; 2 * CHUNK]));
    let src = make_dir(base.path(), "src", &tree);
    let store = store(&base.path().join("store"));

    let manifest = store.capture(&src, meta(None, 1)).unwrap();
    // One full chunk of zeros and one 5-byte tail.
    assert_eq!(blobs(&store).len(), 2);
    assert_eq!(manifest.blobs().len(), 2);
    let target = base.path().join("target");
    store.restore(&manifest.id, &target).unwrap();
    assert_eq!(
        fs::read(target.join("zeros")).unwrap(),
        vec![0; 8 * CHUNK + 5]
    );
}
