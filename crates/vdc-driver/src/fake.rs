//! A [`Driver`] that runs nothing, for testing the agent and other crates
//! without processes.
//!
//! [`FakeDriver`] is a real implementation of the trait: `start` returns a
//! handle whose `wait` blocks until the test decides the instance exits, and
//! `stop` ends it as a process that obeys SIGTERM would. Everything is
//! recorded, and pids are deterministic (1000, 1001, ... in start order).
//! An instance's usage is zero until the test sets it with
//! [`FakeControl::set_usage`] (or [`FakeDriver::set_usage`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use vdc_driver::fake::FakeDriver;
//! use vdc_driver::{Driver, ExitInfo, LaunchSpec, Limits};
//!
//! let driver = FakeDriver::new();
//! let spec = LaunchSpec {
//!     instance: "shop/web/0".into(),
//!     cgroup_name: "vdc-test/shop.web.0".into(),
//!     program: "web".into(),
//!     args: vec![],
//!     env: vec![],
//!     workdir: "/srv".into(),
//!     nofile: None,
//!     log_file: "/srv/web.log".into(),
//!     limits: Limits::default(),
//!     confine: None,
//! };
//! let mut handle = driver.start(&spec).await.unwrap();
//! assert_eq!(handle.pid(), 1000);
//!
//! // The test makes the instance crash; whoever waits on it sees that.
//! driver.exit("shop/web/0", ExitInfo::code(2));
//! assert_eq!(handle.wait().await, ExitInfo::code(2));
//! assert_eq!(handle.stop(Duration::from_secs(1)).await, ExitInfo::code(2));
//! assert_eq!(driver.stops().len(), 1);
//! # }
//! ```

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{
    CgroupVersion, Driver, DriverError, ExitInfo, InstanceHandle, Isolation, LaunchSpec, Leftover,
    Usage, UsageSource,
};

/// The first pid handed out.
const FIRST_PID: u32 = 1000;

/// A driver for tests. Clones share their state, so a test can keep one and
/// give another to the code under test.
#[derive(Clone, Debug)]
pub struct FakeDriver {
    state: Arc<Mutex<State>>,
    isolation: Isolation,
    /// The number of successful starts, to let tests wait for them.
    started: watch::Sender<usize>,
}

/// One successful `start`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeStart {
    pub spec: LaunchSpec,
    pub pid: u32,
}

/// One `stop` (later calls on the same handle are not recorded, as they do
/// nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeStop {
    pub instance: String,
    pub pid: u32,
    pub grace: Duration,
}

/// Lets a test end one fake instance and set its usage, independently of
/// its handle.
#[derive(Clone, Debug)]
pub struct FakeControl {
    pid: u32,
    exit: Arc<watch::Sender<Option<ExitInfo>>>,
    usage: Arc<Mutex<Usage>>,
}

#[derive(Debug)]
struct State {
    next_pid: u32,
    starts: Vec<FakeStart>,
    stops: Vec<FakeStop>,
    reaped: Vec<Leftover>,
    instances: Vec<Slot>,
    failing_programs: Vec<String>,
    stop_exit: ExitInfo,
    /// What `exec` answers, by program; success for any other.
    exec_exits: Vec<(String, ExitInfo)>,
    /// Every command `exec` was asked to run.
    execs: Vec<Vec<String>>,
}

/// A started instance as the driver sees it.
#[derive(Debug)]
struct Slot {
    instance: String,
    control: FakeControl,
}

/// The handle [`FakeDriver::start`](Driver::start) returns.
#[derive(Debug)]
struct FakeInstance {
    spec: LaunchSpec,
    control: FakeControl,
    exited: watch::Receiver<Option<ExitInfo>>,
    state: Arc<Mutex<State>>,
    stopped: Option<ExitInfo>,
}

// === impl FakeDriver ===

impl Default for FakeDriver {
    fn default() -> Self {
        FakeDriver::new()
    }
}

impl FakeDriver {
    /// A fake that reports full isolation (cgroup v2, no warning).
    pub fn new() -> FakeDriver {
        FakeDriver::with_isolation(Isolation {
            cgroups: Some(CgroupVersion::V2),
            warning: None,
        })
    }

    /// A fake that reports `isolation`, e.g. to test how a warning is shown.
    pub fn with_isolation(isolation: Isolation) -> FakeDriver {
        FakeDriver {
            state: Arc::new(Mutex::new(State {
                next_pid: FIRST_PID,
                starts: Vec::new(),
                stops: Vec::new(),
                reaped: Vec::new(),
                instances: Vec::new(),
                failing_programs: Vec::new(),
                stop_exit: ExitInfo::signal(libc::SIGTERM),
                exec_exits: Vec::new(),
                execs: Vec::new(),
            })),
            isolation,
            started: watch::Sender::new(0),
        }
    }

    /// Every successful start so far, in order.
    pub fn starts(&self) -> Vec<FakeStart> {
        self.lock().starts.clone()
    }

    /// Every stop so far, in order.
    pub fn stops(&self) -> Vec<FakeStop> {
        self.lock().stops.clone()
    }

    /// Every leftover passed to `reap`, in order.
    pub fn reaped(&self) -> Vec<Leftover> {
        self.lock().reaped.clone()
    }

    /// The instances whose main "process" has not exited, in start order.
    pub fn running(&self) -> Vec<String> {
        self.lock()
            .instances
            .iter()
            .filter(|slot| !slot.control.has_exited())
            .map(|slot| slot.instance.clone())
            .collect()
    }

    /// The control of the latest start of `instance`.
    pub fn control(&self, instance: &str) -> Option<FakeControl> {
        self.lock()
            .instances
            .iter()
            .rev()
            .find(|slot| slot.instance == instance)
            .map(|slot| slot.control.clone())
    }

    /// Makes the latest start of `instance` exit with `info`, as if the
    /// process had ended by itself. Returns false when there is no such
    /// instance or it already exited.
    pub fn exit(&self, instance: &str, info: ExitInfo) -> bool {
        self.control(instance).is_some_and(|c| c.exit(info))
    }

    /// Sets the usage that the latest start of `instance` reports from now
    /// on. Returns false when there is no such instance.
    pub fn set_usage(&self, instance: &str, usage: Usage) -> bool {
        self.control(instance).map(|c| c.set_usage(usage)).is_some()
    }

    /// Makes every later start of `program` fail with a "not found"
    /// [`DriverError::Spawn`], as a missing binary would.
    /// Makes `exec` of `program` end as `exit` (it succeeds otherwise).
    pub fn set_exec_exit(&self, program: &str, exit: ExitInfo) {
        let mut state = self.lock();
        state.exec_exits.retain(|(p, _)| p != program);
        state.exec_exits.push((program.to_owned(), exit));
    }

    /// Every command `exec` ran, in order.
    pub fn execs(&self) -> Vec<Vec<String>> {
        self.lock().execs.clone()
    }

    pub fn fail_program(&self, program: &str) {
        self.lock().failing_programs.push(program.to_owned());
    }

    /// How `stop` ends an instance that is still running; by default it obeys
    /// SIGTERM (`ExitInfo::signal(SIGTERM)`).
    pub fn set_stop_exit(&self, info: ExitInfo) {
        self.lock().stop_exit = info;
    }

    /// Waits until at least `count` starts have succeeded.
    pub async fn until_started(&self, count: usize) {
        let mut started = self.started.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = started.wait_for(|&n| n >= count).await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// Recovers from poisoning: a panicking test thread must not hide the
/// recorded calls from the assertion that explains it.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl Driver for FakeDriver {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    async fn start(&self, spec: &LaunchSpec) -> Result<Box<dyn InstanceHandle>, DriverError> {
        let (sender, exited) = watch::channel(None);
        let control = {
            let mut state = self.lock();
            if state.failing_programs.contains(&spec.program) {
                return Err(DriverError::Spawn {
                    instance: spec.instance.clone(),
                    program: spec.program.clone(),
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        "program not found in PATH (fake driver)",
                    ),
                });
            }
            let pid = state.next_pid;
            state.next_pid += 1;
            let source = match self.isolation.cgroups {
                Some(CgroupVersion::V1) => UsageSource::CgroupV1,
                Some(CgroupVersion::V2) => UsageSource::CgroupV2,
                None => UsageSource::Proc,
            };
            let control = FakeControl {
                pid,
                exit: Arc::new(sender),
                usage: Arc::new(Mutex::new(Usage {
                    source,
                    ..Usage::default()
                })),
            };
            state.starts.push(FakeStart {
                spec: spec.clone(),
                pid,
            });
            state.instances.push(Slot {
                instance: spec.instance.clone(),
                control: control.clone(),
            });
            control
        };
        self.started.send_modify(|n| *n += 1);
        Ok(Box::new(FakeInstance {
            spec: spec.clone(),
            control,
            exited,
            state: Arc::clone(&self.state),
            stopped: None,
        }))
    }

    async fn reap(&self, leftover: &Leftover) -> Result<(), DriverError> {
        let mut state = self.lock();
        state.reaped.push(leftover.clone());
        for slot in &state.instances {
            if slot.control.pid == leftover.pid {
                slot.control.exit(ExitInfo::signal(libc::SIGKILL));
            }
        }
        Ok(())
    }

    /// Freezing a fake instance always succeeds, as the cgroup freezer.
    async fn freeze(
        &self,
        _target: &crate::FreezeTarget,
        _within: Duration,
    ) -> Result<crate::FreezeMethod, DriverError> {
        Ok(crate::FreezeMethod::CgroupFreezer)
    }

    async fn thaw(
        &self,
        _target: &crate::FreezeTarget,
        _method: crate::FreezeMethod,
    ) -> Result<(), DriverError> {
        Ok(())
    }

    async fn exec(&self, request: &crate::ExecRequest) -> Result<crate::ExecOutcome, DriverError> {
        let mut state = self.lock();
        state.execs.push(request.command.clone());
        let program = request.command.first().cloned().unwrap_or_default();
        let exit = state
            .exec_exits
            .iter()
            .find(|(p, _)| *p == program)
            .map_or_else(|| ExitInfo::code(0), |(_, e)| e.clone());
        Ok(crate::ExecOutcome {
            exit: Some(exit),
            output: String::new(),
        })
    }
}

// === impl FakeControl ===

impl FakeControl {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Ends the instance with `info`; false when it had already ended.
    pub fn exit(&self, info: ExitInfo) -> bool {
        self.exit.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(info);
            true
        })
    }

    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Sets what [`InstanceHandle::usage`] returns from now on (until the
    /// handle is stopped, after which memory and pids read 0, as they do for
    /// a real instance). Nothing is checked: a test may make totals go down.
    pub fn set_usage(&self, usage: Usage) {
        *self.usage.lock().unwrap_or_else(PoisonError::into_inner) = usage;
    }

    /// The usage last set, initially zero with the source matching the
    /// driver's isolation.
    pub fn usage(&self) -> Usage {
        *self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl FakeInstance ===

#[async_trait]
impl InstanceHandle for FakeInstance {
    fn pid(&self) -> u32 {
        self.control.pid
    }

    fn start_ticks(&self) -> Option<u64> {
        // Deterministic and distinct per instance, like the real thing.
        Some(u64::from(self.control.pid) * 100)
    }

    fn cgroup_paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    fn usage(&self) -> Result<Usage, DriverError> {
        let usage = self.control.usage();
        Ok(match self.stopped {
            Some(_) => usage.stopped(),
            None => usage,
        })
    }

    async fn wait(&mut self) -> ExitInfo {
        // `wait_for` is cancel-safe: it only borrows the channel's value.
        match self.exited.wait_for(Option::is_some).await {
            Ok(info) => info.clone().unwrap_or_else(unknown_exit),
            // The sender is shared with the control this handle holds, so it
            // cannot be dropped while we wait.
            Err(_) => unknown_exit(),
        }
    }

    async fn stop(&mut self, grace: Duration) -> ExitInfo {
        if let Some(info) = &self.stopped {
            return info.clone();
        }
        let stop_exit = {
            let mut state = lock(&self.state);
            state.stops.push(FakeStop {
                instance: self.spec.instance.clone(),
                pid: self.control.pid,
                grace,
            });
            state.stop_exit.clone()
        };
        self.control.exit(stop_exit);
        let info = self.wait().await;
        self.stopped = Some(info.clone());
        info
    }
}

fn unknown_exit() -> ExitInfo {
    ExitInfo {
        code: None,
        signal: None,
        oom_killed: false,
    }
}

#[cfg(test)]
mod tests;
