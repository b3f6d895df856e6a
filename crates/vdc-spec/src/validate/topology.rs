//! Rules across components: links lead to existing inputs of other
//! components, links do not loop, the load balancer's backend speaks HTTP,
//! and no two gateways listen on the same port.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;

use super::read;
use super::Draft;
use crate::diagnostic::LineIndex;
use crate::diagnostic::{Sink, Span};
use crate::model::{ComponentSpec, Protocol};

/// A link that leads to an existing input: `from` and `to` index the drafts.
struct Edge<'a> {
    from: usize,
    to: usize,
    name: &'a str,
    at: Span,
}

pub(super) fn check(sink: &mut Sink, drafts: &[Draft], source: &str) {
    let edges = links(sink, drafts);
    cycles(sink, drafts, &edges);
    gateways(sink, drafts, source);
}

/// Resolves every link and reports the ones that lead nowhere.
fn links<'a>(sink: &mut Sink, drafts: &'a [Draft]) -> Vec<Edge<'a>> {
    let by_name: BTreeMap<&str, usize> = drafts
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.as_str(), i))
        .collect();
    let names: Vec<&str> = by_name.keys().copied().collect();
    let mut edges = Vec::new();
    for (from, draft) in drafts.iter().enumerate() {
        for link in &draft.links {
            let what = format!("link `{}` of component `{}`", link.name, draft.name);
            let at = link.target_at.clone();
            let parts = link
                .target
                .split_once('.')
                .filter(|(_, input)| !input.contains('.'));
            let Some((component, input)) = parts else {
                let help = by_name
                    .get(link.target.as_str())
                    .and_then(|&i| sole_input(&drafts[i]))
                    .map(|input| format!("did you mean \"{}.{input}\"?", link.target));
                sink.error_maybe_help(
                    at,
                    format!(
                        "{what} has target \"{}\"; expected `component.input`, like \"db.kv\"",
                        link.target
                    ),
                    help,
                );
                continue;
            };
            let Some(&to) = by_name.get(component) else {
                let help = match read::closest(component, names.iter().copied()) {
                    Some(near) => format!(
                        "did you mean `{near}`? the components are {}",
                        read::list(&names)
                    ),
                    None => format!("the components are {}", read::list(&names)),
                };
                sink.error_help(
                    at,
                    format!("{what} points to component `{component}`, which does not exist"),
                    help,
                );
                continue;
            };
            let target = &drafts[to];
            if to == from {
                sink.error(
                    at,
                    format!("{what} points to component `{component}` itself; expected a link to another component"),
                );
                continue;
            }
            let Some(spec) = target.inputs.get(input) else {
                let inputs: Vec<&str> = target.inputs.keys().map(String::as_str).collect();
                let help = if inputs.is_empty() {
                    format!("component `{component}` declares no inputs")
                } else {
                    format!(
                        "the inputs of component `{component}` are {}",
                        read::list(&inputs)
                    )
                };
                sink.error_help(
                    at,
                    format!("{what} points to input `{input}` of component `{component}`, which does not exist"),
                    help,
                );
                continue;
            };
            if draft.appliance.is_builtin()
                && link.name == ComponentSpec::LB_BACKEND
                && spec.protocol != Protocol::Http
            {
                sink.error(
                    at.clone(),
                    format!(
                        "{what} points to input `{input}` of component `{component}`, which has protocol `{}`; \
                         expected an `http` input for `{}` to balance",
                        spec.protocol, draft.appliance
                    ),
                );
            }
            edges.push(Edge {
                from,
                to,
                name: &link.name,
                at: link.at.clone(),
            });
        }
    }
    edges
}

/// The input a link to this component most likely meant.
fn sole_input(draft: &Draft) -> Option<&str> {
    match draft.inputs.keys().collect::<Vec<_>>().as_slice() {
        [only] => Some(only.as_str()),
        _ => None,
    }
}

/// Reports one link per loop in the link graph, showing the whole loop.
///
/// Components that reach each other form a loop; for each such group the
/// link written last in the file is reported, with the shortest way back
/// from its target to its source.
fn cycles(sink: &mut Sink, drafts: &[Draft], edges: &[Edge<'_>]) {
    let n = drafts.len();
    let mut next: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for e in edges {
        next[e.from].insert(e.to);
    }
    let reach: Vec<Vec<bool>> = (0..n).map(|i| reachable(&next, i)).collect();
    let mut seen = vec![false; n];
    for start in 0..n {
        if seen[start] || !reach[start][start] {
            continue;
        }
        let group: Vec<usize> = (0..n)
            .filter(|&j| reach[start][j] && reach[j][start])
            .collect();
        for &j in &group {
            seen[j] = true;
        }
        let Some(last) = edges
            .iter()
            .filter(|e| group.contains(&e.from) && group.contains(&e.to))
            .max_by_key(|e| e.at.start)
        else {
            continue;
        };
        let path = shortest_path(&next, last.to, last.from);
        let names: Vec<&str> = path
            .iter()
            .chain(std::iter::once(&last.to))
            .map(|&i| drafts[i].name.as_str())
            .collect();
        sink.error_help(
            last.at.clone(),
            format!(
                "link `{}` of component `{}` closes a cycle: {}",
                last.name,
                drafts[last.from].name,
                names.join(" -> ")
            ),
            "links must not loop: vdc starts a component after the components it links to",
        );
    }
}

/// Which components `from` reaches by following one or more links.
fn reachable(next: &[BTreeSet<usize>], from: usize) -> Vec<bool> {
    let mut seen = vec![false; next.len()];
    let mut queue: VecDeque<usize> = next[from].iter().copied().collect();
    while let Some(i) = queue.pop_front() {
        if !seen[i] {
            seen[i] = true;
            queue.extend(next[i].iter().copied());
        }
    }
    seen
}

/// The components on a shortest path from `from` to `to`, both included.
fn shortest_path(next: &[BTreeSet<usize>], from: usize, to: usize) -> Vec<usize> {
    let mut parent: Vec<Option<usize>> = vec![None; next.len()];
    let mut queue = VecDeque::from([from]);
    let mut found = from == to;
    while let Some(i) = queue.pop_front() {
        if found {
            break;
        }
        for &j in &next[i] {
            if j != from && parent[j].is_none() {
                parent[j] = Some(i);
                if j == to {
                    found = true;
                }
                queue.push_back(j);
            }
        }
    }
    let mut path = vec![to];
    let mut cur = to;
    while let Some(p) = parent[cur] {
        path.push(p);
        cur = p;
        if path.len() > next.len() {
            break;
        }
    }
    path.reverse();
    path
}

/// Two gateways clash when they share a port and an address, or when one of
/// them listens on all addresses.
fn gateways(sink: &mut Sink, drafts: &[Draft], source: &str) {
    let index = LineIndex::new(source);
    let mut taken: Vec<(&Draft, IpAddr, u16, Span)> = Vec::new();
    let mut gws: Vec<(&Draft, IpAddr, u16, Span)> = drafts
        .iter()
        .filter_map(|d| {
            d.gateway
                .as_ref()
                .map(|g| (d, g.address, g.port, g.port_at.clone()))
        })
        .collect();
    gws.sort_by_key(|g| g.3.start);
    for (draft, address, port, at) in gws {
        let clash = taken.iter().find(|(_, a, p, _)| {
            *p == port && (*a == address || a.is_unspecified() || address.is_unspecified())
        });
        if let Some((other, other_address, _, other_at)) = clash {
            let (line, _) = index.position(source, other_at.start);
            let mut message = format!(
                "port {port} is already used by the gateway of component `{}` (line {line})",
                other.name
            );
            if *other_address != address {
                message.push_str(&format!(", which listens on {other_address}"));
            }
            sink.error_help(
                at.clone(),
                message,
                format!(
                    "gateways listen on the node's address; give component `{}` another port",
                    draft.name
                ),
            );
        }
        taken.push((draft, address, port, at));
    }
}
