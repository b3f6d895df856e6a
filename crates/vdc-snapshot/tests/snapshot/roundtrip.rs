//! Random trees survive stage → capture → restore unchanged.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use vdc_snapshot::stage;

use crate::support::{make_dir, meta, names, read_tree, sample_tree, store, Node, CHUNK};

#[derive(Debug, Clone)]
enum Gen {
    Dir(u32, BTreeMap<String, Gen>),
    File(u32, Vec<u8>),
    Link(String),
}

fn contents() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..3 * CHUNK + 10),
        (any::<u8>(), 0..4 * CHUNK).prop_map(|(b, n)| vec![b; n]),
        Just(Vec::new()),
    ]
}

fn file_mode() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0o644, 0o600, 0o755, 0o400, 0o444, 0o4755, 0o640])
}

fn dir_mode() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0o755, 0o700, 0o555, 0o750, 0o1777])
}

fn node() -> impl Strategy<Value = Gen> {
    let leaf = prop_oneof![
        (file_mode(), contents()).prop_map(|(m, d)| Gen::File(m, d)),
        "[a-z./]{1,12}".prop_map(Gen::Link),
        dir_mode().prop_map(|m| Gen::Dir(m, BTreeMap::new())),
    ];
    leaf.prop_recursive(3, 40, 6, |inner| {
        (dir_mode(), btree_map("[a-z]{1,5}", inner, 0..6)).prop_map(|(m, c)| Gen::Dir(m, c))
    })
}

fn flatten(prefix: &str, children: &BTreeMap<String, Gen>, out: &mut BTreeMap<String, Node>) {
    for (name, gen) in children {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        match gen {
            Gen::Dir(mode, inner) => {
                out.insert(path.clone(), Node::Dir(*mode));
                flatten(&path, inner, out);
            }
            Gen::File(mode, data) => {
                out.insert(path, Node::File(*mode, data.clone()));
            }
            Gen::Link(target) => {
                out.insert(path, Node::Link(target.clone()));
            }
        }
    }
}

fn tree() -> impl Strategy<Value = BTreeMap<String, Node>> {
    btree_map("[a-z]{1,5}", node(), 0..8).prop_map(|top| {
        let mut out = BTreeMap::new();
        flatten("", &top, &mut out);
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_trees_roundtrip(tree in tree()) {
        let base = tempfile::tempdir().unwrap();
        let src = make_dir(base.path(), "src", &tree);
        let staged = base.path().join("staged");
        let report = stage(&src, &staged).unwrap();
        prop_assert_eq!(read_tree(&staged), tree.clone());
        let files = tree.values().filter(|n| matches!(n, Node::File(..))).count() as u64;
        prop_assert_eq!(report.files, files);

        let store = store(&base.path().join("store"));
        let manifest = store.capture(&staged, meta(None, 1)).unwrap();
        store.verify(&manifest.id).unwrap();

        // Restore over a target with other contents: they must go.
        let target = base.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("junk"), b"old").unwrap();
        let restored = store.restore(&manifest.id, &target).unwrap();
        prop_assert_eq!(restored.files, files);
        prop_assert_eq!(read_tree(&target), tree);
        prop_assert_eq!(names(base.path()), ["src", "staged", "store", "target"].map(String::from).into());
    }
}

#[test]
fn restore_into_missing_target_creates_it() {
    let base = tempfile::tempdir().unwrap();
    let tree = sample_tree();
    let src = make_dir(base.path(), "src", &tree);
    let store = store(&base.path().join("store"));
    let manifest = store.capture(&src, meta(None, 1)).unwrap();

    let target = base.path().join("new-volume");
    let report = store.restore(&manifest.id, &target).unwrap();
    assert_eq!(read_tree(&target), tree);
    assert_eq!(report.id, manifest.id);
    assert_eq!(report.files, 5);
    assert_eq!(report.symlinks, 2);
    assert_eq!(report.dirs, 5);
    assert_eq!(report.bytes, manifest.logical_bytes);
    let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755);
}

#[test]
fn restore_keeps_the_target_directory_mode() {
    let base = tempfile::tempdir().unwrap();
    let tree = sample_tree();
    let src = make_dir(base.path(), "src", &tree);
    let store = store(&base.path().join("store"));
    let manifest = store.capture(&src, meta(None, 1)).unwrap();

    let target = base.path().join("target");
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o710)).unwrap();
    store.restore(&manifest.id, &target).unwrap();
    // And a second restore over the first (read-only directories inside).
    store.restore(&manifest.id, &target).unwrap();
    assert_eq!(read_tree(&target), tree);
    let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o710);
}

#[test]
fn manifest_describes_the_tree() {
    let base = tempfile::tempdir().unwrap();
    let tree = sample_tree();
    let src = make_dir(base.path(), "src", &tree);
    let store = store(&base.path().join("store"));
    let manifest = store.capture(&src, meta(Some("first"), 1)).unwrap();

    let paths: Vec<&str> = manifest.entries.iter().map(|e| e.path()).collect();
    let expected: Vec<&str> = tree.keys().map(String::as_str).collect();
    assert_eq!(paths, expected, "entries sorted by path");
    let logical: usize = tree
        .values()
        .map(|n| if let Node::File(_, d) = n { d.len() } else { 0 })
        .sum();
    assert_eq!(manifest.logical_bytes, logical as u64);
    assert!(manifest.stored_bytes > 0);
    assert_eq!(manifest.id, manifest.compute_id());
    // What a caller gets back over JSON is the same manifest.
    let json = serde_json::to_string(&manifest).unwrap();
    let back: vdc_snapshot::Manifest = serde_json::from_str(&json).unwrap();
    assert_eq!(back, manifest);
}

/// The second pass of a move: restoring a later snapshot over a directory
/// that holds an earlier one links the files they share instead of writing
/// them, and the result is the later snapshot exactly.
#[test]
fn restore_over_an_earlier_snapshot_reuses_unchanged_files() {
    use std::os::unix::fs::MetadataExt;

    let tmp = tempfile::tempdir().unwrap();
    let store = store(&tmp.path().join("store"));
    let first = sample_tree();
    let src = make_dir(tmp.path(), "v1", &first);
    let one = store.capture(&src, meta(None, 1)).unwrap();
    let mut second = first.clone();
    second.insert(
        "data/small".into(),
        Node::File(0o600, b"changed\n".to_vec()),
    );
    second.insert("data/new".into(), Node::File(0o644, b"new".to_vec()));
    second.remove("ro/file");
    let src2 = make_dir(tmp.path(), "v2", &second);
    let two = store.capture(&src2, meta(None, 2)).unwrap();

    let target = tmp.path().join("target");
    store.restore(&one.id, &target).unwrap();
    let big_before = fs::metadata(target.join("data/big")).unwrap().ino();
    let small_before = fs::metadata(target.join("data/small")).unwrap().ino();
    store.restore_over(&two.id, &target, &one.id).unwrap();
    assert_eq!(read_tree(&target), second);
    assert_eq!(
        fs::metadata(target.join("data/big")).unwrap().ino(),
        big_before,
        "an unchanged file was written again"
    );
    assert_ne!(
        fs::metadata(target.join("data/small")).unwrap().ino(),
        small_before
    );

    // A target that does not hold the base (a file changed behind its
    // back, with another size) gets the file written, not linked.
    fs::write(target.join("data/big"), b"tampered").unwrap();
    store.restore_over(&two.id, &target, &one.id).unwrap();
    assert_eq!(read_tree(&target), second);
}
