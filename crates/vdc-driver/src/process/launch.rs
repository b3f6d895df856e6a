//! Turning a [`LaunchSpec`] into a command ready to spawn: the program found,
//! the log file opened, the cgroup joined before `exec`.

use std::env;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::{DriverError, LaunchSpec};

/// Used when neither the spec nor the agent has a `PATH`, as `execvp` would.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Finds the program to run, so that a typo is reported as "not found" with
/// where we looked, instead of a bare `ENOENT` from `exec`.
///
/// A name without '/' is looked up in the spec's `PATH` (or the agent's);
/// anything else is relative to the working directory, which must exist.
pub(crate) fn resolve_program(spec: &LaunchSpec) -> Result<PathBuf, DriverError> {
    let spawn_error = |source| DriverError::Spawn {
        instance: spec.instance.clone(),
        program: spec.program.clone(),
        source,
    };
    if !spec.workdir.is_dir() {
        return Err(spawn_error(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "working directory {} does not exist",
                spec.workdir.display()
            ),
        )));
    }
    if spec.program.is_empty() {
        return Err(spawn_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the program is empty",
        )));
    }
    if spec.program.contains('/') {
        let path = spec.workdir.join(&spec.program);
        return check_executable(&path).map(|()| path).map_err(spawn_error);
    }
    let search = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| OsString::from(v))
        .or_else(|| env::var_os("PATH"))
        .unwrap_or_else(|| OsString::from(DEFAULT_PATH));
    for dir in env::split_paths(&search) {
        // An empty or relative entry means a directory relative to the
        // working directory, since that is where the child will be.
        let candidate = spec.workdir.join(dir).join(&spec.program);
        if check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(spawn_error(io::Error::new(
        io::ErrorKind::NotFound,
        format!("program not found in PATH ({})", search.to_string_lossy()),
    )))
}

/// An executable regular file, or an error that says which it is not.
fn check_executable(path: &Path) -> io::Result<()> {
    let meta = fs::metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("program not found: {} does not exist", path.display()),
            )
        } else {
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        }
    })?;
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a directory, expected a program", path.display()),
        ));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not executable", path.display()),
        ));
    }
    Ok(())
}

/// Opens the log file for appending, creating it and its parents. Appending
/// lets several runs of an instance share one file, and lets the instance keep
/// writing with no reader on our side (no pipe that fills when the agent dies).
pub(crate) fn open_log(spec: &LaunchSpec) -> Result<(File, File), DriverError> {
    let log_error = |source| DriverError::LogFile {
        instance: spec.instance.clone(),
        path: spec.log_file.clone(),
        source,
    };
    if let Some(parent) = spec.log_file.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent).map_err(log_error)?;
        }
    }
    let stdout = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_file)
        .map_err(log_error)?;
    let stderr = stdout.try_clone().map_err(log_error)?;
    Ok((stdout, stderr))
}

/// The command for `spec`, in its own process group, detached from the agent:
/// stdin is /dev/null, output goes to the log, and dropping the handle leaves
/// the process running.
pub(crate) fn command(spec: &LaunchSpec, program: &Path, log: (File, File)) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg0(&spec.program)
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    detach(&mut cmd, spec, log);
    cmd
}

/// What every instance's command gets: its working directory, stdin on
/// /dev/null, output to its log, a process group of its own, and no tie to
/// the agent's lifetime.
fn detach(cmd: &mut Command, spec: &LaunchSpec, log: (File, File)) {
    // A container's working directory is a path inside it, entered by its
    // init; the init itself starts anywhere.
    let in_image = spec
        .confine
        .as_ref()
        .is_some_and(|c| c.sandbox.image.is_some());
    let dir = if in_image {
        Path::new("/")
    } else {
        spec.workdir.as_path()
    };
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.0)
        .stderr(log.1)
        .process_group(0)
        .kill_on_drop(false);
}

/// Opens every `cgroup.procs` file of the instance's cgroup, before the fork,
/// since opening (which allocates) is not allowed between fork and exec.
pub(crate) fn open_procs_files(files: &[PathBuf]) -> Result<Vec<File>, (PathBuf, io::Error)> {
    files
        .iter()
        .map(|path| {
            OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| (path.clone(), e))
        })
        .collect()
}

/// Makes the child move itself into the cgroup after the fork and before
/// `exec`, so the program's first instruction already runs under the limits
/// and nothing it forks can start outside the cgroup.
#[allow(unsafe_code)]
pub(crate) fn join_cgroup_before_exec(cmd: &mut Command, procs: Vec<File>) {
    // SAFETY: `pre_exec` is unsafe because the closure runs in the child
    // between fork and exec, where only async-signal-safe operations are
    // sound (another thread of the parent may have held the allocator's or any
    // other lock at the fork). The closure only iterates over a vector that
    // was fully built before the fork, reads each file's descriptor (a field
    // read), calls `write(2)`, which is async-signal-safe, with a static
    // buffer, and on failure builds an `io::Error` from errno, which does not
    // allocate. The descriptors stay open for the closure's lifetime because
    // the `File`s are moved into it and owned by the command; they are
    // close-on-exec, so the program does not inherit them.
    unsafe {
        cmd.pre_exec(move || {
            for file in &procs {
                // Writing "0" moves the writing process: the child itself.
                let written = libc::write(file.as_raw_fd(), b"0\n".as_ptr().cast(), 2);
                if written < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Builds the command of a confined instance: the program under the init
/// with its sandbox (completed with the program itself when the view
/// would not show it, and the instance's cgroup), the environment exactly
/// as the agent built it, and a pre-exec step that joins the instance's
/// network namespace (after the cgroup join, so that the namespaces' own
/// set-up is charged to the instance too).
pub(crate) fn confine(
    spec: &LaunchSpec,
    confinement: &crate::Confinement,
    program: &Path,
    log: (File, File),
    cgroup: vdc_sandbox::CgroupView,
) -> io::Result<(Command, vdc_netns::IsolationPlan)> {
    let mut sandbox = confinement.sandbox.clone();
    sandbox.cgroup = cgroup;
    let exposed = sandbox.expose.iter().any(|dir| program.starts_with(dir));
    if sandbox.image.is_none() && !exposed && !vdc_sandbox::view::shows(program) {
        sandbox.expose.push(program.to_owned());
    }
    let init = &confinement.init;
    let mut cmd = Command::new(init.exe());
    cmd.args(init.args(
        Some(&sandbox),
        program,
        std::ffi::OsStr::new(&spec.program),
        &spec.args,
    ))
    // Nothing of the node's own environment reaches the instance.
    .env_clear()
    .envs(spec.env.iter().map(|(k, v)| (k, v)));
    detach(&mut cmd, spec, log);
    let plan = match &confinement.netns {
        Some(ns) => vdc_netns::IsolationPlan::new().network(ns)?,
        None => vdc_netns::IsolationPlan::new(),
    };
    Ok((cmd, plan))
}

/// Gives the child `soft` as its soft limit on open files (within the hard
/// limit, read before the fork).
#[allow(unsafe_code)]
pub(crate) fn limit_open_files_before_exec(cmd: &mut Command, soft: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let soft = soft.min(hard);
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe operations are sound. It makes one system call
    // (`setrlimit`) with two integers computed before the fork; the error
    // becomes an `io::Error` from the raw errno, without allocating.
    unsafe {
        cmd.pre_exec(move || {
            setrlimit(Resource::RLIMIT_NOFILE, soft, hard)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))
        });
    }
}

/// Registers the step that moves the child into its network namespace.
#[allow(unsafe_code)]
pub(crate) fn enter_namespaces_before_exec(cmd: &mut Command, plan: vdc_netns::IsolationPlan) {
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe operations are sound. `IsolationPlan::apply_in_child`
    // is written for exactly that: it only makes a system call (setns) on a
    // descriptor opened before the fork, and does not allocate. On failure
    // the errno becomes an `io::Error` without allocating. The plan (and
    // its descriptor, close-on-exec) is owned by the closure, so it lives
    // until the exec.
    unsafe {
        cmd.pre_exec(move || {
            plan.apply_in_child()
                .map_err(|e| io::Error::from_raw_os_error(e as i32))
        });
    }
}
