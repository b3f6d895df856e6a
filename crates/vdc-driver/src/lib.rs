//! How an instance runs on a node: the [`Driver`] trait the agent talks to,
//! the [`ProcessDriver`] that runs instances as isolated host processes, and
//! a [`fake::FakeDriver`] for tests of other crates.
//!
//! **Architecture invariant:** this is the only crate that makes raw system
//! calls on instances (signals, cgroups, `pre_exec`). Its one `unsafe` block
//! is the `pre_exec` hook that moves a child into its cgroup before `exec`.
//!
//! Isolation degrades instead of failing: without root or a writable cgroup
//! filesystem, instances still run in their own process group, and
//! [`Driver::isolation`] carries a one-line warning for the operator.

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

pub use crate::driver::{Driver, InstanceHandle};
pub use crate::error::DriverError;
pub use crate::exit::ExitInfo;
pub use crate::isolation::{CgroupVersion, Isolation};
pub use crate::process::ProcessDriver;
pub use crate::spec::{LaunchSpec, Leftover, Limits};
