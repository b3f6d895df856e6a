//! A component's ways in and out: its links (outputs) and its gateway (an
//! input opened to the outside).

use std::net::{IpAddr, Ipv4Addr};

use super::read::{self, Fields};
use super::{check_name, Draft, DraftGateway, DraftLink};
use crate::diagnostic::{Sink, Span};
use crate::model::ComponentSpec;
use crate::raw::Entry;

/// Reads `links = { name = "component.input" }`; targets are checked later,
/// against the other components.
pub(super) fn links(sink: &mut Sink, entry: &Entry) -> Vec<DraftLink> {
    let Some(table) = read::table(sink, entry, "a table like { db = \"db.kv\" }") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for link in table {
        let name_ok = check_name(sink, link.key_span.clone(), "link", &link.key);
        let target = read::string(sink, link, "a target `component.input`, like \"db.kv\"");
        if let (true, Some(target)) = (name_ok, target) {
            out.push(DraftLink {
                name: link.key.clone(),
                at: link.key_span.clone(),
                target: target.to_owned(),
                target_at: link.value_span(),
            });
        }
    }
    out
}

/// A `builtin:http-lb` has exactly one link, `backend`.
pub(super) fn lb_links(sink: &mut Sink, draft: &Draft, links: Option<&Entry>) {
    let backend = ComponentSpec::LB_BACKEND;
    for link in &draft.links {
        if link.name != backend {
            sink.error(
                link.at.clone(),
                format!(
                    "link `{}` is not allowed on a `{}` component: its only link is `{backend}`",
                    link.name, draft.appliance
                ),
            );
        }
    }
    if !draft.links.iter().any(|l| l.name == backend) {
        sink.error_help(
            links.map_or_else(|| draft.at.clone(), |e| e.key_span.clone()),
            format!(
                "component `{}` has no link `{backend}`; expected the input it balances",
                draft.name
            ),
            format!("add a line like `links = {{ {backend} = \"web.http\" }}`"),
        );
    }
}

/// The gateway: its port, its address, and the input it exposes.
pub(super) fn gateway(sink: &mut Sink, entry: &Entry, draft: &Draft) -> Option<DraftGateway> {
    let table = read::table(sink, entry, "a table like { port = 8080 }")?;
    let what = format!("the gateway of component `{}`", draft.name);
    let f = Fields::new(sink, table, &what, &["port", "input", "address"]);
    let at = entry.key_span.clone();
    let port_entry = f.get("port");
    let port = match port_entry {
        Some(e) => read::integer(sink, e, "a port", 1, 65535).and_then(|p| u16::try_from(p).ok()),
        None => {
            sink.error_help(
                at.clone(),
                format!("{what} has no `port`; expected the port to listen on"),
                "write it like `gateway = { port = 8080 }`",
            );
            None
        }
    };
    let address = match f.get("address") {
        Some(e) => read::string(sink, e, "an IP address, like \"0.0.0.0\"").and_then(|a| {
            a.parse::<IpAddr>()
                .map_err(|_| {
                    sink.error(
                        e.value_span(),
                        format!("invalid `address` \"{a}\": expected an IP address, like \"0.0.0.0\" or \"127.0.0.1\""),
                    )
                })
                .ok()
        }),
        None => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    };
    let input = gateway_input(sink, &f, draft, &what, &at);
    let (port, port_at) = (
        port?,
        port_entry.map(Entry::value_span).unwrap_or(at.clone()),
    );
    if port < 1024 {
        sink.warning(
            port_at.clone(),
            format!("port {port} is privileged: listening on it needs root or the CAP_NET_BIND_SERVICE capability"),
            "use a port of 1024 or more, like 8080",
        );
    }
    Some(DraftGateway {
        input,
        address: address?,
        port,
        port_at,
    })
}

fn gateway_input(
    sink: &mut Sink,
    f: &Fields<'_>,
    draft: &Draft,
    what: &str,
    at: &Span,
) -> Option<String> {
    let names: Vec<&String> = draft.inputs.keys().collect();
    match f.get("input") {
        Some(e) => {
            let name = read::string(sink, e, "the name of one of the component's inputs")?;
            if draft.inputs.contains_key(name) {
                return Some(name.to_owned());
            }
            let message = format!("{what} exposes input `{name}`, which does not exist");
            let help = if names.is_empty() {
                format!("component `{}` declares no inputs", draft.name)
            } else {
                format!(
                    "the inputs of component `{}` are {}",
                    draft.name,
                    read::list(&names)
                )
            };
            sink.error_help(e.value_span(), message, help);
            None
        }
        None => match names.as_slice() {
            [only] => Some((*only).clone()),
            [] => {
                sink.error_help(
                    at.clone(),
                    format!("{what} has no input to expose: the component declares no inputs"),
                    "declare one, like `inputs = { http = { protocol = \"http\" } }`",
                );
                None
            }
            several => {
                sink.error_help(
                    at.clone(),
                    format!(
                        "{what} needs an `input`: the component has inputs {}",
                        read::list(several)
                    ),
                    format!("name the one to expose, like `input = \"{}\"`", several[0]),
                );
                None
            }
        },
    }
}
