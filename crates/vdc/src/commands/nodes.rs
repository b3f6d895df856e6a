//! `vdc node list|drain|undrain`.

use vdc_api::{DrainRequest, NodeSummary};

use crate::cli::{Format, NodeCommand};
use crate::client::{url_path_escape, Client};

pub async fn run(client: &Client, command: NodeCommand, format: Format) -> anyhow::Result<()> {
    match command {
        NodeCommand::List => {
            let nodes: Vec<NodeSummary> = client.get("/v1/nodes").await?;
            print(&nodes, format)
        }
        NodeCommand::Drain { name } => set_draining(client, &name, true, format).await,
        NodeCommand::Undrain { name } => set_draining(client, &name, false, format).await,
    }
}

async fn set_draining(
    client: &Client,
    name: &str,
    draining: bool,
    format: Format,
) -> anyhow::Result<()> {
    let node: NodeSummary = client
        .post(
            &format!("/v1/nodes/{}/drain", url_path_escape(name)),
            &DrainRequest { draining },
        )
        .await?;
    if format == Format::Table {
        if draining {
            println!(
                "draining {name}: its {} instance(s) move to other nodes, each stopping here once its copy is ready; `vdc node list` shows progress",
                node.instances
            );
        } else {
            println!("{name} takes new instances again");
        }
        Ok(())
    } else {
        print(&[node], format)
    }
}

fn print(nodes: &[NodeSummary], format: Format) -> anyhow::Result<()> {
    if format != Format::Table {
        println!("{}", serde_json::to_string_pretty(nodes)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<9} {:<15} {:>9} {:>15} {:>13} {:>9} {:>6}  LABELS",
        "NODE", "STATE", "ADDRESS", "CPU", "MEMORY", "DISK FREE", "INSTANCES", "SEEN"
    );
    for n in nodes {
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<16} {:<9} {:<15} {:>9} {:>15} {:>13} {:>9} {:>6}  {}",
            n.name,
            n.state,
            n.address,
            format!(
                "{:.1}/{:.1}",
                n.allocated_cpu_millis as f64 / 1000.0,
                n.cpu_millis as f64 / 1000.0
            ),
            format!("{}/{}", gib(n.allocated_memory_bytes), gib(n.memory_bytes)),
            match (n.disk_free_bytes, n.disk_total_bytes) {
                (Some(free), Some(total)) => format!("{}/{}", gib(free), gib(total)),
                _ => "-".to_owned(),
            },
            n.instances,
            format!("{:.1}s", n.heartbeat_age_ms as f64 / 1000.0),
            if labels.is_empty() {
                "-".to_owned()
            } else {
                labels.join(",")
            }
        );
    }
    Ok(())
}

fn gib(bytes: u64) -> String {
    format!("{:.1}G", bytes as f64 / (1u64 << 30) as f64)
}
