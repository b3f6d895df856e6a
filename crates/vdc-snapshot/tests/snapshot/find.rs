//! Looking snapshots up by id, prefix and name.

use std::fs;

use vdc_snapshot::SnapshotError;

use crate::support::{make_dir, meta, sample_tree, store};

#[test]
fn find_by_id_prefix_and_name() {
    let base = tempfile::tempdir().unwrap();
    let src = make_dir(base.path(), "src", &sample_tree());
    let store = store(&base.path().join("store"));
    let a = store.capture(&src, meta(Some("nightly"), 1)).unwrap();
    fs::write(src.join("data/small"), b"v2").unwrap();
    let b = store.capture(&src, meta(None, 2)).unwrap();

    assert_eq!(store.find(&a.id).unwrap(), a);
    assert_eq!(store.find(&a.id[..6]).unwrap(), a);
    assert_eq!(store.find(&b.id[..12].to_ascii_uppercase()).unwrap(), b);
    assert_eq!(store.find("nightly").unwrap(), a);

    let listed: Vec<String> = store.list().unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(listed, vec![b.id.clone(), a.id.clone()], "newest first");

    for key in [&a.id[..5], "", "nope", &"0".repeat(64)] {
        let err = store.find(key).unwrap_err();
        assert!(
            matches!(err, SnapshotError::NotFound { .. }),
            "{key}: {err}"
        );
    }
}

#[test]
fn ambiguous_keys_name_the_candidates() {
    let base = tempfile::tempdir().unwrap();
    let src = make_dir(base.path(), "src", &sample_tree());
    let store = store(&base.path().join("store"));
    let a = store.capture(&src, meta(Some("twin"), 1)).unwrap();
    let b = store.capture(&src, meta(Some("twin"), 2)).unwrap();

    let err = store.find("twin").unwrap_err();
    match &err {
        SnapshotError::Ambiguous { key, candidates } => {
            assert_eq!(key, "twin");
            let mut expected = vec![a.id.clone(), b.id.clone()];
            expected.sort();
            assert_eq!(candidates, &expected);
        }
        other => panic!("expected ambiguity, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&a.id) && message.contains(&b.id),
        "{message}"
    );

    // A prefix of one snapshot's id that is another's name.
    let prefix = a.id[..8].to_string();
    let c = store.capture(&src, meta(Some(&prefix), 3)).unwrap();
    let err = store.find(&prefix).unwrap_err();
    assert!(
        matches!(err, SnapshotError::Ambiguous { ref candidates, .. } if candidates.contains(&a.id) && candidates.contains(&c.id)),
        "{err}"
    );
}
