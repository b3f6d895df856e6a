//! The life of one instance: start it, probe it until ready, watch it, and
//! restart it with backoff when it exits, until it is asked to stop.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;
use vdc_driver::{ExitInfo, InstanceHandle, LaunchSpec, Limits};
use vdc_model::{InstanceState, Locator};
use vdc_spec::{HealthCheck, TerminalName};

use crate::{confine, env, now_ms, probe, Inner, StartInstance};

/// The first probes come quickly so a fast instance is ready in tens of
/// milliseconds; the gap then doubles up to this cap until the first success.
const FIRST_PROBE: Duration = Duration::from_millis(10);
const STARTING_PROBE_CAP: Duration = Duration::from_millis(50);
/// Tasks (processes and threads) one instance may have at once, so that a
/// fork bomb stays inside its instance. Enforced with the pids controller.
pub const PIDS_MAX: u64 = 1024;

/// How long an instance without inputs must stay up to count as ready.
const READY_WITHOUT_PROBES: Duration = Duration::from_millis(500);

/// How often the size of an instance's volumes is measured.
const VOLUMES_EVERY: Duration = Duration::from_secs(5);

/// How often a frozen instance is looked at again before its health check.
const FROZEN_RECHECK: Duration = Duration::from_millis(50);

/// How often an instance's kernel accounting is read.
const USAGE_EVERY: Duration = Duration::from_secs(1);
/// A process that stayed up this long is considered healthy again: its next
/// crash restarts it without delay.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Exponential restart delay: 100 ms doubling to 10 s, reset by a stable run.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

enum Ended {
    Stopped,
    Exited(ExitInfo),
}

pub(crate) async fn supervise(inner: Arc<Inner>, request: StartInstance, stop: CancellationToken) {
    let id = request.id.clone();
    let confine = inner.config.confine.as_ref();
    // A confined instance keeps one network namespace across its restarts:
    // its link addresses live there, and namespaces are costly to free.
    // A component that declares egress runs on the host's network instead.
    let netns = match confine.filter(|_| !request.component.egress) {
        Some(confine) => loop {
            match confine::enter(&inner, confine, &request).await {
                Ok(ns) => break Some(ns),
                Err(message) => {
                    tracing::error!(instance = %id, "{message}");
                    inner.update(&id, |r| {
                        r.status.state = InstanceState::Backoff;
                        r.status.message = Some(message);
                    });
                    tokio::select! {
                        _ = stop.cancelled() => {
                            inner.remove(&id);
                            return;
                        }
                        _ = sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        },
        None => None,
    };
    // A confined process without a user of the spec's gets a uid of its
    // own for as long as it is supervised, the same across its restarts (a
    // container runs as a user of its image).
    let own_uid = request.component.user.is_none()
        && request.component.appliance != vdc_spec::Appliance::Container;
    let allocated = match confine.filter(|_| own_uid) {
        Some(_) => {
            let owner = request.component.volumes.keys().find_map(|volume| {
                crate::users::owner(&inner.volume_path(
                    request.tenant.as_str(),
                    &id,
                    volume.as_str(),
                ))
            });
            match inner.uids.allocate(&id, owner) {
                Ok(uid) => Some(uid),
                Err(message) => {
                    tracing::error!(instance = %id, "{message}");
                    inner.update(&id, |r| {
                        r.status.state = InstanceState::Backoff;
                        r.status.message = Some(message);
                    });
                    stop.cancelled().await;
                    if let (Some(confine), Some(ns)) = (confine, netns) {
                        confine::leave(&inner, confine, &request, ns).await;
                    }
                    inner.remove(&id);
                    return;
                }
            }
        }
        None => None,
    };
    let mut backoff = Backoff::new();
    let mut restarts = 0u32;
    while !stop.is_cancelled() {
        match launch(&inner, &request, netns.as_ref(), allocated).await {
            Err(message) => {
                tracing::warn!(instance = %id, "{message}");
                inner.update(&id, |r| {
                    r.status.state = InstanceState::Backoff;
                    r.status.message = Some(message);
                });
            }
            Ok((mut handle, locators, spec)) => {
                let started = Instant::now();
                let pid = handle.pid();
                inner.update(&id, |r| {
                    r.status.state = InstanceState::Starting;
                    r.status.pid = Some(pid);
                    r.status.program_pid = None;
                    r.status.locators = locators.clone();
                    r.status.started_at_ms = Some(now_ms());
                    r.status.message = None;
                    r.pid = Some(pid);
                    r.start_ticks = handle.start_ticks();
                    r.cgroup_name =
                        (!handle.cgroup_paths().is_empty()).then(|| inner.cgroup_name(&id));
                });
                match watch(
                    &inner,
                    &request,
                    handle.as_mut(),
                    &locators,
                    &stop,
                    netns.as_deref(),
                    &spec,
                )
                .await
                {
                    Ended::Stopped => {
                        // Out of the balancing set already: let what is in
                        // flight finish (for up to the grace period) before
                        // asking the process to stop, which then gets its
                        // whole grace period between SIGTERM and SIGKILL.
                        let hurried = crate::lock(&inner.hurried).remove(&id);
                        if !hurried {
                            drain(&inner, &id, request.component.stop_grace).await;
                        }
                        let info = handle.stop(request.component.stop_grace).await;
                        tracing::info!(instance = %id, "stopped: {info}");
                        break;
                    }
                    Ended::Exited(info) => {
                        // Reap anything the main process left in its group.
                        handle.stop(Duration::ZERO).await;
                        restarts += 1;
                        if started.elapsed() >= STABLE_AFTER {
                            backoff.reset();
                        }
                        tracing::warn!(instance = %id, "{info}; restarting");
                        inner.update(&id, |r| {
                            r.status.state = InstanceState::Backoff;
                            r.status.pid = None;
                            r.status.locators.clear();
                            r.status.restarts = restarts;
                            r.status.last_exit = Some(info.to_string());
                            r.status.message = Some(format!("{info}; restarting"));
                            r.pid = None;
                        });
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = sleep(backoff.next()) => {}
        }
    }
    // The namespace goes before the instance is forgotten: a replacement
    // with the same name may be started as soon as it is.
    if let (Some(confine), Some(ns)) = (confine, netns) {
        confine::leave(&inner, confine, &request, ns).await;
    }
    if let Some(uid) = allocated {
        inner.uids.release(uid);
    }
    if request.component.appliance == vdc_spec::Appliance::Container {
        // A container's writable layer lives for one run: nothing of it
        // is kept once the instance is gone (its volumes are).
        let dir = inner.container_dir(request.tenant.as_str(), &id);
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
        if let Ok(Err(e)) = removed {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(instance = %id, "cannot delete the container's writable layer: {e}");
            }
        }
    }
    inner.remove(&id);
}

/// Starts the process with fresh input ports.
async fn launch(
    inner: &Inner,
    request: &StartInstance,
    netns: Option<&Arc<vdc_netns::Netns>>,
    allocated: Option<u32>,
) -> Result<
    (
        Box<dyn InstanceHandle>,
        BTreeMap<TerminalName, Locator>,
        LaunchSpec,
    ),
    String,
> {
    let id = &request.id;
    let component = &request.component;
    let mut locators = BTreeMap::new();
    for input in component.inputs.keys() {
        let port =
            free_port().map_err(|e| format!("cannot find a free port for input `{input}`: {e}"))?;
        locators.insert(
            input.clone(),
            Locator(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        );
    }
    // A container: its image, program, user and root filesystem.
    let container = if component.appliance == vdc_spec::Appliance::Container {
        if inner.config.confine.is_none() {
            return Err(
                "containers need a node that confines its instances (run vdc as root, without --shared-loopback)"
                    .to_owned(),
            );
        }
        let (store, image) = crate::container::ensure_image(inner, request).await?;
        let dir = inner.container_dir(request.tenant.as_str(), id);
        let plan = crate::container::plan(&store, &image, request, &dir).await?;
        // What it runs from, so the image is not collected under it while
        // its app already names another.
        inner.update(id, |r| r.status.image = Some(image.name.clone()));
        // When it was last used, for the collector: the index is rewritten
        // and synced, on a blocking thread and off the start's path.
        let (touched, name) = (Arc::clone(&store), image.name.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = touched.touch(&name) {
                tracing::warn!(image = %name, "cannot record the image's use: {e}");
            }
        });
        Some(plan)
    } else {
        None
    };
    // Who a confined instance runs as, and whether it can use its working
    // directory: checked here, where the reason reaches its status.
    let run_as = match (&inner.config.confine, &container) {
        (None, _) => None,
        (Some(_), Some(plan)) => Some(plan.user.clone()),
        (Some(_), None) => Some(crate::confine::run_as(component, allocated)?),
    };
    if let Some(user) = &run_as {
        if container.is_none() {
            crate::confine::check_workdir(&component.workdir, &inner.config.data_dir, user)?;
        }
        // Root (where the tenant may use it, or in a container whose image
        // runs as root) keeps some capabilities.
        inner.update(id, |r| r.status.isolation.unprivileged = user.uid != 0);
    }
    // Where each volume is on the node, and where the instance sees it:
    // at its `mount` path when the instance has its own view of the
    // filesystem, at the node's path otherwise.
    let mut volumes = BTreeMap::new();
    let mut seen = BTreeMap::new();
    let mut shown = Vec::new();
    for (name, volume) in &component.volumes {
        let path = inner.volume_path(request.tenant.as_str(), id, name.as_str());
        tokio::fs::create_dir_all(&path)
            .await
            .map_err(|e| format!("cannot create volume {}: {e}", path.display()))?;
        // A size is enforced by giving the volume a filesystem of its own.
        if volume.size.is_some() && !crate::volumes::supported() {
            tracing::warn!(instance = %id, volume = %name, "the volume's size is not enforced: that needs root, loop devices and mkfs.ext4");
        }
        if let (Some(size), true) = (volume.size, crate::volumes::supported()) {
            let sized = crate::volumes::SizedVolume {
                image: inner.volume_image(request.tenant.as_str(), id, name.as_str()),
                dir: path.clone(),
                size: size.0,
            };
            tokio::task::spawn_blocking(move || sized.mount())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot mount volume `{name}`: {e}"))?;
        }
        let target = match (&volume.mount, &run_as) {
            // In a container, a volume without a mount path is at /volumes/NAME.
            (None, Some(_)) if container.is_some() => {
                std::path::PathBuf::from("/volumes").join(name.as_str())
            }
            (Some(mount), Some(_)) if container.is_some() => std::path::PathBuf::from(mount),
            (Some(mount), Some(_)) => {
                let target = std::path::PathBuf::from(mount);
                crate::confine::mount_point(&target, &component.workdir)
                    .await
                    .map_err(|e| format!("volume `{name}`: {e}"))?;
                target
            }
            _ => path.clone(),
        };
        if let Some(user) = &run_as {
            // The volume is its user's: a new user, or files a restore or
            // a move wrote, change hands here.
            let (dir, uid, gid) = (path.clone(), user.uid, user.gid);
            tokio::task::spawn_blocking(move || crate::users::take_ownership(&dir, uid, gid))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot give volume `{name}` to its user: {e}"))?;
            shown.push(vdc_sandbox::Volume {
                source: path.clone(),
                target: target.clone(),
            });
        }
        seen.insert(name.clone(), target);
        volumes.insert(name.clone(), path);
    }
    let log_file = inner.log_path(request.tenant.as_str(), id);
    note_in_log(
        &log_file,
        &format!("starting {id} (revision {})", request.revision),
    )
    .await;
    let command = match &container {
        Some(plan) => plan.argv.clone(),
        None => component.command.clone(),
    };
    let Some((program, args)) = command.split_first() else {
        return Err(format!("component `{}` has no command", component.name));
    };
    let mut env = match (&container, &run_as) {
        (Some(plan), _) => plan.env.clone(),
        (None, Some(user)) => crate::confine::base_env(user),
        (None, None) => Vec::new(),
    };
    env.extend(env::instance_env(
        request,
        &inner.config.node,
        &locators,
        &seen,
        netns.is_some(),
    ));
    let spec = LaunchSpec {
        instance: id.to_string(),
        cgroup_name: inner.cgroup_name(id),
        program: env::expand(program, &env),
        args: args.iter().map(|a| env::expand(a, &env)).collect(),
        env,
        workdir: match &container {
            Some(plan) => plan.workdir.clone(),
            None => component.workdir.clone(),
        },
        log_file,
        nofile: inner.config.instance_nofile,
        limits: Limits {
            cpu_millis: Some(component.resources.cpu.0).filter(|c| *c > 0),
            memory_bytes: Some(component.resources.memory.0).filter(|m| *m > 0),
            pids_max: Some(PIDS_MAX),
        },
        confine: match (&inner.config.confine, run_as) {
            (Some(confine), Some(user)) => Some(vdc_driver::Confinement {
                netns: netns.cloned(),
                init: confine.init.clone(),
                sandbox: match container {
                    Some(plan) => vdc_sandbox::Sandbox {
                        user: vdc_sandbox::User {
                            uid: user.uid,
                            gid: user.gid,
                            name: user.name,
                        },
                        workdir: plan.workdir,
                        expose: Vec::new(),
                        hide: Vec::new(),
                        volumes: shown,
                        cgroup: vdc_sandbox::CgroupView::None,
                        image: Some(plan.root),
                    },
                    None => vdc_sandbox::Sandbox {
                        user: vdc_sandbox::User {
                            uid: user.uid,
                            gid: user.gid,
                            name: user.name,
                        },
                        workdir: component.workdir.clone(),
                        expose: vec![component.workdir.clone()],
                        hide: vec![inner.config.data_dir.clone()],
                        volumes: shown,
                        cgroup: vdc_sandbox::CgroupView::None,
                        image: None,
                    },
                },
            }),
            _ => None,
        },
    };
    let handle = inner.driver.start(&spec).await.map_err(|e| e.to_string())?;
    Ok((handle, locators, spec))
}

/// Watches a running instance until it exits or is asked to stop, moving it
/// between starting, ready and unhealthy as its probes say.
async fn watch(
    inner: &Inner,
    request: &StartInstance,
    handle: &mut dyn InstanceHandle,
    locators: &BTreeMap<TerminalName, Locator>,
    stop: &CancellationToken,
    netns: Option<&vdc_netns::Netns>,
    spec: &LaunchSpec,
) -> Ended {
    let id = &request.id;
    let checks: Vec<(&TerminalName, SocketAddr, &HealthCheck)> = request
        .component
        .inputs
        .values()
        .filter_map(|input| Some((&input.name, locators.get(&input.name)?.0, &input.health)))
        .collect();
    let interval = checks
        .iter()
        .map(|(_, _, h)| h.interval)
        .min()
        .unwrap_or(Duration::from_secs(1));
    let threshold = checks
        .iter()
        .map(|(_, _, h)| h.failures)
        .min()
        .unwrap_or(1)
        .max(1);
    // A slow starter's failing probes are news only after the longest
    // start period of its checks; none starts before the longest delay.
    let start_period = checks
        .iter()
        .map(|(_, _, h)| h.start_period)
        .max()
        .unwrap_or(HealthCheck::DEFAULT_START_PERIOD);
    let initial_delay = checks
        .iter()
        .map(|(_, _, h)| h.initial_delay)
        .max()
        .unwrap_or(Duration::ZERO);
    let context = probe::Context {
        netns,
        driver: inner.driver.as_ref(),
        spec,
        pid: handle.pid(),
    };
    let mut ready = false;
    let mut failures = 0u32;
    let mut delay = FIRST_PROBE;
    let started = Instant::now();
    // A deadline rather than a fresh sleep per loop, so the accounting
    // ticks do not postpone the probes.
    // Nothing to probe: staying up for a moment is all an instance without
    // inputs can show, and it keeps a program that exits at once from
    // looking ready.
    let mut next_probe = Instant::now()
        + if checks.is_empty() {
            READY_WITHOUT_PROBES
        } else {
            delay.max(initial_delay)
        };
    let mut accounting = tokio::time::interval(USAGE_EVERY);
    accounting.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let has_volumes = !request.component.volumes.is_empty();
    let mut volumes_measured: Option<Instant> = None;
    let mut measuring: Option<tokio::task::JoinHandle<u64>> = None;
    let mut program_pid = None;
    note_program_pid(inner, id, &*handle, &mut program_pid);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                inner.update(id, |r| r.status.state = InstanceState::Stopping);
                return Ended::Stopped;
            }
            info = handle.wait() => return Ended::Exited(info),
            _ = accounting.tick() => {
                note_program_pid(inner, id, &*handle, &mut program_pid);
                match handle.usage() {
                    Ok(usage) => inner.record_usage(id, usage),
                    Err(e) => tracing::debug!(instance = %id, "cannot read resource usage: {e}"),
                }
                // Volume usage: a walk of the directory off the async
                // threads, every few seconds, one at a time.
                if let Some(task) = measuring.take_if(|t| t.is_finished()) {
                    if let Ok(bytes) = task.await {
                        inner.record_volume_bytes(id, bytes);
                    }
                }
                let due = volumes_measured.is_none_or(|at| at.elapsed() >= VOLUMES_EVERY);
                if has_volumes && measuring.is_none() && due {
                    volumes_measured = Some(Instant::now());
                    let dir = inner.volumes_dir(request.tenant.as_str(), id);
                    measuring = Some(tokio::task::spawn_blocking(move || dir_bytes(&dir)));
                }
                continue;
            }
            _ = tokio::time::sleep_until(next_probe) => {}
        }
        // A frozen instance cannot answer: its checks wait for the thaw, and
        // a check that overlapped a freeze does not count.
        let epoch = inner.freezes.load(std::sync::atomic::Ordering::SeqCst);
        if !inner.probe_counts(id, epoch) {
            next_probe = Instant::now() + FROZEN_RECHECK;
            continue;
        }
        let mut failed = None;
        for (name, addr, health) in &checks {
            if let Err(e) = probe::check(*addr, &health.probe, health.timeout, &context).await {
                failed = Some(format!("health check of input `{name}` failed: {e}"));
                break;
            }
        }
        if !inner.probe_counts(id, epoch) {
            next_probe = Instant::now() + FROZEN_RECHECK;
            continue;
        }
        let probed = Instant::now();
        match failed {
            None => {
                failures = 0;
                delay = interval;
                if !ready {
                    ready = true;
                    note_program_pid(inner, id, &*handle, &mut program_pid);
                    inner.update(id, |r| {
                        r.status.state = InstanceState::Ready;
                        r.status.message = None;
                    });
                }
            }
            Some(message) if ready => {
                failures += 1;
                if failures >= threshold {
                    ready = false;
                    delay = interval;
                    inner.update(id, |r| {
                        r.status.state = InstanceState::Unhealthy;
                        r.status.message = Some(message);
                    });
                }
            }
            Some(message) => {
                delay = (delay * 2)
                    .min(STARTING_PROBE_CAP)
                    .min(interval.max(FIRST_PROBE));
                // Failing probes are expected while a program starts; they
                // only become news when it is slow to come up.
                if started.elapsed() >= start_period {
                    inner.update(id, |r| {
                        if r.status.message.as_ref() != Some(&message) {
                            r.status.message = Some(message);
                        }
                    });
                }
            }
        }
        next_probe = probed + delay;
    }
}

/// Puts the program's pid in the instance's status once the driver knows
/// it (an init may still be starting it).
fn note_program_pid(
    inner: &Inner,
    id: &vdc_model::InstanceId,
    handle: &dyn InstanceHandle,
    known: &mut Option<u32>,
) {
    if known.is_some() {
        return;
    }
    if let Some(pid) = handle.program_pid() {
        *known = Some(pid);
        inner.update(id, |r| r.status.program_pid = Some(pid));
    }
}

/// Bytes in the regular files under `dir` (allocated size is not what a
/// user reads in a size limit; the sum of file sizes is). Unreadable
/// entries count as nothing.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                total = total.saturating_add(entry.metadata().map_or(0, |m| m.len()));
            }
        }
    }
    total
}

/// Waits until no request or connection is in flight to the instance, for
/// at most `grace`.
async fn drain(inner: &Inner, id: &vdc_model::InstanceId, grace: Duration) {
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        let in_flight = inner.in_flight(id);
        if in_flight == 0 {
            return;
        }
        if started.elapsed() >= grace {
            tracing::warn!(
                instance = %id,
                in_flight,
                "still serving when its grace period ended; stopping it anyway"
            );
            return;
        }
        sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Asks the kernel for a free port on loopback. The port is free when this
/// returns; the instance binds it moments later.
fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Writes a line into the instance's log so that a reader can tell runs
/// apart. Best effort: the driver reports a log file it cannot open.
async fn note_in_log(path: &std::path::Path, line: &str) {
    if let Some(dir) = path.parent() {
        let _ = tokio::fs::create_dir_all(dir).await;
    }
    if let Ok(mut f) = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
    {
        let _ = f
            .write_all(format!("--- vdc: {line} ---\n").as_bytes())
            .await;
    }
}
