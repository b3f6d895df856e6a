//! What this machine offers the pool: its name, address and capacity.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use vdc_model::{Disk, NodeId, NodeInfo};
use vdc_spec::{Bytes, MilliCpu, Resources};

pub(crate) fn detect(name: Option<String>, data_dir: &Path) -> NodeInfo {
    let name = name
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "local".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    NodeInfo {
        id: NodeId(name),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        capacity: Resources {
            cpu: MilliCpu(cores * 1000),
            memory: Bytes(mem_total().unwrap_or(1 << 30)),
        },
        labels: BTreeMap::new(),
        disk: disk(data_dir),
    }
}

/// Size and free space of the filesystem holding `dir`.
pub(crate) fn disk(dir: &Path) -> Option<Disk> {
    let stat = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| tracing::debug!("cannot measure the disk of {}: {e}", dir.display()))
        .ok()?;
    let block = stat.fragment_size();
    Some(Disk {
        total_bytes: stat.blocks().saturating_mul(block),
        free_bytes: stat.blocks_available().saturating_mul(block),
    })
}

/// MemTotal from /proc/meminfo, in bytes.
fn mem_total() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A cgroup prefix unique to the data directory, so two servers on one
/// machine never touch each other's cgroups.
pub(crate) fn cgroup_prefix(data_dir: &Path) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut h);
    format!("vdc-{:08x}", h.finish() as u32)
}

/// The address of this machine on the route to the NATS server at `url`
/// (`nats://host:port`, several separated by commas): where the other
/// nodes, which reach the same NATS, most likely reach this one too.
pub(crate) async fn route_to(url: &str) -> IpAddr {
    let first = url.split(',').next().unwrap_or(url).trim();
    let hostport = first
        .split_once("://")
        .map_or(first, |(_, rest)| rest)
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_owned();
    let hostport = if hostport.contains(':') {
        hostport
    } else {
        format!("{hostport}:4222")
    };
    let found = async {
        let target = tokio::net::lookup_host(&hostport).await.ok()?.next()?;
        let local: std::net::SocketAddr = if target.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = tokio::net::UdpSocket::bind(local).await.ok()?;
        socket.connect(target).await.ok()?;
        Some(socket.local_addr().ok()?.ip())
    };
    found.await.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A random identity of this node's agent, kept in the data directory so a
/// restart keeps it and another machine cannot have it.
pub(crate) fn incarnation(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("node.id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => {
            let id = format!("{:016x}", rand::random::<u64>());
            std::fs::write(&path, &id)?;
            Ok(id)
        }
    }
}
