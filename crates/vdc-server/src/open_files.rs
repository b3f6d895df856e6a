//! The node's open-file budget. Every connection the API or the data plane
//! holds is a descriptor (a proxied one is two), and so is every log file,
//! namespace, cgroup file and store handle; when the process runs out, it
//! can accept nothing, and a flood on one side would stop the other. So the
//! server raises its soft limit to the hard one at start, sets aside a
//! reserve for its own work, and gives the API and the data plane fixed
//! shares of the rest, which each refuses past at once.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// How the descriptors are shared out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    /// The soft limit on open files the server runs with.
    pub limit: u64,
    /// Descriptors kept for everything but connections.
    pub reserve: u64,
    /// Connections the public API holds at once.
    pub api: usize,
    /// Of which one client address may hold at most this many.
    pub api_per_client: usize,
    /// Connections the API holds at once for instances (through their
    /// namespaces' forwarders, each capped on its own).
    pub api_instances: usize,
    /// Connections the data plane proxies at once (two descriptors each).
    pub dataplane: usize,
}

impl Budget {
    /// The shares of `limit` descriptors.
    pub(crate) fn of(limit: u64) -> Budget {
        let reserve = (limit / 8).max(64);
        let api = usize::try_from((limit / 32).clamp(16, 4096)).unwrap_or(4096);
        let api_per_client = (api / 4).clamp(4, 256);
        let api_instances = api;
        let connections = limit.saturating_sub(reserve + 2 * api as u64) / 2;
        Budget {
            limit,
            reserve,
            api,
            api_per_client,
            api_instances,
            dataplane: usize::try_from(connections.max(16)).unwrap_or(usize::MAX),
        }
    }
}

/// Raises this process's soft limit on open files to the hard limit, and
/// returns the soft limit it started with (what instances should get back)
/// and the budget at the limit it runs with now.
pub(crate) fn raise() -> (Option<u64>, Budget) {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (None, Budget::of(1024));
    };
    let now = match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
            soft
        }
    };
    (Some(soft), Budget::of(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_fit_in_the_limit() {
        for limit in [256, 1024, 4096, 65_536, 1 << 20] {
            let b = Budget::of(limit);
            let used = b.reserve + (b.api + b.api_instances) as u64 + 2 * b.dataplane as u64;
            assert!(used <= limit.max(256 + 64), "{limit}: {b:?}");
            assert!(b.api_per_client < b.api, "{b:?}");
        }
        let small = Budget::of(1024);
        assert_eq!((small.api, small.api_per_client), (32, 8));
        assert_eq!(small.dataplane, 416);
    }
}
