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
    Ok(ns)
}

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
    confine.connector.remove(&request.id.to_string());
    drop(ns);
    if let Err(e) = confine.dir.remove(&request.id.slug()) {
        tracing::warn!(instance = %request.id, "cannot remove its network namespace: {e}");
    }
}
