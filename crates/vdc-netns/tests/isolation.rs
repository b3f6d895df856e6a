//! Processes started the way the driver starts them (an `IsolationPlan` in
//! `pre_exec`, the program wrapped by the init): what they see, how their
//! end is reported, how they stop. This test binary is its own init, as the
//! `vdc` binary is, so it has its own `main` instead of libtest's.

// A test binary, with its own `main` instead of libtest's: unwrapping is
// how its tests fail.
#![allow(clippy::unwrap_used)]

mod common;

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{pids_exactly, Fixture};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use vdc_netns::{IsolationPlan, Netns, PidInit};

const SCRIPT: &str = "cat /proc/net/dev; echo ---; ls -A /tmp; echo ---; \
                      stat -f -c %t \"$1\"; echo ---; echo $$";

/// One test: the shared fixture and the namespace made in it.
type Test = fn(&Fixture, &Netns);

fn main() {
    // When started as an instance's init, be one and never come back.
    vdc_netns::run_if_requested();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .cloned()
        .collect();
    let tests: [(&str, Test); 8] = [
        (
            "the_plan_alone_gives_lo_and_an_empty_tmp",
            the_plan_alone_gives_lo_and_an_empty_tmp,
        ),
        (
            "under_the_init_the_program_is_pid_2",
            under_the_init_the_program_is_pid_2,
        ),
        (
            "the_program_starts_with_no_signal_blocked",
            the_program_starts_with_no_signal_blocked,
        ),
        (
            "the_init_ends_as_the_program_ended",
            the_init_ends_as_the_program_ended,
        ),
        (
            "sigterm_to_the_group_stops_a_program_without_handlers",
            sigterm_to_the_group_stops_a_program_without_handlers,
        ),
        (
            "a_sigterm_right_after_the_start_is_not_lost",
            a_sigterm_right_after_the_start_is_not_lost,
        ),
        (
            "what_the_program_leaves_behind_dies_with_it",
            what_the_program_leaves_behind_dies_with_it,
        ),
        (
            "a_missing_program_is_exit_127",
            a_missing_program_is_exit_127,
        ),
    ];
    // Test runners (cargo-nextest) first ask for the list of tests, in
    // libtest's terse format; ignored tests: there are none.
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            for (name, _) in &tests {
                println!("{name}: test");
            }
        }
        return;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let Some(fx) = Fixture::new() else { return };
    let ns = fx.dir.create("iso").unwrap();
    let mut ran = 0;
    for (name, test) in tests {
        if exact && !filter.iter().any(|f| f == name) {
            continue;
        }
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        test(&fx, &ns);
        println!("test {name} ... ok");
        ran += 1;
    }
    // Hiding the pins in the children did not reach the host.
    assert_eq!(
        Netns::open(ns.path()).unwrap().inode().unwrap(),
        ns.inode().unwrap()
    );
    ns.remove().unwrap();
    println!("\ntest result: ok. {ran} passed");
}

// === helpers ===

/// `cmd` with `plan` applied between fork and exec, as the driver does.
#[allow(unsafe_code)]
fn isolated(mut cmd: Command, plan: IsolationPlan) -> Command {
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe operations are sound. `apply_in_child` only makes
    // system calls on descriptors and C strings built before the fork, and
    // returns a plain `Errno`; turning that into an `io::Error` from a raw
    // OS error does not allocate. The plan is moved into the closure, so its
    // descriptors stay open until the command is dropped.
    unsafe {
        cmd.pre_exec(move || {
            plan.apply_in_child()
                .map_err(|e| io::Error::from_raw_os_error(e as i32))
        });
    }
    cmd
}

/// The script under `sh`, wrapped by the init when `init` is set.
fn sh(script: &str, arg: &Path, init: bool) -> Command {
    if init {
        let init = PidInit::current_exe();
        let mut cmd = Command::new(init.exe());
        cmd.arg0("vdc-init").args(init.args(
            Path::new("/bin/sh"),
            "sh".as_ref(),
            ["-c", script, "sh", &arg.to_string_lossy()],
        ));
        cmd
    } else {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script, "sh", &arg.to_string_lossy()]);
        cmd
    }
}

fn run(fx: &Fixture, ns: &Netns, script: &str, init: bool) -> Output {
    let plan = IsolationPlan::for_instance(ns, &fx.dir).unwrap();
    isolated(sh(script, ns.path(), init), plan)
        .output()
        .unwrap()
}

fn sections(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split("---\n")
        .map(str::to_owned)
        .collect()
}

fn interfaces(dev: &str) -> Vec<String> {
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|i| i.trim().to_owned())
        .collect()
}

/// Waits for the child with a deadline, killing it if it runs over.
fn wait_for(child: &mut std::process::Child, deadline: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// === tests ===

fn the_plan_alone_gives_lo_and_an_empty_tmp(fx: &Fixture, ns: &Netns) {
    // Something in the host's /tmp that the instance must not see.
    let marker = tempfile::Builder::new()
        .prefix("host-only")
        .tempfile_in("/tmp")
        .unwrap();
    assert!(marker.path().exists());

    let out = sections(&run(fx, ns, SCRIPT, false));
    assert_eq!(interfaces(&out[0]), ["lo"], "{}", out[0]);
    assert_eq!(out[1], "", "a private, empty /tmp");
    // The pins are hidden: the namespace file is the bare mount point, not
    // a namespace (nsfs is 6e736673).
    assert_ne!(out[2].trim(), "6e736673");
    let pid: u32 = out[3].trim().parse().unwrap();
    assert!(pid > 2, "without the init the pid is a host pid: {pid}");
    // The host is untouched.
    assert!(marker.path().exists());
    let host = std::fs::read_to_string("/proc/self/net/dev").unwrap();
    assert!(interfaces(&host).len() > 1, "{host}");
}

fn under_the_init_the_program_is_pid_2(fx: &Fixture, ns: &Netns) {
    let script = format!(
        "{SCRIPT}; echo ---; tr '\\0' ' ' < /proc/1/cmdline; echo; echo ---; \
         test -e /proc/{host_pid} && echo visible || echo hidden",
        host_pid = std::process::id()
    );
    let out = sections(&run(fx, ns, &script, true));
    assert_eq!(interfaces(&out[0]), ["lo"], "{}", out[0]);
    assert_eq!(out[1], "");
    assert_ne!(out[2].trim(), "6e736673");
    assert_eq!(out[3].trim(), "2", "the program is pid 2, under the init");
    assert!(
        out[4].starts_with("vdc-init __vdc-init pid1 "),
        "{}",
        out[4]
    );
    // The host's processes, this test's included, are not in this /proc.
    assert_eq!(out[5].trim(), "hidden");
}

fn the_program_starts_with_no_signal_blocked(fx: &Fixture, ns: &Netns) {
    // The inits hold every signal blocked; the program must not inherit
    // that, or SIGTERM would never reach it.
    let init = PidInit::current_exe();
    let mut cmd = Command::new(init.exe());
    cmd.args(init.args(
        Path::new("/bin/grep"),
        "grep".as_ref(),
        ["SigBlk", "/proc/self/status"],
    ));
    let plan = IsolationPlan::for_instance(ns, &fx.dir).unwrap();
    let out = isolated(cmd, plan).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "SigBlk:\t0000000000000000\n"
    );
}

fn the_init_ends_as_the_program_ended(fx: &Fixture, ns: &Netns) {
    let code = run(fx, ns, "exit 3", true).status;
    assert_eq!(code.code(), Some(3));
    let killed = run(fx, ns, "kill -TERM $$", true).status;
    assert_eq!(killed.signal(), Some(libc::SIGTERM), "{killed:?}");
    let oom_like = run(fx, ns, "kill -KILL $$", true).status;
    assert_eq!(oom_like.signal(), Some(libc::SIGKILL), "{oom_like:?}");
    assert!(!oom_like.core_dumped());
}

fn sigterm_to_the_group_stops_a_program_without_handlers(fx: &Fixture, ns: &Netns) {
    // `sleep` has no SIGTERM handler: as pid 1 it would ignore SIGTERM.
    let plan = IsolationPlan::for_instance(ns, &fx.dir).unwrap();
    // A duration no other run of this test uses, to tell its `sleep` apart.
    let duration = format!("30.{}", std::process::id());
    let mut cmd = sh(&format!("exec sleep {duration}"), Path::new("/"), true);
    cmd.process_group(0).stdout(Stdio::null());
    let mut child = isolated(cmd, plan).spawn().unwrap();
    let pgid = Pid::from_raw(child.id() as i32);
    // Let the program start, then stop the group as the driver does.
    let started = Instant::now();
    while pids_exactly(&["sleep", &duration]).is_empty()
        && started.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = Instant::now();
    killpg(pgid, Signal::SIGTERM).unwrap();
    let status = wait_for(&mut child, Duration::from_secs(5));
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    assert!(pids_exactly(&["sleep", &duration]).is_empty());
}

fn a_sigterm_right_after_the_start_is_not_lost(fx: &Fixture, ns: &Netns) {
    // Whenever it arrives (before the inits block signals, before the
    // program exists, while it starts), SIGTERM to the group ends it all.
    let duration = format!("28.{}", std::process::id());
    for _ in 0..20 {
        let plan = IsolationPlan::for_instance(ns, &fx.dir).unwrap();
        let mut cmd = sh(&format!("exec sleep {duration}"), Path::new("/"), true);
        cmd.process_group(0).stdout(Stdio::null());
        let mut child = isolated(cmd, plan).spawn().unwrap();
        killpg(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        let status = wait_for(&mut child, Duration::from_secs(5));
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    }
    let start = Instant::now();
    while !pids_exactly(&["sleep", &duration]).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "a program survived"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn what_the_program_leaves_behind_dies_with_it(fx: &Fixture, ns: &Netns) {
    // A daemon that outlives the program (double fork) ends with the
    // namespace when the program exits.
    let duration = format!("29.{}", std::process::id());
    let out = run(
        fx,
        ns,
        &format!("(sleep {duration} &) ; echo started"),
        true,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
    assert!(out.status.success());
    let start = Instant::now();
    while !pids_exactly(&["sleep", &duration]).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the orphan survived"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn a_missing_program_is_exit_127(fx: &Fixture, ns: &Netns) {
    let init = PidInit::current_exe();
    let mut cmd = Command::new(init.exe());
    cmd.args(init.args(Path::new("/nonexistent/program"), "program".as_ref(), ["x"]));
    let plan = IsolationPlan::for_instance(ns, &fx.dir).unwrap();
    let out = isolated(cmd, plan).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("vdc-init: cannot start /nonexistent/program: No such file"),
        "{stderr}"
    );
}
