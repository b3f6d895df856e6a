//! Tests of the reconciler: a desired state and an actual state in, actions
//! out; no processes, sockets or clocks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use vdc_model::{AppRecord, InstanceState, InstanceStatus, Isolation, NodeInfo};
use vdc_spec::*;

use super::*;

fn name<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn component(n: &str, replicas: u32) -> ComponentSpec {
    ComponentSpec {
        name: name(n),
        appliance: Appliance::Process,
        command: vec!["true".into()],
        image: None,
        args: None,
        env: BTreeMap::new(),
        workdir: PathBuf::from("/"),
        resources: Resources {
            cpu: MilliCpu(500),
            memory: Bytes(256 << 20),
        },
        replicas: Replicas {
            count: replicas,
            min: replicas,
            max: replicas,
        },
        inputs: BTreeMap::from([(
            name("http"),
            InputSpec {
                name: name("http"),
                protocol: Protocol::Http,
                health: HealthCheck {
                    probe: Probe::Tcp,
                    initial_delay: Duration::ZERO,
                    start_period: HealthCheck::DEFAULT_START_PERIOD,
                    interval: Duration::from_secs(1),
                    timeout: Duration::from_secs(1),
                    failures: 3,
                },
                sla: None,
            },
        )]),
        links: BTreeMap::new(),
        volumes: BTreeMap::new(),
        gateway: None,
        stop_grace: Duration::from_secs(5),
        egress: false,
        placement: Default::default(),
        backup: None,
        user: None,
    }
}

fn app(n: &str, components: Vec<ComponentSpec>) -> AppRecord {
    let spec = AppSpec {
        name: name(n),
        tenant: TenantName::default_tenant(),
        budget: None,
        components: components
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect(),
        base_dir: PathBuf::from("/"),
    };
    AppRecord::submit(spec, "app.toml".into(), String::new(), 0, None, "a1")
}

fn node(id: &str, cpu: u64) -> NodeInfo {
    NodeInfo {
        id: NodeId(id.into()),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        capacity: Resources {
            cpu: MilliCpu(cpu),
            memory: Bytes(16 << 30),
        },
        labels: BTreeMap::new(),
        disk: None,
    }
}

fn running(id: &str, state: InstanceState, revision: u64) -> InstanceStatus {
    InstanceStatus {
        image: None,
        id: id.parse().unwrap(),
        node: NodeId("n1".into()),
        state,
        revision,
        pid: Some(42),
        program_pid: Some(42),
        locators: BTreeMap::new(),
        restarts: 0,
        started_at_ms: Some(0),
        since_ms: 0,
        isolation: Isolation::PROCESS_GROUP,
        last_exit: None,
        message: None,
    }
}

fn run(apps: &[AppRecord], instances: &[InstanceStatus]) -> Plan {
    reconcile(apps, instances, &[node("n1", 8000)], &BTreeSet::new())
}

#[test]
fn starts_every_missing_replica() {
    let plan = run(
        &[app("shop", vec![component("web", 3), component("db", 1)])],
        &[],
    );
    let started: Vec<String> = plan
        .actions
        .iter()
        .map(|a| match a {
            Action::Start { instance, .. } => instance.to_string(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        started,
        ["shop/db/0", "shop/web/0", "shop/web/1", "shop/web/2"]
    );
}

#[test]
fn converged_state_needs_nothing() {
    let apps = [app("shop", vec![component("web", 2)])];
    let actual = [
        running("shop/web/0", InstanceState::Ready, 1),
        running("shop/web/1", InstanceState::Backoff, 1),
    ];
    assert_eq!(run(&apps, &actual), Plan::default());
}

#[test]
fn scales_down_from_the_highest_index() {
    let apps = [app("shop", vec![component("web", 1)])];
    let actual = [
        running("shop/web/0", InstanceState::Ready, 1),
        running("shop/web/1", InstanceState::Ready, 1),
    ];
    let plan = run(&apps, &actual);
    assert_eq!(
        plan.actions,
        [Action::Stop {
            instance: "shop/web/1".parse().unwrap(),
            node: NodeId("n1".into()),
            reason: StopReason::ScaledDown,
        }]
    );
}

#[test]
fn deleting_an_app_stops_everything_then_forgets_it() {
    let mut record = app("shop", vec![component("web", 1)]);
    record.deleting = true;
    let plan = run(
        &[record.clone()],
        &[running("shop/web/0", InstanceState::Ready, 1)],
    );
    assert!(matches!(
        plan.actions[..],
        [Action::Stop {
            reason: StopReason::AppDeleted,
            ..
        }]
    ));

    // While the instance is stopping, nothing more to do and not forgotten yet.
    let plan = run(
        &[record.clone()],
        &[running("shop/web/0", InstanceState::Stopping, 1)],
    );
    assert!(plan.actions.is_empty());

    let plan = run(&[record], &[]);
    assert_eq!(plan.actions, [Action::Forget { app: name("shop") }]);
}

#[test]
fn instances_of_unknown_apps_are_stopped() {
    let plan = run(&[], &[running("gone/web/0", InstanceState::Ready, 1)]);
    assert!(matches!(
        plan.actions[..],
        [Action::Stop {
            reason: StopReason::AppDeleted,
            ..
        }]
    ));
}

#[test]
fn a_changed_component_is_replaced_and_an_unchanged_one_kept() {
    let v1 = app("shop", vec![component("web", 1), component("db", 1)]);
    let mut web = component("web", 1);
    web.env.insert("MODE".into(), "fast".into());
    let spec = AppSpec {
        components: [web, component("db", 1)]
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect(),
        ..v1.spec.clone()
    };
    let v2 = AppRecord::submit(spec, "app.toml".into(), String::new(), 1, Some(&v1), "a2");
    assert_eq!(v2.revision, 2);
    let actual = [
        running("shop/web/0", InstanceState::Ready, 1),
        running("shop/db/0", InstanceState::Ready, 1),
    ];
    let plan = run(&[v2], &actual);
    assert_eq!(
        plan.actions,
        [Action::Replace {
            instance: "shop/web/0".parse().unwrap(),
            node: NodeId("n1".into()),
            revision: 2,
        }]
    );
}

#[test]
fn builtin_components_get_no_instances() {
    let mut lb = component("lb", 1);
    lb.appliance = Appliance::BuiltinHttpLb;
    let plan = run(&[app("shop", vec![lb])], &[]);
    assert!(plan.actions.is_empty());
}

#[test]
fn what_does_not_fit_is_reported() {
    let apps = [app("shop", vec![component("web", 3)])];
    let plan = reconcile(&apps, &[], &[node("n1", 1000)], &BTreeSet::new());
    assert_eq!(plan.actions.len(), 2);
    assert_eq!(plan.unplaced.len(), 1);
    assert!(
        plan.unplaced[0].reason.contains("shop/web/2"),
        "{}",
        plan.unplaced[0].reason
    );
}

fn ssd_db() -> ComponentSpec {
    let mut db = component("db", 1);
    db.placement
        .labels
        .insert("disk".to_owned(), "ssd".to_owned());
    db
}

#[test]
fn a_placement_label_picks_the_labelled_node() {
    let mut ssd = node("n2", 8000);
    ssd.labels.insert("disk".to_owned(), "ssd".to_owned());
    let nodes = [node("n1", 1000), ssd];
    let plan = reconcile(
        &[app("shop", vec![ssd_db()])],
        &[],
        &nodes,
        &BTreeSet::new(),
    );
    assert_eq!(
        plan.actions,
        [Action::Start {
            instance: "shop/db/0".parse().unwrap(),
            node: NodeId("n2".into()),
            revision: 1,
        }]
    );
}

#[test]
fn a_placement_label_no_node_has_is_the_reason() {
    let mut hdd = node("n2", 8000);
    hdd.labels.insert("disk".to_owned(), "hdd".to_owned());
    let plan = reconcile(
        &[app("shop", vec![ssd_db()])],
        &[],
        &[node("n1", 8000), hdd],
        &BTreeSet::new(),
    );
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(
        plan.unplaced[0].reason,
        "no node has label disk=ssd for shop/db/0 (0.5 CPU and 256MiB memory)"
    );
}

#[test]
fn running_instances_reserve_their_node() {
    // n1 is full with web/0 and db/0: web/2 goes to n2, although n1 would
    // be the tighter fit were its instances not counted.
    let apps = [app("shop", vec![component("web", 3), component("db", 1)])];
    let mut on_n2 = running("shop/web/1", InstanceState::Ready, 1);
    on_n2.node = NodeId("n2".into());
    let actual = [
        running("shop/web/0", InstanceState::Ready, 1),
        running("shop/db/0", InstanceState::Ready, 1),
        on_n2,
    ];
    let nodes = [node("n1", 1000), node("n2", 2000)];
    let plan = reconcile(&apps, &actual, &nodes, &BTreeSet::new());
    assert_eq!(
        plan.actions,
        [Action::Start {
            instance: "shop/web/2".parse().unwrap(),
            node: NodeId("n2".into()),
            revision: 1,
        }]
    );
}

#[test]
fn wiring_declares_only_links_and_gateways() {
    let mut web = component("web", 2);
    web.links.insert(
        name("db"),
        LinkTarget {
            component: name("db"),
            input: name("http"),
        },
    );
    let mut lb = component("lb", 1);
    lb.appliance = Appliance::BuiltinHttpLb;
    lb.inputs.clear();
    lb.links.insert(
        name("backend"),
        LinkTarget {
            component: name("web"),
            input: name("http"),
        },
    );
    lb.gateway = Some(GatewaySpec {
        input: name("http"),
        address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 8080,
    });
    let plans = wiring(&[app("shop", vec![lb, web, component("db", 1)])]);
    let keys: Vec<&str> = plans.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["shop/lb:gateway", "shop/web.db"]);
    assert_eq!(plans[0].target.to_string(), "web.http");
    assert_eq!(plans[0].fixed_address().map(|a| a.port()), Some(8080));
}

proptest! {
    /// Applying the plan's starts and stops to the actual state converges in
    /// one step: the next plan is empty.
    #[test]
    fn converges_in_one_step(
        want in prop::collection::vec(0u32..5, 1..4),
        have in prop::collection::vec(0u32..6, 1..4),
    ) {
        let comps: Vec<ComponentSpec> = want.iter().enumerate()
            .map(|(i, n)| component(&format!("c{i}"), *n)).collect();
        let apps = [app("a", comps)];
        let mut actual: Vec<InstanceStatus> = have.iter().enumerate()
            .flat_map(|(i, n)| (0..*n).map(move |k| running(&format!("a/c{i}/{k}"), InstanceState::Ready, 1)))
            .collect();
        let plan = run(&apps, &actual);
        for action in plan.actions {
            match action {
                Action::Start { instance, revision, .. } => {
                    let mut s = running(&instance.to_string(), InstanceState::Starting, revision);
                    s.id = instance;
                    actual.push(s);
                }
                Action::Stop { instance, .. } => actual.retain(|s| s.id != instance),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert_eq!(run(&apps, &actual), Plan::default());
    }
}
