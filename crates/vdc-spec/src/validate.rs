//! Validation: from the raw tree to an [`AppSpec`], reporting every mistake.
//!
//! It runs in three passes. The first reads the top-level fields and each
//! component on its own into a [`Draft`] (wrong types, unknown fields, names,
//! units, per-component rules). The second checks what spans components:
//! links, cycles, gateways and the budget. The third, reached only when no
//! error was found, builds the model.

mod budget;
mod component;
mod input;
mod read;
mod sla;
mod terminals;
mod topology;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diagnostic::{Sink, Span};
use crate::model::*;
use crate::raw::Entry;
use crate::units::Bytes;
use read::Fields;

const TOP_FIELDS: &[&str] = &["app", "tenant", "budget", "components"];

/// The top of an app file, read but not yet cross-checked.
struct Top {
    name: Option<String>,
    tenant: Option<String>,
    budget: Option<(Budget, Span)>,
}

/// One component as read from the file. Names are kept as written (and
/// checked) so cross-checks can still run on components with other errors.
pub(crate) struct Draft {
    pub name: String,
    /// Where the component's key is written.
    pub at: Span,
    pub appliance: Appliance,
    pub command: Vec<String>,
    pub image: Option<String>,
    pub args: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub workdir: PathBuf,
    pub resources: Resources,
    /// Where the resources are written, or the component's key when they
    /// are defaults.
    pub resources_at: Span,
    pub replicas: Replicas,
    /// Inputs with valid names (the others were reported).
    pub inputs: BTreeMap<String, DraftInput>,
    pub links: Vec<DraftLink>,
    pub volumes: BTreeMap<String, (Option<Bytes>, Option<String>)>,
    pub gateway: Option<DraftGateway>,
    pub stop_grace: Duration,
    pub egress: bool,
    pub placement: Placement,
    pub backup: Option<BackupPolicy>,
    pub user: Option<String>,
}

pub(crate) struct DraftInput {
    pub protocol: Protocol,
    pub health: HealthCheck,
    /// The input's SLA, when it has a valid one.
    pub sla: Option<Sla>,
}

pub(crate) struct DraftLink {
    pub name: String,
    /// Where the link's key is written.
    pub at: Span,
    /// The target as written; checked in the topology pass, which knows the
    /// other components.
    pub target: String,
    pub target_at: Span,
}

pub(crate) struct DraftGateway {
    /// The input exposed, once resolved against the component's inputs.
    pub input: Option<String>,
    pub address: IpAddr,
    pub port: u16,
    pub port_at: Span,
}

// === entry point ===

/// Validates the parsed tree; `None` when any error was reported.
pub(crate) fn validate(
    sink: &mut Sink,
    source: &str,
    root: &[Entry],
    base_dir: &Path,
) -> Option<AppSpec> {
    let fields = Fields::new(sink, root, "the app file", TOP_FIELDS);
    let top = read_top(sink, &fields);
    let drafts = read_components(sink, &fields, base_dir);
    topology::check(sink, &drafts, source);
    if let Some((budget, at)) = &top.budget {
        budget::check(sink, &drafts, *budget, at);
    }
    if sink.has_errors() {
        return None;
    }
    build(sink, top, drafts, base_dir)
}

fn read_top(sink: &mut Sink, fields: &Fields<'_>) -> Top {
    let name = match fields.get("app") {
        Some(e) => read::string(sink, e, "the app's name, like \"shop\"")
            .filter(|s| check_name(sink, e.value_span(), "app", s)),
        None => {
            sink.error_help(
                0..0,
                "missing field `app`: expected the app's name",
                "add a line like `app = \"shop\"` at the top of the file",
            );
            None
        }
    };
    let tenant = fields.get("tenant").and_then(|e| {
        read::string(sink, e, "a tenant name, like \"default\"")
            .filter(|s| check_name(sink, e.value_span(), "tenant", s))
    });
    let budget = fields.get("budget").and_then(|e| read_budget(sink, e));
    Top {
        name: name.map(str::to_owned),
        tenant: tenant.map(str::to_owned),
        budget,
    }
}

fn read_budget(sink: &mut Sink, entry: &Entry) -> Option<(Budget, Span)> {
    let table = read::table(sink, entry, "a table like { cpu = 4, memory = \"4GiB\" }")?;
    let fields = Fields::new(sink, table, "`budget`", &["cpu", "memory"]);
    let cpu = fields.get("cpu").and_then(|e| read::cpu(sink, e));
    let memory = fields.get("memory").and_then(|e| read::memory(sink, e));
    let at = entry.key_span.clone();
    for (field, present) in [("cpu", fields.get("cpu")), ("memory", fields.get("memory"))] {
        if present.is_none() {
            sink.error_help(
                at.clone(),
                format!("`budget` has no `{field}`; expected both `cpu` and `memory`"),
                "write it like `budget = { cpu = 4, memory = \"4GiB\" }`",
            );
        }
    }
    Some((
        Budget {
            cpu: cpu?,
            memory: memory?,
        },
        at,
    ))
}

fn read_components(sink: &mut Sink, fields: &Fields<'_>, base_dir: &Path) -> Vec<Draft> {
    let Some(entry) = fields.get("components") else {
        sink.error_help(
            0..0,
            "missing `components`: expected at least one component",
            "declare one with a table like `[components.web]`",
        );
        return Vec::new();
    };
    let Some(table) = read::table(sink, entry, "a table of components, like [components.web]")
    else {
        return Vec::new();
    };
    if table.is_empty() {
        sink.error_help(
            entry.value_span(),
            "`components` is empty: expected at least one component",
            "declare one with a table like `[components.web]`",
        );
    }
    read::named_tables(sink, table, "a table describing the component")
        .into_iter()
        .map(|(e, t)| component::read(sink, e, t, base_dir))
        .collect()
}

/// Checks a name against the naming rule; reports it as `{what} name`.
pub(crate) fn check_name(sink: &mut Sink, at: Span, what: &str, name: &str) -> bool {
    if crate::is_valid_name(name) {
        return true;
    }
    let fixed = name.trim().to_lowercase().replace(['_', ' ', '.'], "-");
    let help = crate::is_valid_name(&fixed).then(|| format!("did you mean `{fixed}`?"));
    sink.error_maybe_help(
        at,
        format!(
            "invalid {what} name `{name}`: expected 1 to 63 lowercase letters, digits or `-`, \
             starting with a letter and not ending with `-`"
        ),
        help,
    );
    false
}

// === building the model ===

fn build(sink: &mut Sink, top: Top, drafts: Vec<Draft>, base_dir: &Path) -> Option<AppSpec> {
    let spec = (|| {
        let mut components = BTreeMap::new();
        for draft in drafts {
            let spec = build_component(draft)?;
            components.insert(spec.name.clone(), spec);
        }
        Some(AppSpec {
            name: AppName::new(top.name?).ok()?,
            tenant: match top.tenant {
                Some(t) => TenantName::new(t).ok()?,
                None => TenantName::default_tenant(),
            },
            budget: top.budget.map(|(b, _)| b),
            components,
            base_dir: base_dir.to_path_buf(),
        })
    })();
    if spec.is_none() {
        // Every name was checked in the first pass; reaching this is a bug,
        // reported rather than panicked on.
        sink.error(0..0, "internal error: a checked name did not build");
    }
    spec
}

fn build_component(d: Draft) -> Option<ComponentSpec> {
    let mut inputs = BTreeMap::new();
    for (name, input) in d.inputs {
        let name = TerminalName::new(name).ok()?;
        inputs.insert(
            name.clone(),
            InputSpec {
                name,
                protocol: input.protocol,
                health: input.health,
                sla: input.sla,
            },
        );
    }
    let mut links = BTreeMap::new();
    for link in d.links {
        let (component, input) = link.target.split_once('.')?;
        links.insert(
            TerminalName::new(link.name).ok()?,
            LinkTarget {
                component: ComponentName::new(component).ok()?,
                input: TerminalName::new(input).ok()?,
            },
        );
    }
    let mut volumes = BTreeMap::new();
    for (name, (size, mount)) in d.volumes {
        let name = VolumeName::new(name).ok()?;
        volumes.insert(name.clone(), VolumeSpec { name, size, mount });
    }
    let gateway = match d.gateway {
        Some(g) => Some(GatewaySpec {
            input: TerminalName::new(g.input?).ok()?,
            address: g.address,
            port: g.port,
        }),
        None => None,
    };
    Some(ComponentSpec {
        name: ComponentName::new(d.name).ok()?,
        appliance: d.appliance,
        command: d.command,
        image: d.image,
        args: d.args,
        env: d.env,
        workdir: d.workdir,
        resources: d.resources,
        replicas: d.replicas,
        inputs,
        links,
        volumes,
        gateway,
        stop_grace: d.stop_grace,
        egress: d.egress,
        placement: d.placement,
        backup: d.backup,
        user: d.user,
    })
}
