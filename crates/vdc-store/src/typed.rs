//! Typed access to the buckets: apps, instance records and link addresses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use vdc_model::{AppRecord, Assignment, InstanceStatus, MoveRecord, NodeRecord, NodeTask, Tenant};

use crate::{Bucket, Store, StoreError};

/// What a node remembers about an instance it runs, so that after a crash it
/// can find and clean up the process it left behind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub status: InstanceStatus,
    pub pid: Option<u32>,
    /// The process start time in clock ticks, to tell our process from a
    /// later one that reused the pid.
    pub start_ticks: Option<u64>,
    pub cgroup_name: Option<String>,
    /// Where other nodes reach each input of the instance: the node's
    /// address and a port its data plane forwards to the instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed: BTreeMap<String, SocketAddr>,
}

impl InstanceRecord {
    /// The record's key: an instance may briefly run on two nodes while it
    /// moves, and each node reports its own.
    pub fn key(&self) -> String {
        instance_key(&self.status.id.to_string(), &self.status.node.0)
    }
}

/// The key of the record node `node` keeps for instance `id`.
pub fn instance_key(id: &str, node: &str) -> String {
    format!("{id}@{node}")
}

/// Meta keys marking an app whose volumes are to be deleted.
const PURGED: &str = "purged-volumes/";

#[derive(Clone)]
pub struct StateStore {
    kv: Arc<dyn Store>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").finish_non_exhaustive()
    }
}

fn decode<T: DeserializeOwned>(bucket: Bucket, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        bucket: bucket.as_str(),
        key: key.to_owned(),
        source,
    })
}

fn encode<T: Serialize>(bucket: Bucket, key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Decode {
        bucket: bucket.as_str(),
        key: key.to_owned(),
        source,
    })
}

impl StateStore {
    pub fn new(kv: Arc<dyn Store>) -> Self {
        Self { kv }
    }

    pub fn kv(&self) -> &Arc<dyn Store> {
        &self.kv
    }

    async fn list<T: DeserializeOwned>(&self, bucket: Bucket) -> Result<Vec<T>, StoreError> {
        self.kv
            .list(bucket)
            .await?
            .iter()
            .map(|(k, e)| decode(bucket, k, &e.value))
            .collect()
    }

    // === apps ===

    pub async fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        self.list(Bucket::Apps).await
    }

    pub async fn app(&self, name: &str) -> Result<Option<(AppRecord, u64)>, StoreError> {
        match self.kv.get(Bucket::Apps, name).await? {
            Some(e) => Ok(Some((decode(Bucket::Apps, name, &e.value)?, e.revision))),
            None => Ok(None),
        }
    }

    /// Writes an app record if nobody changed it since `expected` was read.
    pub async fn put_app(
        &self,
        record: &AppRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let key = record.spec.name.as_str();
        let bytes = encode(Bucket::Apps, key, record)?;
        self.kv.cas(Bucket::Apps, key, bytes, expected).await
    }

    pub async fn delete_app(&self, name: &str) -> Result<bool, StoreError> {
        self.kv.delete(Bucket::Apps, name).await
    }

    // === instances ===

    pub async fn instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        self.list(Bucket::Instances).await
    }

    pub async fn put_instance(&self, record: &InstanceRecord) -> Result<(), StoreError> {
        let key = record.key();
        let bytes = encode(Bucket::Instances, &key, record)?;
        self.kv.put(Bucket::Instances, &key, bytes).await.map(drop)
    }

    /// Removes the record node `node` keeps for instance `id`.
    pub async fn delete_instance(&self, id: &str, node: &str) -> Result<bool, StoreError> {
        self.kv
            .delete(Bucket::Instances, &instance_key(id, node))
            .await
    }

    // === nodes ===

    /// Every node with its record's revision.
    pub async fn nodes(&self) -> Result<Vec<(NodeRecord, u64)>, StoreError> {
        self.kv
            .list(Bucket::Nodes)
            .await?
            .iter()
            .map(|(k, e)| Ok((decode(Bucket::Nodes, k, &e.value)?, e.revision)))
            .collect()
    }

    pub async fn node(&self, name: &str) -> Result<Option<(NodeRecord, u64)>, StoreError> {
        match self.kv.get(Bucket::Nodes, name).await? {
            Some(e) => Ok(Some((decode(Bucket::Nodes, name, &e.value)?, e.revision))),
            None => Ok(None),
        }
    }

    /// Writes a node record if nobody changed it since `expected` was read.
    pub async fn put_node(
        &self,
        record: &NodeRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let key = record.info.id.0.as_str();
        let bytes = encode(Bucket::Nodes, key, record)?;
        self.kv.cas(Bucket::Nodes, key, bytes, expected).await
    }

    /// Changes a node's record with `change` (which says whether it changed
    /// anything), retrying from a fresh read when another writer came
    /// first. `None` when there is no such node.
    pub async fn update_node(
        &self,
        name: &str,
        mut change: impl FnMut(&mut NodeRecord) -> bool,
    ) -> Result<Option<NodeRecord>, StoreError> {
        loop {
            let Some((mut record, rev)) = self.node(name).await? else {
                return Ok(None);
            };
            if !change(&mut record) {
                return Ok(Some(record));
            }
            match self.put_node(&record, Some(rev)).await {
                Ok(_) => return Ok(Some(record)),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn delete_node(&self, name: &str) -> Result<bool, StoreError> {
        self.kv.delete(Bucket::Nodes, name).await
    }

    // === assignments ===

    /// Every assignment, by instance id.
    pub async fn assignments(&self) -> Result<BTreeMap<String, Assignment>, StoreError> {
        self.kv
            .list(Bucket::Assignments)
            .await?
            .iter()
            .map(|(k, e)| Ok((k.clone(), decode(Bucket::Assignments, k, &e.value)?)))
            .collect()
    }

    pub async fn put_assignment(
        &self,
        id: &str,
        assignment: &Assignment,
    ) -> Result<(), StoreError> {
        let bytes = encode(Bucket::Assignments, id, assignment)?;
        self.kv.put(Bucket::Assignments, id, bytes).await.map(drop)
    }

    pub async fn delete_assignment(&self, id: &str) -> Result<bool, StoreError> {
        self.kv.delete(Bucket::Assignments, id).await
    }

    /// The assignment of one instance, with its revision.
    pub async fn assignment(&self, id: &str) -> Result<Option<(Assignment, u64)>, StoreError> {
        match self.kv.get(Bucket::Assignments, id).await? {
            Some(e) => Ok(Some((
                decode(Bucket::Assignments, id, &e.value)?,
                e.revision,
            ))),
            None => Ok(None),
        }
    }

    /// Writes an assignment only over the revision read.
    pub async fn cas_assignment(
        &self,
        id: &str,
        assignment: &Assignment,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let bytes = encode(Bucket::Assignments, id, assignment)?;
        self.kv.cas(Bucket::Assignments, id, bytes, expected).await
    }

    // === moves ===

    pub async fn moves(&self) -> Result<Vec<(MoveRecord, u64)>, StoreError> {
        self.kv
            .list(Bucket::Moves)
            .await?
            .iter()
            .map(|(k, e)| Ok((decode(Bucket::Moves, k, &e.value)?, e.revision)))
            .collect()
    }

    pub async fn move_record(
        &self,
        instance: &str,
    ) -> Result<Option<(MoveRecord, u64)>, StoreError> {
        match self.kv.get(Bucket::Moves, instance).await? {
            Some(e) => Ok(Some((
                decode(Bucket::Moves, instance, &e.value)?,
                e.revision,
            ))),
            None => Ok(None),
        }
    }

    /// Writes a move record only over the revision read (`None`: new).
    pub async fn put_move(
        &self,
        record: &MoveRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let bytes = encode(Bucket::Moves, &record.instance, record)?;
        self.kv
            .cas(Bucket::Moves, &record.instance, bytes, expected)
            .await
    }

    // === node tasks ===

    pub async fn tasks(&self) -> Result<Vec<(NodeTask, u64)>, StoreError> {
        self.kv
            .list(Bucket::Tasks)
            .await?
            .iter()
            .map(|(k, e)| Ok((decode(Bucket::Tasks, k, &e.value)?, e.revision)))
            .collect()
    }

    pub async fn task(&self, id: &str) -> Result<Option<(NodeTask, u64)>, StoreError> {
        match self.kv.get(Bucket::Tasks, id).await? {
            Some(e) => Ok(Some((decode(Bucket::Tasks, id, &e.value)?, e.revision))),
            None => Ok(None),
        }
    }

    pub async fn put_task(
        &self,
        task: &NodeTask,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let bytes = encode(Bucket::Tasks, &task.id, task)?;
        self.kv.cas(Bucket::Tasks, &task.id, bytes, expected).await
    }

    pub async fn delete_task(&self, id: &str) -> Result<bool, StoreError> {
        self.kv.delete(Bucket::Tasks, id).await
    }

    // === links ===

    /// Every link address allocated so far, by listener key.
    pub async fn link_addresses(&self) -> Result<Vec<(String, SocketAddr)>, StoreError> {
        let entries = self.kv.list(Bucket::Links).await?;
        entries
            .iter()
            .map(|(k, e)| Ok((k.clone(), decode(Bucket::Links, k, &e.value)?)))
            .collect()
    }

    pub async fn put_link_address(&self, key: &str, addr: SocketAddr) -> Result<(), StoreError> {
        let bytes = encode(Bucket::Links, key, &addr)?;
        self.kv.put(Bucket::Links, key, bytes).await.map(drop)
    }

    /// Records a link's address unless one is recorded already; returns the
    /// address that holds (the one written, or the one found).
    pub async fn create_link_address(
        &self,
        key: &str,
        addr: SocketAddr,
    ) -> Result<SocketAddr, StoreError> {
        let bytes = encode(Bucket::Links, key, &addr)?;
        match self.kv.cas(Bucket::Links, key, bytes, None).await {
            Ok(_) => Ok(addr),
            Err(StoreError::Conflict { .. }) => match self.kv.get(Bucket::Links, key).await? {
                Some(e) => decode(Bucket::Links, key, &e.value),
                None => Ok(addr),
            },
            Err(e) => Err(e),
        }
    }

    pub async fn delete_link_address(&self, key: &str) -> Result<bool, StoreError> {
        self.kv.delete(Bucket::Links, key).await
    }

    // === tenants ===

    pub async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.list(Bucket::Tenants).await
    }

    pub async fn tenant(&self, name: &str) -> Result<Option<(Tenant, u64)>, StoreError> {
        match self.kv.get(Bucket::Tenants, name).await? {
            Some(e) => Ok(Some((decode(Bucket::Tenants, name, &e.value)?, e.revision))),
            None => Ok(None),
        }
    }

    /// Writes a tenant if nobody changed it since `expected` was read.
    pub async fn put_tenant(
        &self,
        tenant: &Tenant,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let key = tenant.name.as_str();
        let bytes = encode(Bucket::Tenants, key, tenant)?;
        self.kv.cas(Bucket::Tenants, key, bytes, expected).await
    }

    // === settings ===

    /// The hex SHA-256 of the admin token, once one was created.
    pub async fn admin_token_sha256(&self) -> Result<Option<String>, StoreError> {
        match self.kv.get(Bucket::Meta, "admin-token").await? {
            Some(e) => Ok(Some(decode(Bucket::Meta, "admin-token", &e.value)?)),
            None => Ok(None),
        }
    }

    /// Records the admin token's hash; fails with a conflict if one exists.
    pub async fn create_admin_token(&self, sha256: &str) -> Result<(), StoreError> {
        let bytes = encode(Bucket::Meta, "admin-token", &sha256)?;
        self.kv
            .cas(Bucket::Meta, "admin-token", bytes, None)
            .await
            .map(drop)
    }

    /// A setting (JSON) of the control plane, by name.
    pub async fn setting<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.kv.get(Bucket::Meta, name).await? {
            Some(e) => Ok(Some(decode(Bucket::Meta, name, &e.value)?)),
            None => Ok(None),
        }
    }

    pub async fn put_setting<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let bytes = encode(Bucket::Meta, name, value)?;
        self.kv.put(Bucket::Meta, name, bytes).await.map(drop)
    }

    // === purged volumes ===

    /// Marks what `tenant`'s app left on the nodes (volumes, logs) for
    /// deletion on every node (`down --purge`).
    pub async fn mark_purged(&self, tenant: &str, app: &str, at_ms: u64) -> Result<(), StoreError> {
        self.put_setting(&format!("{PURGED}{tenant}/{app}"), &at_ms)
            .await
    }

    /// The apps, as (tenant, app), whose volumes and logs every node
    /// deletes.
    pub async fn purged(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .kv
            .list(Bucket::Meta)
            .await?
            .into_iter()
            .filter_map(|(k, _)| {
                let (tenant, app) = k.strip_prefix(PURGED)?.split_once('/')?;
                Some((tenant.to_owned(), app.to_owned()))
            })
            .collect())
    }

    /// A new app of `tenant`'s with that name keeps its volumes.
    pub async fn unmark_purged(&self, tenant: &str, app: &str) -> Result<(), StoreError> {
        self.kv
            .delete(Bucket::Meta, &format!("{PURGED}{tenant}/{app}"))
            .await
            .map(drop)
    }

    // === ledger ===

    /// Appends one ledger record under `key` unless one is there already:
    /// returns false (and writes nothing) when the key exists, so replaying
    /// a write never counts twice.
    pub async fn append_ledger<T: Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<bool, StoreError> {
        let bytes = encode(Bucket::Ledger, key, value)?;
        match self.kv.cas(Bucket::Ledger, key, bytes, None).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every ledger record whose key starts with `prefix`, in key order.
    pub async fn ledger<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, StoreError> {
        self.kv
            .list(Bucket::Ledger)
            .await?
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| decode(Bucket::Ledger, k, &e.value))
            .collect()
    }
}
