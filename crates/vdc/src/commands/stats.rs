//! `vdc stats APP`: a one-shot snapshot of an app's traffic and resources.

use vdc_api::Topology;

use crate::cli::Format;
use crate::client::{url_path_escape, Client};
use crate::output::Table;

pub async fn run(client: &Client, app: &str, seconds: u64, format: Format) -> anyhow::Result<()> {
    let topology: Topology = client
        .get(&format!(
            "/v1/apps/{}/topology?seconds={seconds}",
            url_path_escape(app)
        ))
        .await?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&topology)?),
        Format::Table | Format::Csv => {
            println!(
                "{} ({}) — {}, rates over the last {} s\n",
                topology.app, topology.tenant, topology.state, topology.seconds
            );
            print!("{}", components_table(&topology).render());
            println!();
            print!("{}", links_table(&topology).render());
        }
    }
    Ok(())
}

pub fn components_table(t: &Topology) -> Table {
    let mut table = Table::new(&[
        "COMPONENT",
        "READY",
        "REQ/S",
        "ERR/S",
        "P50",
        "P99",
        "CONNS",
        "CPU%",
        "MEMORY",
        "RESTARTS",
    ]);
    for c in &t.components {
        table.row(vec![
            c.name.clone(),
            if c.appliance.starts_with("builtin") {
                c.appliance.clone()
            } else {
                format!("{}/{}", c.ready, c.desired)
            },
            rate(c.requests_per_s),
            rate(c.errors_per_s),
            ms(c.p50_ms),
            ms(c.p99_ms),
            c.connections_active.to_string(),
            format!("{:.1}", c.cpu_percent),
            bytes(c.memory_bytes),
            c.restarts.to_string(),
        ]);
    }
    table
}

pub fn links_table(t: &Topology) -> Table {
    let mut table = Table::new(&[
        "LINK", "TO", "PROTO", "REQ/S", "ERR/S", "P50", "P99", "ACTIVE", "IN/S", "OUT/S",
    ]);
    for l in &t.links {
        table.row(vec![
            format!("{}.{}", l.from, l.link),
            l.to.clone(),
            l.protocol.clone(),
            rate(l.requests_per_s),
            rate(l.errors_per_s),
            ms(l.latency.map(|x| x.p50_ms)),
            ms(l.latency.map(|x| x.p99_ms)),
            l.connections_active.to_string(),
            bytes(l.bytes_in_per_s as u64),
            bytes(l.bytes_out_per_s as u64),
        ]);
    }
    table
}

pub fn rate(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

pub fn ms(x: Option<f64>) -> String {
    match x {
        None => "-".to_owned(),
        Some(v) if v >= 100.0 => format!("{v:.0}ms"),
        Some(v) => format!("{v:.1}ms"),
    }
}

pub fn bytes(b: u64) -> String {
    vdc_spec::Bytes(b).to_string()
}
