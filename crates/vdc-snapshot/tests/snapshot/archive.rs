//! Export/import, and moving a snapshot blob by blob.

use std::fs;

use vdc_snapshot::{SnapshotError, SnapshotStore};

use crate::support::{blobs, make_dir, meta, names, read_tree, sample_tree, store};

fn exported() -> (
    tempfile::TempDir,
    SnapshotStore,
    vdc_snapshot::Manifest,
    Vec<u8>,
) {
    let base = tempfile::tempdir().unwrap();
    let src = make_dir(base.path(), "src", &sample_tree());
    let store = store(&base.path().join("store"));
    let manifest = store.capture(&src, meta(Some("exported"), 1)).unwrap();
    let mut out = Vec::new();
    let written = store.export(&manifest.id, &mut out).unwrap();
    assert_eq!(written, out.len() as u64);
    (base, store, manifest, out)
}

/// Asserts that importing `bytes` into a fresh store fails and leaves it empty.
fn refused(base: &std::path::Path, bytes: &[u8], what: &str) -> SnapshotError {
    let other = store(&base.join(format!("other-{}", what.replace(' ', "-"))));
    let err = other.import(&mut &bytes[..]).unwrap_err();
    assert!(blobs(&other).is_empty(), "{what}: blobs added");
    assert!(
        names(&other.root().join("manifests")).is_empty(),
        "{what}: manifest added"
    );
    assert!(
        names(&other.root().join("tmp")).is_empty(),
        "{what}: staging left behind"
    );
    err
}

#[test]
fn export_import_roundtrip_into_another_store() {
    let (base, store, manifest, bytes) = exported();
    assert_eq!(&bytes[..8], b"VDCSNAP1");

    let other = crate::support::store(&base.path().join("other"));
    let imported = other.import(&mut &bytes[..]).unwrap();
    assert_eq!(imported, manifest);
    assert_eq!(blobs(&other), blobs(&store));
    other.verify("exported").unwrap();
    let target = base.path().join("target");
    other.restore(&manifest.id, &target).unwrap();
    assert_eq!(read_tree(&target), sample_tree());

    // Importing again changes nothing.
    other.import(&mut &bytes[..]).unwrap();
    assert_eq!(other.list().unwrap().len(), 1);
}

#[test]
fn truncated_exports_are_refused() {
    let (base, _store, _manifest, bytes) = exported();
    let len = bytes.len();
    for cut in [
        0,
        4,
        8,
        11,
        12,
        19,
        20,
        100,
        len / 2,
        len - 41,
        len - 40,
        len - 33,
        len - 1,
    ] {
        let err = refused(base.path(), &bytes[..cut], &format!("cut {cut}"));
        assert!(
            matches!(err, SnapshotError::Archive { .. }),
            "cut at {cut}: {err}"
        );
        assert!(err.to_string().contains("truncated"), "cut at {cut}: {err}");
    }
}

#[test]
fn altered_exports_are_refused() {
    let (base, _store, _manifest, bytes) = exported();
    let len = bytes.len();
    for at in [0, 9, 13, 25, 200, len / 2, len - 100, len - 36, len - 1] {
        let mut altered = bytes.clone();
        altered[at] ^= 0x20;
        let err = refused(base.path(), &altered, &format!("flip {at}"));
        assert!(
            matches!(
                err,
                SnapshotError::Archive { .. }
                    | SnapshotError::Blob { .. }
                    | SnapshotError::InvalidManifest { .. }
            ),
            "flip at {at}: {err}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let err = refused(base.path(), &longer, "trailing");
    assert!(err.to_string().contains("after the trailer"), "{err}");
}

#[test]
fn moving_blob_by_blob() {
    let (base, store, manifest, _bytes) = exported();
    let other = crate::support::store(&base.path().join("other"));

    let missing = store.missing_in(&manifest.id, &other).unwrap();
    assert_eq!(missing.len(), manifest.blobs().len());
    let err = other.write_manifest(&manifest).unwrap_err();
    assert!(matches!(err, SnapshotError::MissingBlob { .. }), "{err}");

    // A blob offered under the wrong hash is refused.
    let first = store.read_blob(&missing[0]).unwrap();
    let err = other.write_blob(&missing[1], &first).unwrap_err();
    assert!(matches!(err, SnapshotError::Blob { .. }), "{err}");
    assert!(matches!(
        other.write_blob("../../etc", &first),
        Err(SnapshotError::InvalidHash(_))
    ));

    for hash in &missing {
        other
            .write_blob(hash, &store.read_blob(hash).unwrap())
            .unwrap();
    }
    assert!(store.missing_in(&manifest.id, &other).unwrap().is_empty());
    other.write_manifest(&manifest).unwrap();
    other.verify(&manifest.id).unwrap();

    // A manifest whose id does not match is refused.
    let mut forged = manifest.clone();
    forged.meta.node = "elsewhere".into();
    let err = other.write_manifest(&forged).unwrap_err();
    assert!(
        matches!(err, SnapshotError::InvalidManifest { .. }),
        "{err}"
    );

    // A second snapshot of a slightly changed tree needs only the delta.
    fs::write(base.path().join("src/data/small"), b"changed\n").unwrap();
    let second = store
        .capture(&base.path().join("src"), meta(None, 2))
        .unwrap();
    assert_eq!(store.missing_in(&second.id, &other).unwrap().len(), 1);
}
