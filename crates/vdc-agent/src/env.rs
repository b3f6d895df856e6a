//! The environment an instance starts with: who it is, where its inputs must
//! listen, where its links and volumes are.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use vdc_model::{Locator, NodeInfo};
use vdc_spec::{Protocol, TerminalName, VolumeName};

use crate::StartInstance;

/// `db-main` -> `DB_MAIN`.
pub(crate) fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// Variables set by the platform (documented in docs/spec.md). The spec's own
/// `env` comes last but cannot override these: the validator rejects `VDC_*`
/// and `PORT` there.
pub(crate) fn instance_env(
    request: &StartInstance,
    node: &NodeInfo,
    locators: &BTreeMap<TerminalName, Locator>,
    volumes: &BTreeMap<VolumeName, PathBuf>,
) -> Vec<(String, String)> {
    let id = &request.id;
    let component = &request.component;
    let mut env = vec![
        ("VDC_TENANT".to_owned(), request.tenant.to_string()),
        ("VDC_APP".to_owned(), id.app.to_string()),
        ("VDC_COMPONENT".to_owned(), id.component.to_string()),
        ("VDC_INDEX".to_owned(), id.index.to_string()),
        ("VDC_INSTANCE".to_owned(), id.to_string()),
        ("VDC_NODE".to_owned(), node.id.to_string()),
    ];
    // PORT is the first input's port: most servers read it, and a component
    // with one input needs nothing else.
    if let Some(first) = locators.values().next() {
        env.push(("PORT".to_owned(), first.0.port().to_string()));
        env.push(("VDC_HOST".to_owned(), first.0.ip().to_string()));
    }
    for (input, locator) in locators {
        let name = env_name(input.as_str());
        env.push((format!("VDC_INPUT_{name}"), locator.to_string()));
        env.push((format!("VDC_INPUT_{name}_PORT"), locator.0.port().to_string()));
    }
    for (link, (addr, protocol)) in &request.links {
        let name = env_name(link.as_str());
        push_address(&mut env, &format!("VDC_LINK_{name}"), *addr);
        if *protocol == Protocol::Http {
            env.push((format!("VDC_LINK_{name}_URL"), format!("http://{addr}")));
        }
    }
    for (volume, path) in volumes {
        env.push((
            format!("VDC_VOLUME_{}", env_name(volume.as_str())),
            path.display().to_string(),
        ));
    }
    env.extend(component.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

fn push_address(env: &mut Vec<(String, String)>, name: &str, addr: SocketAddr) {
    env.push((name.to_owned(), addr.to_string()));
    env.push((format!("{name}_HOST"), addr.ip().to_string()));
    env.push((format!("{name}_PORT"), addr.port().to_string()));
}
