//! Confined instances: each has its own network namespace, where the data
//! plane places the instance's link addresses (and nothing else), and
//! through which it reaches the instance's inputs.

use std::sync::Arc;
use std::time::Duration;

use vdc_dataplane::ProxySpec;
use vdc_netns::{Netns, NetnsBinder};

use crate::{Confine, Inner, StartInstance};

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
