//! Who the program runs as: its user and group, no supplementary groups,
//! and no capability it could use against the node or another instance.

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use crate::error::{Context, SandboxError};
use crate::User;

/// What a root the admin allowed keeps: the set container runtimes give
/// root by default (Docker's and containerd's), without `CAP_NET_RAW`
/// (raw sockets would let it forge traffic on the links it can reach).
/// Enough to own files, change users and bind low ports; nothing that
/// reaches past the instance's namespaces (no `CAP_SYS_ADMIN`,
/// `CAP_SYS_PTRACE`, `CAP_SYS_MODULE`, `CAP_NET_ADMIN`, ...).
pub const ROOT_CAPABILITIES: [Capability; 13] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_MKNOD,
    Capability::CAP_AUDIT_WRITE,
    Capability::CAP_SETFCAP,
];

/// Becomes `user` for good: groups, then the capability bounding set
/// (which needs `CAP_SETPCAP`, so while still root), then the uid, then
/// the remaining capability sets; and sets `no_new_privs`, so that no
/// setuid or file-capability program can bring anything back. Meant for
/// the program's process between `fork` and `exec`, in a process that has
/// a single thread.
pub fn become_user(user: &User) -> Result<(), SandboxError> {
    let (uid, gid) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
    setgroups(&[]).context(|| "drop the supplementary groups".to_owned())?;
    setresgid(gid, gid, gid).context(|| format!("become group {}", user.gid))?;
    let keep: CapsHashSet = if user.is_root() {
        ROOT_CAPABILITIES.into_iter().collect()
    } else {
        CapsHashSet::new()
    };
    for cap in caps::all() {
        if !keep.contains(&cap) {
            match caps::drop(None, CapSet::Bounding, cap) {
                Ok(()) => {}
                // A capability this kernel does not know.
                Err(_) if !caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) => {}
                Err(e) => {
                    return Err(SandboxError::new(
                        format!("drop {cap} from the bounding set"),
                        std::io::Error::other(e.to_string()),
                    ))
                }
            }
        }
    }
    setresuid(uid, uid, uid).context(|| format!("become user {}", user.uid))?;
    // Leaving root cleared the permitted and effective sets; a root keeps
    // its own. Inheritable and ambient sets go either way.
    for (set, value) in [
        (CapSet::Effective, &keep),
        (CapSet::Permitted, &keep),
        (CapSet::Inheritable, &CapsHashSet::new()),
    ] {
        caps::set(None, set, value).map_err(|e| {
            SandboxError::new(
                format!("set the {set:?} capabilities"),
                std::io::Error::other(e.to_string()),
            )
        })?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| {
        SandboxError::new(
            "clear the ambient capabilities",
            std::io::Error::other(e.to_string()),
        )
    })?;
    nix::sys::prctl::set_no_new_privs().context(|| "set no_new_privs".to_owned())
}
