//! Running a command inside a running instance (an `exec` health probe):
//! in its cgroup, and for a confined instance in its namespaces, view of the
//! filesystem and user, through the node's init in `join` mode. The command
//! leads a process group of its own, which is killed at the timeout.

use std::io;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::launch;
use crate::cgroup::Cgroups;
use crate::{DriverError, ExecOutcome, ExecRequest, ExitInfo};

/// How much of the command's output is kept for the message.
const OUTPUT_KEPT: usize = 2048;

pub(crate) async fn exec(
    cgroups: Option<&dyn Cgroups>,
    cgroup: Option<&crate::cgroup::CgroupName>,
    request: &ExecRequest,
) -> Result<ExecOutcome, DriverError> {
    let io_error = |action: &str, source: io::Error| DriverError::Io {
        instance: request.instance.clone(),
        action: action.to_owned(),
        source,
    };
    let Some((program, args)) = request.command.split_first() else {
        return Err(io_error(
            "run a probe",
            io::Error::new(io::ErrorKind::InvalidInput, "the command is empty"),
        ));
    };
    let mut cmd = match &request.confine {
        Some(confinement) => {
            let pid1 = pid1_of(request.pid).ok_or_else(|| {
                io_error(
                    "run a probe",
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        "the instance has no running pid 1 to join",
                    ),
                )
            })?;
            let init = &confinement.init;
            let mut cmd = Command::new(init.exe());
            cmd.args(init.join_args(
                pid1,
                &confinement.sandbox.user,
                &request.workdir,
                std::ffi::OsStr::new(program),
                args,
            ));
            cmd
        }
        None => {
            let mut cmd = Command::new(program);
            cmd.args(args).current_dir(&request.workdir);
            cmd
        }
    };
    cmd.env_clear()
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let (Some(cgroups), Some(name)) = (cgroups, cgroup) {
        if cgroups.exists(name) {
            let procs = launch::open_procs_files(&cgroups.procs_files(name))
                .map_err(|(_, e)| io_error("join the instance's cgroup", e))?;
            launch::join_cgroup_before_exec(&mut cmd, procs);
        }
    }
    let mut child = cmd.spawn().map_err(|e| io_error("run a probe", e))?;
    let pgid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let output = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.take(OUTPUT_KEPT as u64).read_to_end(&mut out).await;
        }
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(OUTPUT_KEPT as u64).read_to_end(&mut err).await;
        }
        out.extend_from_slice(&err);
        out.truncate(OUTPUT_KEPT);
        String::from_utf8_lossy(&out).trim().to_owned()
    };
    let ran = tokio::time::timeout(request.timeout, async {
        let (output, status) = tokio::join!(output, child.wait());
        (output, status)
    })
    .await;
    match ran {
        Ok((output, status)) => {
            let status = status.map_err(|e| io_error("wait for a probe", e))?;
            Ok(ExecOutcome {
                exit: Some(ExitInfo::from_status(status)),
                output,
            })
        }
        Err(_) => {
            // The whole group: the command and whatever it started.
            if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait().await;
            Ok(ExecOutcome {
                exit: None,
                output: format!("killed after {}", human(request.timeout)),
            })
        }
    }
}

/// The instance's pid 1: the one child of its outer init.
fn pid1_of(outer: u32) -> Option<u32> {
    crate::procfs::children(outer).into_iter().next()
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
