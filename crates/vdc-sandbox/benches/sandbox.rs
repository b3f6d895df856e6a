//! What confinement costs at start: `/bin/true` run plainly, in a network
//! namespace, under the init (a PID namespace), and under the init with a
//! whole sandbox (its own view of the filesystem, user, capabilities and
//! system-call filter), spawn to exit, as a supervisor sees it.
//!
//! Run with `cargo bench -p vdc-sandbox` as root. Prints the median and the
//! 90th percentile of each, its ratio to the plain start, and the machine
//! it ran on.

#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vdc_testkit::bench::{machine, report};

use vdc_netns::{IsolationPlan, Netns, NetnsDir};
use vdc_sandbox::{CgroupView, PidInit, Sandbox, User};

const SPAWNS: usize = 50;

fn main() {
    // This binary is also the init of the processes it starts.
    vdc_sandbox::run_if_requested();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Err(why) = vdc_netns::supported().and_then(|()| vdc_sandbox::supported()) {
        println!("skipped: {why}");
        return;
    }
    println!("machine: {}", machine());
    let base = tempfile::Builder::new()
        .prefix("sandbox-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let dir = NetnsDir::open(base.path().join("netns")).unwrap();
    let ns = dir.create("bench").unwrap();
    let work = base.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let sandbox = Sandbox {
        user: User {
            uid: 1_879_048_900,
            gid: 1_879_048_900,
            name: "instance".into(),
        },
        workdir: work.clone(),
        expose: vec![work.clone()],
        hide: vec![base.path().join("netns")],
        volumes: Vec::new(),
        cgroup: CgroupView::None,
        image: None,
    };
    let init = PidInit::current_exe();
    let with_init = |sandbox: Option<&Sandbox>| {
        let mut cmd = Command::new(init.exe());
        cmd.args(init.args(sandbox, Path::new("/bin/true"), "true".as_ref(), [""; 0]));
        cmd
    };

    let mut runs: [(&str, Vec<Duration>); 4] = [
        ("run /bin/true", Vec::new()),
        ("in a network namespace", Vec::new()),
        ("also under the init (pid, ipc namespaces)", Vec::new()),
        ("also in a sandbox (view, user, seccomp)", Vec::new()),
    ];
    // Interleaved, so that a noisy moment hits every kind alike.
    for _ in 0..SPAWNS {
        runs[0].1.push(time_run(Command::new("/bin/true")));
        runs[1]
            .1
            .push(time_run(joined(Command::new("/bin/true"), &ns)));
        runs[2].1.push(time_run(joined(with_init(None), &ns)));
        runs[3]
            .1
            .push(time_run(joined(with_init(Some(&sandbox)), &ns)));
    }
    println!(
        "{:<44} {:>10} {:>10} {:>8} {:>6}",
        "operation", "median", "p90", "x plain", "runs"
    );
    let plain = vdc_testkit::bench::quantile(&runs[0].1, 0.5);
    for (what, samples) in runs {
        report(what, &samples, Some(plain));
    }
    ns.remove().unwrap();
    dir.unmount().unwrap();
}

#[allow(unsafe_code)]
fn joined(mut cmd: Command, ns: &Netns) -> Command {
    let plan = IsolationPlan::new().network(ns).unwrap();
    // SAFETY: the closure runs between fork and exec and only makes the
    // system call of `apply_in_child` on a descriptor opened before the
    // fork; converting the `Errno` into an `io::Error` does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            plan.apply_in_child()
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        });
    }
    cmd
}

/// Spawn to exit, as a supervisor sees it.
fn time_run(mut cmd: Command) -> Duration {
    let start = Instant::now();
    let status = cmd.stdin(Stdio::null()).status().unwrap();
    assert!(status.success(), "{status:?}");
    start.elapsed()
}
