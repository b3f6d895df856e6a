//! Pulls from a real registry (Debian's docker-registry, started on
//! loopback) that skopeo pushed an image built by umoci to: the pulled
//! image is the imported one, progress counts every byte, a blob whose
//! digest does not match is refused and kept nowhere, credentials are
//! asked for and used, a pinned digest is held to. Run as root (CI does;
//! it installs docker-registry, skopeo and umoci).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use vdc_image::pull::{pull, Credentials, Progress, PullOptions};
use vdc_image::{layout, ImageError, ImageRef, Reference, Store};
use vdc_testkit::registry::Registry;

/// A two-layer image in an OCI layout at `DIR/img:app`.
fn image(dir: &Path) {
    let umoci = |args: &[&str]| {
        let out = Command::new("umoci")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "umoci {args:?}: {out:?}");
    };
    umoci(&["init", "--layout", "img"]);
    umoci(&["new", "--image", "img:app"]);
    for (n, content) in [(1, "first"), (2, "second")] {
        let bundle = format!("b{n}");
        umoci(&["unpack", "--image", "img:app", &bundle]);
        let root = dir.join(&bundle).join("rootfs");
        std::fs::create_dir_all(root.join("srv")).unwrap();
        // Some bytes that do not compress to nothing.
        let data: String = (0..20_000).map(|i| format!("{content} {i}\n")).collect();
        std::fs::write(root.join(format!("srv/{content}")), data).unwrap();
        umoci(&["repack", "--image", "img:app", &bundle]);
    }
}

fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (CI does)");
}

type Seen = Arc<Mutex<Vec<Progress>>>;

fn recorder() -> (Seen, impl Fn(Progress) + Send + Sync) {
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    (seen, move |p| sink.lock().unwrap().push(p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_image_is_the_pushed_one_and_progress_counts_every_byte() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    image(tmp.path());
    let registry = Registry::start(&tmp.path().join("registry"));
    registry.push(
        &format!("oci:{}/img:app", tmp.path().display()),
        "shop/app:1.0",
    );

    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let reference: Reference = format!("{}/shop/app:1.0", registry.host()).parse().unwrap();
    let (seen, progress) = recorder();
    let pulled = pull(
        Arc::clone(&store),
        &reference,
        &PullOptions::default(),
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(pulled.name, reference.whole());
    assert_eq!(pulled.layers.len(), 2);

    let imported = layout::import(
        &Store::open(tmp.path().join("other")).unwrap(),
        &ImageRef::parse("oci:img:app", tmp.path()).unwrap(),
        "app",
    )
    .unwrap();
    assert_eq!(pulled.layers, imported.layers);
    assert_eq!(pulled.config, imported.config);

    let seen = seen.lock().unwrap().clone();
    let Some(Progress::Resolved { blobs, .. }) = seen.first() else {
        panic!("{seen:?}");
    };
    assert_eq!(blobs.len(), 3, "config and two layers");
    for (digest, size) in blobs {
        let last = seen
            .iter()
            .filter_map(|p| match p {
                Progress::Blob {
                    digest: d,
                    done,
                    total,
                } if d == digest => Some((*done, *total)),
                _ => None,
            })
            .next_back();
        assert_eq!(last, Some((*size, *size)), "{digest}");
    }
    assert_eq!(seen.last(), Some(&Progress::Unpacking));

    // Pulled again: nothing is fetched, every blob reported complete.
    let (seen, progress) = recorder();
    pull(
        Arc::clone(&store),
        &reference,
        &PullOptions::default(),
        &progress,
    )
    .await
    .unwrap();
    assert!(seen.lock().unwrap().iter().all(|p| match p {
        Progress::Blob { done, total, .. } => done == total,
        _ => true,
    }));

    // Pinned to the digest it has: the same image; to another: refused.
    let pinned: Reference = format!("{}/shop/app@{}", registry.host(), pulled.manifest)
        .parse()
        .unwrap();
    let again = pull(
        Arc::clone(&store),
        &pinned,
        &PullOptions::default(),
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(again.manifest, pulled.manifest);
    let wrong: Reference = format!("{}/shop/app:1.0@sha256:{}", registry.host(), "0".repeat(64))
        .parse()
        .unwrap();
    let err = pull(Arc::clone(&store), &wrong, &PullOptions::default(), &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("the registry has no such image (manifest unknown)"),
        "{err}"
    );

    // An image the registry does not have is named, with its answer.
    let missing: Reference = format!("{}/shop/nothing:1", registry.host())
        .parse()
        .unwrap();
    let err = pull(
        Arc::clone(&store),
        &missing,
        &PullOptions::default(),
        &|_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        format!(
            "{}/shop/nothing:1: the registry has no such image (manifest unknown)",
            registry.host()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_does_not_match_its_digest_is_never_used() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    image(tmp.path());
    let registry = Registry::start(&tmp.path().join("registry"));
    registry.push(
        &format!("oci:{}/img:app", tmp.path().display()),
        "shop/app:1.0",
    );
    let imported = layout::import(
        &Store::open(tmp.path().join("other")).unwrap(),
        &ImageRef::parse("oci:img:app", tmp.path()).unwrap(),
        "app",
    )
    .unwrap();
    // The registry serves altered bytes for the top layer.
    let top = imported.layers.last().unwrap().clone();
    let file = registry.blob_file(&top);
    let mut data = std::fs::read(&file).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0x55;
    std::fs::write(&file, &data).unwrap();

    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let reference: Reference = format!("{}/shop/app:1.0", registry.host()).parse().unwrap();
    let options = PullOptions {
        retries: 0,
        ..PullOptions::default()
    };
    let err = pull(Arc::clone(&store), &reference, &options, &|_| {})
        .await
        .unwrap_err();
    match &err {
        ImageError::DigestMismatch { expected, .. } => assert_eq!(expected, &top),
        ImageError::Registry { reason, .. } => assert!(reason.contains(&top[7..19]), "{err}"),
        other => panic!("{other}"),
    }
    assert!(store.blob(&top).is_none(), "the altered blob is not stored");
    assert!(store.get(&reference.whole()).unwrap().is_none());
    let left = std::fs::read_dir(tmp.path().join("store/tmp"))
        .unwrap()
        .count();
    assert_eq!(left, 0);
}

/// Pushes the test image to `registry` as `private/app:1` (with the
/// registry's credentials) and checks that a pull without credentials and
/// one with a wrong password are refused, saying so, and store nothing.
async fn refused_without_the_right_credentials(
    dir: &Path,
    registry: &Registry,
) -> (Arc<Store>, Reference) {
    registry.push(&format!("oci:{}/img:app", dir.display()), "private/app:1");
    let store = Arc::new(Store::open(dir.join("store")).unwrap());
    let reference: Reference = format!("{}/private/app:1", registry.host())
        .parse()
        .unwrap();
    let mut wrong = Credentials::default();
    wrong.insert(&registry.host(), "ci", "guess");
    for credentials in [Credentials::default(), wrong] {
        let options = PullOptions {
            credentials,
            ..PullOptions::default()
        };
        let err = pull(Arc::clone(&store), &reference, &options, &|_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("credentials"), "{err}");
    }
    assert!(store.list().unwrap().is_empty(), "nothing stored");
    (store, reference)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_needs_credentials_gets_them() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    image(tmp.path());
    let registry = Registry::start_with_auth(&tmp.path().join("registry"), "ci", "s3cret");
    let (store, reference) = refused_without_the_right_credentials(tmp.path(), &registry).await;

    // From a Docker config file, as `docker login` leaves it.
    let config = tmp.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths": {{"{}": {{"auth": "Y2k6czNjcmV0"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let mut credentials = Credentials::default();
    credentials.read_docker_config(&config).unwrap();
    let options = PullOptions {
        credentials,
        mirrors: BTreeMap::new(),
        ..PullOptions::default()
    };
    let pulled = pull(Arc::clone(&store), &reference, &options, &|_| {})
        .await
        .unwrap();
    assert_eq!(pulled.layers.len(), 2);
}

/// As Docker Hub, GHCR or Harbor: the registry takes only bearer tokens and
/// names a token service, which gives one for the right credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_behind_a_token_service_gets_a_token_for_the_credentials() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    image(tmp.path());
    let registry = Registry::start_with_token_auth(&tmp.path().join("registry"), "ci", "s3cret");
    let (store, reference) = refused_without_the_right_credentials(tmp.path(), &registry).await;
    assert!(registry.tokens_issued() > 0, "skopeo pushed with a token");

    let before = registry.tokens_issued();
    let mut right = Credentials::default();
    right.insert(&registry.host(), "ci", "s3cret");
    let options = PullOptions {
        credentials: right,
        ..PullOptions::default()
    };
    let pulled = pull(Arc::clone(&store), &reference, &options, &|_| {})
        .await
        .unwrap();
    assert_eq!(pulled.layers.len(), 2);
    assert!(
        registry.tokens_issued() > before,
        "the pull asked for a token"
    );

    // `vdc registry login` checks credentials the same way.
    let login = |password: &'static str| {
        let host = registry.host();
        async move { vdc_image::pull::check_login(&host, "ci", password, &PullOptions::default()).await }
    };
    login("s3cret").await.unwrap();
    let err = login("guess").await.unwrap_err().to_string();
    assert!(err.contains("refused the credentials"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_is_tried_first_and_the_registry_after_it() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    image(tmp.path());
    let origin = Registry::start(&tmp.path().join("origin"));
    origin.push(
        &format!("oci:{}/img:app", tmp.path().display()),
        "shop/app:1.0",
    );
    let mirror = Registry::start(&tmp.path().join("mirror"));
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let reference: Reference = format!("{}/shop/app:1.0", origin.host()).parse().unwrap();
    let options = PullOptions {
        mirrors: [(origin.host(), vec![mirror.host()])].into(),
        ..PullOptions::default()
    };
    // The mirror lacks it: the origin serves it.
    let pulled = pull(Arc::clone(&store), &reference, &options, &|_| {})
        .await
        .unwrap();
    assert_eq!(pulled.name, reference.whole());
    // With the mirror holding it and the origin gone, the mirror serves it.
    mirror.push(
        &format!("oci:{}/img:app", tmp.path().display()),
        "shop/app:1.0",
    );
    drop(origin);
    let fresh = Arc::new(Store::open(tmp.path().join("fresh")).unwrap());
    let again = pull(fresh, &reference, &options, &|_| {}).await.unwrap();
    assert_eq!(again.manifest, pulled.manifest);
}
