//! The node's image store and how it pulls: credentials from the data
//! directory (`registries.json`, which `vdc registry login` writes) and
//! from Docker's config (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`), insecure registries and mirrors from the
//! server's options.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vdc_image::pull::PullOptions;
use vdc_image::Store;

use crate::api::ApiError;
use crate::control::ControlPlane;
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
    let docker = std::env::var_os("DOCKER_CONFIG")
        .map(|d| PathBuf::from(d).join("config.json"))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")));
    PullOptions {
        insecure: config.insecure_registries.clone(),
        mirrors: config.registry_mirrors.clone(),
        // Read at each pull; the data directory's own logins win.
        credential_files: docker
            .into_iter()
            .chain([credentials_file(data_dir)])
            .collect(),
        ..PullOptions::default()
    }
}

/// Refuses a submission whose container images do not exist: a local file
/// that is not there or lacks the tag, an image no registry (nor mirror)
/// has, with the registry's answer. Only manifests are fetched here; the
/// node pulls the blobs when an instance needs them. Images this node has
/// pass without asking (an air-gapped node runs what it was given), and
/// so do components whose image did not change since the last revision.
///
/// Image files (`oci:`, `oci-archive:`) are paths of the node, read as
/// root: only the admin may name them. A tenant's images come from a
/// registry (or were imported by the admin under that registry name).
pub(crate) async fn admit(
    control: &ControlPlane,
    principal: &crate::auth::Principal,
    spec: &vdc_spec::AppSpec,
    previous: Option<&vdc_spec::AppSpec>,
) -> Result<(), ApiError> {
    let agent = control.agent();
    for component in spec.components.values() {
        let Some(text) = &component.image else {
            continue;
        };
        let unchanged = previous
            .and_then(|p| p.components.get(&component.name))
            .and_then(|c| c.image.as_ref())
            == Some(text);
        if unchanged {
            continue;
        }
        let refuse = |e: String| {
            ApiError::Unprocessable(format!("component `{}`: image {e}", component.name))
        };
        let image =
            vdc_image::ImageRef::parse(text, Path::new("/")).map_err(|e| refuse(e.to_string()))?;
        if !principal.is_admin() && !matches!(image, vdc_image::ImageRef::Registry(_)) {
            return Err(ApiError::Conflict(format!(
                "component `{}`: image {text} is a file of the node, which only the admin may name: push it to a registry (skopeo copy {text} docker://REGISTRY/REPO:TAG) and name that",
                component.name
            )));
        }
        if let Some(store) = agent.images() {
            let (store, name) = (Arc::clone(store), image.to_string());
            let have = tokio::task::spawn_blocking(move || store.get(&name))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            if have.is_some() {
                continue;
            }
        }
        match &image {
            vdc_image::ImageRef::Registry(reference) => {
                if let Err(e) = vdc_image::pull::resolve(reference, agent.pull_options()).await {
                    // Out of this node's reach, but another node shared it.
                    if shared(control, &image.to_string()).await {
                        continue;
                    }
                    return Err(match e {
                        vdc_image::ImageError::Registry { .. } => refuse(e.to_string()),
                        other => refuse(format!("{text}: {other}")),
                    });
                }
            }
            local => {
                let local = local.clone();
                let checked = tokio::task::spawn_blocking(move || vdc_image::layout::check(&local))
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                if let Err(e) = checked {
                    if shared(control, &image.to_string()).await {
                        continue;
                    }
                    return Err(refuse(format!("{text}: {e}")));
                }
            }
        }
    }
    Ok(())
}

/// Whether a node of the pool offered the image `name`.
async fn shared(control: &ControlPlane, name: &str) -> bool {
    match control.agent().image_share() {
        Some(share) => share.has(name).await,
        None => false,
    }
}

/// The images instances of this node run from, each with those instances:
/// the one each started from, and the one its app names now (which it is
/// about to need when it is replaced or still pulling).
pub(crate) async fn in_use(
    control: &ControlPlane,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, ApiError> {
    let apps = control.store().apps().await?;
    let mut used = std::collections::BTreeMap::<String, Vec<String>>::new();
    for status in control.agent().instances() {
        let named = apps
            .iter()
            .find(|a| a.spec.name == status.id.app)
            .and_then(|a| a.spec.components.get(&status.id.component))
            .and_then(|c| c.image.as_deref())
            .and_then(|text| vdc_image::ImageRef::parse(text, Path::new("/")).ok())
            .map(|image| image.to_string());
        let images: std::collections::BTreeSet<String> =
            status.image.clone().into_iter().chain(named).collect();
        for image in images {
            used.entry(image).or_default().push(status.id.to_string());
        }
    }
    Ok(used)
}

/// Removes the images no app refers to, no instance uses, and none used
/// for `unused_for_ms`, then every blob and layer no image has.
pub(crate) async fn prune(
    control: &ControlPlane,
    unused_for_ms: u64,
) -> Result<(Vec<String>, u64), ApiError> {
    let Some(store) = control.agent().images().cloned() else {
        return Ok((Vec::new(), 0));
    };
    let mut keep: std::collections::BTreeSet<String> = in_use(control).await?.into_keys().collect();
    for app in control.store().apps().await? {
        for component in app.spec.components.values() {
            if let Some(image) = component
                .image
                .as_deref()
                .and_then(|text| vdc_image::ImageRef::parse(text, Path::new("/")).ok())
            {
                keep.insert(image.to_string());
            }
        }
    }
    tokio::task::spawn_blocking(move || store.prune(&keep, unused_for_ms))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// How often unused images are looked for, and how long an image no app
/// refers to is kept after its last use.
const GC_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
const GC_UNUSED_FOR_MS: u64 = 24 * 3600 * 1000;

/// Collects images nothing has used for a day, every ten minutes, until
/// the server stops.
pub(crate) async fn gc_loop(control: ControlPlane) {
    let mut tick = tokio::time::interval(GC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = control.shutting_down() => return,
        }
        match prune(&control, GC_UNUSED_FOR_MS).await {
            Ok((removed, freed)) if !removed.is_empty() || freed > 0 => {
                tracing::info!(?removed, freed, "images no app used for a day removed");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot collect unused images: {}", e.message()),
        }
    }
}

/// Images shared through the cluster's JetStream object store: blobs as
/// `image-blob.HEX`, and for each image name the digest of its manifest as
/// `image-ref.HEX` (the sha256 of the name). The first node to fetch an
/// image offers it; a node that cannot pull it (no route to the registry)
/// or import it (the file is on another machine) takes it from there, each
/// blob verified against its digest as a pull verifies it.
#[derive(Clone)]
pub(crate) struct ObjectShare {
    pub objects: async_nats::jetstream::object_store::ObjectStore,
}

impl std::fmt::Debug for ObjectShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectShare")
    }
}

fn ref_key(name: &str) -> String {
    use sha2::Digest as _;
    format!("image-ref.{:x}", sha2::Sha256::digest(name.as_bytes()))
}

fn blob_key(digest: &str) -> String {
    format!("image-blob.{}", digest.trim_start_matches("sha256:"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SharedRef {
    name: String,
    manifest: String,
}

impl ObjectShare {
    /// Copies the blob `digest` from the object store into `store` unless
    /// it is there, verifying it.
    async fn download(&self, store: &Arc<Store>, digest: &str) -> Result<(), String> {
        use sha2::Digest as _;
        use std::io::Write as _;
        use tokio::io::AsyncReadExt as _;
        if store.blob(digest).is_some() {
            return Ok(());
        }
        let mut object = self
            .objects
            .get(blob_key(digest).as_str())
            .await
            .map_err(|e| format!("blob {digest} is not in the object store: {e}"))?;
        let mut staged = store.staged_file().map_err(|e| e.to_string())?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = object
                .read(&mut buf)
                .await
                .map_err(|e| format!("cannot read blob {digest} from the object store: {e}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            staged
                .write_all(&buf[..n])
                .map_err(|e| format!("cannot write blob {digest}: {e}"))?;
        }
        store
            .commit_blob(digest, staged, hasher)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl vdc_agent::ImageShare for ObjectShare {
    async fn offer(
        &self,
        store: &Arc<Store>,
        image: &vdc_image::ImageRecord,
    ) -> Result<(), String> {
        let mut digests = vec![image.manifest.clone(), image.config.clone()];
        digests.extend(image.layers.iter().cloned());
        for digest in digests {
            let key = blob_key(&digest);
            if self.objects.info(key.as_str()).await.is_ok() {
                continue;
            }
            let path = store
                .blob(&digest)
                .ok_or_else(|| format!("blob {digest} is not on this node"))?;
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            self.objects
                .put(key.as_str(), &mut file)
                .await
                .map_err(|e| format!("cannot upload blob {digest}: {e}"))?;
        }
        let shared = serde_json::to_vec(&SharedRef {
            name: image.name.clone(),
            manifest: image.manifest.clone(),
        })
        .map_err(|e| e.to_string())?;
        self.objects
            .put(ref_key(&image.name).as_str(), &mut shared.as_slice())
            .await
            .map_err(|e| format!("cannot record image {}: {e}", image.name))?;
        Ok(())
    }

    async fn has(&self, name: &str) -> bool {
        self.objects.info(ref_key(name).as_str()).await.is_ok()
    }

    async fn fetch(
        &self,
        store: &Arc<Store>,
        name: &str,
    ) -> Result<Option<vdc_image::ImageRecord>, String> {
        if !self.has(name).await {
            return Ok(None);
        }
        let bytes = crate::moves::fetch(&self.objects, &ref_key(name)).await?;
        let shared: SharedRef = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the object store's record of {name} is not valid: {e}"))?;
        if shared.name != name {
            return Ok(None);
        }
        self.download(store, &shared.manifest).await?;
        let manifest = {
            let (store, digest) = (Arc::clone(store), shared.manifest.clone());
            tokio::task::spawn_blocking(move || store.manifest(&digest))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        self.download(store, manifest.config().digest().as_ref())
            .await?;
        for layer in manifest.layers() {
            self.download(store, layer.digest().as_ref()).await?;
        }
        let (store, name, digest) = (Arc::clone(store), name.to_owned(), shared.manifest);
        tokio::task::spawn_blocking(move || store.register(&name, &digest))
            .await
            .map_err(|e| e.to_string())?
            .map(Some)
            .map_err(|e| e.to_string())
    }
}
