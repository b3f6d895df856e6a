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
    confined: bool,
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
        env.push((
            format!("VDC_INPUT_{name}_PORT"),
            locator.0.port().to_string(),
        ));
    }
    for (link, (addr, protocol)) in &request.links {
        let name = env_name(link.as_str());
        push_address(&mut env, &format!("VDC_LINK_{name}"), *addr);
        if *protocol == Protocol::Http {
            env.push((format!("VDC_LINK_{name}_URL"), format!("http://{addr}")));
        }
    }
    if let Some(platform) = &request.platform {
        let api = if confined {
            crate::platform_address_in_namespace(platform.api)
        } else {
            platform.api
        };
        env.push(("VDC_API".to_owned(), format!("http://{api}")));
        env.push(("VDC_TOKEN".to_owned(), platform.token.clone()));
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

/// Replaces `${NAME}` in a command argument with the instance's variable
/// `NAME`, so a command can take its port or volume as an argument
/// (`redis-server --port ${PORT}`) without a shell. Unknown names are left as
/// written, and `$${` escapes a literal `${`.
pub(crate) fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match env.iter().rev().find(|(k, _)| k == name) {
                    Some((_, value)) => out.push_str(value),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![
            ("PORT".into(), "4000".into()),
            ("VDC_VOLUME_DATA".into(), "/v".into()),
        ]
    }

    #[test]
    fn expands_known_names() {
        assert_eq!(expand("--port=${PORT}", &env()), "--port=4000");
        assert_eq!(expand("${VDC_VOLUME_DATA}/db", &env()), "/v/db");
        assert_eq!(expand("${PORT}${PORT}", &env()), "40004000");
    }

    #[test]
    fn leaves_unknown_and_escaped_alone() {
        assert_eq!(expand("${NOPE}", &env()), "${NOPE}");
        assert_eq!(expand("$${PORT}", &env()), "${PORT}");
        assert_eq!(expand("${PORT", &env()), "${PORT");
        assert_eq!(expand("plain $PORT", &env()), "plain $PORT");
    }

    #[test]
    fn names_become_variable_names() {
        assert_eq!(env_name("db-main"), "DB_MAIN");
    }
}
