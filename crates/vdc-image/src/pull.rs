//! Pulls from OCI distribution registries, on `oci-client` (which speaks
//! the protocol: token and basic auth, manifests, blobs, ranges). What vdc
//! adds around it: every blob verified against its digest before it is
//! stored (a mismatch is refused and never used), progress per layer, a
//! timeout when no byte arrives for a while rather than on the whole pull,
//! retries that resume where the bytes stopped, mirrors tried first,
//! plain HTTP only for registries named insecure and for the local host.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use oci_spec::image::{ImageIndex, ImageManifest};
use sha2::{Digest as _, Sha256};

use crate::layout::for_this_platform;
use crate::store::{is_index, is_manifest};
use crate::{ImageError, ImageRecord, Reference, Store};

/// How pulls behave on this node.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Registries (`host[:port]`) reached over plain HTTP; the local host
    /// always is.
    pub insecure: Vec<String>,
    /// Registry -> mirrors (`host[:port]`) tried first, in order.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// A blob that sends no byte for this long is given up on (and
    /// retried); there is no limit on the whole pull.
    pub idle_timeout: Duration,
    /// Further attempts per blob after the first.
    pub retries: u32,
    pub credentials: Credentials,
    /// Docker-style config files read again at each pull (so a login
    /// counts at once); earlier files first, later ones win.
    pub credential_files: Vec<std::path::PathBuf>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            insecure: Vec::new(),
            mirrors: BTreeMap::new(),
            idle_timeout: Duration::from_secs(30),
            retries: 3,
            credentials: Credentials::default(),
            credential_files: Vec::new(),
        }
    }
}

/// What a pull has done so far, for a progress bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The manifest is known: these blobs (digest, size) will be fetched
    /// unless the node has them.
    Resolved {
        manifest: String,
        blobs: Vec<(String, u64)>,
    },
    /// Bytes of one blob received so far (`done == total` when complete,
    /// at once for a blob the node already had).
    Blob {
        digest: String,
        done: u64,
        total: u64,
    },
    /// Every blob is in; the layers are being unpacked.
    Unpacking,
}

/// User names and passwords by registry.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    by_registry: BTreeMap<String, (String, String)>,
}

impl Credentials {
    pub fn insert(&mut self, registry: &str, user: &str, password: &str) {
        self.by_registry.insert(
            normalize_registry(registry),
            (user.to_owned(), password.to_owned()),
        );
    }

    pub fn get(&self, registry: &str) -> Option<(&str, &str)> {
        self.by_registry
            .get(&normalize_registry(registry))
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.by_registry.keys().map(String::as_str)
    }

    pub fn remove(&mut self, registry: &str) -> bool {
        self.by_registry
            .remove(&normalize_registry(registry))
            .is_some()
    }

    /// Writes them as a Docker `config.json` (`auths`), readable by its
    /// owner only.
    pub fn write_docker_config(&self, path: &Path) -> Result<(), ImageError> {
        let auths: serde_json::Map<String, serde_json::Value> = self
            .by_registry
            .iter()
            .map(|(registry, (user, password))| {
                (
                    registry.clone(),
                    serde_json::json!({ "auth": base64_encode(format!("{user}:{password}").as_bytes()) }),
                )
            })
            .collect();
        let text = serde_json::to_string_pretty(&serde_json::json!({ "auths": auths }))
            .map_err(|e| ImageError::invalid(path.display().to_string(), e.to_string()))?;
        let write = || -> std::io::Result<()> {
            // A file of its own (0600, as tempfile makes them) renamed over
            // the old one: two logins at once never mix their writes.
            let dir = path.parent().unwrap_or(Path::new("."));
            let mut file = tempfile::NamedTempFile::new_in(dir)?;
            file.write_all(text.as_bytes())?;
            file.as_file().sync_all()?;
            file.persist(path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|e| ImageError::io(format!("write {}", path.display()), e))
    }

    /// Adds what a Docker `config.json` holds (`auths.REGISTRY.auth`,
    /// base64 of `user:password`); a file that is not there adds nothing.
    pub fn read_docker_config(&mut self, path: &Path) -> Result<(), ImageError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ImageError::io(format!("read {}", path.display()), e)),
        };
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ImageError::invalid(path.display().to_string(), e.to_string()))?;
        let Some(auths) = value.get("auths").and_then(|a| a.as_object()) else {
            return Ok(());
        };
        for (registry, entry) in auths {
            let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()) else {
                continue;
            };
            let decoded = base64_decode(encoded).ok_or_else(|| {
                ImageError::invalid(
                    path.display().to_string(),
                    format!("the auth of {registry} is not base64"),
                )
            })?;
            let text = String::from_utf8_lossy(&decoded);
            if let Some((user, password)) = text.split_once(':') {
                self.insert(registry, user, password);
            }
        }
        Ok(())
    }
}

/// `https://index.docker.io/v1/` and `index.docker.io` are `docker.io`.
fn normalize_registry(registry: &str) -> String {
    let host = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        other => other.to_owned(),
    }
}

/// Standard base64 as Docker writes it; padding optional and whitespace
/// ignored when read, as Docker reads it.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose};
    use base64::Engine as _;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        general_purpose::PAD.with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    LENIENT.decode(compact).ok()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// True for the local host, which is reached over plain HTTP.
fn is_local(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            registry
        }
    });
    matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1")
}

/// The media types a pull accepts for a manifest.
const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Whether a registry has `reference`: fetches its manifest only (from a
/// mirror when one has it) and returns its digest. What a submission asks
/// before it is accepted; the blobs come when an instance needs them.
pub async fn resolve(reference: &Reference, options: &PullOptions) -> Result<String, ImageError> {
    let mut last = None;
    for source in sources(reference, options) {
        let client = client_for(&source, options);
        let auth = auth_for(&source, options);
        match client
            .pull_manifest_raw(&source, &auth, &MANIFEST_TYPES)
            .await
        {
            Ok((bytes, _)) => {
                let digest = sha256(&bytes);
                if let Some(pinned) = reference.digest() {
                    if pinned != digest {
                        return Err(ImageError::DigestMismatch {
                            expected: pinned.to_owned(),
                            actual: digest,
                        });
                    }
                }
                return Ok(digest);
            }
            Err(e) => {
                last = Some(ImageError::Registry {
                    image: reference.whole(),
                    reason: describe(&e),
                })
            }
        }
    }
    Err(last.unwrap_or(ImageError::NotFound(reference.whole())))
}

/// Whether `registry` accepts `user` and `password`, as `docker login`
/// checks: a request with them that the registry answers with anything but
/// "unauthorized" (a missing repository is fine).
pub async fn check_login(
    registry: &str,
    user: &str,
    password: &str,
    options: &PullOptions,
) -> Result<(), ImageError> {
    use oci_client::errors::OciDistributionError as E;
    let probe = Reference::with_tag(
        normalize_registry(registry),
        "vdc/login-check".to_owned(),
        "latest".to_owned(),
    );
    let client = client_for(&probe, options);
    let auth = RegistryAuth::Basic(user.to_owned(), password.to_owned());
    let refused = || ImageError::Registry {
        image: registry.to_owned(),
        reason: "the registry refused the credentials".to_owned(),
    };
    match client
        .pull_manifest_raw(&probe, &auth, &MANIFEST_TYPES)
        .await
    {
        Ok(_) => Ok(()),
        Err(E::AuthenticationFailure(_) | E::UnauthorizedError { .. }) => Err(refused()),
        Err(e) => {
            let text = e.to_string().to_lowercase();
            if text.contains("unauthorized") || text.contains("authentication required") {
                Err(refused())
            } else if text.contains("unknown")
                || text.contains("not found")
                || text.contains("denied")
            {
                // The credentials were taken; the probe's repository is not there.
                Ok(())
            } else {
                Err(ImageError::Registry {
                    image: registry.to_owned(),
                    reason: describe(&e),
                })
            }
        }
    }
}

/// The mirrors of `reference`'s registry, then the registry itself.
fn sources(reference: &Reference, options: &PullOptions) -> Vec<Reference> {
    let mut sources: Vec<Reference> = options
        .mirrors
        .get(reference.registry())
        .into_iter()
        .flatten()
        .map(|mirror| match reference.digest() {
            Some(d) => Reference::with_digest(
                mirror.clone(),
                reference.repository().to_owned(),
                d.to_owned(),
            ),
            None => Reference::with_tag(
                mirror.clone(),
                reference.repository().to_owned(),
                reference.tag().unwrap_or("latest").to_owned(),
            ),
        })
        .collect();
    sources.push(reference.clone());
    sources
}

fn client_for(source: &Reference, options: &PullOptions) -> Client {
    let registry = source.registry();
    let insecure = is_local(registry) || options.insecure.iter().any(|r| r == registry);
    Client::new(ClientConfig {
        protocol: if insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(options.idle_timeout),
        // vdc chooses the platform itself, from the index it stores.
        platform_resolver: None,
        ..ClientConfig::default()
    })
}

fn auth_for(source: &Reference, options: &PullOptions) -> RegistryAuth {
    let mut credentials = options.credentials.clone();
    for file in &options.credential_files {
        if let Err(e) = credentials.read_docker_config(file) {
            tracing::warn!("registry credentials not read: {e}");
        }
    }
    match credentials.get(source.registry()) {
        Some((user, password)) => RegistryAuth::Basic(user.to_owned(), password.to_owned()),
        None => RegistryAuth::Anonymous,
    }
}

/// Pulls `reference` into `store` (from a mirror when one has it) and
/// registers it under its full name.
pub async fn pull(
    store: Arc<Store>,
    reference: &Reference,
    options: &PullOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<ImageRecord, ImageError> {
    let name = reference.whole();
    let sources = sources(reference, options);
    let mut last = None;
    for source in &sources {
        match pull_from(&store, source, reference, options, progress).await {
            Ok(manifest) => {
                progress(Progress::Unpacking);
                let store = Arc::clone(&store);
                let name = name.clone();
                return tokio::task::spawn_blocking(move || store.register(&name, &manifest))
                    .await
                    .map_err(|e| ImageError::Registry {
                        image: reference.whole(),
                        reason: format!("unpacking stopped: {e}"),
                    })?;
            }
            Err(e) => {
                if source.registry() != reference.registry() {
                    tracing::warn!(image = %name, mirror = source.registry(), "mirror failed, next: {e}");
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(ImageError::NotFound(name)))
}

/// Fetches the manifest and every blob of `source` into the store;
/// returns the manifest's digest. `wanted` is what was asked for (its
/// digest, if pinned, must be what `source` serves).
async fn pull_from(
    store: &Store,
    source: &Reference,
    wanted: &Reference,
    options: &PullOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<String, ImageError> {
    let image = source.whole();
    let fail = |reason: String| ImageError::Registry {
        image: image.clone(),
        reason,
    };
    let client = client_for(source, options);
    let auth = auth_for(source, options);
    let (bytes, _) = client
        .pull_manifest_raw(source, &auth, &MANIFEST_TYPES)
        .await
        .map_err(|e| fail(describe(&e)))?;
    let mut digest = sha256(&bytes);
    if let Some(pinned) = wanted.digest() {
        if pinned != digest {
            return Err(ImageError::DigestMismatch {
                expected: pinned.to_owned(),
                actual: digest,
            });
        }
    }
    store.put_blob(&digest, &bytes[..])?;
    let mut manifest = parse_manifest(&bytes);
    if manifest.is_none() {
        let index = ImageIndex::from_reader(&bytes[..])
            .map_err(|e| fail(format!("neither a manifest nor an index: {e}")))?;
        if !index
            .manifests()
            .iter()
            .any(|d| is_manifest(d.media_type()) || is_index(d.media_type()))
        {
            return Err(fail("its index lists no image".to_owned()));
        }
        let chosen = for_this_platform(index.manifests())
            .ok_or_else(|| fail(format!("it has no image for {}", crate::layout::platform())))?;
        let by_digest = source.clone_with_digest(chosen.digest().to_string());
        let (bytes, _) = client
            .pull_manifest_raw(&by_digest, &auth, &MANIFEST_TYPES)
            .await
            .map_err(|e| fail(describe(&e)))?;
        digest = sha256(&bytes);
        if digest != chosen.digest().to_string() {
            return Err(ImageError::DigestMismatch {
                expected: chosen.digest().to_string(),
                actual: digest,
            });
        }
        store.put_blob(&digest, &bytes[..])?;
        manifest = parse_manifest(&bytes);
    }
    let manifest = manifest.ok_or_else(|| fail("its manifest cannot be read".to_owned()))?;
    let mut blobs = vec![(
        manifest.config().digest().to_string(),
        manifest.config().size(),
    )];
    blobs.extend(
        manifest
            .layers()
            .iter()
            .map(|l| (l.digest().to_string(), l.size())),
    );
    progress(Progress::Resolved {
        manifest: digest.clone(),
        blobs: blobs.clone(),
    });
    let fetches = blobs.into_iter().map(|(blob, size)| {
        let client = &client;
        let fail = &fail;
        async move {
            fetch_blob(client, source, store, &blob, size, options, progress)
                .await
                .map_err(|e| match e {
                    ImageError::Registry { reason, .. } => fail(reason),
                    other => other,
                })
        }
    });
    let results: Vec<Result<(), ImageError>> = futures_util::stream::iter(fetches)
        .buffer_unordered(3)
        .collect()
        .await;
    results
        .into_iter()
        .collect::<Result<Vec<()>, ImageError>>()?;
    Ok(digest)
}

fn parse_manifest(bytes: &[u8]) -> Option<ImageManifest> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    // An index has `manifests`, a manifest `layers`.
    value.get("layers")?;
    ImageManifest::from_reader(bytes).ok()
}

/// Fetches one blob into the store, verified; retries resume at the byte
/// where the last attempt stopped.
async fn fetch_blob(
    client: &Client,
    source: &Reference,
    store: &Store,
    digest: &str,
    size: u64,
    options: &PullOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), ImageError> {
    if store.blob(digest).is_some() {
        progress(Progress::Blob {
            digest: digest.to_owned(),
            done: size,
            total: size,
        });
        return Ok(());
    }
    let fail = |reason: String| ImageError::Registry {
        image: source.whole(),
        reason,
    };
    let mut staged = store.staged_file()?;
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut attempt = 0;
    loop {
        let outcome: Result<bool, String> = async {
            let mut stream = if received == 0 {
                client
                    .pull_blob_stream(source, digest)
                    .await
                    .map_err(|e| describe(&e))?
            } else {
                match client
                    .pull_blob_stream_partial(source, digest, received, None)
                    .await
                    .map_err(|e| describe(&e))?
                {
                    BlobResponse::Partial(stream) => stream,
                    BlobResponse::Full(stream) => {
                        // The registry does not do ranges: from the start.
                        received = 0;
                        hasher = Sha256::new();
                        staged.as_file().set_len(0).map_err(|e| e.to_string())?;
                        std::io::Seek::rewind(staged.as_file_mut()).map_err(|e| e.to_string())?;
                        stream
                    }
                }
            };
            loop {
                let next = tokio::time::timeout(options.idle_timeout, stream.next())
                    .await
                    .map_err(|_| {
                        format!(
                            "blob {digest}: no byte for {}s",
                            options.idle_timeout.as_secs()
                        )
                    })?;
                match next {
                    None => return Ok(true),
                    Some(Err(e)) => return Err(format!("blob {digest}: {e}")),
                    Some(Ok(chunk)) => {
                        received += chunk.len() as u64;
                        if received > size {
                            return Err(format!(
                                "blob {digest} is larger than the {size} bytes its descriptor says"
                            ));
                        }
                        hasher.update(&chunk);
                        staged
                            .write_all(&chunk)
                            .map_err(|e| format!("blob {digest}: {e}"))?;
                        progress(Progress::Blob {
                            digest: digest.to_owned(),
                            done: received,
                            total: size,
                        });
                    }
                }
            }
        }
        .await;
        match outcome {
            Ok(_) if received == size => break,
            Ok(_) => {
                let reason = format!("blob {digest} ended after {received} of {size} bytes");
                attempt += 1;
                if attempt > options.retries {
                    return Err(fail(reason));
                }
                tracing::warn!(image = %source.whole(), "{reason}; again");
            }
            Err(reason) => {
                attempt += 1;
                if attempt > options.retries {
                    return Err(fail(reason));
                }
                tracing::warn!(image = %source.whole(), "{reason}; again");
            }
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
    }
    store.commit_blob(digest, staged, hasher)?;
    Ok(())
}

/// What a registry's refusal means, in a few words.
fn describe(e: &oci_client::errors::OciDistributionError) -> String {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::AuthenticationFailure(m) => format!("the registry refused the credentials: {m}"),
        E::UnauthorizedError { .. } => {
            "the registry needs credentials (vdc registry login, or ~/.docker/config.json)"
                .to_owned()
        }
        E::ImageManifestNotFoundError(m) => format!("the registry has no such image: {m}"),
        other => {
            let text = other.to_string();
            let lower = text.to_lowercase();
            if lower.contains("manifest unknown") || lower.contains("name unknown") {
                "the registry has no such image (manifest unknown)".to_owned()
            } else if lower.contains("blob unknown") {
                "the registry lacks a blob of the image (blob unknown)".to_owned()
            } else {
                text
            }
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_credentials_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        // "user:pa:ss" and "ci:secret"
        std::fs::write(
            &path,
            r#"{"auths": {"localhost:5000": {"auth": "dXNlcjpwYTpzcw=="},
                "https://index.docker.io/v1/": {"auth": "Y2k6c2VjcmV0"},
                "ghcr.io": {}}}"#,
        )
        .unwrap();
        let mut credentials = Credentials::default();
        credentials.read_docker_config(&path).unwrap();
        assert_eq!(credentials.get("localhost:5000"), Some(("user", "pa:ss")));
        assert_eq!(credentials.get("docker.io"), Some(("ci", "secret")));
        assert_eq!(credentials.get("ghcr.io"), None);
        credentials
            .read_docker_config(&tmp.path().join("none.json"))
            .unwrap();
    }

    #[test]
    fn base64_reads_what_docker_writes() {
        for (text, plain) in [
            ("", ""),
            ("YQ==", "a"),
            ("YWI=", "ab"),
            ("YWJj", "abc"),
            ("dXNlcjpwYXNz", "user:pass"),
        ] {
            assert_eq!(base64_decode(text).unwrap(), plain.as_bytes(), "{text}");
        }
        assert_eq!(base64_decode("a$=="), None);
        for plain in ["", "a", "ab", "abc", "user:pa:ss", "ünïcode"] {
            assert_eq!(
                base64_decode(&base64_encode(plain.as_bytes())).unwrap(),
                plain.as_bytes()
            );
        }
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_decode("Y"), None);
    }

    #[test]
    fn only_the_local_host_is_plain_http_by_default() {
        for local in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
        ] {
            assert!(is_local(local), "{local}");
        }
        for remote in [
            "docker.io",
            "registry.example:5000",
            "localhost.example.com",
        ] {
            assert!(!is_local(remote), "{remote}");
        }
    }
}
