//! Confined instances: each has its own network namespace, where the data
//! plane places the instance's link addresses (and nothing else), and
//! through which it reaches the instance's inputs; and a sandbox, whose
//! user, environment and paths are settled here.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vdc_dataplane::ProxySpec;
use vdc_netns::{Netns, NetnsBinder};
use vdc_spec::ComponentSpec;

use crate::users::{self, RunAs, INSTANCE_USER};
use crate::{Confine, Inner, StartInstance};

/// The `PATH` a confined instance starts with, unless its spec sets one:
/// the system's directories, not the node's own `PATH`.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables of the node's environment a confined instance keeps: how text
/// and time are shown, nothing else.
const PASSED_ON: [&str; 4] = ["LANG", "LC_ALL", "LC_CTYPE", "TZ"];

/// How long connections on a confined instance's link listeners get to
/// finish when it stops for good.
const UNBIND_GRACE: Duration = Duration::from_secs(1);

/// The listener key of one instance's own copy of a link.
fn key(request: &StartInstance, link: &str) -> String {
    format!(
        "{}/{}.{link}@{}",
        request.id.app, request.id.component, request.id.index
    )
}

/// Creates the instance's namespace and binds its links inside it, at the
/// links' stable addresses.
pub(crate) async fn enter(
    inner: &Inner,
    confine: &Confine,
    request: &StartInstance,
) -> Result<Arc<Netns>, String> {
    let name = request.id.slug();
    // A namespace left by an earlier run of this instance is replaced.
    let _ = confine.dir.remove(&name);
    let ns = Arc::new(
        confine
            .dir
            .create(&name)
            .map_err(|e| format!("cannot create the network namespace of {}: {e}", request.id))?,
    );
    confine
        .connector
        .insert(&request.id.to_string(), Arc::clone(&ns));
    for (link, (addr, protocol)) in &request.links {
        let Some(target) = request.component.links.get(link) else {
            continue;
        };
        let backends = inner.backends_for((
            request.id.app.clone(),
            target.component.clone(),
            target.input.clone(),
        ));
        let spec = ProxySpec {
            name: key(request, link.as_str()),
            protocol: *protocol,
            backends,
            // One instance's links may not take every connection the data
            // plane holds from the other instances and the gateways.
            max_connections: inner.config.link_connections,
        };
        inner
            .dataplane
            .bind_with(
                &NetnsBinder(Arc::clone(&ns)),
                &key(request, link.as_str()),
                *addr,
                spec,
            )
            .await
            .map_err(|e| {
                format!(
                    "cannot place link `{link}` of {} in its namespace: {e}",
                    request.id
                )
            })?;
    }
    if let Some(platform) = &request.platform {
        // The platform API, forwarded from the instance's own loopback to
        // the node's API: the one address outside its links it may reach,
        // and only with its scoped token.
        let mut api = platform.api;
        if api.ip().is_unspecified() {
            api.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let backends = vdc_dataplane::Backends::new("vdc/api");
        backends.set(vec![vdc_dataplane::Endpoint {
            instance: PLATFORM_ENDPOINT.to_owned(),
            addr: api,
        }]);
        let key = key(request, PLATFORM_LINK);
        inner
            .dataplane
            .bind_with(
                &NetnsBinder(Arc::clone(&ns)),
                &key,
                crate::platform_address_in_namespace(platform.api),
                ProxySpec {
                    name: key.clone(),
                    protocol: vdc_spec::Protocol::Tcp,
                    backends,
                    max_connections: Some(PLATFORM_CONNECTIONS),
                },
            )
            .await
            .map_err(|e| {
                format!(
                    "cannot place the platform API in the namespace of {}: {e}",
                    request.id
                )
            })?;
    }
    Ok(ns)
}

/// Connections one instance may hold to the platform API at once: plenty
/// for reports and requests, and no way to take the API from others.
const PLATFORM_CONNECTIONS: usize = 16;

/// The pseudo-link under which the platform API is bound in a namespace
/// (not a valid terminal name, so no link of the spec can take it).
const PLATFORM_LINK: &str = "vdc:api";
/// The endpoint name of the node's API; no instance has it, so the data
/// plane connects to it on the node's own network.
const PLATFORM_ENDPOINT: &str = "vdc-api";

/// Undoes [`enter`] once the instance is gone for good.
pub(crate) async fn leave(
    inner: &Inner,
    confine: &Confine,
    request: &StartInstance,
    ns: Arc<Netns>,
) {
    for link in request.links.keys() {
        inner
            .dataplane
            .unbind(&key(request, link.as_str()), UNBIND_GRACE)
            .await;
    }
    if request.platform.is_some() {
        inner
            .dataplane
            .unbind(&key(request, PLATFORM_LINK), UNBIND_GRACE)
            .await;
    }
    confine.connector.remove(&request.id.to_string());
    drop(ns);
    if let Err(e) = confine.dir.remove(&request.id.slug()) {
        tracing::warn!(instance = %request.id, "cannot remove its network namespace: {e}");
    }
}

// === the sandbox's settings ===

/// Who the instance runs as: the user its spec names, or its own uid.
pub(crate) fn run_as(component: &ComponentSpec, allocated: Option<u32>) -> Result<RunAs, String> {
    match (&component.user, allocated) {
        (Some(user), _) => users::resolve(user),
        (None, Some(uid)) => Ok(RunAs {
            uid,
            gid: uid,
            name: INSTANCE_USER.to_owned(),
        }),
        (None, None) => Err("no uid was set aside for the instance".to_owned()),
    }
}

/// The working directory must be one the instance's user can read, and
/// not the node's data directory or anything in it.
pub(crate) fn check_workdir(workdir: &Path, data_dir: &Path, user: &RunAs) -> Result<(), String> {
    let real = workdir.canonicalize().map_err(|e| {
        format!(
            "the working directory {} cannot be used: {e}",
            workdir.display()
        )
    })?;
    let data = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_owned());
    if real.starts_with(&data) {
        return Err(format!(
            "the working directory {} is inside the node's data directory, which instances never see",
            workdir.display()
        ));
    }
    if !users::can_read_dir(&real, user) {
        return Err(format!(
            "the working directory {} is not readable by the instance's user (uid {}): make it readable by others (chmod o+rx), or keep the app's files in a directory that is",
            workdir.display(),
            user.uid
        ));
    }
    Ok(())
}

/// Makes sure a volume's mount point exists where the instance's view
/// cannot create it itself: inside a tree of the host it shows read-only
/// (`/var/lib/redis`) or inside its working directory. Elsewhere (`/data`)
/// the view makes it, and the host is left as it is.
pub(crate) async fn mount_point(target: &Path, workdir: &Path) -> Result<(), String> {
    if !vdc_sandbox::view::shows(target) && !target.starts_with(workdir) {
        return Ok(());
    }
    tokio::fs::create_dir_all(target)
        .await
        .map_err(|e| format!("cannot create the mount point {}: {e}", target.display()))
}

/// The environment a confined instance starts from, before the platform's
/// variables and its spec's: `PATH`, its home and user name, and how the
/// node shows text and time. Nothing else of the node's environment.
pub(crate) fn base_env(user: &RunAs) -> Vec<(String, String)> {
    let home = vdc_sandbox::User {
        uid: user.uid,
        gid: user.gid,
        name: user.name.clone(),
    }
    .home();
    let mut env = vec![
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HOME".to_owned(), home.display().to_string()),
        ("USER".to_owned(), user.name.clone()),
        ("LOGNAME".to_owned(), user.name.clone()),
    ];
    for name in PASSED_ON {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_owned(), value));
        }
    }
    env
}
