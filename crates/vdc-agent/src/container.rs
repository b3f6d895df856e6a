//! What a container instance needs before the driver starts it: its image
//! on this node (imported from a file or pulled, once, with the progress
//! in the instance's status), and from the image's configuration and the
//! spec: the program and its arguments, the environment it starts from,
//! its working directory and user (looked up in the image's own
//! `/etc/passwd`), and the layers of its root filesystem with a fresh
//! writable layer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vdc_image::pull::Progress;
use vdc_image::{ImageRecord, ImageRef, RunConfig, Store};
use vdc_spec::ComponentSpec;

use crate::confine::DEFAULT_PATH;
use crate::users::RunAs;
use crate::{Inner, StartInstance};

/// Where the nodes of a pool share the images they fetched: a node that
/// cannot pull or import an image (no route to the registry, the file is
/// not on this machine) takes it from there, and every node offers what it
/// fetched. A cluster's object store.
#[async_trait::async_trait]
pub trait ImageShare: Send + Sync + std::fmt::Debug {
    /// Makes `image` (its manifest, config and layers) available to the
    /// other nodes.
    async fn offer(&self, store: &Arc<Store>, image: &ImageRecord) -> Result<(), String>;
    /// Whether some node offered the image `name`.
    async fn has(&self, name: &str) -> bool;
    /// Fetches the image `name` into `store`, verifying every blob; `None`
    /// when no node offered it.
    async fn fetch(&self, store: &Arc<Store>, name: &str) -> Result<Option<ImageRecord>, String>;
}

/// A container ready for its sandbox.
#[derive(Debug)]
pub(crate) struct Plan {
    pub user: RunAs,
    /// Entrypoint and cmd, before `${VAR}` expansion.
    pub argv: Vec<String>,
    /// The image's environment, `HOME` and `HOSTNAME`: what the platform's
    /// and the spec's variables are added over.
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    pub root: vdc_sandbox::ImageRoot,
}

/// The image of `component`, on this node: taken from the store, or
/// imported or pulled into it (one fetch per image at a time).
pub(crate) async fn ensure_image(
    inner: &Inner,
    request: &StartInstance,
) -> Result<(Arc<Store>, ImageRecord), String> {
    let component = &request.component;
    let store = inner
        .config
        .images
        .clone()
        .ok_or("this node keeps no images: containers cannot run here")?;
    let text = component.image.as_deref().ok_or_else(|| {
        format!(
            "component `{}` is a container without an image",
            component.name
        )
    })?;
    // The spec holds the reference in full (local paths absolute).
    let image = ImageRef::parse(text, Path::new("/")).map_err(|e| e.to_string())?;
    let name = image.to_string();
    let lock = {
        let mut fetching = crate::lock(&inner.fetching);
        Arc::clone(fetching.entry(name.clone()).or_default())
    };
    let _one_at_a_time = lock.lock().await;
    let found = {
        let store = Arc::clone(&store);
        let name = name.clone();
        tokio::task::spawn_blocking(move || store.get(&name))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    if let Some(record) = found {
        return Ok((store, record));
    }
    let id = request.id.clone();
    let record = match &image {
        ImageRef::Registry(reference) => {
            let last = std::sync::Mutex::new(u64::MAX);
            let totals =
                std::sync::Mutex::new(std::collections::BTreeMap::<String, (u64, u64)>::new());
            let progress = |p: Progress| {
                let line = match p {
                    Progress::Resolved { blobs, .. } => {
                        let mut t = crate::lock(&totals);
                        for (digest, size) in blobs {
                            t.insert(digest, (0, size));
                        }
                        None
                    }
                    Progress::Blob {
                        digest,
                        done,
                        total,
                    } => {
                        let mut t = crate::lock(&totals);
                        t.insert(digest, (done, total));
                        let (done, total) = t
                            .values()
                            .fold((0, 0), |(d, s), (done, total)| (d + done, s + total));
                        // A line per tenth: `vdc up` prints each.
                        let mut at = crate::lock(&last);
                        let tenth = (done * 10).checked_div(total).unwrap_or(0);
                        (tenth != *at || done == total).then(|| {
                            *at = tenth;
                            format!("pulling image {name}: {} of {}", mib(done), mib(total))
                        })
                    }
                    Progress::Unpacking => Some(format!("unpacking image {name}")),
                };
                if let Some(line) = line {
                    inner.update(&id, |r| r.status.message = Some(line));
                }
            };
            match vdc_image::pull::pull(
                Arc::clone(&store),
                reference,
                &inner.config.pull,
                &progress,
            )
            .await
            {
                Ok(record) => {
                    offer(inner, &store, &record);
                    record
                }
                // No registry within reach: another node may have it.
                Err(e) => from_share(inner, &store, &name)
                    .await
                    .ok_or_else(|| format!("cannot pull image {e}"))?,
            }
        }
        local => {
            inner.update(&id, |r| {
                r.status.message = Some(format!("importing image {name}"))
            });
            let store = Arc::clone(&store);
            let local = local.clone();
            let name = name.clone();
            let imported = {
                let (store, name) = (Arc::clone(&store), name.clone());
                tokio::task::spawn_blocking(move || {
                    vdc_image::layout::import(&store, &local, &name)
                })
                .await
                .map_err(|e| e.to_string())?
            };
            match imported {
                Ok(record) => {
                    offer(inner, &store, &record);
                    record
                }
                // The file is on another machine: its node may have offered it.
                Err(e) => from_share(inner, &store, &name)
                    .await
                    .ok_or_else(|| format!("cannot import image: {e}"))?,
            }
        }
    };
    inner.update(&id, |r| r.status.message = None);
    Ok((store, record))
}

/// Offers a fetched image to the other nodes, in the background: the
/// instance need not wait for the upload.
fn offer(inner: &Inner, store: &Arc<Store>, record: &ImageRecord) {
    let Some(share) = inner.config.image_share.clone() else {
        return;
    };
    let (store, record) = (Arc::clone(store), record.clone());
    tokio::spawn(async move {
        if let Err(e) = share.offer(&store, &record).await {
            tracing::warn!(image = %record.name, "cannot offer the image to the other nodes: {e}");
        }
    });
}

/// The image `name` from the other nodes, when one offered it.
async fn from_share(inner: &Inner, store: &Arc<Store>, name: &str) -> Option<ImageRecord> {
    let share = inner.config.image_share.as_ref()?;
    match share.fetch(store, name).await {
        Ok(Some(record)) => {
            tracing::info!(image = %name, "fetched from the pool's object store");
            Some(record)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(image = %name, "cannot fetch the image from the pool: {e}");
            None
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Works out how `request`'s container runs, and makes its writable layer
/// afresh in `instance_dir`.
pub(crate) async fn plan(
    store: &Store,
    image: &ImageRecord,
    request: &StartInstance,
    instance_dir: &Path,
) -> Result<Plan, String> {
    let component = &request.component;
    let config = store.run_config(image).map_err(|e| e.to_string())?;
    let lowers = store.lower_dirs(image).map_err(|e| e.to_string())?;
    let argv = argv(component, &config);
    if argv.is_empty() {
        return Err(format!(
            "image {} has no entrypoint or cmd, and component `{}` no `command`",
            image.name, component.name
        ));
    }
    let wanted = component.user.as_deref().or(config.user.as_deref());
    let user = resolve_user(&lowers, wanted)?;
    if user.uid == 0 && request.root_forbidden {
        return Err(format!(
            "image {} runs component `{}` as root (uid 0 as `{}`), and tenant `{}` may not run anything as root: give the component a `user` of the image, or ask the admin (vdc tenant run-as {} root)",
            image.name, component.name, user.name, request.tenant, request.tenant
        ));
    }
    let mut env: Vec<(String, String)> = config
        .env
        .iter()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".to_owned(), DEFAULT_PATH.to_owned()));
    }
    let hostname = format!("{}-{}", request.id.component, request.id.index);
    env.push(("HOSTNAME".to_owned(), hostname.clone()));
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".to_owned(), home_of(&lowers, &user)));
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let program = &argv[0];
    if !program.contains('$') && !has_program(&lowers, program, path) {
        return Err(format!(
            "image {} has no program `{program}` (searched {path})",
            image.name
        ));
    }
    let workdir = if component.workdir.as_os_str().is_empty() {
        PathBuf::from(config.workdir.as_deref().unwrap_or("/"))
    } else {
        component.workdir.clone()
    };
    // The writable layer: empty at each start.
    let upper = instance_dir.join("upper");
    let work = instance_dir.join("work");
    let dir = instance_dir.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(dir.join("upper"))?;
        std::fs::create_dir_all(dir.join("work"))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot make the container's writable layer: {e}"))?;
    Ok(Plan {
        user,
        argv,
        env,
        workdir,
        root: vdc_sandbox::ImageRoot {
            lowers,
            upper,
            work,
            hostname,
        },
    })
}

/// Entrypoint and cmd as Docker combines them: `command` replaces the
/// image's entrypoint (and then its cmd too), `args` its cmd.
fn argv(component: &ComponentSpec, config: &RunConfig) -> Vec<String> {
    let entrypoint = if component.command.is_empty() {
        config.entrypoint.clone()
    } else {
        component.command.clone()
    };
    let cmd = match &component.args {
        Some(args) => args.clone(),
        None if component.command.is_empty() => config.cmd.clone(),
        None => Vec::new(),
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// How much of the image's `/etc/passwd` and `/etc/group` is read.
const ACCOUNTS_LIMIT: u64 = 1 << 20;

/// The text of one of the image's account files (empty when it has none).
fn accounts(lowers: &[PathBuf], file: &str) -> String {
    vdc_image::rootfs::read_to_string(lowers, file, ACCOUNTS_LIMIT).unwrap_or_default()
}

fn has_program(lowers: &[PathBuf], program: &str, path: &str) -> bool {
    if program.contains('/') {
        return vdc_image::rootfs::resolve(lowers, program).is_some();
    }
    path.split(':')
        .filter(|dir| dir.starts_with('/'))
        .any(|dir| vdc_image::rootfs::resolve(lowers, &format!("{dir}/{program}")).is_some())
}

/// The user to run as: `NAME`, `UID`, `NAME:GROUP` or `UID:GID`, names
/// looked up in the image's `/etc/passwd` and `/etc/group`; root when the
/// image and the spec name none.
fn resolve_user(lowers: &[PathBuf], wanted: Option<&str>) -> Result<RunAs, String> {
    let Some(wanted) = wanted.filter(|w| !w.is_empty()) else {
        return Ok(RunAs {
            uid: 0,
            gid: 0,
            name: "root".to_owned(),
        });
    };
    let passwd = accounts(lowers, "/etc/passwd");
    let group = accounts(lowers, "/etc/group");
    let (user, group_part) = match wanted.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (wanted, None),
    };
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)));
    let uid = match (user.parse::<u32>(), &entry) {
        (Ok(uid), _) => uid,
        (Err(_), Some(f)) => f[2]
            .parse()
            .map_err(|_| format!("user `{user}` of the image has no numeric uid"))?,
        (Err(_), None) => {
            return Err(format!(
                "the image has no user `{user}` (in its /etc/passwd)"
            ))
        }
    };
    let gid = match group_part {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("the image has no group `{g}` (in its /etc/group)"))?,
        },
        None => entry
            .as_ref()
            .and_then(|f| f[3].parse().ok())
            .unwrap_or(uid),
    };
    let name = entry.map_or_else(|| uid.to_string(), |f| f[0].to_owned());
    Ok(RunAs { uid, gid, name })
}

/// The user's home as the image's `/etc/passwd` says, else `/root` or `/`.
fn home_of(lowers: &[PathBuf], user: &RunAs) -> String {
    accounts(lowers, "/etc/passwd")
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2] == user.uid.to_string())
        .map(|f| f[5].to_owned())
        .unwrap_or_else(|| {
            if user.uid == 0 {
                "/root".to_owned()
            } else {
                "/".to_owned()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with(passwd: &str, group: &str) -> (tempfile::TempDir, Vec<PathBuf>) {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("top");
        let bottom = tmp.path().join("bottom");
        std::fs::create_dir_all(top.join("etc")).unwrap();
        std::fs::create_dir_all(bottom.join("etc")).unwrap();
        std::fs::create_dir_all(bottom.join("usr/bin")).unwrap();
        std::fs::write(bottom.join("usr/bin/redis-server"), "").unwrap();
        std::fs::write(bottom.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(top.join("etc/passwd"), passwd).unwrap();
        std::fs::write(top.join("etc/group"), group).unwrap();
        (tmp, vec![top, bottom])
    }

    #[test]
    fn users_are_looked_up_in_the_image() {
        let (_tmp, lowers) = image_with(
            "root:x:0:0::/root:/bin/sh\nredis:x:999:998::/var/lib/redis:/bin/false\n",
            "root:x:0:\nredis:x:998:\nstaff:x:50:\n",
        );
        let user = |w: Option<&str>| resolve_user(&lowers, w).map(|u| (u.uid, u.gid, u.name));
        assert_eq!(user(None), Ok((0, 0, "root".into())));
        assert_eq!(user(Some("redis")), Ok((999, 998, "redis".into())));
        assert_eq!(user(Some("redis:staff")), Ok((999, 50, "redis".into())));
        assert_eq!(user(Some("999")), Ok((999, 998, "redis".into())));
        assert_eq!(user(Some("1234:5")), Ok((1234, 5, "1234".into())));
        assert_eq!(
            user(Some("postgres")),
            Err("the image has no user `postgres` (in its /etc/passwd)".into())
        );
        assert_eq!(
            user(Some("redis:wheel")),
            Err("the image has no group `wheel` (in its /etc/group)".into())
        );
        let redis = resolve_user(&lowers, Some("redis")).unwrap();
        assert_eq!(home_of(&lowers, &redis), "/var/lib/redis");
    }

    #[test]
    fn programs_are_found_through_the_layers_and_deletions_count() {
        let (_tmp, lowers) = image_with("", "");
        assert!(has_program(&lowers, "redis-server", DEFAULT_PATH));
        assert!(has_program(&lowers, "/usr/bin/redis-server", DEFAULT_PATH));
        assert!(!has_program(&lowers, "redis-cli", DEFAULT_PATH));
        // Deleted in the top layer: a whiteout.
        std::fs::create_dir_all(lowers[0].join("usr/bin")).unwrap();
        nix::sys::stat::mknod(
            &lowers[0].join("usr/bin/redis-server"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        assert!(!has_program(&lowers, "redis-server", DEFAULT_PATH));
    }

    #[test]
    fn command_and_args_combine_as_docker_does() {
        let config = RunConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
            ..RunConfig::default()
        };
        let mut c = crate::tests::component();
        c.command = vec![];
        c.args = None;
        assert_eq!(argv(&c, &config), ["/entry", "serve"]);
        c.args = Some(vec!["--port".into(), "${PORT}".into()]);
        assert_eq!(argv(&c, &config), ["/entry", "--port", "${PORT}"]);
        c.command = vec!["sh".into()];
        assert_eq!(argv(&c, &config), ["sh", "--port", "${PORT}"]);
        c.args = None;
        assert_eq!(
            argv(&c, &config),
            ["sh"],
            "a new entrypoint drops the image's cmd"
        );
    }
}
