//! `vdc scale APP/COMPONENT [N]` and `vdc autoscale APP/COMPONENT on|off`.

use vdc_api::{AutoscaleRequest, ScaleRequest, ScaleView};

use crate::cli::{Format, Switch};
use crate::client::{url_path_escape, Client};

/// `APP/COMPONENT` -> the component's scale path.
fn path(target: &str, action: &str) -> anyhow::Result<String> {
    let Some((app, component)) = target.split_once('/') else {
        anyhow::bail!("expected APP/COMPONENT, such as shop/web; got `{target}`");
    };
    if app.is_empty() || component.is_empty() || component.contains('/') {
        anyhow::bail!("expected APP/COMPONENT, such as shop/web; got `{target}`");
    }
    Ok(format!(
        "/v1/apps/{}/components/{}/{action}",
        url_path_escape(app),
        url_path_escape(component)
    ))
}

/// Sets a component's count (or shows its scaling), and with `wait`
/// returns only once that many of its instances are ready and no others
/// run: an error otherwise. The autoscaler may change a count it keeps,
/// so that count is not waited for.
pub async fn scale(
    client: &Client,
    target: &str,
    replicas: Option<u32>,
    wait: Option<std::time::Duration>,
    format: Format,
) -> anyhow::Result<()> {
    let path = path(target, "scale")?;
    let view: ScaleView = match replicas {
        Some(replicas) => client.post(&path, &ScaleRequest { replicas }).await?,
        None => client.get(&path).await?,
    };
    print_view(&view, format)?;
    if replicas.is_some() && view.autoscale && format == Format::Table {
        println!(
            "note: the autoscaler keeps the SLA and may change this count; `vdc autoscale {target} off` keeps it"
        );
    }
    if let (Some(replicas), Some(timeout), false) = (replicas, wait, view.autoscale) {
        let (app, component) = target.split_once('/').unwrap_or((target, ""));
        let want = usize::try_from(replicas).unwrap_or(usize::MAX);
        let what = format!("{replicas} ready instance(s) of {target}");
        let started = std::time::Instant::now();
        crate::commands::wait::until(client, app, &what, timeout, |list| {
            let mine: Vec<_> = list
                .iter()
                .filter(|s| s.id.component.as_str() == component)
                .collect();
            mine.len() == want && mine.iter().all(|s| s.state.serves_traffic())
        })
        .await?;
        if format == Format::Table {
            println!(
                "{target}: {replicas} instance(s) ready in {:.2}s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

pub async fn autoscale(
    client: &Client,
    target: &str,
    state: Switch,
    format: Format,
) -> anyhow::Result<()> {
    let view: ScaleView = client
        .post(
            &path(target, "autoscale")?,
            &AutoscaleRequest {
                enabled: state == Switch::On,
            },
        )
        .await?;
    print_view(&view, format)
}

fn print_view(view: &ScaleView, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(view)?);
        return Ok(());
    }
    println!(
        "{}/{}: {} replicas ({} ready), min {}, max {}{}",
        view.app,
        view.component,
        view.replicas,
        view.ready,
        view.min,
        view.max,
        if view.in_burst > 0 {
            format!(", {} in burst above the quota", view.in_burst)
        } else {
            String::new()
        }
    );
    if let Some(sla) = &view.sla {
        println!("SLA: {sla}");
    }
    match &view.autoscale_off_because {
        None => println!("autoscaling: on"),
        Some(why) => println!("autoscaling: off ({why})"),
    }
    if let Some(by) = &view.set_by {
        println!("count last set by: {by}");
    }
    if let Some(d) = &view.last_decision {
        println!(
            "last decision: {} {} — {}",
            d.direction, d.replicas, d.reason
        );
    }
    Ok(())
}
