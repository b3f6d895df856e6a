//! Rules across components: links lead to existing inputs of other
//! components, links do not loop, the load balancer's backend speaks HTTP,
//! and no two gateways listen on the same port.

use std::collections::{BTreeMap, VecDeque};
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
/// Components that reach each other form a loop (a strongly connected
/// component of the link graph); for each such group the link written last
/// in the file is reported, with the shortest way back from its target to
/// its source. Linear in components and links: each group is found once
/// (Tarjan's algorithm), and each path is searched within its group.
fn cycles(sink: &mut Sink, drafts: &[Draft], edges: &[Edge<'_>]) {
    let n = drafts.len();
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
    for e in edges {
        next[e.from].push(e.to);
    }
    for targets in &mut next {
        targets.sort_unstable();
        targets.dedup();
    }
    let group_of = strongly_connected(&next);
    let mut size = vec![0usize; n];
    for &g in &group_of {
        size[g] += 1;
    }
    // The last link written inside each group that loops.
    let mut last: BTreeMap<usize, &Edge<'_>> = BTreeMap::new();
    for e in edges {
        let g = group_of[e.from];
        if g != group_of[e.to] || (size[g] == 1 && e.from != e.to) {
            continue;
        }
        let later = last.get(&g).is_none_or(|l| e.at.start > l.at.start);
        if later {
            last.insert(g, e);
        }
    }
    for (g, last) in last {
        let path = shortest_path(&next, &group_of, g, last.to, last.from);
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

/// The strongly connected component of each node, by Tarjan's algorithm,
/// written with an explicit stack so that a chain of thousands of links
/// does not exhaust the thread's.
fn strongly_connected(next: &[Vec<usize>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = next.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut group = vec![UNSEEN; n];
    let mut stack = Vec::new();
    let mut counter = 0;
    let mut groups = 0;
    // (node, how many of its links were followed)
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        calls.push((root, 0));
        while let Some(&mut (v, ref mut followed)) = calls.last_mut() {
            if *followed == 0 && index[v] == UNSEEN {
                index[v] = counter;
                low[v] = counter;
                counter += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = next[v].get(*followed) {
                *followed += 1;
                if index[w] == UNSEEN {
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    group[w] = groups;
                    if w == v {
                        break;
                    }
                }
                groups += 1;
            }
        }
    }
    group
}

/// The components on a shortest path from `from` to `to` (both in group
/// `within`), both included, not leaving the group.
fn shortest_path(
    next: &[Vec<usize>],
    group_of: &[usize],
    within: usize,
    from: usize,
    to: usize,
) -> Vec<usize> {
    let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    let mut found = from == to;
    while let Some(i) = queue.pop_front() {
        if found {
            break;
        }
        for &j in &next[i] {
            if group_of[j] == within && j != from && !parent.contains_key(&j) {
                parent.insert(j, i);
                if j == to {
                    found = true;
                }
                queue.push_back(j);
            }
        }
    }
    let mut path = vec![to];
    let mut cur = to;
    while let Some(&p) = parent.get(&cur) {
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
    // Per port: the first gateway seen on it, the first on each address,
    // and the first on all addresses.
    type Seen<'d> = (&'d Draft, IpAddr, Span);
    #[derive(Default)]
    struct Port<'d> {
        first: Option<Seen<'d>>,
        by_address: BTreeMap<IpAddr, Seen<'d>>,
        any_address: Option<Seen<'d>>,
    }
    let mut taken: BTreeMap<u16, Port<'_>> = BTreeMap::new();
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
        let on_port = taken.entry(port).or_default();
        let clash = if address.is_unspecified() {
            on_port.first.as_ref()
        } else {
            on_port
                .by_address
                .get(&address)
                .or(on_port.any_address.as_ref())
        };
        if let Some((other, other_address, other_at)) = clash {
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
        let seen = (draft, address, at);
        on_port.first.get_or_insert_with(|| seen.clone());
        if address.is_unspecified() {
            on_port.any_address.get_or_insert_with(|| seen.clone());
        }
        on_port.by_address.entry(address).or_insert(seen);
    }
}
