//! The instance's inits: a private PID namespace for an instance, and
//! the process that confines it, through a tiny init that the node's own
//! binary becomes when started with [`INIT_ARG`].
//!
//! `unshare(CLONE_NEWPID)` does not move the caller, only its future
//! children, and the first of them becomes pid 1 of the new namespace. A
//! program started as that pid 1 would be a poor pid 1: the kernel drops
//! every signal it has no handler for (so `SIGTERM` would not stop most
//! programs, and each stop would last the whole grace period before
//! `SIGKILL`), and nothing would reap the orphans it leaves. So the
//! instance runs as three processes, all in the instance's process group
//! and cgroup:
//!
//! ```text
//! outer init   host pid N   what the driver spawned and waits for; mirrors the program's end
//!  └ pid 1     host pid N+1 confines, then reaps orphans; its exit ends the namespace
//!     └ pid 2  host pid N+2 the program
//! ```
//!
//! The outer init makes the PID namespace and, for a [`Sandbox`], IPC and
//! cgroup namespaces. Pid 1 makes its own mount namespace, builds the
//! sandbox's view of the filesystem in it ([`view`](crate::view)), and
//! starts the program as the sandbox's user, with its capabilities
//! dropped and the system-call filter installed
//! ([`user`](crate::user), [`seccomp`](crate::seccomp)). Pid 1 itself
//! stays root in the namespace: the program, another user without
//! capabilities, can neither signal nor trace it. Without a sandbox pid 1
//! only mounts the namespace's `/proc` (for tests and nodes that cannot
//! confine).
//!
//! The driver keeps signalling the whole process group as before: the
//! program gets `SIGTERM` directly, and both inits hold every signal
//! blocked, so they survive it and wait for the program to end. They do
//! not forward signals (the program would get each twice), except those
//! the group got before the program existed, which pid 1 passes on once
//! it runs: a stop right after a start is not lost.
//!
//! When the program ends, pid 1 reports how (exit code or signal) through a
//! pipe and exits, which makes the kernel kill whatever the program left in
//! the namespace. The outer init then ends the same way the program did
//! (exit code, or killed by the same signal), so the driver reads the
//! program's own exit status, and an OOM kill still shows as `SIGKILL`.
//! `SIGKILL` kills the inits like anything else; pid 1 also dies with the
//! outer init (`PR_SET_PDEATHSIG`), and the program with pid 1.
//!
//! Both inits are new executions of the node's binary, which must call
//! [`run_if_requested`] first thing in `main`. A freshly started binary
//! costs little memory (about 160 kB of its own per init), unlike a fork of
//! the agent that never calls `exec`, which would keep a copy of the
//! agent's memory as it was at the fork.
//! When the init cannot run the program it exits with 125 (its own
//! failure, such as a step of the confinement that failed), 126 (the
//! program cannot be executed) or 127 (not found), as shells and container
//! runtimes do, after writing why to stderr (the instance's log).

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{close, getpid, pipe2, Pid};

use crate::{Sandbox, User};

/// The first argument that makes the node's binary act as an instance init.
pub const INIT_ARG: &str = "__vdc-init";

/// The second argument: which of the two inits this process is.
const MODE_OUTER: &str = "outer";
const MODE_PID1: &str = "pid1";
/// A command run inside a running instance (a health probe).
const MODE_JOIN: &str = "join";

/// The node's binary, whatever its path, even if replaced on disk since.
const SELF_EXE: &str = "/proc/self/exe";

/// What the inits call themselves in `ps`.
const INIT_NAME: &str = "vdc-init";

/// Exit codes when the program could not be run, as shells use them.
const EXIT_INIT_FAILED: i32 = 125;
const EXIT_CANNOT_EXECUTE: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;

// === types ===

/// How to start a program under the init, in a PID namespace of its own.
///
/// ```no_run
/// # use std::path::Path;
/// # use std::ffi::OsStr;
/// let init = vdc_sandbox::PidInit::current_exe();
/// let mut cmd = std::process::Command::new(init.exe());
/// cmd.arg0("vdc-init").args(init.args(
///     None,
///     Path::new("/usr/bin/python3"),
///     OsStr::new("python3"),
///     ["-m", "http.server"],
/// ));
/// # use std::os::unix::process::CommandExt;
/// ```
#[derive(Clone, Debug)]
pub struct PidInit {
    exe: PathBuf,
}

/// What the command line asks the init to run.
struct Program {
    path: OsString,
    arg0: OsString,
    args: Vec<OsString>,
}

/// What stands for "no sandbox" on the outer init's command line.
const NO_SANDBOX: &str = "-";

// === impl PidInit ===

impl PidInit {
    /// The init is the running binary itself (`/proc/self/exe`), which
    /// calls [`run_if_requested`] in `main`.
    pub fn current_exe() -> Self {
        PidInit::new(SELF_EXE)
    }

    /// The init is `exe`, a binary that calls [`run_if_requested`] first.
    pub fn new(exe: impl Into<PathBuf>) -> Self {
        PidInit { exe: exe.into() }
    }

    /// The program to spawn instead of the instance's own.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// The arguments to give [`exe`](Self::exe) so that it runs `program`
    /// (a path, found beforehand, as the sandbox's view shows it) with
    /// `arg0` as its `argv[0]` and `args`, confined by `sandbox` when
    /// given. The environment, working directory (without a sandbox),
    /// standard streams, process group, network namespace and cgroup of
    /// the spawned init all pass on to the program.
    pub fn args<I, S>(
        &self,
        sandbox: Option<&Sandbox>,
        program: &Path,
        arg0: &OsStr,
        args: I,
    ) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all = vec![
            OsString::from(INIT_ARG),
            OsString::from(MODE_OUTER),
            OsString::from(sandbox.map_or_else(|| NO_SANDBOX.to_owned(), Sandbox::to_arg)),
            program.as_os_str().to_owned(),
            arg0.to_owned(),
        ];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        all
    }
}

impl PidInit {
    /// The arguments to give [`exe`](Self::exe) so that it runs `program`
    /// inside the running instance whose pid 1 has host pid `pid1`: in its
    /// namespaces (its view of the filesystem among them), in `workdir`, as
    /// `user`, under the instance's system-call filter. It ends as the
    /// program ended. Spawn it in the instance's cgroup.
    pub fn join_args<I, S>(
        &self,
        pid1: u32,
        user: &User,
        workdir: &Path,
        program: &OsStr,
        args: I,
    ) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let user = serde_json::to_string(user).unwrap_or_default();
        let mut all = vec![
            OsString::from(INIT_ARG),
            OsString::from(MODE_JOIN),
            OsString::from(pid1.to_string()),
            OsString::from(user),
            workdir.as_os_str().to_owned(),
            program.to_owned(),
            program.to_owned(),
        ];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        all
    }
}

// === the inits ===

/// Runs the init and never returns when this process was started as one
/// (its first argument is [`INIT_ARG`]); returns at once otherwise.
///
/// Call it first thing in `main`, before starting any thread or runtime:
/// the inits block signals, which only holds for the whole process while
/// it has a single thread.
pub fn run_if_requested() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(INIT_ARG)) {
        return;
    }
    let args: Vec<OsString> = args.collect();
    match args.split_first() {
        Some((mode, rest)) if mode == MODE_OUTER => {
            let sandbox = match rest.first().map(|a| a.to_str()) {
                Some(Some(NO_SANDBOX)) => None,
                Some(Some(plan)) => match Sandbox::from_arg(plan) {
                    Ok(sandbox) => Some(sandbox),
                    Err(e) => fail(&format!("the sandbox plan is not valid: {e}")),
                },
                _ => fail("expected: outer SANDBOX PROGRAM ARG0 [ARGS...]"),
            };
            match rest.get(1..).and_then(parse_program) {
                Some(program) => outer(sandbox.as_ref(), &program),
                None => fail("expected: outer SANDBOX PROGRAM ARG0 [ARGS...]"),
            }
        }
        Some((mode, rest)) if mode == MODE_PID1 => {
            let fd = |i: usize| {
                rest.get(i)
                    .and_then(|fd| fd.to_str())
                    .and_then(|fd| fd.parse::<i32>().ok())
                    // 0, 1 and 2 are the program's standard streams.
                    .filter(|&fd| fd > 2)
            };
            match (fd(0), fd(1), fd(2), rest.get(3..).and_then(parse_program)) {
                (Some(report), Some(early), Some(plan), Some(program)) => {
                    pid1(report, early, plan, &program)
                }
                _ => fail("expected: pid1 REPORT_FD EARLY_FD PLAN_FD PROGRAM ARG0 [ARGS...]"),
            }
        }
        Some((mode, rest)) if mode == MODE_JOIN => {
            let pid1 = rest.first().and_then(|p| p.to_str()?.parse::<i32>().ok());
            let user = rest
                .get(1)
                .and_then(|u| serde_json::from_str::<User>(u.to_str()?).ok());
            match (
                pid1,
                user,
                rest.get(2),
                rest.get(3..).and_then(parse_program),
            ) {
                (Some(pid1), Some(user), Some(workdir), Some(program)) => {
                    join(pid1, &user, Path::new(workdir), &program)
                }
                _ => fail("expected: join PID1 USER WORKDIR PROGRAM ARG0 [ARGS...]"),
            }
        }
        _ => fail("expected `outer`, `pid1` or `join` after the init argument"),
    }
}

/// Runs a program inside a running instance: enters the namespaces of its
/// pid 1 (the mount namespace last, as it changes what `/proc` shows), and
/// starts the program there as the instance's user under its filter.
fn join(pid1: i32, user: &User, workdir: &Path, program: &Program) -> ! {
    let kinds = [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("net", CloneFlags::CLONE_NEWNET),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut namespaces = Vec::new();
    for (name, kind) in kinds {
        match File::open(format!("/proc/{pid1}/ns/{name}")) {
            Ok(file) => namespaces.push((name, kind, file)),
            Err(e) => fail(&format!("cannot open the instance's {name} namespace: {e}")),
        }
    }
    for (name, kind, file) in &namespaces {
        if let Err(e) = nix::sched::setns(file.as_fd(), *kind) {
            fail(&format!(
                "cannot enter the instance's {name} namespace: {e}"
            ));
        }
    }
    drop(namespaces);
    if let Err(e) = nix::unistd::chdir(workdir) {
        fail(&format!("cannot enter {}: {e}", workdir.display()));
    }
    let filters = match crate::seccomp::Filters::build() {
        Ok(filters) => filters,
        Err(e) => fail(&e.to_string()),
    };
    let sandbox = Sandbox {
        user: user.clone(),
        workdir: workdir.to_owned(),
        expose: Vec::new(),
        hide: Vec::new(),
        volumes: Vec::new(),
        cgroup: crate::CgroupView::None,
        image: None,
    };
    let mut command = Command::new(&program.path);
    command.arg0(&program.arg0).args(&program.args);
    prepare_program(&mut command, Some(&sandbox), Some(filters));
    match command.status() {
        Ok(status) => mirror(status),
        Err(e) => cannot_start(program, &e),
    }
}

/// Ends an init whose program could not be started, with the exit code
/// a shell would give (127 not found, 126 not executable).
fn cannot_start(program: &Program, e: &io::Error) -> ! {
    eprintln!(
        "{INIT_NAME}: cannot start {}: {e}",
        Path::new(&program.path).display()
    );
    std::process::exit(match e.kind() {
        io::ErrorKind::NotFound => EXIT_NOT_FOUND,
        io::ErrorKind::PermissionDenied => EXIT_CANNOT_EXECUTE,
        _ => EXIT_INIT_FAILED,
    });
}

/// The outer init, in the host's PID namespace: makes the namespaces,
/// starts pid 1 in them, waits, and ends as the program ended.
fn outer(sandbox: Option<&Sandbox>, program: &Program) -> ! {
    // From the start: a signal meant for the program (the driver signals
    // the whole group) must not end this process first. Pid 1 inherits the
    // mask, so what reaches it before the program exists stays pending too.
    block_all_signals();
    // The cgroup namespace is rooted where this process is: the driver
    // placed it in the instance's cgroup before it started.
    let namespaces = match sandbox {
        Some(_) => {
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWCGROUP
        }
        None => CloneFlags::CLONE_NEWPID,
    };
    if let Err(e) = unshare(namespaces) {
        fail(&format!("cannot make the instance's namespaces: {e}"));
    }
    // Three pipes to pid 1, which gets one end of each (and closes its
    // copies before starting the program): it reports how the program
    // ended on one, learns on another which signals came before it
    // existed, and reads the sandbox's plan on the third.
    let (report_read, report_write) = pipe_to_child();
    let (early_read, early_write) = pipe_to_child();
    let (plan_read, plan_write) = pipe_to_child();
    for end in [&report_write, &early_read, &plan_read] {
        if let Err(e) = fcntl(end.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())) {
            fail(&format!("cannot pass a pipe on: {e}"));
        }
    }
    let spawned = Command::new(SELF_EXE)
        .arg0(INIT_NAME)
        .args([INIT_ARG, MODE_PID1])
        .arg(report_write.as_raw_fd().to_string())
        .arg(early_read.as_raw_fd().to_string())
        .arg(plan_read.as_raw_fd().to_string())
        .arg(&program.path)
        .arg(&program.arg0)
        .args(&program.args)
        .spawn();
    drop((report_write, early_read, plan_read));
    // The plan goes through a pipe rather than pid 1's command line, which
    // the program can read in its /proc.
    let plan = sandbox.map_or_else(|| NO_SANDBOX.to_owned(), Sandbox::to_arg);
    let _ = File::from(plan_write).write_all(plan.as_bytes());
    // Pid 1 exists now, so whatever the group gets from here on reaches it
    // too; what came before only reached this process.
    let early: String = take_pending()
        .iter()
        .map(|signal| format!("{} ", *signal as i32))
        .collect();
    let _ = File::from(early_write).write_all(early.as_bytes());
    let status = match spawned.and_then(|mut pid1| pid1.wait()) {
        Ok(status) => status,
        Err(e) => fail(&format!("cannot start the pid namespace's init: {e}")),
    };
    let mut report = String::new();
    let _ = File::from(report_read).read_to_string(&mut report);
    match parse_report(&report) {
        Some(Ended::Exited(code)) => std::process::exit(code),
        Some(Ended::Killed(signal)) => die_by(signal),
        // pid 1 ended before the program did (killed, or it failed to
        // start it): its own status says the most.
        None => mirror(status),
    }
}

/// Pid 1 of the instance's namespace: confines the instance (or only
/// mounts its /proc), starts the program, reaps every process that ends,
/// and reports the program's end.
///
/// It runs with every signal blocked (the outer init's mask, inherited), so
/// none is lost, and starts the program with none blocked.
fn pid1(report_fd: i32, early_fd: i32, plan_fd: i32, program: &Program) -> ! {
    let mut report = adopt(report_fd, true);
    let early = adopt(early_fd, false);
    let plan = adopt(plan_fd, false);
    // If the outer init dies (SIGKILL), so does the namespace; and if it
    // died already, before that was set, nobody reads the report any more.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if !has_reader(&report) {
        std::process::exit(EXIT_INIT_FAILED);
    }
    let mut text = String::new();
    if let Err(e) = plan.take(1 << 20).read_to_string(&mut text) {
        fail(&format!("cannot read the sandbox plan: {e}"));
    }
    let sandbox = match text.as_str() {
        NO_SANDBOX => None,
        plan => match Sandbox::from_arg(plan) {
            Ok(sandbox) => Some(sandbox),
            Err(e) => fail(&format!("the sandbox plan is not valid: {e}")),
        },
    };
    // A mount table of our own (the program's too), where nothing mounted
    // reaches the host, while unmounts on the host still reach us.
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNS) {
        fail(&format!("cannot make a mount namespace: {e}"));
    }
    if let Err(e) = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    ) {
        fail(&format!("cannot make the mounts private: {e}"));
    }
    let filters = match &sandbox {
        Some(sandbox) => {
            if let Err(e) = crate::view::enter(sandbox) {
                fail(&e.to_string());
            }
            match crate::seccomp::Filters::build() {
                Ok(filters) => Some(filters),
                Err(e) => fail(&e.to_string()),
            }
        }
        None => {
            // A /proc of the namespace: `ps` shows the instance's processes
            // only, and /proc/1 is this init, not the host's.
            if let Err(e) = mount(
                Some("proc"),
                "/proc",
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            ) {
                fail(&format!("cannot mount /proc for the pid namespace: {e}"));
            }
            None
        }
    };
    let mut command = Command::new(&program.path);
    command.arg0(&program.arg0).args(&program.args);
    prepare_program(&mut command, sandbox.as_ref(), filters);
    let main = match command.spawn() {
        Ok(child) => Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)),
        Err(e) => cannot_start(program, &e),
    };
    // Signals the group got before the program existed were meant for it:
    // those only the outer init saw, and those pending here. One that came
    // just after the program started reaches it twice, which is harmless
    // (a second SIGTERM right after the first); losing one is not.
    let mut passed_on = String::new();
    let _ = early.take(256).read_to_string(&mut passed_on);
    let mut signals: Vec<Signal> = passed_on
        .split_whitespace()
        .filter_map(|n| n.parse::<i32>().ok())
        .filter_map(|n| Signal::try_from(n).ok())
        .chain(take_pending())
        .collect();
    signals.sort_unstable_by_key(|s| *s as i32);
    signals.dedup();
    for signal in signals {
        let _ = kill(main, signal);
    }
    let all = SigSet::all();
    loop {
        if let Some(ended) = reap(main) {
            let _ = report.write_all(ended.to_string().as_bytes());
            std::process::exit(0);
        }
        // Whatever the signal: SIGCHLD says a process ended; any other was
        // meant for the program, which got it from the process group too.
        let _ = all.wait();
    }
}

/// What the program's process does between `fork` and `exec`: becomes
/// the sandbox's user under its filters, and starts
/// with no signal blocked, whatever pid 1 blocks. (The standard library
/// keeps the parent's mask; clearing it before the spawn instead would let
/// a signal through that a pid 1 without handlers silently drops.)
#[allow(unsafe_code)]
fn prepare_program(
    command: &mut Command,
    sandbox: Option<&Sandbox>,
    filters: Option<crate::seccomp::Filters>,
) {
    let sandbox = sandbox.cloned();
    // SAFETY: the closure runs in the child between fork and exec. The
    // usual rule there (only async-signal-safe operations, since another
    // thread may have held a lock at the fork) does not bind this process:
    // pid 1 is a freshly started init with a single thread, so the child
    // inherits no lock held by anyone else and may allocate. The closure
    // owns everything it uses (moved in), and reports a failure on its
    // stderr (the instance's log) before returning it, since only the
    // error number reaches the parent.
    unsafe {
        command.pre_exec(move || {
            let confined = || -> Result<(), crate::SandboxError> {
                if let Some(sandbox) = &sandbox {
                    crate::user::become_user(&sandbox.user)?;
                }
                Ok(())
            };
            let result = confined()
                .map_err(|e| {
                    eprintln!("{INIT_NAME}: {e}");
                    io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EPERM))
                })
                .and_then(|()| {
                    SigSet::empty()
                        .thread_set_mask()
                        .map_err(|e| io::Error::from_raw_os_error(e as i32))
                });
            result?;
            // Last: from here on only what the filter allows, and exec is.
            if let Some(filters) = &filters {
                filters.apply().map_err(|e| {
                    eprintln!("{INIT_NAME}: {e}");
                    io::Error::from_raw_os_error(libc::EPERM)
                })?;
            }
            Ok(())
        });
    }
}

/// Reaps every process that has ended; returns how `main` ended if it did.
fn reap(main: Pid) -> Option<Ended> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => return Some(Ended::Exited(code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == main => {
                return Some(Ended::Killed(signal as i32))
            }
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) | Err(Errno::EINTR) => {}
            // No children left without having seen the program end (or a
            // status nix cannot name): the program is gone all the same.
            Err(_) => return Some(Ended::Exited(EXIT_INIT_FAILED)),
        }
    }
}

// === helpers ===

/// How the program ended, as pid 1 reports it to the outer init.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Exited(i32),
    Killed(i32),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(code) => write!(f, "exit {code}"),
            Ended::Killed(signal) => write!(f, "signal {signal}"),
        }
    }
}

fn parse_report(report: &str) -> Option<Ended> {
    let (kind, value) = report.trim().split_once(' ')?;
    let value = value.parse().ok()?;
    match kind {
        "exit" => Some(Ended::Exited(value)),
        "signal" => Some(Ended::Killed(value)),
        _ => None,
    }
}

fn parse_program(args: &[OsString]) -> Option<Program> {
    let (path, rest) = args.split_first()?;
    let (arg0, args) = rest.split_first()?;
    Some(Program {
        path: path.clone(),
        arg0: arg0.clone(),
        args: args.to_vec(),
    })
}

/// Holds every signal pending instead of acting on it (`SIGKILL` and
/// `SIGSTOP` cannot be held). Children inherit the mask.
fn block_all_signals() {
    if let Err(e) = SigSet::all().thread_block() {
        fail(&format!("cannot block signals: {e}"));
    }
}

/// A pipe whose ends are both close-on-exec; the caller clears the flag on
/// the end the child gets.
fn pipe_to_child() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    match pipe2(OFlag::O_CLOEXEC) {
        Ok(pipe) => pipe,
        Err(e) => fail(&format!("cannot make a pipe: {e}")),
    }
}

/// Takes over an inherited pipe end: opens it anew (close-on-exec) and
/// closes the inherited descriptor, so the program does not get it.
fn adopt(fd: i32, write: bool) -> File {
    let opened = OpenOptions::new()
        .read(!write)
        .write(write)
        .open(format!("/proc/self/fd/{fd}"));
    let _ = close(fd);
    match opened {
        Ok(file) => file,
        Err(e) => fail(&format!("cannot open the pipe from the outer init: {e}")),
    }
}

/// Takes the signals pending for this process (all blocked), except
/// SIGCHLD, without waiting.
fn take_pending() -> Vec<Signal> {
    let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
    let Ok(signals) = SignalFd::with_flags(&SigSet::all(), flags) else {
        return Vec::new();
    };
    let mut taken = Vec::new();
    while let Ok(Some(info)) = signals.read_signal() {
        match i32::try_from(info.ssi_signo).map(Signal::try_from) {
            Ok(Ok(Signal::SIGCHLD)) | Ok(Err(_)) | Err(_) => {}
            Ok(Ok(signal)) => taken.push(signal),
        }
    }
    taken
}

/// Whether the read end of the report pipe is still open: a pipe without
/// readers polls as an error.
fn has_reader(report: &File) -> bool {
    let mut fds = [PollFd::new(report.as_fd(), PollFlags::POLLOUT)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => !fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR)),
        Err(_) => true,
    }
}

/// Ends this process the way `status` says a child ended.
fn mirror(status: ExitStatus) -> ! {
    if let Some(code) = status.code() {
        std::process::exit(code);
    }
    match status.signal() {
        Some(signal) => die_by(signal),
        None => std::process::exit(EXIT_INIT_FAILED),
    }
}

/// Dies by `signal`, so that the driver sees the program's own end. A
/// signal this process ignores (Rust programs ignore `SIGPIPE`) becomes exit
/// code 128 + signal, as shells report it.
fn die_by(signal: i32) -> ! {
    if let Ok(sig) = Signal::try_from(signal) {
        // The program wrote its own core file if it was going to.
        let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
        let mut only = SigSet::empty();
        only.add(sig);
        let _ = only.thread_unblock();
        let _ = kill(getpid(), sig);
    }
    std::process::exit(128 + signal)
}

/// Says why on stderr (the instance's log) and exits with 125.
fn fail(why: &str) -> ! {
    eprintln!("{INIT_NAME}: {why}");
    std::process::exit(EXIT_INIT_FAILED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        for ended in [Ended::Exited(0), Ended::Exited(3), Ended::Killed(9)] {
            assert_eq!(parse_report(&ended.to_string()), Some(ended));
        }
        assert_eq!(parse_report(""), None);
        assert_eq!(parse_report("exit x"), None);
        assert_eq!(parse_report("stopped 1"), None);
    }

    #[test]
    fn the_command_line_carries_the_program_verbatim() {
        let init = PidInit::current_exe();
        let args = init.args(
            None,
            Path::new("/bin/sh"),
            OsStr::new("sh"),
            ["-c", "echo $$"],
        );
        assert_eq!(init.exe(), Path::new("/proc/self/exe"));
        assert_eq!(args[0], INIT_ARG);
        assert_eq!(args[2], NO_SANDBOX);
        let program = parse_program(&args[3..]).unwrap();
        assert_eq!(program.path, "/bin/sh");
        assert_eq!(program.arg0, "sh");
        assert_eq!(program.args, ["-c", "echo $$"]);
    }
}
