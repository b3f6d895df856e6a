//! The state store: desired state (apps) and actual state (instances, link
//! addresses) that must survive a restart of the control plane.
//!
//! **Invariant:** everything above this crate talks to [`Store`], a small
//! key-value interface with revisions and compare-and-set, shaped so that a
//! replicated engine (a JetStream key-value bucket) can implement it. The
//! embedded implementation, [`RedbStore`], keeps one crash-safe file and needs
//! no server. [`NatsStore`] keeps the same buckets in one NATS JetStream
//! key-value bucket. [`MemStore`] is the test double.

#![forbid(unsafe_code)]

mod lease;
mod mem;
mod nats;
mod redb_store;
mod typed;
mod watch;

pub use lease::{decide, release, wall_ms, Leadership, LeaseRecord, LeaseStep, LEADER_KEY};
pub use mem::MemStore;
pub use nats::NatsStore;
pub use redb_store::RedbStore;
pub use typed::{instance_key, InstanceRecord, StateStore};
pub use watch::{Changes, Watch};

use async_trait::async_trait;

/// The buckets state is kept in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// Desired state: one [`vdc_model::AppRecord`] per app.
    Apps,
    /// Actual state: one [`InstanceRecord`] per instance a node runs.
    Instances,
    /// Stable link addresses, allocated once per link.
    Links,
    /// One [`vdc_model::Tenant`] per tenant.
    Tenants,
    /// Settings of the control plane itself (the admin token's hash, the
    /// metering checkpoint).
    Meta,
    /// The metering ledger: one entry per tenant, app, component and minute,
    /// written once.
    Ledger,
    /// One [`vdc_model::NodeRecord`] per node of the pool.
    Nodes,
    /// One [`vdc_model::Assignment`] per instance: the node that must run it.
    Assignments,
    /// One [`vdc_model::MoveRecord`] per instance being (or last) moved.
    Moves,
    /// [`vdc_model::NodeTask`]s: work for one node, and its outcome.
    Tasks,
}

impl Bucket {
    pub const ALL: [Bucket; 10] = [
        Bucket::Apps,
        Bucket::Instances,
        Bucket::Links,
        Bucket::Tenants,
        Bucket::Meta,
        Bucket::Ledger,
        Bucket::Nodes,
        Bucket::Assignments,
        Bucket::Moves,
        Bucket::Tasks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Apps => "apps",
            Bucket::Instances => "instances",
            Bucket::Links => "links",
            Bucket::Tenants => "tenants",
            Bucket::Meta => "meta-settings",
            Bucket::Ledger => "ledger",
            Bucket::Nodes => "nodes",
            Bucket::Assignments => "assignments",
            Bucket::Moves => "moves",
            Bucket::Tasks => "tasks",
        }
    }
}

/// A stored value and the revision that wrote it. Revisions increase across
/// the whole store, so a later write always has a larger revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub revision: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("state store {op} on {bucket}/{key} failed: {source}")]
    Backend {
        op: &'static str,
        bucket: &'static str,
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A compare-and-set found another revision than expected: someone else
    /// wrote first. Read again and retry.
    #[error(
        "{bucket}/{key} changed concurrently: expected revision {expected:?}, found {found:?}"
    )]
    Conflict {
        bucket: &'static str,
        key: String,
        expected: Option<u64>,
        found: Option<u64>,
    },
    #[error("stored {bucket}/{key} is not valid: {source}")]
    Decode {
        bucket: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A key-value store with revisions.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Entry>, StoreError>;
    /// Writes unconditionally; returns the new revision.
    async fn put(&self, bucket: Bucket, key: &str, value: Vec<u8>) -> Result<u64, StoreError>;
    /// Writes only if the key's current revision is `expected` (`None`: the
    /// key must not exist). Returns the new revision or
    /// [`StoreError::Conflict`].
    async fn cas(
        &self,
        bucket: Bucket,
        key: &str,
        value: Vec<u8>,
        expected: Option<u64>,
    ) -> Result<u64, StoreError>;
    /// Removes the key; true when it existed.
    async fn delete(&self, bucket: Bucket, key: &str) -> Result<bool, StoreError>;
    /// Every key of the bucket, in key order.
    async fn list(&self, bucket: Bucket) -> Result<Vec<(String, Entry)>, StoreError>;
    /// Notices of every later write and delete in the bucket, from anyone
    /// sharing the store.
    async fn watch(&self, bucket: Bucket) -> Result<Watch, StoreError>;
}

#[cfg(test)]
mod tests;
