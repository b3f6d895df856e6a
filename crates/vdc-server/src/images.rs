//! The node's image store and how it pulls: credentials from the data
//! directory (`registries.json`, which `vdc registry login` writes) and
//! from Docker's config (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`), insecure registries and mirrors from the
//! server's options.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vdc_image::pull::{Credentials, PullOptions};
use vdc_image::Store;

use crate::ServerConfig;

/// The store under `DATA_DIR/images`; `None` (said once) when it cannot
/// be opened: then no container runs here.
pub(crate) fn open(data_dir: &Path) -> Option<Arc<Store>> {
    match Store::open(data_dir.join("images")) {
        Ok(store) => Some(Arc::new(store)),
        Err(e) => {
            tracing::warn!("containers cannot run on this node: {e}");
            None
        }
    }
}

/// Where `vdc registry login` keeps credentials (mode 0600).
pub(crate) fn credentials_file(data_dir: &Path) -> PathBuf {
    data_dir.join("registries.json")
}

pub(crate) fn pull_options(data_dir: &Path, config: &ServerConfig) -> PullOptions {
    let mut credentials = Credentials::default();
    let docker = std::env::var_os("DOCKER_CONFIG")
        .map(|d| PathBuf::from(d).join("config.json"))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")));
    // The data directory's own logins win over Docker's.
    for file in docker.into_iter().chain([credentials_file(data_dir)]) {
        if let Err(e) = credentials.read_docker_config(&file) {
            tracing::warn!("registry credentials not read: {e}");
        }
    }
    PullOptions {
        insecure: config.insecure_registries.clone(),
        mirrors: config.registry_mirrors.clone(),
        credentials,
        ..PullOptions::default()
    }
}
