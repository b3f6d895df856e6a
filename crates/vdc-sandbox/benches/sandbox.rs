//! What confinement costs at start: `/bin/true` run plainly, in a network
//! namespace, under the init (a PID namespace), and under the init with a
//! whole sandbox (its own view of the filesystem, user, capabilities and
//! system-call filter), spawn to exit, as a supervisor sees it. Then a
//! container: `true` of a busybox image, on the overlay of its layer with a
//! fresh writable layer, against `runc run` of the same root filesystem
//! in the same network namespace (and `crun run` where crun works: it
//! refuses hybrid cgroup layouts), and against `podman run --rm` of the same
//! root imported as an image (what a Podman user types; Podman's default
//! runtime, or runc where that one cannot run here).
//!
//! Run with `cargo bench -p vdc-sandbox` as root. Prints the median and the
//! 90th percentile of each, its ratio to the plain start (and the
//! container's to runc's), and the machine it ran on.

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

    let image = busybox_layer(base.path());
    let container_dir = base.path().join("container");
    let container = |n: usize| {
        // The writable layer is made afresh at each start, as the agent does.
        let _ = std::fs::remove_dir_all(&container_dir);
        for d in ["upper", "work"] {
            std::fs::create_dir_all(container_dir.join(d)).unwrap();
        }
        let mut plan = sandbox.clone();
        plan.user = User {
            uid: 1000,
            gid: 1000,
            name: "app".into(),
        };
        plan.workdir = "/".into();
        plan.expose = Vec::new();
        plan.hide = Vec::new();
        plan.image = Some(vdc_sandbox::ImageRoot {
            lowers: vec![image.clone()],
            upper: container_dir.join("upper"),
            work: container_dir.join("work"),
            hostname: format!("bench-{n}"),
        });
        let mut cmd = Command::new(init.exe());
        cmd.args(init.args(
            Some(&plan),
            Path::new("/bin/true"),
            "true".as_ref(),
            [""; 0],
        ))
        .env_clear()
        .env("PATH", "/bin");
        cmd
    };
    let runtimes: Vec<(&str, std::path::PathBuf)> = ["runc", "crun"]
        .into_iter()
        .filter_map(|rt| {
            let bundle = oci_bundle(base.path(), rt, &image, &ns)?;
            // One try: a runtime that cannot run here is left out, saying why.
            match Command::new(rt)
                .args(["run", "--bundle"])
                .arg(&bundle)
                .arg(format!("vdc-bench-{rt}-try"))
                .output()
            {
                Ok(out) if out.status.success() => Some((rt, bundle)),
                Ok(out) => {
                    println!(
                        "{rt} left out: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    None
                }
                Err(e) => {
                    println!("{rt} left out: {e}");
                    None
                }
            }
        })
        .collect();

    let podman = podman_args(&image, &ns);

    let mut runs: Vec<(String, Vec<Duration>)> = [
        "run /bin/true",
        "in a network namespace",
        "also under the init (pid, ipc namespaces)",
        "also in a sandbox (view, user, seccomp)",
        "container: busybox true on its image",
    ]
    .into_iter()
    .map(|w| (w.to_owned(), Vec::new()))
    .collect();
    for (rt, _) in &runtimes {
        runs.push((format!("{rt} run of the same root"), Vec::new()));
    }
    if podman.is_some() {
        runs.push(("podman run --rm of the same root".to_owned(), Vec::new()));
    }
    // Interleaved, so that a noisy moment hits every kind alike.
    for n in 0..SPAWNS {
        runs[0].1.push(time_run(Command::new("/bin/true")));
        runs[1]
            .1
            .push(time_run(joined(Command::new("/bin/true"), &ns)));
        runs[2].1.push(time_run(joined(with_init(None), &ns)));
        runs[3]
            .1
            .push(time_run(joined(with_init(Some(&sandbox)), &ns)));
        let start = Instant::now();
        let mut cmd = joined(container(n), &ns);
        let status = cmd.stdin(Stdio::null()).status().unwrap();
        assert!(status.success(), "{status:?}");
        runs[4].1.push(start.elapsed());
        for (i, (rt, bundle)) in runtimes.iter().enumerate() {
            let mut cmd = Command::new(rt);
            cmd.args(["run", "--bundle"])
                .arg(bundle)
                .arg(format!("vdc-bench-{rt}-{n}"))
                .stdout(Stdio::null());
            runs[5 + i].1.push(time_run(cmd));
        }
        if let Some(args) = &podman {
            let mut cmd = Command::new("podman");
            cmd.args(args).stdout(Stdio::null());
            runs.last_mut().unwrap().1.push(time_run(cmd));
        }
    }
    println!(
        "{:<44} {:>10} {:>10} {:>8} {:>6}",
        "operation", "median", "p90", "x plain", "runs"
    );
    let plain = vdc_testkit::bench::quantile(&runs[0].1, 0.5);
    for (what, samples) in &runs {
        report(what, samples, Some(plain));
    }
    let ours = vdc_testkit::bench::quantile(&runs[4].1, 0.5);
    for (i, (rt, _)) in runtimes.iter().enumerate() {
        let theirs = vdc_testkit::bench::quantile(&runs[5 + i].1, 0.5);
        println!(
            "container start, vdc's init vs {rt}: {:.2}x ({:.2} ms vs {:.2} ms, medians)",
            ours.as_secs_f64() / theirs.as_secs_f64(),
            ours.as_secs_f64() * 1e3,
            theirs.as_secs_f64() * 1e3
        );
    }
    if podman.is_some() {
        let theirs = vdc_testkit::bench::quantile(&runs.last().unwrap().1, 0.5);
        println!(
            "container start, vdc's init vs podman run: {:.2}x ({:.2} ms vs {:.2} ms, medians)",
            ours.as_secs_f64() / theirs.as_secs_f64(),
            ours.as_secs_f64() * 1e3,
            theirs.as_secs_f64() * 1e3
        );
    }
    ns.remove().unwrap();
    dir.unmount().unwrap();
}

/// The arguments of a `podman run --rm` of `/bin/true` from `layer` imported
/// as an image, as `app`, in the namespace `ns`; `None` (saying why) when
/// Podman is not installed or cannot run a container here.
fn podman_args(layer: &Path, ns: &Netns) -> Option<Vec<String>> {
    const IMAGE: &str = "localhost/vdc-bench-busybox:latest";
    let tar = Command::new("tar")
        .arg("-C")
        .arg(layer)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let imported = Command::new("podman")
        .args(["import", "-", IMAGE])
        .stdin(tar.stdout?)
        .output();
    match imported {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            println!(
                "podman left out: import: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Err(e) => {
            println!("podman left out: {e}");
            return None;
        }
    }
    let run = |runtime: Option<&str>| {
        let mut args: Vec<String> = runtime
            .map(|r| vec!["--runtime".to_owned(), r.to_owned()])
            .unwrap_or_default();
        args.extend(
            [
                "run",
                "--rm",
                "--read-only",
                "--user",
                "1000:1000",
                // Podman raises these limits by default; a host that does
                // not give it CAP_SYS_RESOURCE refuses, lowering is allowed.
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ]
            .map(str::to_owned),
        );
        args.push(format!("--network=ns:{}", ns.path().display()));
        args.extend([IMAGE, "/bin/true"].map(str::to_owned));
        args
    };
    let mut why = String::new();
    for runtime in [None, Some("runc")] {
        let args = run(runtime);
        match Command::new("podman").args(&args).output() {
            Ok(out) if out.status.success() => {
                if let Some(r) = runtime {
                    println!(
                        "podman runs with --runtime {r} (its default: {})",
                        why.trim()
                    );
                }
                return Some(args);
            }
            Ok(out) => why = String::from_utf8_lossy(&out.stderr).into_owned(),
            Err(e) => why = e.to_string(),
        }
    }
    println!("podman left out: {}", why.trim());
    None
}

/// An image's one layer: a static busybox as /bin/*, a user `app`.
fn busybox_layer(base: &Path) -> std::path::PathBuf {
    let layer = base.join("layer");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(layer.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", layer.join("bin/busybox"))
        .expect("a static busybox at /bin/busybox (apt-get install busybox-static)");
    for applet in ["true", "sh"] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        layer.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
    )
    .unwrap();
    layer
}

/// An OCI bundle for `runtime` that runs `/bin/true` of `root` as `app`,
/// read-only, in the namespace `ns` (as vdc's containers join theirs);
/// `None` when the runtime is not installed.
fn oci_bundle(base: &Path, runtime: &str, root: &Path, ns: &Netns) -> Option<std::path::PathBuf> {
    let bundle = base.join(format!("bundle-{runtime}"));
    std::fs::create_dir_all(&bundle).unwrap();
    let spec = Command::new(runtime)
        .arg("spec")
        .current_dir(&bundle)
        .output()
        .ok()?;
    if !spec.status.success() {
        return None;
    }
    let path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["/bin/true"]);
    config["process"]["user"] = serde_json::json!({ "uid": 1000, "gid": 1000 });
    config["root"] = serde_json::json!({ "path": root, "readonly": true });
    if let Some(namespaces) = config["linux"]["namespaces"].as_array_mut() {
        for n in namespaces.iter_mut() {
            if n["type"] == "network" {
                n["path"] = ns.path().display().to_string().into();
            }
        }
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    Some(bundle)
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
