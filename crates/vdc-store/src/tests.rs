//! One suite run against every implementation of [`Store`].

use std::sync::Arc;

use super::*;

async fn suite(store: Arc<dyn Store>) {
    assert_eq!(store.get(Bucket::Apps, "shop").await.unwrap(), None);
    let r1 = store
        .put(Bucket::Apps, "shop", b"v1".to_vec())
        .await
        .unwrap();
    let got = store.get(Bucket::Apps, "shop").await.unwrap().unwrap();
    assert_eq!(
        got,
        Entry {
            value: b"v1".to_vec(),
            revision: r1
        }
    );

    // Revisions grow across buckets.
    let r2 = store
        .put(Bucket::Links, "shop/web.db", b"x".to_vec())
        .await
        .unwrap();
    assert!(r2 > r1);

    // Compare-and-set: the right revision wins, a stale one conflicts.
    let r3 = store
        .cas(Bucket::Apps, "shop", b"v2".to_vec(), Some(r1))
        .await
        .unwrap();
    let stale = store
        .cas(Bucket::Apps, "shop", b"v3".to_vec(), Some(r1))
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict { found: Some(f), .. }) if f == r3));
    let exists = store.cas(Bucket::Apps, "shop", b"v3".to_vec(), None).await;
    assert!(matches!(exists, Err(StoreError::Conflict { .. })));
    store
        .cas(Bucket::Apps, "blog", b"b".to_vec(), None)
        .await
        .unwrap();

    let keys: Vec<String> = store
        .list(Bucket::Apps)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["blog", "shop"]);
    assert!(store.delete(Bucket::Apps, "blog").await.unwrap());
    assert!(!store.delete(Bucket::Apps, "blog").await.unwrap());
    assert_eq!(store.list(Bucket::Apps).await.unwrap().len(), 1);
    assert_eq!(store.list(Bucket::Instances).await.unwrap().len(), 0);
}

#[tokio::test]
async fn mem_store_keeps_the_contract() {
    suite(Arc::new(MemStore::new())).await;
}

#[tokio::test]
async fn redb_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(
        RedbStore::open(&dir.path().join("state.redb")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn redb_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let rev = {
        let store = RedbStore::open(&path).unwrap();
        store
            .put(Bucket::Apps, "shop", b"v1".to_vec())
            .await
            .unwrap()
    };
    let store = RedbStore::open(&path).unwrap();
    let got = store.get(Bucket::Apps, "shop").await.unwrap().unwrap();
    assert_eq!(got.revision, rev);
    // The revision counter is persisted too: later writes never reuse one.
    assert!(store.put(Bucket::Apps, "x", vec![]).await.unwrap() > rev);
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let _first = RedbStore::open(&path).unwrap();
    let err = RedbStore::open(&path).unwrap_err().to_string();
    assert!(err.contains("cannot open the state store"), "{err}");
}
