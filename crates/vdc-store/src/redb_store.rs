//! The embedded store: one redb file, crash-safe (copy-on-write B-trees with
//! a checksummed commit), locked against a second process opening it.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};

use crate::watch::{Watch, Watchers};
use crate::{Bucket, Entry, Store, StoreError};

/// Each bucket is a table of key -> (revision, bytes).
type Table = TableDefinition<'static, &'static str, (u64, &'static [u8])>;

/// The store's global revision counter.
const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

fn table(bucket: Bucket) -> Table {
    TableDefinition::new(bucket.as_str())
}

#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    watchers: Watchers,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

fn backend(op: &'static str, bucket: Bucket, key: &str, e: redb::Error) -> StoreError {
    StoreError::Backend {
        op,
        bucket: bucket.as_str(),
        key: key.to_owned(),
        source: Box::new(e),
    }
}

impl RedbStore {
    /// Opens (or creates) the store file. Fails if another process holds it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.display().to_string(),
            source: e,
        };
        let db = Database::create(path).map_err(|e| open_err(Box::new(e)))?;
        // Create every table up front so reads never meet a missing table.
        let tx = db.begin_write().map_err(|e| open_err(Box::new(e)))?;
        for bucket in Bucket::ALL {
            tx.open_table(table(bucket))
                .map_err(|e| open_err(Box::new(e)))?;
        }
        tx.open_table(META).map_err(|e| open_err(Box::new(e)))?;
        tx.commit().map_err(|e| open_err(Box::new(e)))?;
        Ok(Self {
            db: Arc::new(db),
            watchers: Watchers::default(),
        })
    }

    /// Runs blocking redb work off the async worker threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || f(&db)).await {
            Ok(result) => result,
            Err(join) => Err(StoreError::Backend {
                op: "task",
                bucket: "-",
                key: String::new(),
                source: Box::new(join),
            }),
        }
    }
}

/// Writes `value` under `key` if `expected` matches (when `check`), bumping
/// the global revision, all in one transaction.
fn write(
    db: &Database,
    bucket: Bucket,
    key: &str,
    value: Option<&[u8]>,
    check: Option<Option<u64>>,
) -> Result<(u64, bool), StoreError> {
    let err = |e: redb::Error| backend("write", bucket, key, e);
    let tx = db.begin_write().map_err(|e| err(e.into()))?;
    let result = {
        let mut meta = tx.open_table(META).map_err(|e| err(e.into()))?;
        let mut t = tx.open_table(table(bucket)).map_err(|e| err(e.into()))?;
        let current = t.get(key).map_err(|e| err(e.into()))?.map(|g| g.value().0);
        if let Some(expected) = check {
            if expected != current {
                return Err(StoreError::Conflict {
                    bucket: bucket.as_str(),
                    key: key.to_owned(),
                    expected,
                    found: current,
                });
            }
        }
        let revision = meta
            .get(REVISION)
            .map_err(|e| err(e.into()))?
            .map_or(0, |g| g.value())
            + 1;
        meta.insert(REVISION, revision).map_err(|e| err(e.into()))?;
        match value {
            Some(v) => {
                t.insert(key, (revision, v)).map_err(|e| err(e.into()))?;
                (revision, true)
            }
            None => {
                let existed = t.remove(key).map_err(|e| err(e.into()))?.is_some();
                (revision, existed)
            }
        }
    };
    tx.commit().map_err(|e| err(e.into()))?;
    Ok(result)
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Entry>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let err = |e: redb::Error| backend("get", bucket, &key, e);
            let tx = db.begin_read().map_err(|e| err(e.into()))?;
            let t = tx.open_table(table(bucket)).map_err(|e| err(e.into()))?;
            let found = t.get(key.as_str()).map_err(|e| err(e.into()))?;
            Ok(found.map(|g| {
                let (revision, value) = g.value();
                Entry {
                    value: value.to_vec(),
                    revision,
                }
            }))
        })
        .await
    }

    async fn put(&self, bucket: Bucket, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        let owned = key.to_owned();
        let written = self
            .blocking(move |db| Ok(write(db, bucket, &owned, Some(&value), None)?.0))
            .await?;
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
        let owned = key.to_owned();
        let written = self
            .blocking(move |db| Ok(write(db, bucket, &owned, Some(&value), Some(expected))?.0))
            .await?;
        self.watchers.notify(bucket, key);
        Ok(written)
    }

    async fn delete(&self, bucket: Bucket, key: &str) -> Result<bool, StoreError> {
        let owned = key.to_owned();
        let existed = self
            .blocking(move |db| Ok(write(db, bucket, &owned, None, None)?.1))
            .await?;
        if existed {
            self.watchers.notify(bucket, key);
        }
        Ok(existed)
    }

    async fn list(&self, bucket: Bucket) -> Result<Vec<(String, Entry)>, StoreError> {
        self.blocking(move |db| {
            let err = |e: redb::Error| backend("list", bucket, "*", e);
            let tx = db.begin_read().map_err(|e| err(e.into()))?;
            let t = tx.open_table(table(bucket)).map_err(|e| err(e.into()))?;
            let mut out = Vec::new();
            for item in t.iter().map_err(|e| err(e.into()))? {
                let (k, v) = item.map_err(|e| err(e.into()))?;
                let (revision, value) = v.value();
                out.push((
                    k.value().to_owned(),
                    Entry {
                        value: value.to_vec(),
                        revision,
                    },
                ));
            }
            Ok(out)
        })
        .await
    }

    async fn watch(&self, bucket: Bucket) -> Result<Watch, StoreError> {
        Ok(self.watchers.watch(bucket))
    }
}
