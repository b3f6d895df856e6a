//! Who a confined instance runs as: a uid of its own from the range the
//! node gives out, or a user its spec names; and its volumes made its own.
//!
//! A uid of its own per instance is what keeps instances apart where the
//! kernel counts per user (signals, `ptrace`, inotify and pipe-buffer
//! limits, System V objects' permissions, files in a shared directory).
//! The node hands out one per running instance, never two at once, and
//! prefers the same one across the instance's restarts: first the uid that
//! already owns the instance's volumes, then one derived from the
//! instance's name, then the next free one.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use vdc_model::InstanceId;

/// The uids the node gives instances: `count` of them from `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UidRange {
    pub first: u32,
    pub count: u32,
}

/// The name an instance's own user has in its view.
pub const INSTANCE_USER: &str = "instance";

/// The user an instance runs as, resolved on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
}

/// The uids handed out now, each with its instance.
#[derive(Debug)]
pub(crate) struct Uids {
    range: UidRange,
    /// Mixed into the preferred uid, so that two nodes sharing a machine
    /// (tests, several data directories) rarely prefer the same one.
    salt: u64,
    used: Mutex<BTreeMap<u32, InstanceId>>,
}

// === impl UidRange ===

impl UidRange {
    /// 65,536 uids from 1,879,048,192 (`0x70000000`): above the ranges
    /// Linux distributions give to users, system services, `/etc/subuid`
    /// and systemd's containers, and below 2^31, which some tools
    /// mishandle.
    pub const DEFAULT: UidRange = UidRange {
        first: 0x7000_0000,
        count: 65_536,
    };

    fn contains(&self, uid: u32) -> bool {
        uid >= self.first && uid - self.first < self.count
    }
}

impl Default for UidRange {
    fn default() -> Self {
        UidRange::DEFAULT
    }
}

impl fmt::Display for UidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.first, self.count)
    }
}

impl FromStr for UidRange {
    type Err = String;

    /// `FIRST:COUNT`, as `/etc/subuid` writes ranges.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("`{s}` is not a uid range: expected FIRST:COUNT, like 1879048192:65536");
        let (first, count) = s.split_once(':').ok_or_else(bad)?;
        let first: u32 = first.trim().parse().map_err(|_| bad())?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if first == 0 || count == 0 || first.checked_add(count - 1).is_none() {
            return Err(format!(
                "`{s}` is not a usable uid range: it must start above 0, hold at least one uid and end below 2^32"
            ));
        }
        Ok(UidRange { first, count })
    }
}

// === impl Uids ===

impl Uids {
    pub(crate) fn new(range: UidRange, salt: &str) -> Uids {
        Uids {
            range,
            salt: fnv1a(salt.as_bytes(), FNV_OFFSET),
            used: Mutex::new(BTreeMap::new()),
        }
    }

    /// A uid of the range for `id`, not held by any other instance:
    /// `owner` (the uid owning its volumes) when that is one of the range's
    /// and free, else the one its name leads to, else the next free one.
    pub(crate) fn allocate(&self, id: &InstanceId, owner: Option<u32>) -> Result<u32, String> {
        let mut used = crate::lock(&self.used);
        if let Some((uid, _)) = used.iter().find(|(_, holder)| *holder == id) {
            return Ok(*uid);
        }
        let count = u64::from(self.range.count);
        let start = match owner.filter(|&uid| self.range.contains(uid) && !used.contains_key(&uid))
        {
            Some(uid) => u64::from(uid - self.range.first),
            None => fnv1a(id.to_string().as_bytes(), self.salt) % count,
        };
        for step in 0..count {
            let offset = u32::try_from((start + step) % count).unwrap_or(0);
            let uid = self.range.first + offset;
            if let std::collections::btree_map::Entry::Vacant(free) = used.entry(uid) {
                free.insert(id.clone());
                return Ok(uid);
            }
        }
        Err(format!(
            "every uid of the node's range {} is in use: the node runs as many instances as it has uids",
            self.range
        ))
    }

    /// Gives `uid` back once its instance is gone.
    pub(crate) fn release(&self, uid: u32) {
        crate::lock(&self.used).remove(&uid);
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a: a stable hash (the standard library's may change between
/// releases, and preferred uids should not).
fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

// === users a spec names ===

/// The user a spec's `user` names on this node: `root`, a name from the
/// node's `/etc/passwd` (with its primary group), or `UID` / `UID:GID`.
pub(crate) fn resolve(user: &str) -> Result<RunAs, String> {
    let named = |uid: u32, gid: u32, name: String| RunAs { uid, gid, name };
    if let Some((uid, gid)) = numeric(user) {
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| format!("user{uid}"), |u| u.name);
        return Ok(named(uid, gid, name));
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(found)) => Ok(named(found.uid.as_raw(), found.gid.as_raw(), found.name)),
        Ok(None) => Err(format!(
            "the user `{user}` does not exist on this node: add it there, or run the component as its own user"
        )),
        Err(e) => Err(format!("cannot look up the user `{user}`: {e}")),
    }
}

/// `UID` or `UID:GID` (the group defaults to the uid).
fn numeric(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = match user.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (user, None),
    };
    let uid: u32 = uid.parse().ok()?;
    let gid: u32 = match gid {
        Some(gid) => gid.parse().ok()?,
        None => uid,
    };
    Some((uid, gid))
}

// === volumes ===

/// The uid owning `dir`, if it exists.
pub(crate) fn owner(dir: &Path) -> Option<u32> {
    std::fs::metadata(dir).ok().map(|m| m.uid())
}

/// Makes the volume `dir` its instance's user's when it is another
/// user's: the first start as a new user, a restore or a move that brought
/// another node's uid, a snapshot taken before owners were kept (all
/// root's). Whatever belonged to the volume's previous owner (user, and
/// group separately) passes to the new one; files of other users (a
/// database's files owned by a user it switches to) keep theirs. Walks the
/// tree only when `dir` itself changes hands. Blocking.
pub(crate) fn take_ownership(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    let (old_uid, old_gid) = (meta.uid(), meta.gid());
    if old_uid == uid && old_gid == gid {
        return Ok(());
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let new_uid = (meta.uid() == old_uid).then_some(uid);
        let new_gid = (meta.gid() == old_gid).then_some(gid);
        if new_uid.is_some() || new_gid.is_some() {
            // Not following symbolic links: a link inside a volume must not
            // hand a file elsewhere on the node to the instance.
            nix::unistd::fchownat(
                None,
                &path,
                new_uid.map(nix::unistd::Uid::from_raw),
                new_gid.map(nix::unistd::Gid::from_raw),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| {
                io::Error::new(
                    io::Error::from(e).kind(),
                    format!("{}: {e}", path.display()),
                )
            })?;
            // A change of owner clears set-id bits: give them back.
            let mode = meta.mode() & 0o7777;
            if !meta.file_type().is_symlink() && mode & 0o6000 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            }
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// Whether `user` can enter and read `dir`: its owner, root, or anyone
/// when the directory is open to others.
pub(crate) fn can_read_dir(dir: &Path, user: &RunAs) -> bool {
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    let mode = meta.mode();
    user.uid == 0
        || (meta.uid() == user.uid && mode & 0o500 == 0o500)
        || (meta.gid() == user.gid && mode & 0o050 == 0o050)
        || mode & 0o005 == 0o005
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_changes_hands_without_what_others_own() {
        if !nix::unistd::geteuid().is_root() {
            // Only root gives files away; CI runs as root.
            assert!(std::env::var_os("CI").is_none(), "needs root in CI");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("data");
        std::fs::create_dir_all(vol.join("sub")).unwrap();
        std::fs::write(vol.join("sub/mine"), "x").unwrap();
        std::fs::write(vol.join("theirs"), "y").unwrap();
        let chown = |p: &Path, u: u32, g: u32| {
            nix::unistd::chown(
                p,
                Some(nix::unistd::Uid::from_raw(u)),
                Some(nix::unistd::Gid::from_raw(g)),
            )
            .unwrap()
        };
        for p in [&vol, &vol.join("sub"), &vol.join("sub/mine")] {
            chown(p, 5000, 5000);
        }
        chown(&vol.join("theirs"), 7000, 5000);
        std::fs::set_permissions(
            vol.join("sub/mine"),
            std::fs::Permissions::from_mode(0o4750),
        )
        .unwrap();
        take_ownership(&vol, 6000, 6001).unwrap();
        let owner = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            (m.uid(), m.gid(), m.mode() & 0o7777)
        };
        assert_eq!(owner(&vol).0, 6000);
        assert_eq!(owner(&vol.join("sub/mine")), (6000, 6001, 0o4750));
        assert_eq!(owner(&vol.join("theirs")), (7000, 6001, 0o644));
        // Already its user's: nothing to do, nothing walked.
        take_ownership(&vol, 6000, 6001).unwrap();
    }

    fn id(s: &str) -> InstanceId {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_as_subuid_writes_them() {
        assert_eq!(
            "100000:65536".parse::<UidRange>(),
            Ok(UidRange {
                first: 100_000,
                count: 65_536
            })
        );
        for bad in ["", "1", "a:b", "0:10", "10:0", "4294967295:2", "1-10"] {
            assert!(bad.parse::<UidRange>().is_err(), "{bad}");
        }
        assert_eq!(UidRange::DEFAULT.to_string(), "1879048192:65536");
    }

    #[test]
    fn every_running_instance_has_a_uid_of_its_own() {
        let uids = Uids::new(
            UidRange {
                first: 5000,
                count: 3,
            },
            "node",
        );
        let a = uids.allocate(&id("shop/web/0"), None).unwrap();
        let b = uids.allocate(&id("shop/web/1"), None).unwrap();
        let c = uids.allocate(&id("shop/db/0"), None).unwrap();
        let mut all = vec![a, b, c];
        all.sort_unstable();
        assert_eq!(all, [5000, 5001, 5002]);
        // Asking again for a running instance gives its uid again.
        assert_eq!(uids.allocate(&id("shop/web/1"), None), Ok(b));
        assert!(uids
            .allocate(&id("shop/web/3"), None)
            .unwrap_err()
            .contains("every uid"));
        uids.release(b);
        assert_eq!(uids.allocate(&id("shop/web/3"), None), Ok(b));
    }

    #[test]
    fn an_instance_gets_its_volumes_owner_back_when_free() {
        let uids = Uids::new(
            UidRange {
                first: 5000,
                count: 100,
            },
            "node",
        );
        assert_eq!(uids.allocate(&id("shop/db/0"), Some(5042)), Ok(5042));
        // Taken, or outside the range: another one.
        let other = uids.allocate(&id("shop/db/1"), Some(5042)).unwrap();
        assert_ne!(other, 5042);
        let outside = uids.allocate(&id("shop/db/2"), Some(0)).unwrap();
        assert!((5000..5100).contains(&outside));
    }

    #[test]
    fn the_same_name_leads_to_the_same_uid() {
        let first = Uids::new(UidRange::DEFAULT, "node");
        let again = Uids::new(UidRange::DEFAULT, "node");
        let name = id("shop/web/0");
        assert_eq!(first.allocate(&name, None), again.allocate(&name, None));
    }

    #[test]
    fn named_users_resolve_by_name_or_number() {
        let root = resolve("root").unwrap();
        assert_eq!((root.uid, root.gid, root.name.as_str()), (0, 0, "root"));
        let numeric = resolve("1234:99").unwrap();
        assert_eq!((numeric.uid, numeric.gid), (1234, 99));
        assert_eq!(resolve("4321").unwrap().gid, 4321);
        assert!(resolve("no-such-user-here")
            .unwrap_err()
            .contains("does not exist"));
    }
}
