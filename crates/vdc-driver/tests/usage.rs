//! Kernel accounting of real instances through `InstanceHandle::usage`: CPU,
//! memory, block I/O, throttling and tasks, with cgroups (as root; elsewhere
//! those tests say why they are skipped) and from /proc without them.
//!
//! The tests measure CPU, so they take turns: two spinners at once on a
//! small machine would each get less than a core. For the same reason the
//! spinners ask for a high priority (which only root gets): the accounting is
//! under test, not the node's spare capacity.

// Tests fail loudly on purpose: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::ops::{Deref, DerefMut, RangeInclusive};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cgroup_driver, python3, read_line_when_written, script, sh};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{Mutex, MutexGuard};
use vdc_driver::cgroup::FsCgroups;
use vdc_driver::{
    CgroupVersion, Driver, InstanceHandle, LaunchSpec, ProcessDriver, Usage, UsageSource,
};

const GRACE: Duration = Duration::from_secs(5);
const MIB: u64 = 1 << 20;

/// A process that burns one core until it is stopped.
const SPIN: &str = "while :; do :; done";

static TURN: Mutex<()> = Mutex::const_new(());

/// A started instance that is killed, and its cgroup removed, when a failed
/// assertion unwinds the test before it could stop the instance; otherwise a
/// spinner would burn a core long after the test.
struct Running(Box<dyn InstanceHandle>);

// === impl Running ===

impl Deref for Running {
    type Target = dyn InstanceHandle;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

impl DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0.as_mut()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only while panicking: after a normal stop the group id may already
        // belong to someone else.
        if !std::thread::panicking() {
            return;
        }
        if let Ok(pgid) = i32::try_from(self.0.pid()) {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        let dirs = self.0.cgroup_paths();
        for dir in &dirs {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        for dir in &dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Starts `spec`, cleaned up if the test fails.
async fn start(driver: &ProcessDriver, spec: &LaunchSpec) -> Running {
    Running(driver.start(spec).await.unwrap())
}

/// A spec whose program runs `script` at the highest priority it can get:
/// `nice -n -20` for a process among the node's others, and the highest CPU
/// weight for its cgroup (see [`boost`]). Without root, nice says it cannot
/// and runs the script anyway.
fn high_priority(dir: &Path, script: &str) -> LaunchSpec {
    let mut spec = sh(dir, script);
    spec.program = "nice".into();
    spec.args = ["-n", "-20", "sh", "-c", script].map(String::from).to_vec();
    spec
}

/// Gives the instance's cgroup the highest CPU weight, since a nice value
/// only counts among the processes of one cgroup.
fn boost(handle: &dyn InstanceHandle) {
    for dir in handle.cgroup_paths() {
        for (file, max) in [("cpu.shares", "262144"), ("cpu.weight", "10000")] {
            let path = dir.join(file);
            if path.exists() {
                if let Err(e) = fs::write(&path, max) {
                    println!("cannot raise {}: {e}", path.display());
                }
            }
        }
    }
}

/// Waits for this test's turn to use the CPU.
async fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().await
}

/// The source a driver's instances report.
fn source_of(driver: &ProcessDriver) -> UsageSource {
    match driver.isolation().cgroups {
        Some(CgroupVersion::V1) => UsageSource::CgroupV1,
        Some(CgroupVersion::V2) => UsageSource::CgroupV2,
        None => UsageSource::Proc,
    }
}

/// Samples the usage one second apart until the CPU used in between, per
/// second of wall-clock time between the samples, falls in `expected`, and
/// returns both samples.
///
/// The rate, not the raw difference: on a busy node the test itself may
/// wake up late, and a "1 s" window that lasted 1.14 s rightly holds 1.14 s
/// of a spinner's CPU. Other work on the node can also take the CPU from the
/// instance, which only ever lowers the rate; a window below the range is
/// then tried again, up to five times, and every window is printed. A
/// window above the range fails at once: no contention explains that.
async fn cpu_window(
    handle: &dyn InstanceHandle,
    expected: RangeInclusive<f64>,
    what: &str,
) -> (Usage, Usage) {
    let window = Duration::from_secs(1);
    for attempt in 1..=5 {
        let started = Instant::now();
        let before = handle.usage().unwrap();
        tokio::time::sleep(window).await;
        let after = handle.usage().unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        let used = after.cpu_total_us().saturating_sub(before.cpu_total_us()) as f64 / 1e6;
        let rate = used / elapsed;
        println!(
            "{what}: window {attempt}: {used:.3} s of CPU in {elapsed:.3} s = {rate:.3} CPU \
             (user {} -> {} us, system {} -> {} us)",
            before.cpu_user_us, after.cpu_user_us, before.cpu_system_us, after.cpu_system_us
        );
        assert!(
            rate <= *expected.end(),
            "{what}: {used:.3} s of CPU in {elapsed:.3} s, expected {expected:?} per second"
        );
        if rate >= *expected.start() {
            return (before, after);
        }
    }
    panic!("{what}: the CPU used per second was below {expected:?} in every window");
}

/// Polls `usage` until `done` holds for it, for up to 10 s.
fn usage_when(handle: &dyn InstanceHandle, done: impl Fn(&Usage) -> bool) -> Usage {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let usage = handle.usage().unwrap();
        if done(&usage) || Instant::now() > deadline {
            return usage;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `spec` and checks it uses about one core, whatever the source.
async fn spinner_uses_one_core(driver: &ProcessDriver, spec: &LaunchSpec, what: &str) {
    let mut handle = start(driver, spec).await;
    boost(&*handle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, after) = cpu_window(&*handle, 0.7..=1.1, what).await;
    assert_eq!(after.source, source_of(driver));
    assert!(after.pids >= 1, "{after:?}");
    assert!(after.memory_bytes > 0 || after.source == UsageSource::CgroupV2);

    // After stop the totals stay and nothing is held.
    handle.stop(GRACE).await;
    let stopped = handle.usage().unwrap();
    assert!(
        stopped.cpu_total_us() >= after.cpu_total_us(),
        "{stopped:?}"
    );
    assert_eq!((stopped.memory_bytes, stopped.pids), (0, 0));
    assert_eq!(handle.usage().unwrap(), stopped, "the same answer later");
}

// === cpu ===

#[tokio::test]
async fn a_spinner_uses_one_core_by_its_cgroup() {
    let Some(driver) = cgroup_driver() else {
        return;
    };
    let _turn = turn().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = high_priority(dir.path(), SPIN);
    spinner_uses_one_core(&driver, &spec, "cgroup").await;
}

#[tokio::test]
async fn a_spinner_uses_one_core_by_proc() {
    let _turn = turn().await;
    let driver = ProcessDriver::without_cgroups();
    let dir = tempfile::tempdir().unwrap();
    let spec = high_priority(dir.path(), SPIN);
    spinner_uses_one_core(&driver, &spec, "proc").await;
}

#[tokio::test]
async fn a_spinner_uses_one_core_by_its_cgroup_v2() {
    // The empty v2 hierarchy of a hybrid node has no controllers, but every
    // v2 cgroup has cpu.stat and cgroup.threads: CPU and tasks are counted.
    let unified = Path::new("/sys/fs/cgroup/unified");
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: this test needs root");
        return;
    }
    let Some(cgroups) = FsCgroups::detect_at(unified) else {
        println!("skipped: no cgroup v2 hierarchy at {}", unified.display());
        return;
    };
    let _turn = turn().await;
    let driver = ProcessDriver::with_cgroups(Arc::new(cgroups));
    let dir = tempfile::tempdir().unwrap();
    let mut spec = high_priority(dir.path(), SPIN);
    spec.cgroup_name = format!("{}-v2", common::unique_cgroup());
    let mut handle = match driver.start(&spec).await {
        Ok(handle) => Running(handle),
        Err(e) => {
            println!("skipped: cannot use {}: {e}", unified.display());
            return;
        }
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, after) = cpu_window(&*handle, 0.7..=1.1, "cgroup v2").await;
    assert_eq!(after.source, UsageSource::CgroupV2);
    assert_eq!(after.pids, 1, "{after:?}");
    handle.stop(GRACE).await;
}

#[tokio::test]
async fn a_cpu_limit_shows_as_throttling() {
    let Some(driver) = cgroup_driver() else {
        return;
    };
    let _turn = turn().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = high_priority(dir.path(), SPIN);
    spec.limits.cpu_millis = Some(200);
    let mut handle = start(&driver, &spec).await;
    boost(&*handle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (before, after) = cpu_window(&*handle, 0.1..=0.3, "0.2 CPU").await;
    let periods = after.throttled_periods - before.throttled_periods;
    let waited = after.throttled_us - before.throttled_us;
    println!("throttled in {periods} periods for {waited} us");
    // Ten 100 ms periods in the window, each cut short after 20 ms.
    assert!(periods > 0, "{before:?} -> {after:?}");
    assert!(waited > 0, "{before:?} -> {after:?}");
    handle.stop(GRACE).await;
}

// === memory ===

/// Runs python holding 100 MiB it has written to, and checks it is seen.
async fn hundred_mib_are_seen(driver: &ProcessDriver, limit: Option<u64>) {
    let Some(python) = python3() else {
        return;
    };
    let _turn = turn().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh(dir.path(), "");
    spec.program = python;
    spec.args = vec![
        "-c".into(),
        "import time\n\
         data = b'x' * (100 << 20)\n\
         open('ready', 'w').write('ready\\n')\n\
         time.sleep(100)"
            .into(),
    ];
    spec.limits.memory_bytes = limit;
    let mut handle = start(driver, &spec).await;
    read_line_when_written(&dir.path().join("ready"));
    let usage = usage_when(&*handle, |u| u.memory_bytes > 90 * MIB);
    println!("{usage:?}");
    assert!(usage.memory_bytes > 90 * MIB, "{usage:?}");
    assert!(usage.memory_peak_bytes >= usage.memory_bytes, "{usage:?}");
    match usage.source {
        UsageSource::Proc => assert_eq!(usage.memory_limit_bytes, None),
        _ => assert_eq!(usage.memory_limit_bytes, limit),
    }
    assert_eq!(usage.oom_kills, 0);
    handle.stop(GRACE).await;
}

#[tokio::test]
async fn memory_in_use_is_seen_by_the_cgroup() {
    let Some(driver) = cgroup_driver() else {
        return;
    };
    hundred_mib_are_seen(&driver, Some(256 * MIB)).await;
}

#[tokio::test]
async fn memory_in_use_is_seen_by_proc() {
    hundred_mib_are_seen(&ProcessDriver::without_cgroups(), None).await;
}

// === io ===

/// Runs dd writing 20 MiB with direct I/O, and checks the writes are counted.
async fn direct_writes_are_counted(driver: &ProcessDriver) {
    let _turn = turn().await;
    // Not in /tmp, which may be a tmpfs: it needs a real disk to write to.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let spec = sh(
        dir.path(),
        "dd if=/dev/zero of=out bs=1M count=20 oflag=direct 2>/dev/null; \
         echo $? > done; exec sleep 100",
    );
    let mut handle = start(driver, &spec).await;
    let status = read_line_when_written(&dir.path().join("done"));
    assert_eq!(status, "0", "dd failed");
    let after = usage_when(&*handle, |u| u.io_write_bytes >= 20 * MIB);
    handle.stop(GRACE).await;
    println!("{after:?}");
    if after.io_write_bytes == 0 {
        println!(
            "not checked: no block I/O is accounted to the instance ({:?}); the \
             blkio or io controller may be missing, or {} is not on a block device",
            after.source,
            dir.path().display()
        );
        return;
    }
    // Totals since the start, which was before dd.
    assert!(after.io_write_bytes >= 20 * MIB, "{after:?}");
}

#[tokio::test]
async fn direct_writes_are_counted_by_the_cgroup() {
    let Some(driver) = cgroup_driver() else {
        return;
    };
    direct_writes_are_counted(&driver).await;
}

#[tokio::test]
async fn direct_writes_are_counted_by_proc() {
    // dd has exited by the time we look: its writes are in the shell's
    // /proc/<pid>/io, since the shell waited for it.
    direct_writes_are_counted(&ProcessDriver::without_cgroups()).await;
}

// === what each source covers ===

#[tokio::test]
async fn tasks_are_counted() {
    let _turn = turn().await;
    let dir = tempfile::tempdir().unwrap();
    let mut drivers = vec![ProcessDriver::without_cgroups()];
    drivers.extend(cgroup_driver());
    for driver in drivers {
        let spec = sh(dir.path(), "sleep 100 & sleep 100 & wait");
        let mut handle = start(&driver, &spec).await;
        let usage = usage_when(&*handle, |u| u.pids == 3);
        assert_eq!(usage.pids, 3, "{usage:?}");
        handle.stop(GRACE).await;
    }
}

#[tokio::test]
async fn the_cgroup_counts_an_orphan_that_proc_misses() {
    let _turn = turn().await;
    let dir = tempfile::tempdir().unwrap();
    // A grandchild in a session of its own, orphaned at once: init reaps it,
    // so its CPU time never reaches a process of the instance's group. It
    // writes down its own CPU time before it exits.
    script(
        dir.path(),
        "orphan.sh",
        "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done\n\
         cat /proc/$$/stat > stat.tmp && mv stat.tmp orphan.stat",
    );
    let body = "sh -c 'setsid sh orphan.sh &'; exec sleep 100";
    let mut drivers = vec![ProcessDriver::without_cgroups()];
    drivers.extend(cgroup_driver());
    for driver in drivers {
        let _ = fs::remove_file(dir.path().join("orphan.stat"));
        let mut handle = start(&driver, &sh(dir.path(), body)).await;
        let stat = read_line_when_written(&dir.path().join("orphan.stat"));
        let (pid, rest) = stat.split_once(' ').unwrap();
        assert!(common::gone_soon(pid.parse().unwrap()), "the orphan lives");
        let fields: Vec<u64> = rest[rest.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse().unwrap())
            .collect();
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap() as u64;
        let orphan_us = (fields[0] + fields[1]) * 1_000_000 / ticks;
        let usage = handle.usage().unwrap();
        println!("orphan used {orphan_us} us; {usage:?}");
        assert!(orphan_us >= 100_000, "the orphan did not work long enough");
        match usage.source {
            UsageSource::Proc => assert!(usage.cpu_total_us() < orphan_us, "{usage:?}"),
            _ => assert!(usage.cpu_total_us() >= orphan_us, "{usage:?}"),
        }
        handle.stop(GRACE).await;
    }
}

// === cost ===

#[tokio::test]
async fn one_reading_is_cheap() {
    let _turn = turn().await;
    let dir = tempfile::tempdir().unwrap();
    let mut drivers = vec![ProcessDriver::without_cgroups()];
    drivers.extend(cgroup_driver());
    for driver in drivers {
        let mut handle = start(&driver, &sh(dir.path(), "sleep 100")).await;
        let calls = 200;
        let started = Instant::now();
        for _ in 0..calls {
            handle.usage().unwrap();
        }
        let each = started.elapsed() / calls;
        let processes = fs::read_dir("/proc")
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            })
            .count();
        println!(
            "one usage() from {:?}: {each:?} ({processes} processes on the node)",
            source_of(&driver)
        );
        assert!(each < Duration::from_millis(50), "{each:?}");
        handle.stop(GRACE).await;
    }
}
