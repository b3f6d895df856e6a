//! Processes started the way the driver starts them (the network namespace
//! joined in `pre_exec`, the program wrapped by the init, with or without a
//! sandbox): what they see, who they are, what they may do, how their end
//! is reported, how they stop. This test binary is its own init, as the
//! `vdc` binary is, so it has its own `main` instead of libtest's.

// A test binary, with its own `main` instead of libtest's: unwrapping is
// how its tests fail.
#![allow(clippy::unwrap_used)]

mod common;

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{pids_exactly, Fixture};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use vdc_netns::{IsolationPlan, Netns};
use vdc_sandbox::{CgroupView, PidInit, Sandbox, User, Volume};

/// One test: the shared fixture and the namespace made in it.
type Test = fn(&Fixture, &Netns);

/// A uid no account of the host has, as the node's range gives out.
const UID: u32 = 1_879_048_700;

fn main() {
    // When started as an instance's init, be one and never come back.
    vdc_sandbox::run_if_requested();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .cloned()
        .collect();
    let tests: [(&str, Test); 17] = [
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
        (
            "a_sandboxed_program_is_its_own_user_without_capabilities",
            a_sandboxed_program_is_its_own_user_without_capabilities,
        ),
        (
            "a_sandboxed_program_sees_only_its_view",
            a_sandboxed_program_sees_only_its_view,
        ),
        (
            "a_sandboxed_program_writes_only_its_own_directories",
            a_sandboxed_program_writes_only_its_own_directories,
        ),
        (
            "a_sandboxed_program_cannot_leave_its_namespaces",
            a_sandboxed_program_cannot_leave_its_namespaces,
        ),
        (
            "the_view_shows_the_host_unchanged",
            the_view_shows_the_host_unchanged,
        ),
        (
            "a_root_the_admin_allowed_keeps_only_the_default_capabilities",
            a_root_the_admin_allowed_keeps_only_the_default_capabilities,
        ),
        (
            "a_failed_step_stops_the_start_with_its_reason",
            a_failed_step_stops_the_start_with_its_reason,
        ),
        (
            "a_joined_command_runs_as_the_instance_runs",
            a_joined_command_runs_as_the_instance_runs,
        ),
        (
            "a_container_sees_its_image_and_writes_its_own_layer",
            a_container_sees_its_image_and_writes_its_own_layer,
        ),
        (
            "an_image_cannot_lead_a_mount_out_of_the_container",
            an_image_cannot_lead_a_mount_out_of_the_container,
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
    let ns = fx.dir.create("sandbox").unwrap();
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
    ns.remove().unwrap();
    println!("\ntest result: ok. {ran} passed");
}

// === helpers ===

/// `cmd` in the namespace, joined between fork and exec as the driver does.
#[allow(unsafe_code)]
fn joined(mut cmd: Command, ns: &Netns) -> Command {
    let plan = IsolationPlan::new().network(ns).unwrap();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe operations are sound. `apply_in_child` only makes a
    // system call on a descriptor opened before the fork, and returns a
    // plain `Errno`; turning that into an `io::Error` from a raw OS error
    // does not allocate. The plan is moved into the closure, so its
    // descriptor stays open until the command is dropped.
    unsafe {
        cmd.pre_exec(move || {
            plan.apply_in_child()
                .map_err(|e| io::Error::from_raw_os_error(e as i32))
        });
    }
    cmd
}

/// `program ARGS` under the init, confined by `sandbox` when given.
fn under_init<S: AsRef<std::ffi::OsStr>>(
    sandbox: Option<&Sandbox>,
    program: &str,
    args: &[S],
) -> Command {
    let init = PidInit::current_exe();
    let mut cmd = Command::new(init.exe());
    let arg0 = Path::new(program).file_name().unwrap().to_owned();
    cmd.arg0("vdc-init")
        .args(init.args(sandbox, Path::new(program), &arg0, args));
    cmd
}

/// The script under `sh`, wrapped by the init without a sandbox.
fn sh(script: &str) -> Command {
    under_init(None, "/bin/sh", &["-c", script])
}

fn run(ns: &Netns, script: &str) -> Output {
    joined(sh(script), ns).output().unwrap()
}

/// What every sandboxed test uses: its own user, the fixture's working
/// directory exposed, a `data` directory in it hidden (as the node hides
/// its data directory), and one volume at `/data`.
fn sandbox(fx: &Fixture) -> Sandbox {
    let hidden = fx.work.join("data");
    let volume = fx.work.join("volume");
    for dir in [&hidden, &volume] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(hidden.join("admin.token"), "secret").unwrap();
    nix::unistd::chown(
        &volume,
        Some(nix::unistd::Uid::from_raw(UID)),
        Some(nix::unistd::Gid::from_raw(UID)),
    )
    .unwrap();
    Sandbox {
        user: User {
            uid: UID,
            gid: UID,
            name: "instance".into(),
        },
        workdir: fx.work.clone(),
        expose: vec![fx.work.clone()],
        hide: vec![hidden],
        volumes: vec![Volume {
            source: volume,
            target: PathBuf::from("/data"),
        }],
        cgroup: CgroupView::None,
        image: None,
    }
}

/// The script under `sh`, confined by `sandbox`, in the namespace, with
/// its home in the environment as the node gives it.
fn confined(ns: &Netns, sandbox: &Sandbox, script: &str) -> Output {
    let mut cmd = under_init(Some(sandbox), "/bin/sh", &["-c", script]);
    cmd.env("HOME", sandbox.home());
    joined(cmd, ns).output().unwrap()
}

/// The output's stdout split at `---` lines, after checking it succeeded.
fn sections(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{:?}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split("---\n")
        .map(str::to_owned)
        .collect()
}

/// A field of /proc/self/status as the script printed it.
fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .trim()
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

// === the init ===

fn under_the_init_the_program_is_pid_2(_: &Fixture, ns: &Netns) {
    let script = format!(
        "cat /proc/net/dev; echo ---; echo $$; echo ---; tr '\\0' ' ' < /proc/1/cmdline; echo; \
         echo ---; test -e /proc/{host_pid} && echo visible || echo hidden",
        host_pid = std::process::id()
    );
    let out = sections(&run(ns, &script));
    assert_eq!(interfaces(&out[0]), ["lo"], "{}", out[0]);
    assert_eq!(out[1].trim(), "2", "the program is pid 2, under the init");
    assert!(
        out[2].starts_with("vdc-init __vdc-init pid1 "),
        "{}",
        out[2]
    );
    // The host's processes, this test's included, are not in this /proc.
    assert_eq!(out[3].trim(), "hidden");
}

fn the_program_starts_with_no_signal_blocked(fx: &Fixture, ns: &Netns) {
    // The inits hold every signal blocked; the program must not inherit
    // that, or SIGTERM would never reach it; with a sandbox too.
    for sandbox in [None, Some(sandbox(fx))] {
        let cmd = under_init(
            sandbox.as_ref(),
            "/bin/grep",
            &["SigBlk", "/proc/self/status"],
        );
        let out = joined(cmd, ns).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "SigBlk:\t0000000000000000\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn the_init_ends_as_the_program_ended(fx: &Fixture, ns: &Netns) {
    let code = run(ns, "exit 3").status;
    assert_eq!(code.code(), Some(3));
    let killed = run(ns, "kill -TERM $$").status;
    assert_eq!(killed.signal(), Some(libc::SIGTERM), "{killed:?}");
    let oom_like = run(ns, "kill -KILL $$").status;
    assert_eq!(oom_like.signal(), Some(libc::SIGKILL), "{oom_like:?}");
    assert!(!oom_like.core_dumped());
    let sandboxed = confined(ns, &sandbox(fx), "exit 7").status;
    assert_eq!(sandboxed.code(), Some(7));
}

fn sigterm_to_the_group_stops_a_program_without_handlers(_: &Fixture, ns: &Netns) {
    // `sleep` has no SIGTERM handler: as pid 1 it would ignore SIGTERM.
    // A duration no other run of this test uses, to tell its `sleep` apart.
    let duration = format!("30.{}", std::process::id());
    let mut cmd = joined(sh(&format!("exec sleep {duration}")), ns);
    cmd.process_group(0).stdout(Stdio::null());
    let mut child = cmd.spawn().unwrap();
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
    // program exists, while it starts), SIGTERM to the group ends it all;
    // while the sandbox is being built too.
    let duration = format!("28.{}", std::process::id());
    let sandbox = sandbox(fx);
    for i in 0..20 {
        let script = format!("exec sleep {duration}");
        let cmd = if i % 2 == 0 {
            sh(&script)
        } else {
            under_init(Some(&sandbox), "/bin/sh", &["-c", &script])
        };
        let mut cmd = joined(cmd, ns);
        cmd.process_group(0).stdout(Stdio::null());
        let mut child = cmd.spawn().unwrap();
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

fn what_the_program_leaves_behind_dies_with_it(_: &Fixture, ns: &Netns) {
    // A daemon that outlives the program (double fork) ends with the
    // namespace when the program exits.
    let duration = format!("29.{}", std::process::id());
    let out = run(ns, &format!("(sleep {duration} &) ; echo started"));
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
    for sandbox in [None, Some(sandbox(fx))] {
        let cmd = under_init(sandbox.as_ref(), "/nonexistent/program", &["x"]);
        let out = joined(cmd, ns).output().unwrap();
        assert_eq!(out.status.code(), Some(127));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("vdc-init: cannot start /nonexistent/program: No such file"),
            "{stderr}"
        );
    }
}

// === the sandbox ===

fn a_sandboxed_program_is_its_own_user_without_capabilities(fx: &Fixture, ns: &Netns) {
    let out = sections(&confined(
        ns,
        &sandbox(fx),
        "cat /proc/self/status; echo ---; id -un; id -gn",
    ));
    let status = &out[0];
    assert_eq!(
        status_field(status, "Uid"),
        format!("{UID}\t{UID}\t{UID}\t{UID}")
    );
    assert_eq!(
        status_field(status, "Gid"),
        format!("{UID}\t{UID}\t{UID}\t{UID}")
    );
    assert_eq!(status_field(status, "Groups"), "");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(status, set), "0000000000000000", "{set}");
    }
    assert_eq!(status_field(status, "NoNewPrivs"), "1");
    // 2: a filter is installed.
    assert_eq!(status_field(status, "Seccomp"), "2");
    // The view's passwd and group know the user.
    assert_eq!(out[1], "instance\ninstance\n");
}

fn a_sandboxed_program_sees_only_its_view(fx: &Fixture, ns: &Netns) {
    // Something in the host's /tmp and /root that must not be seen.
    let marker = tempfile::Builder::new()
        .prefix("host-only")
        .tempfile_in("/tmp")
        .unwrap();
    std::fs::write(fx.work.join("app.txt"), "app\n").unwrap();
    let out = sections(&confined(
        ns,
        &sandbox(fx),
        "ls -A /tmp; echo ---; ls -A /root; echo ---; ls -A /home; echo ---; \
         ls -A data; echo ---; cat app.txt; pwd; echo ---; ls /proc | grep -c '^[0-9]'; echo ---; \
         cat /proc/kcore | wc -c; echo ---; ls -A /; echo ---; cat /proc/net/dev; echo ---; \
         ls -A /$(echo \"$PWD\" | cut -d/ -f2)",
    ));
    // Empty, but for the way to the working directory when the checkout
    // is under one of them (its tests' files are).
    let only_the_way = |dir: &str| {
        fx.work
            .strip_prefix(dir)
            .ok()
            .and_then(|rest| rest.components().next())
            .map(|c| format!("{}\n", c.as_os_str().to_string_lossy()))
            .unwrap_or_default()
    };
    assert_eq!(out[0], only_the_way("/tmp"), "a private, empty /tmp");
    assert_eq!(out[1], only_the_way("/root"), "/root is empty");
    assert_eq!(out[2], "instance\n", "only its own home");
    assert_eq!(out[3], "", "the hidden directory is empty");
    assert_eq!(out[4], format!("app\n{}\n", fx.work.display()));
    // Pid 1, the program, and the pipeline's own processes.
    let pids: u32 = out[5].trim().parse().unwrap();
    assert!(pids <= 5, "{pids} processes");
    assert_eq!(out[6].trim(), "0", "/proc/kcore is masked");
    let top: Vec<&str> = out[7].lines().collect();
    for absent in ["boot", "mnt", "srv", "media", "old_root", "lost+found"] {
        assert!(!top.contains(&absent), "/{absent} is visible: {top:?}");
    }
    for present in ["usr", "etc", "tmp", "proc", "dev", "data"] {
        assert!(top.contains(&present), "/{present} is missing: {top:?}");
    }
    assert_eq!(interfaces(&out[8]), ["lo"], "{}", out[8]);
    // Of a hidden tree holding the working directory (where the test
    // runs from, /work, /root or /tmp), only the way to it.
    let top = fx.work.components().nth(1).unwrap().as_os_str().to_owned();
    let next = fx.work.components().nth(2).unwrap().as_os_str();
    if !vdc_sandbox::view::shows(&fx.work) && top != "home" {
        assert_eq!(out[9], format!("{}\n", next.to_string_lossy()));
    }
    assert!(marker.path().exists());
}

fn a_sandboxed_program_writes_only_its_own_directories(fx: &Fixture, ns: &Netns) {
    let sandbox = sandbox(fx);
    let out = sections(&confined(
        ns,
        &sandbox,
        "for d in /tmp /var/tmp /dev/shm /run $HOME /data; do \
           touch $d/w && echo $d yes || echo $d no; done; echo ---; \
         for d in /usr /etc /var /opt / . /proc/sys/kernel /sys /dev; do \
           touch $d/w 2>/dev/null && echo $d yes || echo $d no; done; echo ---; \
         echo x > /proc/sys/kernel/hostname 2>/dev/null && echo hostname yes || echo hostname no",
    ));
    for line in out[0].lines() {
        assert!(line.ends_with(" yes"), "cannot write {line}");
    }
    for line in out[1].lines() {
        assert!(line.ends_with(" no"), "may write {line}");
    }
    assert_eq!(out[2], "hostname no\n");
    // The volume's file is the host's, owned by the instance's user.
    let written = fx.work.join("volume/w");
    let meta = std::fs::metadata(&written).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), UID);
    std::fs::remove_file(written).unwrap();
    // Nothing reached the host's trees.
    assert!(!Path::new("/usr/w").exists() && !Path::new("/etc/w").exists());
    assert!(!fx.work.join("w").exists());
}

fn a_sandboxed_program_cannot_leave_its_namespaces(fx: &Fixture, ns: &Netns) {
    // Each attempt prints its name and whether it worked.
    let out = sections(&confined(
        ns,
        &sandbox(fx),
        "try() { name=$1; shift; \"$@\" >/dev/null 2>&1 && echo \"$name worked\" || echo \"$name failed\"; }; \
         try umount umount /proc; \
         try umount-lazy umount -l /proc; \
         try mount mount -t tmpfs none /tmp; \
         try userns unshare --user --map-root-user true; \
         try mountns unshare --mount true; \
         try netns unshare --net true; \
         try setns nsenter --net=/proc/1/ns/net true; \
         try chroot chroot / true; \
         try hostname hostname evil; \
         try cgroup sh -c 'echo $$ > /sys/fs/cgroup/cgroup.procs'; \
         try kill1 kill -9 1; \
         true",
    ));
    for line in out[0].lines() {
        assert!(line.ends_with(" failed"), "{line}");
    }
    assert_eq!(out[0].lines().count(), 11, "{}", out[0]);
}

fn the_view_shows_the_host_unchanged(fx: &Fixture, ns: &Netns) {
    // What the view shows of /etc and /usr is the host's own.
    let out = sections(&confined(
        ns,
        &sandbox(fx),
        "cat /etc/hostname 2>/dev/null; echo ---; ls /usr/bin/sh",
    ));
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    assert_eq!(out[0], host);
    assert_eq!(out[1], "/usr/bin/sh\n");
    // And nothing the view did is left on the host: no mount, no file.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("/newroot"), "{mounts}");
    assert!(!Path::new("/newroot").exists() && !Path::new("/oldroot").exists());
}

fn a_root_the_admin_allowed_keeps_only_the_default_capabilities(fx: &Fixture, ns: &Netns) {
    let mut sandbox = sandbox(fx);
    sandbox.user = User {
        uid: 0,
        gid: 0,
        name: "root".into(),
    };
    let out = sections(&confined(
        ns,
        &sandbox,
        "cat /proc/self/status; echo ---; umount /proc 2>/dev/null && echo umount worked; \
         cat data/admin.token 2>/dev/null; cat /etc/shadow; find /var/lib /var/log /etc/ssh -mindepth 1; \
         echo ---; echo $$ > /tmp/x && cat /tmp/x",
    ));
    let expected: u64 = vdc_sandbox::user::ROOT_CAPABILITIES
        .iter()
        .map(|c| 1u64 << c.index())
        .sum();
    let expected = format!("{expected:016x}");
    assert_eq!(status_field(&out[0], "CapEff"), expected);
    assert_eq!(status_field(&out[0], "CapBnd"), expected);
    assert_eq!(status_field(&out[0], "NoNewPrivs"), "1");
    assert_eq!(
        out[1], "",
        "root cannot unmount nor see what is hidden, nor the host's secrets"
    );
    assert_eq!(out[2], "2\n");
}

fn a_failed_step_stops_the_start_with_its_reason(fx: &Fixture, ns: &Netns) {
    let mut sandbox = sandbox(fx);
    sandbox.volumes.push(Volume {
        source: fx.work.join("no-such-volume"),
        target: PathBuf::from("/more"),
    });
    let out = confined(ns, &sandbox, "echo ran");
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("vdc-init: cannot bind") && stderr.contains("no-such-volume"),
        "{stderr}"
    );
}

// === joining a running instance ===

/// The host pids of the children of `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, then ppid.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if rest.split_whitespace().nth(1) == Some(&parent.to_string()) {
            found.push(pid);
        }
    }
    found
}

fn a_joined_command_runs_as_the_instance_runs(fx: &Fixture, ns: &Netns) {
    let sandbox = sandbox(fx);
    // The instance leaves a mark in its private /tmp and waits.
    let mut cmd = under_init(
        Some(&sandbox),
        "/bin/sh",
        &["-c", "echo inside > /tmp/mark; exec sleep 30"],
    );
    cmd.env("HOME", sandbox.home()).process_group(0);
    let mut instance = joined(cmd, ns).spawn().unwrap();
    let outer = instance.id();
    let start = Instant::now();
    let pid1 = loop {
        let mark = children_of(outer)
            .first()
            .and_then(|pid1| children_of(*pid1).first().map(|_| *pid1));
        if let Some(pid1) = mark {
            if start.elapsed() > Duration::from_millis(200) {
                break pid1;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no pid 1");
        std::thread::sleep(Duration::from_millis(20));
    };
    let init = PidInit::current_exe();
    let join = |script: &str| {
        Command::new(init.exe())
            .args(init.join_args(
                pid1,
                &sandbox.user,
                &sandbox.workdir,
                std::ffi::OsStr::new("/bin/sh"),
                ["-c", script],
            ))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap()
    };
    let out = sections(&join(
        "id -u; echo ---; cat /tmp/mark; echo ---; ls -A data; echo ---; \
         tr '\\0' ' ' < /proc/1/cmdline; echo; echo ---; cat /proc/net/dev; echo ---; \
         grep CapEff /proc/self/status; echo ---; pwd",
    ));
    assert_eq!(out[0].trim(), UID.to_string(), "the instance's user");
    assert_eq!(out[1], "inside\n", "the instance's own /tmp");
    assert_eq!(out[2], "", "the hidden directory stays hidden");
    assert!(
        out[3].starts_with("vdc-init __vdc-init pid1 "),
        "{}",
        out[3]
    );
    assert_eq!(interfaces(&out[4]), ["lo"], "{}", out[4]);
    assert_eq!(out[5], "CapEff:\t0000000000000000\n");
    assert_eq!(out[6].trim(), fx.work.display().to_string());
    // It ends as the command ended.
    assert_eq!(join("exit 4").status.code(), Some(4));
    killpg(Pid::from_raw(outer as i32), Signal::SIGKILL).unwrap();
    wait_for(&mut instance, Duration::from_secs(5));
    // Once the instance is gone, there is nothing to join.
    let gone = join("true");
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("namespace"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
}

// === containers ===

/// A root filesystem of one layer: busybox (static) as `/bin/*`, an
/// `/etc/passwd` with the user `app` (1000), a file only the image has.
/// Returns the layer and a fresh writable layer and work directory.
fn busybox_image(fx: &Fixture, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "busybox is not installed: run .ci/run (or apt-get install busybox-static)"
    );
    let base = fx.work.join(name);
    let layer = base.join("layer");
    for dir in ["bin", "etc", "srv"] {
        std::fs::create_dir_all(layer.join(dir)).unwrap();
    }
    std::fs::copy(busybox, layer.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "ls", "id", "cat", "touch", "echo", "hostname", "grep", "mount", "wc",
    ] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        layer.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/srv:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(layer.join("srv/from-image"), "image\n").unwrap();
    nix::unistd::chown(&layer.join("srv"), Some(1000.into()), Some(1000.into())).unwrap();
    let (upper, work) = (base.join("upper"), base.join("work"));
    for dir in [&upper, &work] {
        std::fs::create_dir_all(dir).unwrap();
    }
    (layer, upper, work)
}

fn container(fx: &Fixture, name: &str) -> Sandbox {
    let (layer, upper, work) = busybox_image(fx, name);
    let volume = fx.work.join(name).join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    nix::unistd::chown(&volume, Some(1000.into()), Some(1000.into())).unwrap();
    Sandbox {
        user: User {
            uid: 1000,
            gid: 1000,
            name: "app".into(),
        },
        workdir: PathBuf::from("/srv"),
        expose: Vec::new(),
        hide: Vec::new(),
        volumes: vec![Volume {
            source: volume,
            target: PathBuf::from("/data"),
        }],
        cgroup: CgroupView::None,
        image: Some(vdc_sandbox::ImageRoot {
            lowers: vec![layer],
            upper,
            work,
            hostname: "web-0".into(),
        }),
    }
}

fn in_container(ns: &Netns, sandbox: &Sandbox, script: &str) -> Output {
    let mut cmd = under_init(Some(sandbox), "/bin/sh", &["-c", script]);
    cmd.env_clear().env("PATH", "/bin");
    joined(cmd, ns).output().unwrap()
}

fn a_container_sees_its_image_and_writes_its_own_layer(fx: &Fixture, ns: &Netns) {
    let sandbox = container(fx, "c1");
    let out = sections(&in_container(
        ns,
        &sandbox,
        "ls /; echo ---; id -u; id -g; echo ---; pwd; cat from-image; echo ---; \
         touch /srv/made-here && echo image-writable; touch / 2>/dev/null || echo root-not-writable; touch /data/kept && echo volume-writable; echo ---; \
         hostname; cat /etc/hostname; echo ---; ls /proc | grep -c '^[0-9]'; echo ---; \
         grep CapEff /proc/self/status; echo ---; touch /dev/made 2>/dev/null && echo dev-writable || echo dev-read-only",
    ));
    let top: Vec<&str> = out[0].lines().collect();
    for present in ["bin", "etc", "srv", "proc", "dev", "sys", "data"] {
        assert!(top.contains(&present), "/{present} missing: {top:?}");
    }
    for absent in ["usr", "home", "oldroot", "newroot", "root", "var"] {
        assert!(
            !top.contains(&absent),
            "/{absent} of the host is there: {top:?}"
        );
    }
    assert_eq!(out[1], "1000\n1000\n", "the image's user");
    assert_eq!(out[2], "/srv\nimage\n");
    assert_eq!(
        out[3],
        "image-writable\nroot-not-writable\nvolume-writable\n"
    );
    assert!(out[4].ends_with("web-0\n"), "{}", out[4]);
    let pids: u32 = out[5].trim().parse().unwrap();
    assert!(pids <= 5, "{pids} processes");
    assert_eq!(out[6], "CapEff:\t0000000000000000\n");
    assert_eq!(out[7], "dev-read-only\n");
    let base = fx.work.join("c1");
    // The write went to the instance's own layer, the image is untouched,
    // the volume's file is on the host.
    assert!(base.join("upper/srv/made-here").exists());
    assert!(!base.join("layer/srv/made-here").exists());
    assert!(base.join("volume/kept").exists());
}

fn an_image_cannot_lead_a_mount_out_of_the_container(fx: &Fixture, ns: &Netns) {
    // An image whose /data is a link to where the host's root is while the
    // container's root is built.
    let mut sandbox = container(fx, "c2");
    let layer = sandbox.image.as_ref().unwrap().lowers[0].clone();
    let target = fx.work.join("c2/host-target");
    std::fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(format!("/oldroot{}", target.display()), layer.join("data"))
        .unwrap();
    sandbox.volumes[0].target = PathBuf::from("/data/inner");
    let out = in_container(ns, &sandbox, "echo started");
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("the image has a symbolic link at /data"),
        "{log}"
    );
    assert!(
        std::fs::read_dir(&target).unwrap().next().is_none(),
        "nothing was made on the host"
    );
}
