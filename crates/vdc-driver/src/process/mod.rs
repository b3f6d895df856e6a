//! The `process` appliance: a command on the host, in its own process group
//! and, when the node allows, its own cgroup with CPU, memory and pids limits.

mod exec;
mod instance;
mod launch;
mod tree;

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;
use nix::unistd::Uid;

use self::instance::ProcessInstance;
use self::tree::{is_safe_target, Tree};
use crate::cgroup::{CgroupError, CgroupName, Cgroups, FsCgroups};
use crate::procfs::{self, ProcStat};
use crate::{
    CgroupVersion, Driver, DriverError, FreezeMethod, FreezeTarget, InstanceHandle, Isolation,
    LaunchSpec, Leftover,
};

/// Runs instances as host processes.
///
/// Each instance leads its own process group, has stdin on /dev/null and
/// appends stdout and stderr to its log file. With cgroups (root, a writable
/// cgroup filesystem) each instance also gets a leaf cgroup holding its
/// limits, which it joins before `exec`; then no process it starts can escape
/// [`InstanceHandle::stop`], even through `setsid`. Without cgroups, limits
/// are not enforced and [`Driver::isolation`] says so.
#[derive(Clone, Debug)]
pub struct ProcessDriver {
    cgroups: Option<Arc<dyn Cgroups>>,
    isolation: Isolation,
}

// === impl ProcessDriver ===

impl ProcessDriver {
    /// Uses cgroups when running as root on a node with a writable cgroup
    /// filesystem (v2 preferred, else v1), and falls back to process groups
    /// only otherwise. Probes once, by creating and removing a cgroup.
    pub fn detect() -> ProcessDriver {
        if !Uid::effective().is_root() {
            return ProcessDriver::process_groups_only("not running as root");
        }
        let Some(cgroups) = FsCgroups::detect() else {
            return ProcessDriver::process_groups_only("no cgroup filesystem at /sys/fs/cgroup");
        };
        let probe = match CgroupName::new(&format!("vdc-probe-{}", std::process::id())) {
            Ok(name) => name,
            Err(e) => return ProcessDriver::process_groups_only(&e.to_string()),
        };
        if let Err(e) = cgroups.probe(&probe) {
            return ProcessDriver::process_groups_only(&format!("cannot create cgroups ({e})"));
        }
        ProcessDriver::with_cgroups(Arc::new(cgroups))
    }

    /// Never uses cgroups, even as root.
    pub fn without_cgroups() -> ProcessDriver {
        ProcessDriver::process_groups_only("cgroups are disabled")
    }

    /// Uses the given cgroup access, e.g. an [`FsCgroups`] at another root.
    pub fn with_cgroups(cgroups: Arc<dyn Cgroups>) -> ProcessDriver {
        let missing = cgroups.missing_controllers();
        let warning = (!missing.is_empty()).then(|| missing_warning(cgroups.version(), &missing));
        let isolation = Isolation {
            cgroups: Some(cgroups.version()),
            warning,
        };
        tracing::info!(version = ?cgroups.version(), "instances get a cgroup each");
        ProcessDriver {
            cgroups: Some(cgroups),
            isolation,
        }
    }

    fn process_groups_only(reason: &str) -> ProcessDriver {
        // The caller reports `isolation.warning`, once.
        let isolation = Isolation::process_group_only(reason);
        ProcessDriver {
            cgroups: None,
            isolation,
        }
    }

    fn cgroup_name(&self, instance: &str, name: &str) -> Result<CgroupName, DriverError> {
        CgroupName::new(name).map_err(|e| DriverError::Cgroup {
            instance: instance.to_owned(),
            path: name.into(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })
    }
}

/// "cgroup v2: the memory and pids controllers are not available, so their
/// limits are not enforced".
fn missing_warning(version: CgroupVersion, missing: &[&str]) -> String {
    match missing {
        [] => String::new(),
        [one] => format!(
            "{version}: the {one} controller is not available, \
             so {one} limits are not enforced"
        ),
        [init @ .., last] => format!(
            "{version}: the {} and {last} controllers are not available, \
             so their limits are not enforced",
            init.join(", ")
        ),
    }
}

/// The process group of a target, refusing groups that are not safe to
/// signal (init, our own).
fn group_of(target: &FreezeTarget) -> Result<i32, DriverError> {
    i32::try_from(target.pid)
        .ok()
        .filter(|&p| is_safe_target(p))
        .ok_or_else(|| DriverError::Io {
            instance: target.instance.clone(),
            action: format!("signal process group {}", target.pid),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a group vdc may signal"),
        })
}

fn signal_group(
    target: &FreezeTarget,
    pgid: i32,
    signal: nix::sys::signal::Signal,
) -> Result<(), DriverError> {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal).map_err(|e| {
        DriverError::Io {
            instance: target.instance.clone(),
            action: format!("send {signal} to process group {pgid}"),
            source: io::Error::from_raw_os_error(e as i32),
        }
    })
}

fn cgroup_error(instance: &str, e: CgroupError) -> DriverError {
    DriverError::Cgroup {
        instance: instance.to_owned(),
        path: e.path,
        source: e.source,
    }
}

#[async_trait]
impl Driver for ProcessDriver {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    async fn start(&self, spec: &LaunchSpec) -> Result<Box<dyn InstanceHandle>, DriverError> {
        // Everything that can be checked is checked before the cgroup exists,
        // so a bad spec leaves nothing behind. The file system work here is on
        // local files and cgroupfs, which do not block for long.
        let name = self.cgroup_name(&spec.instance, &spec.cgroup_name)?;
        // A container's program is looked up in its own root, by its init.
        let in_image = spec
            .confine
            .as_ref()
            .is_some_and(|c| c.sandbox.image.is_some());
        let program = if in_image {
            std::path::PathBuf::from(&spec.program)
        } else {
            launch::resolve_program(spec)?
        };
        let log = launch::open_log(spec)?;
        let (mut cmd, plan) = match &spec.confine {
            None => (launch::command(spec, &program, log), None),
            Some(confinement) => {
                let cgroup = match &self.cgroups {
                    None => vdc_sandbox::CgroupView::None,
                    Some(cgroups) => match cgroups.version() {
                        CgroupVersion::V2 => vdc_sandbox::CgroupView::V2,
                        CgroupVersion::V1 => vdc_sandbox::CgroupView::V1 {
                            hierarchies: cgroups.hierarchies(),
                        },
                    },
                };
                let (cmd, plan) = launch::confine(spec, confinement, &program, log, cgroup)
                    .map_err(|source| DriverError::Io {
                        instance: spec.instance.clone(),
                        action: "prepare the instance's namespaces".to_owned(),
                        source,
                    })?;
                (cmd, Some(plan))
            }
        };

        let mut cgroup = None;
        let mut oom_baseline = None;
        if let Some(cgroups) = &self.cgroups {
            cgroups
                .create(&name, &spec.limits)
                .map_err(|e| cgroup_error(&spec.instance, e))?;
            let procs = match launch::open_procs_files(&cgroups.procs_files(&name)) {
                Ok(procs) => procs,
                Err((path, source)) => {
                    let _ = cgroups.remove(&name);
                    return Err(cgroup_error(&spec.instance, CgroupError { path, source }));
                }
            };
            launch::join_cgroup_before_exec(&mut cmd, procs);
            oom_baseline = cgroups.oom_counter(&name);
            cgroup = Some((Arc::clone(cgroups), name));
        }

        if let Some(plan) = plan {
            launch::enter_namespaces_before_exec(&mut cmd, plan);
        }
        if let Some(soft) = spec.nofile {
            launch::limit_open_files_before_exec(&mut cmd, soft);
        }
        let spawned = cmd.spawn().and_then(|child| match child.id() {
            Some(pid) => Ok((child, pid)),
            None => Err(io::Error::other(
                "the process exited before its pid was read",
            )),
        });
        let (child, pid) = match spawned {
            Ok(spawned) => spawned,
            Err(source) => {
                if let Some((cgroups, name)) = &cgroup {
                    let _ = cgroups.remove(name);
                }
                return Err(DriverError::Spawn {
                    instance: spec.instance.clone(),
                    program: spec.program.clone(),
                    source,
                });
            }
        };
        // The start time does not change at exec, so reading it while the
        // child may still be between fork and exec is fine.
        let start_ticks = ProcStat::read(pid).map(|s| s.start_ticks);
        let cgroup_paths = cgroup
            .as_ref()
            .map(|(cgroups, name)| cgroups.paths(name))
            .unwrap_or_default();
        tracing::info!(instance = %spec.instance, pid, program = %program.display(), cgroup = ?cgroup_paths.first(), "started");
        Ok(Box::new(ProcessInstance {
            instance: spec.instance.clone(),
            pid,
            start_ticks,
            child,
            tree: Tree {
                pgid: i32::try_from(pid).ok(),
                leader_ticks: start_ticks,
                cgroup,
            },
            cgroup_paths,
            oom_baseline,
            peak_seen: AtomicU64::new(0),
            final_usage: None,
            exited: None,
            sigkill_sent: false,
            stopped: None,
            under_init: spec.confine.is_some(),
            program: std::sync::OnceLock::new(),
        }))
    }

    async fn freeze(
        &self,
        target: &FreezeTarget,
        within: std::time::Duration,
    ) -> Result<FreezeMethod, DriverError> {
        let deadline = tokio::time::Instant::now() + within;
        let name = self.cgroup_name(&target.instance, &target.cgroup_name)?;
        let timed_out = |how: &str| DriverError::Io {
            instance: target.instance.clone(),
            action: format!("freeze it ({how})"),
            source: io::Error::new(
                io::ErrorKind::TimedOut,
                format!("not every process stopped within {within:?}; thawed again"),
            ),
        };
        if let Some(cgroups) = self.cgroups.as_ref().filter(|c| c.exists(&name)) {
            match cgroups.set_frozen(&name, true) {
                Ok(true) => loop {
                    match cgroups.is_frozen(&name) {
                        Ok(true) => return Ok(FreezeMethod::CgroupFreezer),
                        Ok(false) => {}
                        Err(e) => {
                            let _ = cgroups.set_frozen(&name, false);
                            return Err(cgroup_error(&target.instance, e));
                        }
                    }
                    if tokio::time::Instant::now() >= deadline {
                        let _ = cgroups.set_frozen(&name, false);
                        return Err(timed_out("cgroup freezer"));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                },
                // No freezer here: stop the process group instead.
                Ok(false) => {}
                Err(e) => return Err(cgroup_error(&target.instance, e)),
            }
        }
        let pgid = group_of(target)?;
        signal_group(target, pgid, nix::sys::signal::Signal::SIGSTOP)?;
        loop {
            // Stopped ('T') or already gone; 't' is stopped under a tracer.
            let members = procfs::group_members(pgid);
            if members
                .iter()
                .all(|(_, stat)| matches!(stat.state, 'T' | 't'))
            {
                return Ok(FreezeMethod::Sigstop);
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = signal_group(target, pgid, nix::sys::signal::Signal::SIGCONT);
                return Err(timed_out("SIGSTOP"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    async fn thaw(&self, target: &FreezeTarget, method: FreezeMethod) -> Result<(), DriverError> {
        match method {
            FreezeMethod::CgroupFreezer => {
                let name = self.cgroup_name(&target.instance, &target.cgroup_name)?;
                let Some(cgroups) = &self.cgroups else {
                    return Ok(());
                };
                cgroups
                    .set_frozen(&name, false)
                    .map(drop)
                    .map_err(|e| cgroup_error(&target.instance, e))
            }
            FreezeMethod::Sigstop => {
                let pgid = group_of(target)?;
                signal_group(target, pgid, nix::sys::signal::Signal::SIGCONT)
            }
        }
    }

    async fn exec(&self, request: &crate::ExecRequest) -> Result<crate::ExecOutcome, DriverError> {
        let name = self.cgroup_name(&request.instance, &request.cgroup_name)?;
        exec::exec(self.cgroups.as_deref(), Some(&name), request).await
    }

    async fn reap(&self, leftover: &Leftover) -> Result<(), DriverError> {
        let what = format!("leftover pid {} ({})", leftover.pid, leftover.cgroup_name);
        let name = self.cgroup_name(&what, &leftover.cgroup_name)?;
        let cgroup = self
            .cgroups
            .as_ref()
            .filter(|cgroups| cgroups.exists(&name))
            .map(|cgroups| (Arc::clone(cgroups), name));
        let mut tree = Tree {
            pgid: None,
            leader_ticks: leftover.start_ticks,
            cgroup,
        };
        let in_cgroup = |pid: u32| {
            tree.cgroup
                .as_ref()
                .and_then(|(cgroups, name)| cgroups.pids(name).ok())
                .is_some_and(|pids| pids.contains(&pid))
        };
        let pgid = i32::try_from(leftover.pid)
            .ok()
            .filter(|&p| is_safe_target(p));
        let mut leader = None;
        if let Some(pgid) = pgid {
            match ProcStat::read(leftover.pid).filter(ProcStat::is_running) {
                Some(stat) => {
                    // The pid may have been reused since the agent died: only
                    // a process with the recorded start time (or, when none
                    // was recorded, one in the instance's cgroup) is ours.
                    let ours = stat.pgid == pgid
                        && match leftover.start_ticks {
                            Some(ticks) => ticks == stat.start_ticks,
                            None => in_cgroup(leftover.pid),
                        };
                    if ours {
                        leader = Some(pgid);
                    } else {
                        tracing::info!(%what, "the pid now belongs to another process; leaving it");
                    }
                }
                None => {
                    // The leader is gone but the group may live on. A group
                    // id is the leader's pid, which the kernel does not reuse
                    // while the group exists, so a group whose members all
                    // started after the leader is the instance's own.
                    let members = procfs::group_members(pgid);
                    let ours = leftover.start_ticks.is_some_and(|ticks| {
                        members.iter().all(|(_, stat)| stat.start_ticks >= ticks)
                    });
                    if ours && !members.is_empty() {
                        leader = Some(pgid);
                    }
                }
            }
        }
        tree.pgid = leader;
        if tree.pgid.is_none() && tree.cgroup.is_none() {
            return Ok(());
        }
        if !tree.kill().await {
            return Err(DriverError::Io {
                instance: what,
                action: "kill the leftover processes".into(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    "processes are still alive after SIGKILL",
                ),
            });
        }
        tree.remove_cgroup()
            .await
            .map_err(|e| cgroup_error(&what, e))?;
        tracing::info!(%what, "reaped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_controllers_are_named_in_one_sentence() {
        assert_eq!(
            missing_warning(CgroupVersion::V2, &["pids"]),
            "cgroup v2: the pids controller is not available, so pids limits are not enforced"
        );
        assert_eq!(
            missing_warning(CgroupVersion::V1, &["cpu", "memory", "pids"]),
            "cgroup v1: the cpu, memory and pids controllers are not available, \
             so their limits are not enforced"
        );
    }
}
