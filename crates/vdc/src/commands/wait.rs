//! Waiting for instances, for commands that answer only once what they
//! asked for happened: never success when it did not.

use std::time::Duration;

use vdc_model::InstanceStatus;

use crate::client::{url_path_escape, Client};
use crate::exit::{fail, Code};

/// Polls the instances of `app` until `done` holds on them, for at most
/// `timeout`; the error says what did not happen and where to look.
pub async fn until(
    client: &Client,
    app: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[InstanceStatus]) -> bool,
) -> anyhow::Result<Vec<InstanceStatus>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let path = format!("/v1/instances?app={}", url_path_escape(app));
    loop {
        let instances: Vec<InstanceStatus> = client.get(&path).await?;
        if done(&instances) {
            return Ok(instances);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(fail(
                Code::Failure,
                not_ready(app, what, timeout, &instances),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One line: what did not happen in time, what the instances say, and the
/// commands that tell more.
pub fn not_ready(app: &str, what: &str, timeout: Duration, instances: &[InstanceStatus]) -> String {
    let states: Vec<String> = instances
        .iter()
        .map(|s| match &s.message {
            Some(m) => format!("{} {} ({m})", s.id, s.state),
            None => format!("{} {}", s.id, s.state),
        })
        .collect();
    let now = if states.is_empty() {
        "no instance runs".to_owned()
    } else {
        states.join(", ")
    };
    format!(
        "{what} did not happen within {}s ({now}): see `vdc logs {app}/COMPONENT` and `vdc events {app}`",
        timeout.as_secs()
    )
}
