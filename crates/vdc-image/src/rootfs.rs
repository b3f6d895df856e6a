//! Reading a container's root filesystem before it is mounted: a path of
//! the container looked up in its image's unpacked layers as overlayfs
//! would see it, without ever leaving them.
//!
//! The layers are an image author's files on the node: a symbolic link in
//! them (`/etc -> /`, `/etc/passwd -> /dev/zero`) must not lead the node,
//! which reads as root, to its own files or devices. So links are followed
//! here, inside the image (an absolute target from the image's root), never
//! by the kernel on a node path; and a file is read only when it is a
//! regular file, up to a limit.

use std::collections::VecDeque;
use std::fs::{self, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Links followed in one lookup before giving up, as the kernel's ELOOP.
const MAX_LINKS: usize = 40;

/// Where `path` of the container's root is on the node: the entry of the
/// topmost layer that has it, after every symbolic link on the way was
/// followed inside the image. `None` when the image has no such entry (a
/// whiteout deleted it, a component is not a directory, or links loop).
/// `lowers` are the layer directories, topmost first.
pub fn resolve(lowers: &[PathBuf], path: &str) -> Option<PathBuf> {
    let mut pending: VecDeque<String> = components(Path::new(path)).collect();
    // The directories resolved so far: names with no link among them.
    let mut dir: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            dir.pop();
            continue;
        }
        let (node, meta) = entry(lowers, &dir, &name)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return None;
            }
            let target = fs::read_link(&node).ok()?;
            if target.is_absolute() {
                dir.clear();
            }
            for part in components(&target).collect::<Vec<_>>().into_iter().rev() {
                pending.push_front(part);
            }
            continue;
        }
        if pending.is_empty() {
            return Some(node);
        }
        if !meta.is_dir() {
            return None;
        }
        dir.push(name);
    }
    None
}

/// The text of the container's file `path`, when it is a regular file of
/// at most `limit` bytes (longer ones are cut there).
pub fn read_to_string(lowers: &[PathBuf], path: &str, limit: u64) -> Option<String> {
    let node = resolve(lowers, path)?;
    // No following a link the node's path might still hold, and no
    // waiting on a FIFO: what is opened must be the regular file found.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&node)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(limit).read_to_string(&mut text).ok()?;
    Some(text)
}

/// The entry `name` of the directory `dir` (link-free names from the root)
/// in the topmost layer that has one, as overlayfs merges them: a layer
/// holds it only where each of `dir`'s components is a real directory; a
/// non-directory there (a whiteout, a file, a link) hides everything below,
/// and so does an opaque directory for the layers under it.
fn entry(lowers: &[PathBuf], dir: &[String], name: &str) -> Option<(PathBuf, Metadata)> {
    for lower in lowers {
        let mut at = lower.clone();
        let mut opaque = false;
        let mut missing = false;
        for part in dir {
            at.push(part);
            match fs::symlink_metadata(&at) {
                Ok(meta) if meta.is_dir() => opaque |= is_opaque(&at),
                Ok(_) => return None,
                Err(_) => {
                    missing = true;
                    break;
                }
            }
        }
        if !missing {
            let node = at.join(name);
            if let Ok(meta) = fs::symlink_metadata(&node) {
                let whiteout = meta.file_type().is_char_device() && meta.rdev() == 0;
                return (!whiteout).then_some((node, meta));
            }
        }
        if opaque {
            return None;
        }
    }
    None
}

fn is_opaque(dir: &Path) -> bool {
    xattr::get(dir, "trusted.overlay.opaque").is_ok_and(|v| v.as_deref() == Some(b"y".as_ref()))
}

/// The names of `path`, `.` and the root left out (`..` kept).
fn components(path: &Path) -> impl Iterator<Item = String> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
        Component::ParentDir => Some("..".to_owned()),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn layers(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let tmp = tempfile::tempdir().unwrap();
        let lowers: Vec<PathBuf> = (0..n).map(|i| tmp.path().join(format!("l{i}"))).collect();
        for l in &lowers {
            fs::create_dir_all(l).unwrap();
        }
        (tmp, lowers)
    }

    #[test]
    fn links_are_followed_inside_the_image_and_across_layers() {
        // Merged /usr in the base layer, the program in the layer above.
        let (_tmp, lowers) = layers(2);
        let (top, base) = (&lowers[0], &lowers[1]);
        fs::create_dir_all(base.join("usr/bin")).unwrap();
        symlink("usr/bin", base.join("bin")).unwrap();
        fs::create_dir_all(top.join("usr/bin")).unwrap();
        fs::write(top.join("usr/bin/app"), "x").unwrap();
        assert_eq!(resolve(&lowers, "/bin/app"), Some(top.join("usr/bin/app")));
        // An absolute link starts at the image's root, not the node's.
        symlink("/usr/bin/app", top.join("usr/bin/alias")).unwrap();
        assert_eq!(
            resolve(&lowers, "/usr/bin/alias"),
            Some(top.join("usr/bin/app"))
        );
        // `..` after a link is taken from where the link led (/usr/bin).
        assert_eq!(
            resolve(&lowers, "/bin/../bin/app"),
            Some(top.join("usr/bin/app"))
        );
        assert_eq!(resolve(&lowers, "/bin/../usr/bin/app"), None);
        assert_eq!(resolve(&lowers, "/bin/missing"), None);
    }

    #[test]
    fn nothing_of_the_node_is_reached_through_a_link() {
        let (_tmp, lowers) = layers(1);
        let root = &lowers[0];
        // /etc -> / : /etc/passwd is the image's /passwd, which it lacks.
        symlink("/", root.join("etc")).unwrap();
        assert_eq!(resolve(&lowers, "/etc/passwd"), None);
        assert_eq!(read_to_string(&lowers, "/etc/passwd", 1 << 20), None);
        // Enough `..` to leave any directory stay at the image's root.
        fs::create_dir_all(root.join("srv")).unwrap();
        symlink("../../../../../../dev/zero", root.join("srv/zero")).unwrap();
        assert_eq!(resolve(&lowers, "/srv/zero"), None);
        // A device of the image's own is not read either.
        fs::create_dir_all(root.join("dev")).unwrap();
        nix::sys::stat::mknod(
            &root.join("dev/zero"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 5),
        )
        .unwrap();
        assert!(resolve(&lowers, "/dev/zero").is_some());
        assert_eq!(read_to_string(&lowers, "/dev/zero", 1 << 20), None);
        // Links that loop end.
        symlink("b", root.join("a")).unwrap();
        symlink("a", root.join("b")).unwrap();
        assert_eq!(resolve(&lowers, "/a"), None);
    }

    #[test]
    fn whiteouts_delete_and_regular_files_are_read_up_to_the_limit() {
        let (_tmp, lowers) = layers(2);
        let (top, base) = (&lowers[0], &lowers[1]);
        fs::create_dir_all(base.join("etc")).unwrap();
        fs::write(base.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::write(base.join("etc/group"), "root:x:0:\n").unwrap();
        assert_eq!(
            read_to_string(&lowers, "/etc/passwd", 4).as_deref(),
            Some("root")
        );
        fs::create_dir_all(top.join("etc")).unwrap();
        nix::sys::stat::mknod(
            &top.join("etc/group"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        assert_eq!(resolve(&lowers, "/etc/group"), None, "whited out");
        assert!(resolve(&lowers, "/etc/passwd").is_some());
        // An opaque /etc above hides the base's.
        xattr::set(top.join("etc"), "trusted.overlay.opaque", b"y").unwrap();
        assert_eq!(resolve(&lowers, "/etc/passwd"), None, "opaque");
        // A file where the base has a directory hides its contents.
        fs::create_dir_all(base.join("srv/www")).unwrap();
        fs::write(base.join("srv/www/index.html"), "x").unwrap();
        fs::write(top.join("srv"), "a file").unwrap();
        assert_eq!(resolve(&lowers, "/srv/www/index.html"), None);
    }
}
