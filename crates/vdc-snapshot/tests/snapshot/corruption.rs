//! Damaged blobs and manifests are found, named, and never restored.

use std::fs;

use vdc_snapshot::{BlobProblem, Entry, Manifest, SnapshotError, SnapshotStore};

use crate::support::{
    blob_path, chunks_of, make_dir, meta, names, read_tree, sample_tree, store, CHUNK,
};

/// Captures the sample tree, damages the blob of chunk 2 of `data/big`
/// with `damage`, and checks that verify and restore both fail naming that
/// file and chunk while the restore target stays as it was.
fn damaged_blob_is_refused(
    damage: impl Fn(&std::path::Path),
    expect: impl Fn(&BlobProblem) -> bool,
) {
    let base = tempfile::tempdir().unwrap();
    let src = make_dir(base.path(), "src", &sample_tree());
    let store = store(&base.path().join("store"));
    let manifest = store.capture(&src, meta(None, 1)).unwrap();
    let hash = chunks_of(&manifest, "data/big")[2].hash.clone();
    damage(&blob_path(&store, &hash));

    let check = |err: SnapshotError| match err {
        SnapshotError::Chunk {
            snapshot,
            file,
            chunk,
            hash: h,
            problem,
        } => {
            assert_eq!(snapshot, manifest.id);
            assert_eq!(file, "data/big");
            assert_eq!(chunk, 2);
            assert_eq!(h, hash);
            assert!(expect(&problem), "unexpected problem: {problem}");
        }
        other => panic!("expected a chunk error, got {other}"),
    };
    let err = store.verify(&manifest.id).unwrap_err();
    assert!(err.is_corruption());
    assert!(err.to_string().contains("data/big"), "{err}");
    check(err);

    let target = base.path().join("target");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("live-data"), b"precious").unwrap();
    let before = read_tree(&target);
    check(store.restore(&manifest.id, &target).unwrap_err());
    assert_eq!(read_tree(&target), before, "target untouched");
    assert_eq!(
        names(base.path()),
        ["src", "store", "target"].map(String::from).into()
    );
}

#[test]
fn flipped_byte_in_a_blob() {
    damaged_blob_is_refused(
        |path| {
            let mut bytes = fs::read(path).unwrap();
            let at = bytes.len() / 2;
            bytes[at] ^= 0x01;
            fs::write(path, bytes).unwrap();
        },
        |p| {
            matches!(
                p,
                BlobProblem::Corrupt(_) | BlobProblem::ChecksumMismatch { .. }
            )
        },
    );
}

#[test]
fn blob_of_another_length() {
    // A frame that declares another content size is caught by length.
    damaged_blob_is_refused(
        |path| {
            let data = zstd::bulk::compress(&vec![1u8; CHUNK + 1], 3).unwrap();
            fs::write(path, data).unwrap();
        },
        |p| matches!(p, BlobProblem::LengthMismatch { expected, actual } if *expected == CHUNK as u64 && *actual == CHUNK as u64 + 1),
    );
}

#[test]
fn valid_frame_with_other_content() {
    damaged_blob_is_refused(
        |path| fs::write(path, zstd::bulk::compress(&vec![9u8; CHUNK], 3).unwrap()).unwrap(),
        |p| matches!(p, BlobProblem::ChecksumMismatch { .. }),
    );
}

#[test]
fn truncated_blob() {
    damaged_blob_is_refused(
        |path| {
            let bytes = fs::read(path).unwrap();
            fs::write(path, &bytes[..bytes.len() - 7]).unwrap();
        },
        |p| matches!(p, BlobProblem::Corrupt(_)),
    );
}

#[test]
fn empty_blob() {
    damaged_blob_is_refused(
        |path| fs::write(path, b"").unwrap(),
        |p| matches!(p, BlobProblem::Corrupt(_)),
    );
}

#[test]
fn deleted_blob() {
    damaged_blob_is_refused(
        |path| fs::remove_file(path).unwrap(),
        |p| *p == BlobProblem::Missing,
    );
}

fn captured() -> (tempfile::TempDir, SnapshotStore, Manifest) {
    let base = tempfile::tempdir().unwrap();
    let src = make_dir(base.path(), "src", &sample_tree());
    let store = store(&base.path().join("store"));
    let manifest = store.capture(&src, meta(Some("before"), 1)).unwrap();
    (base, store, manifest)
}

fn manifest_file(store: &SnapshotStore, id: &str) -> std::path::PathBuf {
    store.root().join("manifests").join(format!("{id}.json"))
}

#[test]
fn tampered_manifest_is_refused() {
    let (base, store, manifest) = captured();
    let path = manifest_file(&store, &manifest.id);
    let text = fs::read_to_string(&path).unwrap();
    // Make a file world-writable behind the store's back.
    let tampered = text.replacen("\"mode\":384", "\"mode\":511", 1);
    assert_ne!(tampered, text);
    fs::write(&path, tampered).unwrap();

    for err in [
        store.find(&manifest.id).unwrap_err(),
        store.verify(&manifest.id).unwrap_err(),
        store
            .restore(&manifest.id, &base.path().join("t"))
            .unwrap_err(),
        store.list().unwrap_err(),
    ] {
        assert!(
            matches!(err, SnapshotError::InvalidManifest { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("altered"), "{err}");
    }
    assert!(!base.path().join("t").exists());
    // It can still be deleted by its full id.
    store.delete(&manifest.id).unwrap();
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn manifest_with_a_rewritten_id_under_the_old_name_is_refused() {
    let (_base, store, manifest) = captured();
    let mut other = manifest.clone();
    other.meta.name = Some("after".into());
    other.id = other.compute_id();
    fs::write(
        manifest_file(&store, &manifest.id),
        serde_json::to_vec(&other).unwrap(),
    )
    .unwrap();
    let err = store.find(&manifest.id).unwrap_err();
    assert!(err.to_string().contains("holds manifest"), "{err}");
}

#[test]
fn unsafe_entries_are_refused_even_with_a_matching_id() {
    let (_base, store, manifest) = captured();
    let hash = chunks_of(&manifest, "data/small")[0].clone();
    let file = |path: &str| Entry::File {
        path: path.into(),
        mode: 0o644,
        size: hash.len,
        chunks: vec![hash.clone()],
        attrs: None,
    };
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        ("parent escape", vec![file("../evil")]),
        ("absolute", vec![file("/etc/evil")]),
        (
            "dot",
            vec![
                Entry::Dir {
                    path: "a".into(),
                    mode: 0o755,
                    attrs: None,
                },
                file("a/./b"),
            ],
        ),
        (
            "through a symlink",
            vec![
                Entry::Symlink {
                    path: "a".into(),
                    target: "/etc".into(),
                    attrs: None,
                },
                file("a/passwd"),
            ],
        ),
        (
            "a hard link out of the tree",
            vec![Entry::Link {
                path: "a".into(),
                target: "../../etc/passwd".into(),
            }],
        ),
        (
            "a hard link to what is not a file of the snapshot",
            vec![
                Entry::Dir {
                    path: "d".into(),
                    mode: 0o755,
                    attrs: None,
                },
                Entry::Link {
                    path: "e".into(),
                    target: "d".into(),
                },
            ],
        ),
        ("no parent entry", vec![file("a/b")]),
        ("unsorted", vec![file("b"), file("a")]),
        ("duplicate", vec![file("a"), file("a")]),
        (
            "bad mode",
            vec![Entry::Dir {
                path: "a".into(),
                mode: 0o170755,
                attrs: None,
            }],
        ),
    ];
    for (what, entries) in cases {
        let logical = entries
            .iter()
            .map(|e| {
                if let Entry::File { size, .. } = e {
                    *size
                } else {
                    0
                }
            })
            .sum();
        let forged = Manifest::seal(manifest.meta.clone(), entries, 1, logical);
        let err = store.write_manifest(&forged).unwrap_err();
        assert!(
            matches!(err, SnapshotError::InvalidManifest { .. }),
            "{what}: {err}"
        );
        // Planted directly in the store, it is refused on load.
        fs::write(
            manifest_file(&store, &forged.id),
            serde_json::to_vec(&forged).unwrap(),
        )
        .unwrap();
        let err = store.find(&forged.id).unwrap_err();
        assert!(
            matches!(err, SnapshotError::InvalidManifest { .. }),
            "{what}: {err}"
        );
        fs::remove_file(manifest_file(&store, &forged.id)).unwrap();
    }
}
