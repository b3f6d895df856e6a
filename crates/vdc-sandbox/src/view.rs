//! The instance's own view of the filesystem, built by its pid 1 in a
//! mount namespace of its own and entered with `pivot_root`.
//!
//! The view is a tmpfs holding only what the plan lets through:
//!
//! ```text
//! /usr /bin /sbin /lib* /etc /opt /var /nix /gnu   the host's, read-only, nosuid, nodev
//! /tmp /var/tmp /dev/shm                          empty tmpfs, world-writable (sticky)
//! /run                                            empty tmpfs, the instance user's
//! /home/NAME (or /root)                           empty, the instance user's
//! /dev                                            null zero full random urandom tty, pts, shm, mqueue
//! /proc                                           the instance's PID namespace; kernel files masked
//! /sys, /sys/fs/cgroup                            read-only; the cgroup rooted at the instance's
//! the working directory, exposed paths            bound read-only at their host paths
//! volumes                                         bound read-write at their targets
//! hidden paths (the data directory)               an empty, read-only directory
//! ```
//!
//! Everything else of the host (`/home`, `/root`, `/mnt`, `/srv`, `/boot`,
//! any other top-level directory) is absent. Files in the private
//! directories are memory charged to the instance's cgroup, so its memory
//! limit bounds them.
//!
//! It is built like bubblewrap builds its root: a staging tmpfs becomes the
//! root with the host's root under `/oldroot`, the view is assembled under
//! `/newroot` from there, and a second `pivot_root` enters it and drops
//! the rest. A host tree is made read-only as soon as it is bound, so no
//! later step can write to the host through it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, chown, pivot_root, Gid, Uid};

use crate::error::{Context, SandboxError};
use crate::mounts::{self, Access};
use crate::{CgroupView, Sandbox, User};

/// Top-level directories of the host a view shows, read-only: where
/// software and its configuration live. `/var` holds the host's own
/// service data too; what is not world-readable there stays unreadable to
/// an unprivileged instance, and the node's data directory is hidden
/// wherever it is.
pub const SHOWN: [&str; 12] = [
    "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt", "var", "nix", "gnu",
];

/// Whether every view shows the host's `path` (an absolute path) without
/// being told to: it lies in one of the [`SHOWN`] trees.
pub fn shows(path: &Path) -> bool {
    let mut components = path.components();
    components.next() == Some(Component::RootDir)
        && components
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .is_some_and(|top| SHOWN.contains(&top))
}

/// Where the staging tmpfs is mounted before it becomes the root. Any
/// directory every host has; its own content is never needed (after the
/// first `pivot_root` the tmpfs is moved away and `/oldroot/tmp` is the
/// host's again).
const STAGE: &str = "/tmp";
const NEW: &str = "/newroot";
const OLD: &str = "/oldroot";
/// This process's mount table while the view is built: in the view's own
/// `/proc`, mounted first.
const MOUNTINFO: &str = "/newroot/proc/self/mountinfo";

/// What the host keeps in its shown trees that is none of an instance's
/// business, even for a root the admin allowed (which reads past file
/// modes): credentials and keys, covered with `/dev/null`; and the host's
/// own services' data, logs and mail, covered with an empty directory.
const HOST_SECRET_FILES: [&str; 5] = [
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
];
const HOST_PRIVATE_DIRS: [&str; 9] = [
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/sudoers.d",
    "/var/lib",
    "/var/log",
    "/var/spool",
    "/var/mail",
    "/var/backups",
    "/var/cache",
];

/// Device nodes of the host every instance gets.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Files of `/proc` that tell about the host's kernel and memory, covered
/// with `/dev/null`, and directories covered with an empty tmpfs; then the
/// ones made read-only. (The lists container runtimes use.)
const PROC_MASKED_FILES: [&str; 6] = [
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
];
const PROC_MASKED_DIRS: [&str; 3] = ["acpi", "asound", "scsi"];
const PROC_READ_ONLY: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];

/// What a path of the plan becomes in the view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Hide,
    Expose,
    Volume,
}

// === entering the view ===

/// Builds the view described by `sandbox` and makes it this process's
/// root, with the working directory entered. Called by pid 1 in a fresh
/// mount namespace (made private below `/` already), as root, after it
/// joined every other namespace: the `/proc` mounted here is that of its
/// PID namespace, `/sys` that of its network namespace.
pub(crate) fn enter(sandbox: &Sandbox) -> Result<(), SandboxError> {
    if let Some(image) = &sandbox.image {
        return enter_image(sandbox, image);
    }
    let stage = Path::new(STAGE);
    mounts::tmpfs(stage, "mode=0755", MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    for dir in ["newroot", "oldroot"] {
        make_dir(&stage.join(dir), 0o755)?;
    }
    mounts::tmpfs(
        &stage.join("newroot"),
        "mode=0755",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
    )?;
    chdir(stage).context(|| format!("enter {STAGE}"))?;
    pivot_root(".", "oldroot").context(|| "pivot into the staging root".to_owned())?;
    chdir("/").context(|| "enter the staging root".to_owned())?;

    make_dir(&Path::new(NEW).join("proc"), 0o555)?;
    proc()?;
    show_host_trees()?;
    private_directories(&sandbox.user)?;
    devices()?;
    plan_paths(sandbox)?;
    users(&sandbox.user)?;
    sys(&sandbox.cgroup)?;
    mounts::restrict(Path::new(NEW), Access::ReadOnly)?;

    chdir(NEW).context(|| "enter the new root".to_owned())?;
    pivot_root(".", ".").context(|| "pivot into the new root".to_owned())?;
    umount2(".", MntFlags::MNT_DETACH).context(|| "let go of the host's root".to_owned())?;
    chdir("/").context(|| "enter the new root".to_owned())?;
    chdir(&sandbox.workdir)
        .context(|| format!("enter the working directory {}", sandbox.workdir.display()))
}

/// A container's root: the overlay of its image's layers and its own
/// writable layer (`nodev`: device nodes an image brings do not work; the
/// usual ones are in `/dev`), with `/proc`, `/dev` and `/sys` as every
/// instance has them, its volumes bound at their paths in it, and its own
/// `/etc/hosts`, `/etc/hostname` and the host's `/etc/resolv.conf`.
fn enter_image(sandbox: &Sandbox, image: &crate::ImageRoot) -> Result<(), SandboxError> {
    let stage = Path::new(STAGE);
    mounts::tmpfs(stage, "mode=0755", MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    for dir in ["newroot", "oldroot"] {
        make_dir(&stage.join(dir), 0o755)?;
    }
    chdir(stage).context(|| format!("enter {STAGE}"))?;
    pivot_root(".", "oldroot").context(|| "pivot into the staging root".to_owned())?;
    chdir("/").context(|| "enter the staging root".to_owned())?;

    // overlayfs separates lower directories with `:` and options with `,`.
    let mut lowers = Vec::new();
    for lower in &image.lowers {
        lowers.push(overlay_path(&old(lower))?);
    }
    if lowers.is_empty() {
        // An image without layers: an empty lower directory.
        make_dir(Path::new("/empty"), 0o755)?;
        lowers.push("/empty".to_owned());
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        overlay_path(&old(&image.upper))?,
        overlay_path(&old(&image.work))?
    );
    nix::mount::mount(
        Some("overlay"),
        NEW,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .context(|| "mount the container's root filesystem (overlay)".to_owned())?;

    // What the image has at these paths (a symlink, a file) is replaced
    // by a directory: nothing is mounted through a link it made.
    for (dir, mode) in [("proc", 0o555), ("sys", 0o555), ("dev", 0o755)] {
        let path = Path::new(NEW).join(dir);
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            let _ = fs::remove_file(&path);
            make_dir(&path, mode)?;
        }
    }
    proc()?;
    devices()?;
    sys(&sandbox.cgroup)?;
    for volume in &sandbox.volumes {
        let target = in_image(&volume.target)?;
        make_mount_point(&target, true)?;
        mounts::bind(&old(&volume.source), &target, true)?;
        mounts::restrict(&target, Access::Writable)?;
    }
    container_etc(&image.hostname)?;
    if !sandbox.workdir.as_os_str().is_empty() {
        let workdir = in_image(&sandbox.workdir)?;
        if !workdir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&workdir)
                .context(|| {
                    format!("create the working directory {}", sandbox.workdir.display())
                })?;
        }
    }

    chdir(NEW).context(|| "enter the new root".to_owned())?;
    pivot_root(".", ".").context(|| "pivot into the new root".to_owned())?;
    umount2(".", MntFlags::MNT_DETACH).context(|| "let go of the host's root".to_owned())?;
    chdir("/").context(|| "enter the new root".to_owned())?;
    let workdir = if sandbox.workdir.as_os_str().is_empty() {
        Path::new("/")
    } else {
        sandbox.workdir.as_path()
    };
    chdir(workdir).context(|| format!("enter the working directory {}", workdir.display()))
}

/// Where `path` of a container is while its root is built, after checking
/// that no part of it the image has is a symbolic link: a link resolved
/// now would resolve against the staging root, where the host's root is
/// reachable, and a mount point made through it would be made on the host.
fn in_image(path: &Path) -> Result<PathBuf, SandboxError> {
    check_plain(path)?;
    let mut at = PathBuf::from(NEW);
    for part in path.components().skip(1) {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(SandboxError::new(
                    format!("mount at {} in the container", path.display()),
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "the image has a symbolic link at {}; give a path without one",
                            shown(&at)
                        ),
                    ),
                ));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(new(path))
}

/// `path` as an overlayfs option may hold it.
fn overlay_path(path: &Path) -> Result<String, SandboxError> {
    let text = path.to_string_lossy();
    if text.contains([':', ',', '\\']) {
        return Err(SandboxError::new(
            format!("use {} in a container's root", path.display()),
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "overlayfs takes no `:`, `,` or `\\` in paths",
            ),
        ));
    }
    Ok(text.into_owned())
}

/// `/etc/hosts` (this host name and localhost), `/etc/hostname`, and the
/// host's `/etc/resolv.conf`, bound over whatever the image has there.
fn container_etc(hostname: &str) -> Result<(), SandboxError> {
    let etc = in_image(Path::new("/etc"))?;
    if !etc.is_dir() {
        make_dir(&etc, 0o755)?;
    }
    let hosts =
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (name, content) in [("hosts", hosts), ("hostname", format!("{hostname}\n"))] {
        let staged = Path::new("/").join(format!("container-{name}"));
        fs::write(&staged, content).context(|| format!("write /etc/{name}"))?;
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o644))
            .context(|| format!("write /etc/{name}"))?;
        let target = in_image(&Path::new("/etc").join(name))?;
        make_mount_point(&target, false)?;
        mounts::bind(&staged, &target, false)?;
        mounts::restrict(&target, Access::ReadOnly)?;
    }
    let resolv = Path::new(OLD).join("etc/resolv.conf");
    if fs::metadata(&resolv).is_ok_and(|m| m.is_file()) {
        let target = in_image(Path::new("/etc/resolv.conf"))?;
        make_mount_point(&target, false)?;
        mounts::bind(&resolv, &target, false)?;
        mounts::restrict(&target, Access::ReadOnly)?;
    }
    Ok(())
}

/// `path` of the host, seen from the staging root.
fn old(path: &Path) -> PathBuf {
    Path::new(OLD).join(path.strip_prefix("/").unwrap_or(path))
}

/// `path` of the view, seen from the staging root.
fn new(path: &Path) -> PathBuf {
    Path::new(NEW).join(path.strip_prefix("/").unwrap_or(path))
}

/// The host's software trees, bound read-only; top-level symlinks (merged
/// `/usr`: `/bin -> usr/bin`) copied as they are.
fn show_host_trees() -> Result<(), SandboxError> {
    let mut bound = Vec::new();
    for name in SHOWN {
        let host = Path::new(OLD).join(name);
        let target = Path::new(NEW).join(name);
        let Ok(meta) = fs::symlink_metadata(&host) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let to = fs::read_link(&host).context(|| format!("read the link /{name}"))?;
            symlink(&to, &target).context(|| format!("link /{name}"))?;
        } else if meta.is_dir() {
            make_dir(&target, 0o755)?;
            mounts::bind(&host, &target, true)?;
            bound.push(target);
        }
    }
    // Read-only before anything else happens in the view (nothing has but
    // these binds): no later step may create a file on the host through
    // them. One read of the mount table serves them all.
    mounts::restrict_trees(&bound, Path::new(MOUNTINFO))
}

/// Empty directories of the instance's own: scratch space, `/run` and its
/// home, and empty `/home`, `/root` and the kernel's mount points.
fn private_directories(user: &User) -> Result<(), SandboxError> {
    for (dir, mode) in [
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("tmp", 0o1777),
        ("run", 0o755),
        ("home", 0o755),
        // Traversable, so a working directory under /root can be shown;
        // it holds nothing else.
        ("root", 0o755),
    ] {
        make_dir(&Path::new(NEW).join(dir), mode)?;
    }
    let scratch = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mounts::tmpfs(&new(Path::new("/tmp")), "mode=1777", scratch)?;
    let var_tmp = new(Path::new("/var/tmp"));
    if var_tmp.is_dir() {
        mounts::tmpfs(&var_tmp, "mode=1777", scratch)?;
    }
    let owner = format!("uid={},gid={}", user.uid, user.gid);
    mounts::tmpfs(
        &new(Path::new("/run")),
        &format!("mode=0755,{owner}"),
        scratch,
    )?;
    let home = user.home();
    if user.is_root() {
        mounts::tmpfs(&new(&home), "mode=0700", scratch)?;
    } else {
        mounts::tmpfs(&new(Path::new("/home")), "mode=0755", scratch)?;
        make_dir(&new(&home), 0o700)?;
        chown(
            &new(&home),
            Some(Uid::from_raw(user.uid)),
            Some(Gid::from_raw(user.gid)),
        )
        .context(|| format!("give {} to its user", home.display()))?;
    }
    Ok(())
}

/// A `/dev` with the usual device nodes of the host, a private `/dev/shm`,
/// its own pseudo-terminals and message queues.
fn devices() -> Result<(), SandboxError> {
    let dev = Path::new(NEW).join("dev");
    mounts::tmpfs(&dev, "mode=0755", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC)?;
    for name in DEVICES {
        let host = Path::new(OLD).join("dev").join(name);
        if !host.exists() {
            continue;
        }
        let node = dev.join(name);
        fs::File::create(&node).context(|| format!("create /dev/{name}"))?;
        mounts::bind(&host, &node, false)?;
        mounts::restrict(&node, Access::Devices)?;
    }
    make_dir(&dev.join("shm"), 0o1777)?;
    mounts::tmpfs(
        &dev.join("shm"),
        "mode=1777",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
    )?;
    make_dir(&dev.join("pts"), 0o755)?;
    mounts::special(
        "devpts",
        &dev.join("pts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    symlink("pts/ptmx", dev.join("ptmx")).context(|| "link /dev/ptmx".to_owned())?;
    make_dir(&dev.join("mqueue"), 0o755)?;
    match mounts::special(
        "mqueue",
        &dev.join("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    ) {
        Ok(()) => {}
        // A kernel without POSIX message queues.
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
        Err(e) => return Err(e),
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(to, dev.join(link)).context(|| format!("link /dev/{link}"))?;
    }
    // The tmpfs itself holds only links and mount points; the device
    // nodes are mounts of their own and keep their flags.
    mounts::restrict(&dev, Access::ReadOnly)
}

/// The plan's own paths, and the host's private ones, shallowest first,
/// so a path hidden inside an exposed one is hidden and a volume or a
/// working directory inside a hidden one is still shown.
fn plan_paths(sandbox: &Sandbox) -> Result<(), SandboxError> {
    let null = Path::new(OLD).join("dev/null");
    for file in HOST_SECRET_FILES {
        let target = new(Path::new(file));
        if fs::symlink_metadata(&target).is_ok_and(|m| m.is_file()) {
            mounts::bind(&null, &target, false)?;
            mounts::restrict(&target, Access::ReadOnly)?;
        }
    }
    let mut steps: Vec<(usize, Kind, &Path, Option<&Path>)> = Vec::new();
    for path in HOST_PRIVATE_DIRS
        .iter()
        .map(Path::new)
        .chain(sandbox.hide.iter().map(PathBuf::as_path))
    {
        steps.push((depth(path), Kind::Hide, path, None));
    }
    for path in &sandbox.expose {
        steps.push((depth(path), Kind::Expose, path, None));
    }
    for volume in &sandbox.volumes {
        steps.push((
            depth(&volume.target),
            Kind::Volume,
            &volume.target,
            Some(&volume.source),
        ));
    }
    steps.sort_by_key(|(depth, kind, _, _)| (*depth, *kind));
    // Hidden directories stay writable until every volume's mount point
    // inside them is made.
    let mut hidden = Vec::new();
    for (_, kind, path, source) in steps {
        check_plain(path)?;
        let target = new(path);
        match kind {
            Kind::Hide => {
                // Only where the view would otherwise show it.
                if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    mounts::tmpfs(
                        &target,
                        "mode=0755",
                        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    )?;
                    hidden.push(target);
                }
            }
            Kind::Expose => {
                let host = old(path);
                if already_shown(&host, &target) {
                    continue;
                }
                let meta = fs::metadata(&host).context(|| format!("find {}", path.display()))?;
                make_mount_point(&target, meta.is_dir())?;
                mounts::bind(&host, &target, false)?;
                mounts::restrict(&target, Access::ReadOnly)?;
            }
            Kind::Volume => {
                let source = old(source.unwrap_or(path));
                make_mount_point(&target, true)?;
                mounts::bind(&source, &target, true)?;
                mounts::restrict(&target, Access::Writable)?;
            }
        }
    }
    for target in hidden {
        mounts::restrict(&target, Access::ReadOnly)?;
    }
    Ok(())
}

/// The view's `/etc/passwd` and `/etc/group`: the host's, plus the
/// instance's user and group when the host has no entry for them, so that
/// programs that look their user up (`whoami`, PostgreSQL's `initdb`) find
/// it.
fn users(user: &User) -> Result<(), SandboxError> {
    let home = user.home();
    let passwd_line = format!(
        "{}:x:{}:{}:vdc instance:{}:/bin/sh\n",
        user.name,
        user.uid,
        user.gid,
        home.display()
    );
    let group_line = format!("{}:x:{}:\n", user.name, user.gid);
    for (file, id, line) in [
        ("passwd", user.uid, passwd_line),
        ("group", user.gid, group_line),
    ] {
        let host = Path::new(OLD).join("etc").join(file);
        let target = Path::new(NEW).join("etc").join(file);
        let Ok(text) = fs::read_to_string(&host) else {
            continue;
        };
        let known = text
            .lines()
            .any(|l| l.split(':').nth(2) == Some(id.to_string().as_str()));
        if known || !target.exists() {
            continue;
        }
        let staged = Path::new("/").join(file);
        let mut out = fs::File::create(&staged).context(|| format!("write /etc/{file}"))?;
        out.write_all(text.as_bytes())
            .and_then(|()| {
                if !text.is_empty() && !text.ends_with('\n') {
                    out.write_all(b"\n")?;
                }
                out.write_all(line.as_bytes())
            })
            .context(|| format!("write /etc/{file}"))?;
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o644))
            .context(|| format!("write /etc/{file}"))?;
        mounts::bind(&staged, &target, false)?;
        mounts::restrict(&target, Access::ReadOnly)?;
    }
    Ok(())
}

/// The PID namespace's `/proc`, with what tells about the host masked.
fn proc() -> Result<(), SandboxError> {
    let proc = Path::new(NEW).join("proc");
    mounts::special(
        "proc",
        &proc,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    let null = Path::new(OLD).join("dev/null");
    for name in PROC_MASKED_FILES {
        let path = proc.join(name);
        if path.exists() {
            mounts::bind(&null, &path, false)?;
            mounts::restrict(&path, Access::ReadOnly)?;
        }
    }
    for name in PROC_MASKED_DIRS {
        let path = proc.join(name);
        if path.is_dir() {
            mounts::tmpfs(
                &path,
                "mode=0555",
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            )?;
        }
    }
    for name in PROC_READ_ONLY {
        let path = proc.join(name);
        if path.exists() {
            mounts::bind(&path, &path, false)?;
            mounts::restrict(&path, Access::ReadOnly)?;
        }
    }
    Ok(())
}

/// `/sys` read-only (the network namespace's devices), with the firmware
/// tables masked, and the instance's cgroup read-only under it.
fn sys(cgroup: &CgroupView) -> Result<(), SandboxError> {
    // Filesystems that may share their superblock with the host's mount
    // (cgroups) are mounted as they are and then made read-only per mount:
    // asking a shared superblock for read-only could change or refuse it.
    let sys = Path::new(NEW).join("sys");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mounts::special("sysfs", &sys, flags, None)?;
    mounts::restrict(&sys, Access::ReadOnly)?;
    let firmware = sys.join("firmware");
    if firmware.is_dir() {
        mounts::tmpfs(&firmware, "mode=0555", flags | MsFlags::MS_RDONLY)?;
    }
    let root = sys.join("fs/cgroup");
    if !root.is_dir() {
        return Ok(());
    }
    match cgroup {
        CgroupView::None => {}
        CgroupView::V2 => {
            mounts::special("cgroup2", &root, flags, None)?;
            mounts::restrict(&root, Access::ReadOnly)?;
        }
        CgroupView::V1 { hierarchies } => {
            mounts::tmpfs(&root, "mode=0755", MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
            for hierarchy in hierarchies {
                let Some(name) = hierarchy.file_name() else {
                    continue;
                };
                // The controllers the hierarchy was mounted with, read from
                // the host's table (the staging root's mounts are the
                // host's, under /oldroot).
                let Some(options) = mounts::super_options(&old(hierarchy), Path::new(MOUNTINFO))
                else {
                    continue;
                };
                let controllers: Vec<&str> = options
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro"))
                    .collect();
                let target = root.join(name);
                make_dir(&target, 0o555)?;
                mounts::special("cgroup", &target, flags, Some(&controllers.join(",")))?;
                mounts::restrict(&target, Access::ReadOnly)?;
            }
            mounts::restrict(&root, Access::ReadOnly)?;
        }
    }
    Ok(())
}

// === helpers ===

fn depth(path: &Path) -> usize {
    path.components().count()
}

/// A plan's path must be absolute and plain: no `..`, which could lead a
/// mount outside the directory it names.
fn check_plain(path: &Path) -> Result<(), SandboxError> {
    let plain = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if plain {
        Ok(())
    } else {
        Err(SandboxError::new(
            format!("use {}", path.display()),
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "expected an absolute path without `.` or `..`",
            ),
        ))
    }
}

/// Whether the view already shows the host's `host` at `target` (the same
/// file, through a tree bound whole).
fn already_shown(host: &Path, target: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(host), fs::metadata(target)) {
        (Ok(h), Ok(t)) => h.dev() == t.dev() && h.ino() == t.ino(),
        _ => false,
    }
}

/// Creates `path` (a directory, or an empty file to bind a file on) and
/// its missing parents in the view. Parents inside a host tree cannot be
/// made (it is read-only): the node must create such a mount point first.
fn make_mount_point(path: &Path, dir: bool) -> Result<(), SandboxError> {
    if fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .context(|| format!("create the mount point {}", shown(path)))?;
    }
    if dir {
        make_dir(path, 0o755)
    } else {
        fs::File::create(path)
            .map(drop)
            .context(|| format!("create the mount point {}", shown(path)))
    }
}

fn make_dir(path: &Path, mode: u32) -> Result<(), SandboxError> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(SandboxError::new(format!("create {}", shown(path)), e)),
    }
    // The umask must not take the sticky or write bits away.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .context(|| format!("create {}", shown(path)))
}

/// A staging path as the instance will see it.
fn shown(path: &Path) -> String {
    match path.strip_prefix(NEW) {
        Ok(rest) => format!("/{}", rest.display()),
        Err(_) => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_paths_must_be_plain() {
        assert!(check_plain(Path::new("/srv/app")).is_ok());
        for bad in ["srv/app", "/srv/../etc", "/.."] {
            assert!(check_plain(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_software_trees_are_shown_unasked() {
        assert!(shows(Path::new("/usr/bin/python3")));
        assert!(shows(Path::new("/opt/app/bin/server")));
        for hidden in [
            "/root/.pyenv/shims/python3",
            "/home/a/x",
            "/srv/app",
            "usr/bin/x",
            "/",
        ] {
            assert!(!shows(Path::new(hidden)), "{hidden}");
        }
    }

    #[test]
    fn staging_paths_are_named_as_the_instance_sees_them() {
        assert_eq!(shown(&new(Path::new("/srv/app"))), "/srv/app");
        assert_eq!(old(Path::new("/var/lib")), Path::new("/oldroot/var/lib"));
    }
}
