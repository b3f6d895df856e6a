//! Deleting snapshots, garbage collection and retention.

use std::collections::BTreeSet;
use std::fs;

use vdc_snapshot::SnapshotError;

use crate::support::{blobs, make_dir, meta, sample_tree, store};

#[test]
fn delete_keeps_blobs_of_other_snapshots() {
    let base = tempfile::tempdir().unwrap();
    let src = make_dir(base.path(), "src", &sample_tree());
    let store = store(&base.path().join("store"));
    let a = store.capture(&src, meta(Some("a"), 1)).unwrap();
    fs::write(src.join("data/small"), b"only in b").unwrap();
    let b = store.capture(&src, meta(Some("b"), 2)).unwrap();

    let only_a: BTreeSet<String> = a
        .blobs()
        .iter()
        .map(|c| c.hash.clone())
        .filter(|h| !b.blobs().iter().any(|c| &c.hash == h))
        .collect();
    assert_eq!(only_a.len(), 1);

    store.delete("a").unwrap();
    let left = blobs(&store);
    let of_b: BTreeSet<String> = b.blobs().iter().map(|c| c.hash.clone()).collect();
    assert_eq!(left, of_b);
    store.verify(&b.id).unwrap();
    assert!(matches!(
        store.find(&a.id),
        Err(SnapshotError::NotFound { .. })
    ));

    store.delete(&b.id[..10]).unwrap();
    assert!(blobs(&store).is_empty());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn garbage_collection_removes_unreferenced_blobs_and_leftovers() {
    let base = tempfile::tempdir().unwrap();
    let src = make_dir(base.path(), "src", &sample_tree());
    let store = store(&base.path().join("store"));
    let kept = store.capture(&src, meta(None, 1)).unwrap();
    let stray = zstd::bulk::compress(b"stray", 3).unwrap();
    let stray_hash = "1d0dd07a3f2b1e5c8d1a1f0e7b7f5e4a1c7b7e0e9d4a5b0f3d1f0e2c8b7a6e5d";
    fs::create_dir_all(store.root().join("blobs/1d")).unwrap();
    fs::write(store.root().join("blobs/1d").join(&stray_hash[2..]), stray).unwrap();
    fs::write(store.root().join("tmp/.tmpABC"), b"half written").unwrap();

    assert_eq!(store.collect_garbage().unwrap(), 1);
    assert!(!blobs(&store).contains(stray_hash));
    assert!(fs::read_dir(store.root().join("tmp"))
        .unwrap()
        .next()
        .is_none());
    store.verify(&kept.id).unwrap();
}

#[test]
fn retain_keeps_the_newest_n() {
    let base = tempfile::tempdir().unwrap();
    let src = make_dir(base.path(), "src", &sample_tree());
    let store = store(&base.path().join("store"));
    let mut ids = Vec::new();
    for t in 1..=5 {
        fs::write(src.join("data/small"), format!("version {t}")).unwrap();
        ids.push(store.capture(&src, meta(None, t * 1000)).unwrap().id);
    }
    let mut other_volume = meta(None, 1);
    other_volume.volume = "logs".into();
    let other = store.capture(&src, other_volume).unwrap();
    let mut backup = meta(None, 1);
    backup.kind = "backup".into();
    let backup = store.capture(&src, backup).unwrap();

    let deleted = store.retain("shop", "db", 0, "data", "manual", 2).unwrap();
    assert_eq!(
        deleted,
        vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]
    );
    let left: BTreeSet<String> = store.list().unwrap().into_iter().map(|m| m.id).collect();
    let expected: BTreeSet<String> = [
        ids[4].clone(),
        ids[3].clone(),
        other.id.clone(),
        backup.id.clone(),
    ]
    .into();
    assert_eq!(left, expected);
    for id in &left {
        store.verify(id).unwrap();
    }
    assert!(store
        .retain("shop", "db", 0, "data", "manual", 2)
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .retain("shop", "db", 0, "data", "manual", 0)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn garbage_collection_never_removes_blobs_of_a_capture_in_progress() {
    let base = tempfile::tempdir().unwrap();
    let src = make_dir(base.path(), "src", &sample_tree());
    let root = base.path().join("store");
    let capturer = store(&root);
    // A second handle on the same root, as another task would hold.
    let collector = store(&root);

    std::thread::scope(|s| {
        s.spawn(|| {
            for t in 0..12u64 {
                let data = crate::support::pseudo_random(t, 3 * crate::support::CHUNK);
                fs::write(src.join("data/small"), data).unwrap();
                capturer.capture(&src, meta(None, t)).unwrap();
            }
        });
        s.spawn(|| {
            for _ in 0..30 {
                collector
                    .retain("shop", "db", 0, "data", "manual", 1)
                    .unwrap();
                collector.collect_garbage().unwrap();
            }
        });
    });
    for manifest in capturer.list().unwrap() {
        capturer.verify(&manifest.id).unwrap();
    }
}
