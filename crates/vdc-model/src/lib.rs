//! Shared records of the pool: nodes, instances and their lifecycle, and the
//! stored form of an app. Plain data, no I/O.
//!
//! **Invariant:** every type here is serializable and owned by nobody in
//! particular; the control plane, agents, store and API all speak it.

#![forbid(unsafe_code)]

mod ids;
mod instance;
mod node;
mod tenant;

pub use ids::{InstanceId, InstanceIdError, Locator, NodeId};
pub use instance::{InstanceState, InstanceStatus, Isolation, Network};
pub use node::{
    AppRecord, Assignment, Disk, MovePhase, MoveRecord, NodeInfo, NodeRecord, NodeState, NodeTask,
    Scale, TaskRequest, TaskState,
};
pub use tenant::{Admission, Prices, Quota, Tenant, Usage};
