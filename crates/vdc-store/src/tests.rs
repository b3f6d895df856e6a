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

    watch_contract(store.as_ref()).await;
}

/// The next notice of a watch, failing after 5 s.
async fn notice(watch: &mut Watch) -> String {
    tokio::time::timeout(std::time::Duration::from_secs(5), watch.changed())
        .await
        .expect("no notice within 5 s")
        .expect("the watch ended")
}

/// A watcher hears of every write and delete in its bucket, and of nothing
/// else: not other buckets, not refused writes, not deletes of nothing.
async fn watch_contract(store: &dyn Store) {
    let mut watch = store.watch(Bucket::Tenants).await.unwrap();
    store
        .put(Bucket::Links, "acme", b"x".to_vec())
        .await
        .unwrap();
    let r = store
        .put(Bucket::Tenants, "acme", b"1".to_vec())
        .await
        .unwrap();
    assert_eq!(notice(&mut watch).await, "acme");
    let refused = store
        .cas(Bucket::Tenants, "acme", b"2".to_vec(), Some(r + 1000))
        .await;
    assert!(matches!(refused, Err(StoreError::Conflict { .. })));
    store
        .cas(Bucket::Tenants, "acme", b"2".to_vec(), Some(r))
        .await
        .unwrap();
    assert_eq!(notice(&mut watch).await, "acme");
    assert!(!store.delete(Bucket::Tenants, "nobody").await.unwrap());
    assert!(store.delete(Bucket::Tenants, "acme").await.unwrap());
    assert_eq!(notice(&mut watch).await, "acme");
    // Keys NATS cannot spell come back as written.
    store
        .put(Bucket::Tenants, "a b/c.d", b"1".to_vec())
        .await
        .unwrap();
    assert_eq!(notice(&mut watch).await, "a b/c.d");
    assert_eq!(watch.drain(), 0, "nothing else was written");
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

use vdc_testkit::NatsServer;

#[tokio::test]
async fn nats_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let store = NatsStore::connect(&server.url(), "vdc-test").await.unwrap();
    suite(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_compare_and_set_races_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let a = NatsStore::connect(&server.url(), "vdc-test").await.unwrap();
    let b = NatsStore::connect(&server.url(), "vdc-test").await.unwrap();

    // Both create the same key: one wins.
    let (ra, rb) = tokio::join!(
        a.cas(Bucket::Apps, "shop", b"a".to_vec(), None),
        b.cas(Bucket::Apps, "shop", b"b".to_vec(), None),
    );
    let (won, lost) = match (ra, rb) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    assert!(
        matches!(lost, StoreError::Conflict { found: Some(f), expected: None, .. } if f == won),
        "{lost:?}"
    );

    // Both update from the same revision: one wins.
    let (ra, rb) = tokio::join!(
        a.cas(Bucket::Apps, "shop", b"a2".to_vec(), Some(won)),
        b.cas(Bucket::Apps, "shop", b"b2".to_vec(), Some(won)),
    );
    let (won2, lost) = match (ra, rb) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    assert!(won2 > won);
    assert!(
        matches!(lost, StoreError::Conflict { found: Some(f), .. } if f == won2),
        "{lost:?}"
    );
    assert_eq!(
        a.get(Bucket::Apps, "shop").await.unwrap().unwrap().revision,
        won2
    );
}

#[tokio::test]
async fn nats_keys_nats_does_not_allow_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let store = NatsStore::connect(&server.url(), "vdc-test").await.unwrap();
    let keys = ["shop/lb:gateway", "shop/web.db", "a=b", "shop/web/0"];
    for key in keys {
        store
            .put(Bucket::Links, key, key.as_bytes().to_vec())
            .await
            .unwrap();
        let got = store.get(Bucket::Links, key).await.unwrap().unwrap();
        assert_eq!(got.value, key.as_bytes());
    }
    let listed: Vec<(String, Vec<u8>)> = store
        .list(Bucket::Links)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, e)| (k, e.value))
        .collect();
    let mut want: Vec<(String, Vec<u8>)> = keys
        .iter()
        .map(|k| (k.to_string(), k.as_bytes().to_vec()))
        .collect();
    want.sort();
    assert_eq!(listed, want);
    // Another bucket with the same key is another key.
    assert_eq!(
        store.get(Bucket::Apps, "shop/lb:gateway").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn nats_deleted_key_can_be_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let store = NatsStore::connect(&server.url(), "vdc-test").await.unwrap();
    let r1 = store
        .cas(Bucket::Tenants, "acme", b"1".to_vec(), None)
        .await
        .unwrap();
    assert!(store.delete(Bucket::Tenants, "acme").await.unwrap());
    assert_eq!(store.get(Bucket::Tenants, "acme").await.unwrap(), None);
    assert!(store.list(Bucket::Tenants).await.unwrap().is_empty());
    // An update from the revision before the delete is stale.
    let stale = store
        .cas(Bucket::Tenants, "acme", b"x".to_vec(), Some(r1))
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { found: None, .. })),
        "{stale:?}"
    );
    let r2 = store
        .cas(Bucket::Tenants, "acme", b"2".to_vec(), None)
        .await
        .unwrap();
    assert!(r2 > r1);
    let got = store.get(Bucket::Tenants, "acme").await.unwrap().unwrap();
    assert_eq!(got.value, b"2");
    assert_eq!(got.revision, r2);
}

#[tokio::test]
async fn nats_store_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let port = server.port();
    let rev = {
        let store = NatsStore::connect(&server.url(), "vdc-test").await.unwrap();
        store
            .put(Bucket::Apps, "shop", b"v1".to_vec())
            .await
            .unwrap()
    };
    drop(server);
    let server = NatsServer::start_on(dir.path(), port);
    let store = NatsStore::connect(&server.url(), "vdc-test").await.unwrap();
    let got = store.get(Bucket::Apps, "shop").await.unwrap().unwrap();
    assert_eq!(got.value, b"v1");
    assert_eq!(got.revision, rev);
    assert!(store.put(Bucket::Apps, "x", vec![]).await.unwrap() > rev);
    assert_eq!(store.list(Bucket::Apps).await.unwrap().len(), 2);
}

#[tokio::test]
async fn nats_connect_to_nothing_fails_quickly() {
    let port = vdc_testkit::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let err = NatsStore::connect(&url, "vdc-test").await.unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(6));
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains("cannot connect"), "{msg}");
}

#[tokio::test]
async fn nats_list_sees_every_live_key_of_its_bucket_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let store = NatsStore::connect(&server.url(), "vdc-test").await.unwrap();
    for i in 0..300 {
        let key = format!("acme/shop/web/{i:09}");
        store.put(Bucket::Ledger, &key, vec![1]).await.unwrap();
        store.put(Bucket::Instances, &key, vec![2]).await.unwrap();
    }
    // Rewrites and deletes: one entry per key, the last write, tombstones
    // skipped.
    for i in 0..300 {
        let key = format!("acme/shop/web/{i:09}");
        if i % 3 == 0 {
            store.delete(Bucket::Ledger, &key).await.unwrap();
        } else if i % 3 == 1 {
            store.put(Bucket::Ledger, &key, vec![3]).await.unwrap();
        }
    }
    let listed = store.list(Bucket::Ledger).await.unwrap();
    assert_eq!(listed.len(), 200);
    let keys: Vec<&String> = listed.iter().map(|(k, _)| k).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    for (key, entry) in &listed {
        let i: u32 = key.rsplit('/').next().unwrap().parse().unwrap();
        assert_eq!(entry.value, if i % 3 == 1 { vec![3] } else { vec![1] });
        assert_eq!(
            store.get(Bucket::Ledger, key).await.unwrap().as_ref(),
            Some(entry)
        );
    }
    assert_eq!(store.list(Bucket::Instances).await.unwrap().len(), 300);
    assert!(store.list(Bucket::Apps).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_list_ends_while_keys_are_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let store = Arc::new(NatsStore::connect(&server.url(), "vdc-test").await.unwrap());
    for i in 0..50 {
        let key = format!("acme/shop/web/{i:09}");
        store.put(Bucket::Instances, &key, vec![1]).await.unwrap();
    }
    // Status updates keep landing on the same keys, and new keys appear,
    // as they do while instances start.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for round in 0u32.. {
                for i in 0..50 {
                    let key = format!("acme/shop/web/{i:09}");
                    let _ = store.put(Bucket::Instances, &key, vec![2]).await;
                }
                let key = format!("acme/shop/db/{round:09}");
                let _ = store.put(Bucket::Instances, &key, vec![3]).await;
            }
        })
    };
    for _ in 0..40 {
        let started = std::time::Instant::now();
        let listed = store.list(Bucket::Instances).await.unwrap();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "a list took {:?}",
            started.elapsed()
        );
        let web = listed.iter().filter(|(k, _)| k.contains("/web/")).count();
        assert_eq!(web, 50, "every key written before the list is in it");
    }
    writer.abort();
}

#[tokio::test]
async fn changes_wake_on_any_watched_bucket_and_not_on_others() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let mut changes = Changes::new(store.clone(), &[Bucket::Apps, Bucket::Assignments]).await;
    store.put(Bucket::Nodes, "n1", vec![]).await.unwrap();
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), changes.next()).await;
    assert!(quiet.is_err(), "a write to an unwatched bucket woke it");
    store
        .put(Bucket::Assignments, "shop/web/0", vec![])
        .await
        .unwrap();
    store.put(Bucket::Apps, "shop", vec![]).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), changes.next())
        .await
        .unwrap();
    changes.drain();
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), changes.next()).await;
    assert!(quiet.is_err(), "drained notices woke it again");
}
