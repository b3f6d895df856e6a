//! `vdc apps` and `vdc ps`.

use vdc_api::AppSummary;
use vdc_model::InstanceStatus;

use crate::cli::Format;
use crate::client::{url_path_escape, Client};
use crate::output::{age, now_ms, print, Table};

pub async fn apps(client: &Client, format: Format) -> anyhow::Result<()> {
    let apps: Vec<AppSummary> = client.get("/v1/apps").await?;
    print(format, &apps, |apps| {
        let mut t = Table::new(&["APP", "TENANT", "STATE", "READY", "REVISION", "GATEWAYS"]);
        for a in apps {
            t.row(vec![
                a.name.clone(),
                a.tenant.clone(),
                a.state.to_string(),
                format!("{}/{}", a.ready, a.desired),
                a.revision.to_string(),
                a.gateways.join(" "),
            ]);
        }
        t
    })
}

pub async fn ps(client: &Client, app: Option<&str>, format: Format) -> anyhow::Result<()> {
    let path = match app {
        Some(a) => format!("/v1/instances?app={}", url_path_escape(a)),
        None => "/v1/instances".to_owned(),
    };
    let instances: Vec<InstanceStatus> = client.get(&path).await?;
    print(format, &instances, |list| ps_table(list))
}

pub fn ps_table(list: &[InstanceStatus]) -> Table {
    let now = now_ms();
    let mut t = Table::new(&[
        "INSTANCE",
        "COMPONENT",
        "NODE",
        "STATE",
        "PID",
        "INIT",
        "ADDRESS",
        "RESTARTS",
        "UPTIME",
        "ISOLATION",
    ]);
    for s in list {
        let mut state = s.state.to_string();
        if let Some(m) = &s.message {
            if !s.state.serves_traffic() {
                state = format!("{state} ({m})");
            }
        }
        t.row(vec![
            s.id.to_string(),
            s.id.component.to_string(),
            s.node.to_string(),
            state,
            // The program's pid; vdc's init for it (what vdc supervises)
            // apart, when one stands between.
            s.program_pid
                .or(s.pid.filter(|_| !s.isolation.pid_namespace))
                .map_or("-".into(), |p| p.to_string()),
            s.pid
                .filter(|p| s.isolation.pid_namespace && s.program_pid != Some(*p))
                .map_or("-".into(), |p| p.to_string()),
            s.locators
                .values()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(","),
            s.restarts.to_string(),
            s.started_at_ms
                .filter(|_| s.pid.is_some())
                .map_or("-".into(), |t| age(now.saturating_sub(t))),
            s.isolation.to_string(),
        ]);
    }
    t
}
