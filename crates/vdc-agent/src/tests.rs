//! Agent tests with the fake driver: the lifecycle of an instance and the
//! data-plane wiring, without real programs. A test plays the program's part
//! by listening on the port the agent handed it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vdc_dataplane::DataPlane;
use vdc_driver::fake::FakeDriver;
use vdc_driver::ExitInfo;
use vdc_model::{InstanceId, InstanceState, NodeId, NodeInfo};
use vdc_reconciler::{ListenerKind, ListenerPlan};
use vdc_spec::*;

use super::*;

fn name<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

pub(crate) fn component() -> ComponentSpec {
    let health = HealthCheck {
        probe: Probe::Tcp,
        initial_delay: Duration::ZERO,
        start_period: HealthCheck::DEFAULT_START_PERIOD,
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(200),
        failures: 2,
    };
    ComponentSpec {
        name: name("echo"),
        appliance: Appliance::Process,
        command: vec!["echo-server".into(), "--port=${PORT}".into()],
        image: None,
        args: None,
        env: BTreeMap::from([("MODE".into(), "test".into())]),
        workdir: PathBuf::from("/"),
        resources: Resources {
            cpu: MilliCpu(500),
            memory: Bytes(64 << 20),
        },
        replicas: Replicas {
            count: 1,
            min: 1,
            max: 1,
        },
        inputs: BTreeMap::from([(
            name("tcp"),
            InputSpec {
                name: name("tcp"),
                protocol: Protocol::Tcp,
                health,
                sla: None,
            },
        )]),
        links: BTreeMap::new(),
        volumes: BTreeMap::new(),
        gateway: None,
        stop_grace: Duration::from_secs(1),
        egress: false,
        placement: Default::default(),
        backup: None,
        user: None,
    }
}

struct Harness {
    agent: Agent,
    driver: FakeDriver,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let driver = FakeDriver::new();
    let agent = Agent::new(
        AgentConfig {
            node: NodeInfo {
                id: NodeId("n1".into()),
                address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                capacity: Resources {
                    cpu: MilliCpu(2000),
                    memory: Bytes(1 << 30),
                },
                labels: BTreeMap::new(),
                disk: None,
            },
            data_dir: dir.path().to_path_buf(),
            cgroup_prefix: "vdc-test".into(),
            confine: None,
            instance_nofile: None,
            link_connections: None,
            images: None,
            pull: vdc_image::pull::PullOptions::default(),
            image_share: None,
        },
        Arc::new(driver.clone()),
        DataPlane::new().expect("the data plane starts"),
    );
    Harness {
        agent,
        driver,
        _dir: dir,
    }
}

fn start_request(index: u32) -> StartInstance {
    StartInstance {
        id: InstanceId::new(name("app"), name("echo"), index),
        tenant: TenantName::default_tenant(),
        revision: 1,
        component: component(),
        links: BTreeMap::from([(
            name("peer"),
            ("127.0.0.1:4444".parse().unwrap(), Protocol::Http),
        )]),
        platform: None,
        root_forbidden: false,
    }
}

/// The environment value the agent gave the `n`th start.
fn env_of(driver: &FakeDriver, n: usize, key: &str) -> String {
    let start = &driver.starts()[n];
    start
        .spec
        .env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{key} not in {:?}", start.spec.env))
}

/// Serves a one-line echo on the port the agent gave the instance.
async fn serve(port: &str, reply: &'static str) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    })
}

async fn wait_state(agent: &Agent, id: &InstanceId, state: InstanceState) -> InstanceStatus {
    for _ in 0..400 {
        if let Some(s) = agent.instances().into_iter().find(|s| &s.id == id) {
            if s.state == state {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id} never became {state}: {:?}", agent.instances());
}

#[tokio::test]
async fn an_instance_gets_its_environment_and_becomes_ready_when_its_probe_passes() {
    let h = harness();
    let id = start_request(0).id;
    h.agent.start(start_request(0));
    h.driver.until_started(1).await;

    let start = &h.driver.starts()[0];
    let port = env_of(&h.driver, 0, "PORT");
    assert_eq!(
        start.spec.args,
        [format!("--port={port}")],
        "${{PORT}} is expanded"
    );
    assert_eq!(env_of(&h.driver, 0, "VDC_INPUT_TCP_PORT"), port);
    assert_eq!(env_of(&h.driver, 0, "VDC_LINK_PEER"), "127.0.0.1:4444");
    assert_eq!(
        env_of(&h.driver, 0, "VDC_LINK_PEER_URL"),
        "http://127.0.0.1:4444"
    );
    assert_eq!(env_of(&h.driver, 0, "VDC_INSTANCE"), "app/echo/0");
    assert_eq!(env_of(&h.driver, 0, "MODE"), "test");
    assert_eq!(start.spec.cgroup_name, "vdc-test/app.echo.0");
    assert_eq!(start.spec.limits.cpu_millis, Some(500));

    // Not listening yet: still starting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.agent.instances()[0].state, InstanceState::Starting);
    let _server = serve(&port, "hello\n").await;
    let status = wait_state(&h.agent, &id, InstanceState::Ready).await;
    assert_eq!(
        status.locators[&name::<TerminalName>("tcp")]
            .0
            .port()
            .to_string(),
        port
    );
}

#[tokio::test]
async fn an_exited_instance_is_restarted_with_a_new_port_and_counted() {
    let h = harness();
    let id = start_request(0).id;
    h.agent.start(start_request(0));
    h.driver.until_started(1).await;
    let server = serve(&env_of(&h.driver, 0, "PORT"), "a\n").await;
    wait_state(&h.agent, &id, InstanceState::Ready).await;

    server.abort();
    assert!(h.driver.exit("app/echo/0", ExitInfo::signal(9)));
    h.driver.until_started(2).await;
    let status = h.agent.instances().into_iter().next().unwrap();
    assert_eq!(status.restarts, 1);
    assert_eq!(
        status.last_exit.as_deref(),
        Some("killed by signal 9 (SIGKILL)")
    );
    let _server = serve(&env_of(&h.driver, 1, "PORT"), "b\n").await;
    wait_state(&h.agent, &id, InstanceState::Ready).await;
}

#[tokio::test]
async fn failing_probes_take_a_ready_instance_out_and_back_in() {
    let h = harness();
    let id = start_request(0).id;
    h.agent.start(start_request(0));
    h.driver.until_started(1).await;
    let port = env_of(&h.driver, 0, "PORT");
    let server = serve(&port, "a\n").await;
    wait_state(&h.agent, &id, InstanceState::Ready).await;
    server.abort();
    let status = wait_state(&h.agent, &id, InstanceState::Unhealthy).await;
    assert!(status
        .message
        .unwrap()
        .contains("health check of input `tcp` failed"));
    let _server = serve(&port, "a\n").await;
    wait_state(&h.agent, &id, InstanceState::Ready).await;
}

#[tokio::test]
async fn a_start_failure_backs_off_and_says_why() {
    let h = harness();
    h.driver.fail_program("echo-server");
    h.agent.start(start_request(0));
    let id = start_request(0).id;
    let status = wait_state(&h.agent, &id, InstanceState::Backoff).await;
    assert!(
        status.message.unwrap().contains("echo-server"),
        "the error names the program"
    );
}

#[tokio::test]
async fn stop_stops_the_process_with_its_grace_and_forgets_the_instance() {
    let h = harness();
    let id = start_request(0).id;
    let mut changes = h.agent.subscribe();
    h.agent.start(start_request(0));
    h.driver.until_started(1).await;
    h.agent.stop(&id);
    for _ in 0..200 {
        if h.agent.instances().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(h.agent.instances().is_empty());
    let stops = h.driver.stops();
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].grace, Duration::from_secs(1));
    // The last change published says the instance is stopped.
    let mut last = None;
    while let Ok(s) = changes.try_recv() {
        last = Some(s.state);
    }
    assert_eq!(last, Some(InstanceState::Stopped));
}

#[tokio::test]
async fn a_link_forwards_only_to_ready_instances() {
    let h = harness();
    let plan = ListenerPlan {
        key: "app/client.echo".into(),
        tenant: TenantName::default_tenant(),
        app: name("app"),
        kind: ListenerKind::Link {
            component: name("client"),
            link: name("echo"),
        },
        protocol: Protocol::Tcp,
        target: LinkTarget {
            component: name("echo"),
            input: name("tcp"),
        },
    };
    let (bindings, errors) = h
        .agent
        .apply_wiring(std::slice::from_ref(&plan), &BTreeMap::new())
        .await;
    assert!(errors.is_empty(), "{errors:?}");
    let link: SocketAddr = bindings[0].address;

    // No ready instance: the connection is closed without data.
    let mut s = TcpStream::connect(link).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    assert!(buf.is_empty());

    let id = start_request(0).id;
    h.agent.start(start_request(0));
    h.driver.until_started(1).await;
    let _server = serve(&env_of(&h.driver, 0, "PORT"), "from instance 0\n").await;
    wait_state(&h.agent, &id, InstanceState::Ready).await;
    let mut s = TcpStream::connect(link).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    assert_eq!(buf, "from instance 0\n");

    // The address is stable: applying the same plan again keeps it, and a
    // known address is reused after a restart of the agent.
    let (again, _) = h
        .agent
        .apply_wiring(std::slice::from_ref(&plan), &BTreeMap::new())
        .await;
    assert_eq!(again[0].address, link);
    let (none, _) = h.agent.apply_wiring(&[], &BTreeMap::new()).await;
    assert!(none.is_empty());
    let known = BTreeMap::from([(plan.key.clone(), link)]);
    let (back, errors) = h.agent.apply_wiring(&[plan], &known).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(back[0].address, link);
}
