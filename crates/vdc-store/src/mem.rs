//! An in-memory store with the same semantics as the real ones, for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::watch::{Watch, Watchers};
use crate::{Bucket, Entry, Store, StoreError};

/// Entries by bucket and key.
type Entries = BTreeMap<(Bucket, String), Entry>;

#[derive(Debug, Default)]
pub struct MemStore {
    /// The last revision handed out, and the entries.
    inner: Mutex<(u64, Entries)>,
    watchers: Watchers,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut u64, &mut Entries) -> T) -> T {
        // A poisoned lock only means a test panicked mid-write; the map is
        // still consistent because every write is a single insert.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (rev, map) = &mut *guard;
        f(rev, map)
    }
}

#[async_trait]
impl Store for MemStore {
    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self.with(|_, m| m.get(&(bucket, key.to_owned())).cloned()))
    }

    async fn put(&self, bucket: Bucket, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        let written = self.with(|rev, m| {
            *rev += 1;
            m.insert(
                (bucket, key.to_owned()),
                Entry {
                    value,
                    revision: *rev,
                },
            );
            *rev
        });
        self.watchers.notify(bucket, key);
        Ok(written)
    }

    async fn cas(
        &self,
        bucket: Bucket,
        key: &str,
        value: Vec<u8>,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let written = self.with(|rev, m| {
            let found = m.get(&(bucket, key.to_owned())).map(|e| e.revision);
            if found != expected {
                return Err(StoreError::Conflict {
                    bucket: bucket.as_str(),
                    key: key.to_owned(),
                    expected,
                    found,
                });
            }
            *rev += 1;
            m.insert(
                (bucket, key.to_owned()),
                Entry {
                    value,
                    revision: *rev,
                },
            );
            Ok(*rev)
        })?;
        self.watchers.notify(bucket, key);
        Ok(written)
    }

    async fn delete(&self, bucket: Bucket, key: &str) -> Result<bool, StoreError> {
        let existed = self.with(|_, m| m.remove(&(bucket, key.to_owned())).is_some());
        if existed {
            self.watchers.notify(bucket, key);
        }
        Ok(existed)
    }

    async fn list(&self, bucket: Bucket) -> Result<Vec<(String, Entry)>, StoreError> {
        Ok(self.with(|_, m| {
            m.iter()
                .filter(|((b, _), _)| *b == bucket)
                .map(|((_, k), e)| (k.clone(), e.clone()))
                .collect()
        }))
    }

    async fn watch(&self, bucket: Bucket) -> Result<Watch, StoreError> {
        Ok(self.watchers.watch(bucket))
    }
}
