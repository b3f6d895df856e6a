//! One network namespace: made with nothing but a loopback interface, pinned
//! by a bind mount so that it outlives the agent, and the sockets the data
//! plane makes inside it.
//!
//! A socket belongs to the network namespace of the thread that created it,
//! for its whole life, whichever thread uses it later. So only creating a
//! socket needs to happen "inside": [`Netns::bind_tcp`] and
//! [`Netns::connect_tcp`] move the calling thread into the namespace for the
//! one `socket(2)`/`bind(2)` call and straight back, and the connect itself
//! completes on tokio like any other.

use std::cell::OnceCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{fstatfs, NSFS_MAGIC};
use tokio::net::{TcpSocket, TcpStream};

use crate::{loopback, NetnsError};

/// The calling thread's own network namespace, as procfs shows it.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// How many mounts [`unpin`] takes off one file at most: more than one only
/// if something pinned twice, and a bound keeps a bug from looping forever.
const MAX_STACKED_PINS: usize = 16;

thread_local! {
    /// The network namespace a thread was in the first time it entered
    /// another one, so that it can always be moved back.
    static HOME: OnceCell<File> = const { OnceCell::new() };
}

// === types ===

/// A network namespace made for one instance.
///
/// It holds only `lo`, which is up, so 127.0.0.1 and ::1 work inside and
/// nothing else does: no other interface, no route, no way to the host, to
/// other instances or to the internet. The only traffic in or out is what
/// the data plane carries: it listens inside for the instance's links
/// ([`bind_tcp`](Self::bind_tcp)) and connects inside to the instance's
/// inputs ([`connect_tcp`](Self::connect_tcp)).
///
/// The namespace is pinned by a bind mount of its nsfs file at
/// [`path`](Self::path), as `ip netns add` does, so it survives this value
/// and the agent: dropping a `Netns` closes a descriptor and nothing more.
/// [`remove`](Self::remove) unpins it; the kernel then frees it once the
/// last process, socket and descriptor in or on it are gone.
#[derive(Debug)]
pub struct Netns {
    path: PathBuf,
    file: File,
}

/// Moves the thread back to its home namespace when dropped, also when the
/// work done inside panics.
struct GoHome<'a>(BorrowedFd<'a>);

// === impl Netns ===

impl Netns {
    /// Opens a namespace pinned at `path` (by [`NetnsDir::create`] or by
    /// `ip netns add`), for example to re-attach to it after an agent restart.
    ///
    /// [`NetnsDir::create`]: crate::NetnsDir::create
    pub fn open(path: &Path) -> Result<Netns, NetnsError> {
        let file =
            File::open(path).map_err(|e| NetnsError::io("open the network namespace", path, e))?;
        check_kind(&file, path)?;
        Ok(Netns {
            path: path.to_owned(),
            file,
        })
    }

    /// Makes a new namespace with `lo` up and pins it at `path`, which must
    /// not exist. On failure nothing is left behind.
    pub(crate) fn create_at(path: &Path) -> Result<Netns, NetnsError> {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(NetnsError::Exists {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(NetnsError::io("create the mount point", path, e)),
        }
        // `unshare` moves the calling thread into the new namespace for
        // good, so it runs on a thread of its own that ends right after.
        let made = std::thread::scope(|scope| {
            scope
                .spawn(|| make_pinned(path))
                .join()
                .unwrap_or_else(|_| {
                    Err(NetnsError::io(
                        "create the network namespace",
                        path,
                        io::Error::other("the thread creating it panicked"),
                    ))
                })
        });
        match made {
            Ok(file) => Ok(Netns {
                path: path.to_owned(),
                file,
            }),
            Err(e) => {
                let _ = unpin(path);
                Err(e)
            }
        }
    }

    /// Where the namespace is pinned: give it to `nsenter --net=PATH` or
    /// `ip netns exec` (when it is under /run/netns) to look inside.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace's inode number, the one `/proc/PID/ns/net` links show
    /// as `net:[INODE]`: tells whether a process lives in this namespace.
    pub fn inode(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.ino())
    }

    /// Unpins the namespace: unmounts it from [`path`](Self::path) and
    /// deletes the file. The namespace itself lives on while any process,
    /// socket or descriptor (this value included) still refers to it, so
    /// close the data plane's listeners inside it too. Removing twice, or a
    /// namespace someone else unpinned, is not an error.
    pub fn remove(&self) -> Result<(), NetnsError> {
        unpin(&self.path)
    }

    /// Listens on `addr` inside the namespace (port 0 picks a free one).
    /// The listener is blocking, like any from `std`; it can be used from
    /// any thread, or handed to tokio after `set_nonblocking(true)`.
    pub fn bind_tcp(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        // std sets SO_REUSEADDR, so a restarted agent can bind the same
        // address again while old connections sit in TIME_WAIT.
        self.enter(|| TcpListener::bind(addr))?
    }

    /// Connects to `addr` from inside the namespace (so 127.0.0.1 is the
    /// namespace's loopback), giving up after `timeout`. Only the socket is
    /// made inside; the connect runs on tokio without blocking a thread.
    pub async fn connect_tcp(&self, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let socket = self.enter(|| match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        })??;
        match tokio::time::timeout(timeout, socket.connect(addr)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout:?}"),
            )),
        }
    }

    /// Runs `f` on a new thread that lives in the namespace, and returns its
    /// result. For blocking work that must see the namespace as a whole,
    /// such as a probe or a test client; everything `f` creates there
    /// (sockets, threads, child processes) belongs to the namespace.
    pub fn run<F, R>(&self, f: F) -> io::Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| -> io::Result<R> {
                setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)?;
                Ok(f())
            });
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Runs `f` on the calling thread moved into the namespace, then moves
    /// the thread back to where it was on its first visit. Two `setns(2)`
    /// calls, a few microseconds: cheap enough for every upstream connect.
    ///
    /// `f` must not block or yield: the thread (a tokio worker, typically)
    /// runs nothing else while it is inside.
    fn enter<R>(&self, f: impl FnOnce() -> R) -> io::Result<R> {
        HOME.with(|home| {
            let home = match home.get() {
                Some(home) => home,
                None => {
                    let file = File::open(THREAD_NETNS)?;
                    home.get_or_init(|| file)
                }
            };
            setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)?;
            let _back = GoHome(home.as_fd());
            Ok(f())
        })
    }
}

impl AsFd for Netns {
    /// The nsfs descriptor, for `setns(fd, CLONE_NEWNET)`.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

// === impl GoHome ===

impl Drop for GoHome<'_> {
    fn drop(&mut self) {
        if let Err(e) = setns(self.0, CloneFlags::CLONE_NEWNET) {
            // A thread left inside an instance's namespace would create the
            // next listener or connection of whatever runs on it there: a
            // silent breach of isolation that nothing can detect later.
            // Going back to a namespace we hold open only fails when the
            // kernel is out of memory; stopping is the only safe answer.
            tracing::error!(error = %e, "cannot leave an instance's network namespace; aborting");
            eprintln!("vdc: cannot leave an instance's network namespace ({e}); aborting");
            std::process::abort();
        }
    }
}

// === helpers ===

/// Runs on a thread of its own: makes the namespace, brings `lo` up and pins
/// the namespace at `path`, then returns a descriptor of it.
fn make_pinned(path: &Path) -> Result<File, NetnsError> {
    unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| NetnsError::io("create the network namespace", path, e))?;
    loopback::up().map_err(|e| NetnsError::io("bring up the loopback interface of", path, e))?;
    mount(
        Some(THREAD_NETNS),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| NetnsError::io("pin the network namespace on", path, e))?;
    File::open(path).map_err(|e| NetnsError::io("open the network namespace", path, e))
}

/// Unmounts every namespace pinned at `path` and deletes the file. Missing
/// mounts and a missing file are fine: the goal is that nothing is there.
pub(crate) fn unpin(path: &Path) -> Result<(), NetnsError> {
    for _ in 0..MAX_STACKED_PINS {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            // Not (or no longer) a mount point, or no file at all.
            Err(Errno::EINVAL | Errno::ENOENT) => break,
            Err(e) => return Err(NetnsError::io("unmount the network namespace", path, e)),
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetnsError::io("remove", path, e)),
    }
}

/// Checks that `file` is a network namespace: a file of nsfs (what a pin
/// shows), which `setns` accepts as a network namespace.
fn check_kind(file: &File, path: &Path) -> Result<(), NetnsError> {
    let fs = fstatfs(file.as_fd()).map_err(|e| NetnsError::io("inspect", path, e))?;
    if fs.filesystem_type() != NSFS_MAGIC {
        return Err(NetnsError::NotNetns {
            path: path.to_owned(),
            found: "nothing is mounted on it".to_owned(),
        });
    }
    // Entering and leaving at once is the one check of the namespace type
    // that needs no ioctl: setns refuses another type with EINVAL.
    let probe = Netns {
        path: path.to_owned(),
        file: file
            .try_clone()
            .map_err(|e| NetnsError::io("inspect", path, e))?,
    };
    match probe.enter(|| ()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(NetnsError::NotNetns {
            path: path.to_owned(),
            found: "it is a namespace of another kind".to_owned(),
        }),
        Err(e) => Err(NetnsError::io("enter the network namespace", path, e)),
    }
}
