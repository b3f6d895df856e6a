//! Virtual wires: each instance in a network namespace of its own, and the
//! data plane's sockets placed inside it.
//!
//! When the node runs as root, every instance gets a network namespace
//! holding only a loopback interface. The data plane puts each of the
//! instance's link addresses *inside* it (a listener made in the namespace,
//! served by the data plane) and reaches the instance's inputs by
//! connecting *into* it. An instance can therefore reach exactly the links
//! its spec declares and nothing else: not other apps, not the host's
//! services, not the internet. (What else confines an instance, from its
//! PID namespace to its view of the filesystem, is `vdc-sandbox`'s.)
//!
//! Code map:
//! - `dir`: [`NetnsDir`], the directory of pinned namespaces (like
//!   `/run/netns`): create, re-open after a restart, list, remove;
//! - `netns`: [`Netns`], one namespace, and the sockets made inside it
//!   ([`Netns::bind_tcp`], [`Netns::connect_tcp`]);
//! - `loopback`: `lo` brought up with one rtnetlink request;
//! - `dataplane`: [`NetnsBinder`] and [`NetnsConnector`], the data plane's
//!   `Binder` and `Connector` for namespaced instances;
//! - `child`: [`IsolationPlan`], what a spawned process does between `fork`
//!   and `exec` to join the network namespace.
//!
//! **Architecture invariant:** a thread that enters an instance's namespace
//! to make a socket is back in its own before the call returns, or the
//! process aborts; nothing else ever moves a long-lived thread. What must
//! run between `fork` and `exec` in the driver's child is plain system calls
//! ([`IsolationPlan::apply_in_child`]) that the driver calls from its own
//! `pre_exec` block; this crate has no `unsafe` code.
//!
//! # Wiring it into the node
//!
//! At agent start:
//! 1. [`supported`] says whether namespaces can be used; if not, log its
//!    one line and run as before (shared loopback, host `/tmp`).
//! 2. [`NetnsDir::open`]`("/run/vdc/netns")` (a directory of the agent's
//!    own). For each of [`NetnsDir::names`]: re-open the namespaces of
//!    instances still running ([`NetnsDir::open_ns`]) and remove the others
//!    ([`NetnsDir::remove`]).
//! 3. Give the data plane one shared [`NetnsConnector`] as
//!    `DataPlaneConfig::connector`.
//!
//! For each instance (`shop/web/0`), when it is first started:
//! 1. `dir.create("shop.web.0")` (its cgroup leaf name) into an `Arc`. Keep
//!    it across restarts of the instance, so its listeners stay put.
//! 2. `connector.insert("shop/web/0", ns.clone())`: from now on the data
//!    plane connects to its input endpoints inside the namespace. The
//!    endpoint address is where the instance listens in there
//!    (`127.0.0.1:PORT`); ports no longer collide between instances, so
//!    every instance may use the same one.
//! 3. For each link of the instance: `data_plane.bind_with(&NetnsBinder(ns),
//!    "shop/web/0 → db", link_address, spec)`, keyed per instance. The link
//!    keeps its stable address, now inside each caller's namespace.
//! 4. Health probes of its inputs connect with [`Netns::connect_tcp`] (a
//!    probe from the host namespace would find nothing).
//! 5. The driver builds an [`IsolationPlan`] per spawn and calls
//!    [`IsolationPlan::apply_in_child`] in its `pre_exec` block after
//!    joining the cgroup (the error is an `Errno`, turned into an
//!    `io::Error` without allocating).
//!
//! When the instance is stopped for good: unbind its link listeners (a
//! socket keeps its namespace alive), `connector.remove(...)`, then
//! [`Netns::remove`].
//!
//! # Costs
//!
//! `cargo bench -p vdc-netns` (benches/netns.rs) prints these for the
//! machine it runs on. Medians on an idle 2-CPU VM (Linux 6.18):
//!
//! | operation | cost |
//! | --- | --- |
//! | create a namespace (lo up, pinned) | 0.46–0.49 ms (`ip netns add`: 1.5 ms) |
//! | remove it | 44 µs (`ip netns del`: 1.1 ms), then kernel work in the background |
//! | connect on the host / into a namespace | 32.3 µs / 36.0 µs (+3.7 µs) |
//! | listen on the host / in a namespace | 6.8 µs / 9.5 µs |
//! | run `/bin/true` plainly / isolated / also under the init | 0.61 / 0.91 / 3.2 ms |
//!
//! The kernel frees a removed namespace later, in a worker thread, and
//! that is not cheap: for a few seconds after a hundred removals, process
//! starts on the node are several times slower. Keep an instance's
//! namespace across its restarts; remove it only when the instance goes.

#![forbid(unsafe_code)]

mod child;
mod dataplane;
mod dir;
mod error;
mod loopback;
mod netns;

use std::path::Path;

use nix::sched::{unshare, CloneFlags};
use nix::unistd::geteuid;

pub use child::IsolationPlan;
pub use dataplane::{NetnsBinder, NetnsConnector};
pub use dir::NetnsDir;
pub use error::NetnsError;
pub use netns::Netns;

/// Whether instances can get namespaces on this node, or one line saying
/// why not (for the node's isolation warning). Makes and discards one
/// network and mount namespace to find out, a few milliseconds: call it
/// once at start.
pub fn supported() -> Result<(), String> {
    if !geteuid().is_root() {
        return Err(
            "not running as root: instances share the host's network, /tmp and pids".into(),
        );
    }
    if !Path::new("/proc/self/ns/net").exists() {
        return Err(
            "the kernel has no network namespaces (/proc/self/ns/net is missing): \
             instances share the host's network"
                .into(),
        );
    }
    // Root inside a container may still lack CAP_SYS_ADMIN; only trying
    // tells. The thread ends inside the namespaces it made, freeing them.
    let tried = std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID)
    })
    .join();
    match tried {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "cannot make namespaces ({e}): instances share the host's network, /tmp and pids"
        )),
        Err(_) => Err("cannot make namespaces: the probing thread panicked".into()),
    }
}
