//! The data plane's [`Binder`] and [`Connector`] for instances in their own
//! network namespaces: link listeners inside the calling instance's
//! namespace, upstream connections inside the target instance's.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use tokio::net::TcpStream;
use vdc_dataplane::{Binder, Connector, Endpoint, TcpConnector};

use crate::Netns;

// === types ===

/// Makes link listeners inside one instance's namespace: pass it to
/// `DataPlane::bind_with` for each link of the instance, under a key of the
/// instance's own (two instances' listeners for one link are two listeners,
/// at the same address in two namespaces).
#[derive(Clone, Debug)]
pub struct NetnsBinder(pub Arc<Netns>);

/// Connects to each endpoint from inside the namespace of the endpoint's
/// instance, found by [`Endpoint::instance`] in a map the agent keeps up to
/// date with [`insert`](Self::insert) and [`remove`](Self::remove).
/// Instances it does not know are reached from the host's namespace, so
/// instances with and without namespaces can share one data plane (for
/// example when a node falls back to shared loopback).
///
/// Looking an instance up takes no lock: the map is read through `ArcSwap`
/// and replaced whole on each (rare) change.
pub struct NetnsConnector {
    namespaces: ArcSwap<HashMap<String, Arc<Netns>>>,
    host: TcpConnector,
}

// === impl NetnsBinder ===

impl NetnsBinder {
    pub fn new(netns: Arc<Netns>) -> Self {
        NetnsBinder(netns)
    }
}

impl Binder for NetnsBinder {
    fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        self.0.bind_tcp(addr)
    }
}

// === impl NetnsConnector ===

impl NetnsConnector {
    /// A connector that knows no namespace yet; every connect gives up
    /// after `timeout`, inside a namespace or not.
    pub fn new(timeout: Duration) -> Self {
        NetnsConnector {
            namespaces: ArcSwap::from_pointee(HashMap::new()),
            host: TcpConnector { timeout },
        }
    }

    /// From now on, connects to `instance` (`shop/web/0`) inside `netns`.
    /// Replaces any namespace the instance had.
    pub fn insert(&self, instance: &str, netns: Arc<Netns>) {
        self.namespaces.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(instance.to_owned(), Arc::clone(&netns));
            map
        });
    }

    /// Forgets `instance`'s namespace and returns it; its endpoints are then
    /// reached from the host namespace (where, once the instance is gone,
    /// nothing answers).
    pub fn remove(&self, instance: &str) -> Option<Arc<Netns>> {
        let mut removed = None;
        self.namespaces.rcu(|map| {
            let mut map = HashMap::clone(map);
            removed = map.remove(instance);
            map
        });
        removed
    }

    /// The namespace connects to `instance` are made in, if it has one.
    pub fn get(&self, instance: &str) -> Option<Arc<Netns>> {
        self.namespaces.load().get(instance).cloned()
    }
}

impl Connector for NetnsConnector {
    fn connect<'a>(&'a self, endpoint: &'a Endpoint) -> BoxFuture<'a, io::Result<TcpStream>> {
        Box::pin(async move {
            // An instance of another node is reached at its node's address,
            // never inside a namespace here, even while an instance of the
            // same name (moving) runs on this node too.
            match self.get(&endpoint.instance) {
                Some(netns) if endpoint.addr.ip().is_loopback() => {
                    netns.connect_tcp(endpoint.addr, self.host.timeout).await
                }
                _ => self.host.connect(endpoint).await,
            }
        })
    }
}

impl std::fmt::Debug for NetnsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self.namespaces.load();
        let mut instances: Vec<&str> = map.keys().map(String::as_str).collect();
        instances.sort_unstable();
        f.debug_struct("NetnsConnector")
            .field("instances", &instances)
            .field("timeout", &self.host.timeout)
            .finish()
    }
}
