//! The real [`Cgroups`]: files under `/sys/fs/cgroup` (or any root that looks
//! like it, which is how the tests exercise it without the kernel).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::usage::{self, V1Dirs};
use super::{CgroupError, CgroupName, Cgroups, OomCounter};
use crate::{CgroupVersion, Limits, Usage};

/// Where cgroup filesystems are mounted on every distribution we know.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// The controllers the driver uses for limits, in the order limits are written.
const LIMIT_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// v1 hierarchies the leaf is created in: the limit controllers, plus
/// `cpuacct` and `blkio` for CPU and block I/O accounting and `freezer` so
/// that tools can pause an instance as a whole. Any of them may be absent.
const V1_CONTROLLERS: [&str; 6] = ["cpu", "cpuacct", "memory", "pids", "freezer", "blkio"];

/// v2 controllers enabled for the leaf: the limit controllers, plus `io`,
/// without which the leaf has no `io.stat`.
const V2_CONTROLLERS: [&str; 4] = ["cpu", "memory", "pids", "io"];

/// The CFS period used for CPU limits: 100 ms, the kernel's default.
const CPU_PERIOD_US: u64 = 100_000;

/// The kernel refuses CFS quotas under 1 ms.
const CPU_MIN_QUOTA_US: u64 = 1_000;

/// Cgroups backed by a cgroup filesystem.
#[derive(Clone, Debug)]
pub struct FsCgroups {
    layout: Layout,
}

#[derive(Clone, Debug)]
enum Layout {
    V1 {
        hierarchies: Vec<Hierarchy>,
    },
    V2 {
        root: PathBuf,
        /// Controllers among [`V2_CONTROLLERS`] available and enabled in the
        /// root's `cgroup.subtree_control`.
        controllers: Vec<&'static str>,
    },
}

/// One v1 hierarchy; co-mounted controllers ("cpu,cpuacct") share one.
#[derive(Clone, Debug)]
struct Hierarchy {
    mount: PathBuf,
    controllers: Vec<&'static str>,
}

// === impl FsCgroups ===

impl FsCgroups {
    /// Finds the cgroup filesystem at [`DEFAULT_ROOT`].
    pub fn detect() -> Option<FsCgroups> {
        FsCgroups::detect_at(Path::new(DEFAULT_ROOT))
    }

    /// Finds a cgroup filesystem at `root`: v2 when `root/cgroup.controllers`
    /// exists (a unified hierarchy mounted elsewhere, as in hybrid setups, is
    /// ignored since its controllers are held by v1), else v1 when any of the
    /// controllers has a hierarchy at `root/<controller>`, or in a directory
    /// named after all its co-mounted controllers such as `root/cpu,cpuacct`
    /// (usually with symlinks `cpu` and `cpuacct` to it, but not always).
    ///
    /// On v2 this enables the limit controllers in the root's
    /// `cgroup.subtree_control`, which every leaf needs; controllers that
    /// cannot be enabled are reported by [`Cgroups::missing_controllers`].
    pub fn detect_at(root: &Path) -> Option<FsCgroups> {
        if root.join("cgroup.controllers").is_file() {
            return Some(FsCgroups::v2_at(root));
        }
        let mut candidates: Vec<PathBuf> = V1_CONTROLLERS.iter().map(|c| root.join(c)).collect();
        let mut co_mounted: Vec<PathBuf> = fs::read_dir(root)
            .map(|entries| {
                entries
                    .filter_map(|e| Some(e.ok()?.path()))
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().contains(','))
                    })
                    .collect()
            })
            .unwrap_or_default();
        co_mounted.sort();
        candidates.extend(co_mounted);
        let mut hierarchies: Vec<(PathBuf, Hierarchy)> = Vec::new();
        for mount in candidates {
            if !mount.join("cgroup.procs").is_file() {
                continue;
            }
            // Distributions often co-mount cpu and cpuacct and symlink both
            // names to it; one directory must only be created once. Its real
            // name tells which controllers it holds.
            let key = fs::canonicalize(&mount).unwrap_or_else(|_| mount.clone());
            let controllers: Vec<&'static str> = V1_CONTROLLERS
                .into_iter()
                .filter(|c| named_after(&mount, c) || named_after(&key, c) || has_marker(&key, c))
                .collect();
            if controllers.is_empty() {
                continue;
            }
            match hierarchies.iter_mut().find(|(k, _)| *k == key) {
                Some((_, h)) => {
                    for c in controllers {
                        if !h.controllers.contains(&c) {
                            h.controllers.push(c);
                        }
                    }
                }
                None => hierarchies.push((key, Hierarchy { mount, controllers })),
            }
        }
        if hierarchies.is_empty() {
            return None;
        }
        Some(FsCgroups {
            layout: Layout::V1 {
                hierarchies: hierarchies.into_iter().map(|(_, h)| h).collect(),
            },
        })
    }

    fn v2_at(root: &Path) -> FsCgroups {
        let available = read_words(&root.join("cgroup.controllers")).unwrap_or_default();
        let wanted: Vec<&'static str> = V2_CONTROLLERS
            .into_iter()
            .filter(|c| available.iter().any(|a| a == c))
            .collect();
        let controllers = match enable_controllers(root, &wanted) {
            Ok(()) => wanted,
            // Enabling several at once fails as a whole; find those that work,
            // e.g. in a container whose root cgroup also holds processes.
            Err(_) => wanted
                .into_iter()
                .filter(|c| enable_controllers(root, &[c]).is_ok())
                .collect(),
        };
        FsCgroups {
            layout: Layout::V2 {
                root: root.to_owned(),
                controllers,
            },
        }
    }

    /// Checks that leaves can really be created (a read-only mount or a
    /// container without delegation can look fine and still refuse), by
    /// creating and removing `name`.
    pub fn probe(&self, name: &CgroupName) -> Result<(), CgroupError> {
        let created = self.create(name, &Limits::default());
        let removed = self.remove(name);
        created.and(removed)
    }

    /// The leaf directory in the hierarchy holding `controller`, if mounted.
    fn dir_for(&self, name: &CgroupName, controller: &str) -> Option<PathBuf> {
        match &self.layout {
            Layout::V1 { hierarchies } => hierarchies
                .iter()
                .find(|h| h.controllers.contains(&controller))
                .map(|h| name.under(&h.mount)),
            Layout::V2 { root, controllers } => {
                controllers.contains(&controller).then(|| name.under(root))
            }
        }
    }

    fn create_once(&self, name: &CgroupName, limits: &Limits) -> Result<(), CgroupError> {
        if let Layout::V2 { root, controllers } = &self.layout {
            // Each level must delegate the controllers to the one below; the
            // root was done at detection, the agent's parent is done here.
            if let Some(parent) = name.parent() {
                let parent = root.join(parent);
                make_dir(&parent)?;
                enable_controllers(&parent, controllers)?;
            }
        }
        let mut created = Vec::new();
        let result = (|| {
            for dir in self.paths(name) {
                if let Some(parent) = dir.parent() {
                    if !parent.is_dir() {
                        make_dir(parent)?;
                    }
                }
                if make_dir(&dir)? {
                    created.push(dir);
                }
            }
            self.write_limits(name, limits)?;
            if let (Layout::V1 { .. }, Some(blkio)) = (&self.layout, self.dir_for(name, "blkio")) {
                usage::activate_blkio_accounting(&blkio, Path::new(usage::SYS_BLOCK));
            }
            Ok(())
        })();
        if result.is_err() {
            // Nothing half-applied: a failed start leaves no cgroup behind.
            for dir in created.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
        }
        result
    }

    /// True when the name has a parent and it is missing somewhere.
    fn parent_missing(&self, name: &CgroupName) -> bool {
        name.parent().is_some()
            && self
                .paths(name)
                .iter()
                .any(|dir| dir.parent().is_some_and(|p| !p.is_dir()))
    }

    fn write_limits(&self, name: &CgroupName, limits: &Limits) -> Result<(), CgroupError> {
        let v2 = matches!(self.layout, Layout::V2 { .. });
        if let (Some(millis), Some(dir)) = (limits.cpu_millis, self.dir_for(name, "cpu")) {
            let quota = millis
                .saturating_mul(CPU_PERIOD_US / 1000)
                .max(CPU_MIN_QUOTA_US);
            if v2 {
                write_file(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
            } else {
                write_file(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                write_file(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        if let (Some(bytes), Some(dir)) = (limits.memory_bytes, self.dir_for(name, "memory")) {
            if v2 {
                write_file(&dir.join("memory.max"), &bytes.to_string())?;
                // Without swap.max = 0 an instance could exceed its limit by
                // swapping, which is neither accounted nor expected.
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write_file(&swap, "0")?;
                }
            } else {
                // memsw (memory + swap) must stay >= the memory limit at every
                // write, so lift it first, then set both to the same value,
                // which forbids swap.
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                let has_memsw = memsw.exists();
                if has_memsw {
                    write_file(&memsw, "-1")?;
                }
                write_file(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                if has_memsw {
                    write_file(&memsw, &bytes.to_string())?;
                }
            }
        }
        if let (Some(max), Some(dir)) = (limits.pids_max, self.dir_for(name, "pids")) {
            write_file(&dir.join("pids.max"), &max.to_string())?;
        }
        Ok(())
    }
}

impl Cgroups for FsCgroups {
    fn version(&self) -> CgroupVersion {
        match self.layout {
            Layout::V1 { .. } => CgroupVersion::V1,
            Layout::V2 { .. } => CgroupVersion::V2,
        }
    }

    fn missing_controllers(&self) -> Vec<&'static str> {
        LIMIT_CONTROLLERS
            .into_iter()
            .filter(|c| match &self.layout {
                Layout::V1 { hierarchies } => {
                    !hierarchies.iter().any(|h| h.controllers.contains(c))
                }
                Layout::V2 { controllers, .. } => !controllers.contains(c),
            })
            .collect()
    }

    fn paths(&self, name: &CgroupName) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V1 { hierarchies } => {
                hierarchies.iter().map(|h| name.under(&h.mount)).collect()
            }
            Layout::V2 { root, .. } => vec![name.under(root)],
        }
    }

    fn hierarchies(&self) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V1 { hierarchies } => hierarchies.iter().map(|h| h.mount.clone()).collect(),
            Layout::V2 { root, .. } => vec![root.clone()],
        }
    }

    fn exists(&self, name: &CgroupName) -> bool {
        self.paths(name).iter().any(|p| p.is_dir())
    }

    fn create(&self, name: &CgroupName, limits: &Limits) -> Result<(), CgroupError> {
        // `remove` takes an emptied parent away, so a concurrent stop of the
        // parent's last other instance can pull it from under us; then the
        // whole creation is simply done again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.create_once(name, limits) {
                Err(e)
                    if attempts < 3
                        && e.source.kind() == io::ErrorKind::NotFound
                        && self.parent_missing(name) => {}
                result => return result,
            }
        }
    }

    fn procs_files(&self, name: &CgroupName) -> Vec<PathBuf> {
        self.paths(name)
            .into_iter()
            .map(|p| p.join("cgroup.procs"))
            .collect()
    }

    fn pids(&self, name: &CgroupName) -> Result<Vec<u32>, CgroupError> {
        let mut pids = Vec::new();
        for file in self.procs_files(name) {
            match fs::read_to_string(&file) {
                Ok(text) => pids.extend(
                    text.lines()
                        .filter_map(|l| l.trim().parse::<u32>().ok())
                        // Pid 0 is never a member; it can only appear when the
                        // root is a plain directory standing in for cgroupfs.
                        .filter(|&pid| pid != 0),
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(CgroupError::new(file, e)),
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn kill_all(&self, name: &CgroupName) -> Result<(), CgroupError> {
        if let Layout::V2 { root, .. } = &self.layout {
            // cgroup.kill (Linux 5.14) kills atomically, even a fork bomb.
            let kill_file = name.under(root).join("cgroup.kill");
            if kill_file.is_file() {
                return write_file(&kill_file, "1");
            }
        }
        let own = std::process::id();
        for pid in self.pids(name)? {
            // Never signal ourselves or init, whatever a file claims.
            if pid <= 1 || pid == own {
                continue;
            }
            let Ok(raw) = i32::try_from(pid) else {
                continue;
            };
            // ESRCH means it died since the listing: that is the goal.
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
        Ok(())
    }

    fn set_frozen(&self, name: &CgroupName, frozen: bool) -> Result<bool, CgroupError> {
        let (file, value) = match &self.layout {
            Layout::V2 { root, .. } => (
                name.under(root).join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
            ),
            Layout::V1 { .. } => match self.dir_for(name, "freezer") {
                Some(dir) => (
                    dir.join("freezer.state"),
                    if frozen { "FROZEN" } else { "THAWED" },
                ),
                None => return Ok(false),
            },
        };
        // v2 before Linux 5.2 has no cgroup.freeze.
        if !file.is_file() {
            return Ok(false);
        }
        write_file(&file, value)?;
        Ok(true)
    }

    fn is_frozen(&self, name: &CgroupName) -> Result<bool, CgroupError> {
        match &self.layout {
            Layout::V2 { root, .. } => {
                let events = name.under(root).join("cgroup.events");
                let text = fs::read_to_string(&events).map_err(|e| CgroupError::new(&events, e))?;
                Ok(text.lines().any(|l| l.trim() == "frozen 1"))
            }
            Layout::V1 { .. } => {
                let Some(dir) = self.dir_for(name, "freezer") else {
                    return Ok(false);
                };
                let state = dir.join("freezer.state");
                let text = fs::read_to_string(&state).map_err(|e| CgroupError::new(&state, e))?;
                Ok(text.trim() == "FROZEN")
            }
        }
    }

    fn oom_counter(&self, name: &CgroupName) -> Option<OomCounter> {
        let dir = self.dir_for(name, "memory")?;
        match self.layout {
            Layout::V2 { .. } => {
                read_key(&dir.join("memory.events"), "oom_kill").map(OomCounter::Kills)
            }
            Layout::V1 { .. } => read_key(&dir.join("memory.oom_control"), "oom_kill")
                .map(OomCounter::Kills)
                .or_else(|| {
                    let text = fs::read_to_string(dir.join("memory.failcnt")).ok()?;
                    text.trim().parse().ok().map(OomCounter::LimitHits)
                }),
        }
    }

    fn usage(&self, name: &CgroupName) -> Result<Usage, CgroupError> {
        let paths = self.paths(name);
        if !paths.iter().any(|p| p.is_dir()) {
            let path = paths
                .into_iter()
                .next()
                .unwrap_or_else(|| name.as_str().into());
            return Err(CgroupError::new(
                path,
                io::Error::new(io::ErrorKind::NotFound, "the cgroup does not exist"),
            ));
        }
        match &self.layout {
            Layout::V1 { .. } => usage::read_v1(&V1Dirs {
                cpu: self.dir_for(name, "cpu"),
                cpuacct: self.dir_for(name, "cpuacct"),
                memory: self.dir_for(name, "memory"),
                pids: self.dir_for(name, "pids"),
                blkio: self.dir_for(name, "blkio"),
                all: paths,
            }),
            Layout::V2 { root, .. } => usage::read_v2(&name.under(root)),
        }
    }

    fn remove(&self, name: &CgroupName) -> Result<(), CgroupError> {
        let mut first_error = None;
        for dir in self.paths(name) {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_error.get_or_insert(CgroupError::new(dir, e));
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if name.parent().is_some() {
            for dir in self.paths(name) {
                // Only succeeds once the last instance under the parent is
                // gone; while siblings remain this fails and changes nothing.
                if let Some(parent) = dir.parent() {
                    let _ = fs::remove_dir(parent);
                }
            }
        }
        Ok(())
    }
}

// === helpers ===

/// Creates `dir`; returns false when it already existed as a directory.
fn make_dir(dir: &Path) -> Result<bool, CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(CgroupError::new(dir, e)),
    }
}

/// True when `path`'s last component names `controller`, alone or among
/// co-mounted ones ("cpu,cpuacct").
fn named_after(path: &Path, controller: &str) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().split(',').any(|c| c == controller))
}

/// True when the hierarchy at `mount` has a file only `controller` makes, for
/// hierarchies mounted under another name (cpuacct co-mounted at `cpu`).
fn has_marker(mount: &Path, controller: &str) -> bool {
    let marker = match controller {
        "cpu" => "cpu.shares",
        "cpuacct" => "cpuacct.stat",
        "memory" => "memory.usage_in_bytes",
        "blkio" => "blkio.reset_stats",
        _ => return false,
    };
    mount.join(marker).is_file()
}

/// Writes a control file in one `write`, as the kernel expects. The file must
/// exist: cgroupfs does not allow creating files, and a missing one means
/// the controller is not there.
pub(super) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| CgroupError::new(path, e))
}

/// Enables `controllers` for the children of `dir`, skipping those already on.
fn enable_controllers(dir: &Path, controllers: &[&str]) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = read_words(&file).map_err(|e| CgroupError::new(&file, e))?;
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.iter().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write_file(&file, &missing.join(" "))
}

fn read_words(path: &Path) -> io::Result<Vec<String>> {
    Ok(fs::read_to_string(path)?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// Reads `key N` from a flat-keyed file such as `memory.events`.
fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}
