//! How an instance runs on a node: the [`Driver`] trait the agent talks to,
//! the [`ProcessDriver`] that runs instances as isolated host processes, and
//! a [`fake::FakeDriver`] for tests of other crates.
//!
//! **Architecture invariant:** this is the only crate that acts on instance
//! processes with system calls (signals, cgroups, `pre_exec`). Its one
//! `unsafe` block is the `pre_exec` hook that moves a child into its cgroup
//! before `exec`.
//!
//! Isolation degrades instead of failing: without root or a writable cgroup
//! filesystem, instances still run in their own process group, and
//! [`Driver::isolation`] carries a one-line warning for the operator.
//!
//! What a caller must do:
//! - persist a [`Leftover`] (pid, start time, cgroup name) for every started
//!   instance, and after an agent restart pass each one to [`Driver::reap`];
//! - call [`InstanceHandle::stop`] after [`InstanceHandle::wait`] returns too:
//!   waiting only reaps the main process, while stop also ends the processes
//!   it left behind and removes the cgroup. Dropping a handle stops nothing;
//! - sample [`InstanceHandle::usage`] as often as it needs (each call reads
//!   about ten cgroup files, or scans `/proc` without cgroups) and compute
//!   rates from the differences; without cgroups the totals can drop (see
//!   [`UsageSource::Proc`]). After `stop` the handle keeps returning the
//!   instance's final totals;
//! - not run as pid 1 without an init (such as `tini`) when instances may
//!   leave orphans: nobody else would reap them.

#![deny(unsafe_code)]

pub mod cgroup;
mod driver;
mod error;
mod exit;
pub mod fake;
mod isolation;
mod process;
mod procfs;
mod spec;
mod usage;

pub use crate::driver::{
    Driver, ExecOutcome, ExecRequest, FreezeMethod, FreezeTarget, InstanceHandle,
};
pub use crate::error::DriverError;
pub use crate::exit::ExitInfo;
pub use crate::isolation::{CgroupVersion, Isolation};
pub use crate::process::ProcessDriver;
pub use crate::spec::{Confinement, LaunchSpec, Leftover, Limits};
pub use crate::usage::{Usage, UsageSource};
