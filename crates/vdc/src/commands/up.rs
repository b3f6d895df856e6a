//! `vdc up FILE`: submit an app, show progress until it is ready, print its
//! gateways, then (in the foreground) a live status until Ctrl-C.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::time::Instant;
use vdc_api::{AppDetail, AppState, SubmitApp, Submitted};

use crate::cli::{Format, UpArgs};
use crate::client::{url_path_escape, ApiError, Client};
use crate::commands::list::ps_table;
use crate::commands::{down, server, validate};
use crate::exit::{fail, Code, Coded};

pub async fn run(client: &Client, addr: &str, format: Format, args: UpArgs) -> anyhow::Result<()> {
    let loaded = validate::load(&args.file, format)?;
    let app = loaded.validated.spec.name.to_string();

    let mut embedded = None;
    if !client.is_up().await {
        if args.detach {
            server::start_background(client, addr, &args.server).await?;
        } else {
            embedded = Some(server::start_embedded(addr, &args.server).await?);
        }
    }

    let result = launch(client, &app, &loaded, &args, embedded.is_some()).await;
    let Some(embedded) = embedded else {
        return result;
    };
    // In the foreground the app lives as long as this command.
    if result.is_ok() {
        eprintln!("taking {app} down…");
    }
    let taken_down = down(client, &app, true, false).await;
    embedded.stop().await?;
    result.and(taken_down)
}

async fn launch(
    client: &Client,
    app: &str,
    loaded: &validate::Loaded,
    args: &UpArgs,
    foreground_server: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let submitted: Submitted = client
        .post(
            "/v1/apps",
            &SubmitApp {
                file: loaded.file.clone(),
                base_dir: loaded.base_dir.display().to_string(),
                source: loaded.source.clone(),
            },
        )
        .await
        .map_err(|e| match e.downcast::<ApiError>() {
            Ok(api) if !api.body.diagnostics.is_empty() => {
                for d in &api.body.diagnostics {
                    eprintln!("{}", d.render(&loaded.source));
                }
                anyhow::Error::new(Coded {
                    code: Code::InvalidSpec,
                    message: api.body.error,
                    printed: false,
                })
            }
            Ok(api) => fail(Code::Failure, api.body.error),
            Err(e) => e,
        })?;
    if submitted.changed {
        eprintln!(
            "{app}: revision {} submitted to {}",
            submitted.revision,
            client.addr()
        );
    } else {
        eprintln!("{app}: unchanged (revision {})", submitted.revision);
    }

    // One signal watch for the whole command, so no signal falls between two.
    let interrupt = interrupted();
    tokio::pin!(interrupt);
    let detail = tokio::select! {
        r = wait_ready(client, app, Duration::from_secs(args.timeout)) => r?,
        _ = &mut interrupt => return Err(fail(Code::Failure, "interrupted")),
    };
    let ready = format!("{app} is ready in {:.2}s", started.elapsed().as_secs_f64());
    eprintln!("{ready}");
    for gateway in &detail.summary.gateways {
        println!("{gateway}");
    }
    if args.detach {
        return Ok(());
    }
    let hint = if !foreground_server {
        format!("press Ctrl-C to take {app} down")
    } else {
        format!("press Ctrl-C to take {app} down and stop the server")
    };
    eprintln!("{hint}");
    // What must stay in view above the live table.
    let mut header = vec![ready];
    header.extend(detail.summary.gateways.iter().cloned());
    header.push(hint);
    live(client, app, &header, interrupt).await
}

/// Restarts after which `up` stops waiting for an instance.
const CRASH_LOOP: u32 = 3;

/// The last non-empty line an instance wrote (not vdc's own markers).
async fn last_log_line(client: &Client, id: &vdc_model::InstanceId) -> Option<String> {
    let path = format!(
        "/v1/logs/{}/{}/{}?tail=5",
        url_path_escape(id.app.as_str()),
        url_path_escape(id.component.as_str()),
        id.index
    );
    let text = client.stream(&path).await.ok()?.text().await.ok()?;
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("--- vdc:"))
        .map(str::to_owned)
}

/// Polls the app until every instance is ready, printing each change.
async fn wait_ready(client: &Client, app: &str, timeout: Duration) -> anyhow::Result<AppDetail> {
    let path = format!("/v1/apps/{}", url_path_escape(app));
    let started = Instant::now();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let detail: AppDetail = client.get(&path).await?;
        for s in &detail.instances {
            let why = s
                .message
                .as_deref()
                .filter(|_| !s.state.serves_traffic())
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            // A new state, or news while waiting (an image being pulled).
            let state = format!("{}{why}", s.state);
            if seen.get(&s.id.to_string()) != Some(&state) {
                eprintln!(
                    "  {:>6.2}s  {:<24} {state}",
                    started.elapsed().as_secs_f64(),
                    s.id.to_string()
                );
                seen.insert(s.id.to_string(), state);
            }
        }
        if !detail.summary.unplaced.is_empty() {
            return Err(fail(Code::Failure, detail.summary.unplaced.join("; ")));
        }
        // An instance that keeps exiting will not become ready by waiting:
        // say so now, with the end of its output.
        if let Some(s) = detail
            .instances
            .iter()
            .find(|s| s.restarts >= CRASH_LOOP && !s.state.serves_traffic())
        {
            let last = last_log_line(client, &s.id).await;
            return Err(fail(
                Code::Failure,
                format!(
                    "{} keeps exiting ({} restarts, last: {}){}; the app stays submitted: see `vdc logs {}/{}`, fix the spec and run `vdc up` again, or `vdc down {app}`",
                    s.id,
                    s.restarts,
                    s.last_exit.as_deref().unwrap_or("exited"),
                    last.map(|l| format!("; its last output: {l}")).unwrap_or_default(),
                    s.id.app,
                    s.id.component,
                ),
            ));
        }
        if detail.summary.state == AppState::Ready {
            return Ok(detail);
        }
        if started.elapsed() > timeout {
            let waiting: Vec<String> = detail
                .instances
                .iter()
                .filter(|s| !s.state.serves_traffic())
                .map(|s| match &s.message {
                    Some(m) => format!("{} is {} ({m})", s.id, s.state),
                    None => format!("{} is {}", s.id, s.state),
                })
                .collect();
            return Err(fail(
                Code::Failure,
                format!(
                    "{app} was not ready after {}s: {}; see `vdc logs {app}/COMPONENT` (the app stays submitted; `vdc down {app}` removes it)",
                    timeout.as_secs(),
                    waiting.join(", ")
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A live view until Ctrl-C: a redrawn table on a terminal, a line per
/// change otherwise.
async fn live(
    client: &Client,
    app: &str,
    header: &[String],
    mut interrupt: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> anyhow::Result<()> {
    let path = format!("/v1/apps/{}", url_path_escape(app));
    let tty = std::io::stdout().is_terminal();
    let mut last: BTreeMap<String, (String, u32)> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut interrupt => return Ok(()),
            _ = tick.tick() => {}
        }
        let detail: AppDetail = match client.get(&path).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("status unavailable: {e}");
                continue;
            }
        };
        if tty {
            let rows = crossterm::terminal::size().map_or(usize::MAX, |(_, rows)| rows.into());
            let screen = live_screen(header, &detail, rows);
            let mut out = std::io::stdout().lock();
            // Clear the screen and home the cursor, then redraw.
            let _ = write!(out, "\x1b[2J\x1b[H{screen}");
            let _ = out.flush();
        } else {
            for s in &detail.instances {
                let now = (s.state.to_string(), s.restarts);
                if last.get(&s.id.to_string()) != Some(&now) {
                    println!("{} {} restarts={}", s.id, now.0, now.1);
                    last.insert(s.id.to_string(), now);
                }
            }
        }
    }
}

/// One frame of the live view: the header pinned at the top (ready time,
/// gateways, how to stop), the app's state, and as much of the instance
/// table as fits in `rows` lines, with a count of the rest.
fn live_screen(header: &[String], detail: &AppDetail, rows: usize) -> String {
    let mut screen = String::new();
    for line in header {
        screen.push_str(line);
        screen.push('\n');
    }
    screen.push_str(&format!(
        "\n{}: {}, {}/{} instances ready\n\n",
        detail.summary.name, detail.summary.state, detail.summary.ready, detail.summary.desired,
    ));
    let table = ps_table(&detail.instances).render();
    let lines: Vec<&str> = table.lines().collect();
    // The header, the state line and its blank lines, and the cursor's line.
    let room = rows.saturating_sub(header.len() + 4).max(2);
    if lines.len() <= room {
        screen.push_str(&table);
        if !table.ends_with('\n') {
            screen.push('\n');
        }
    } else {
        for line in &lines[..room - 1] {
            screen.push_str(line);
            screen.push('\n');
        }
        screen.push_str(&format!(
            "… {} more instances (vdc ps {})\n",
            lines.len() - (room - 1),
            detail.summary.name
        ));
    }
    screen
}

/// Resolves on Ctrl-C, SIGTERM or SIGHUP: each means "take the app down".
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vdc_api::{AppState, AppSummary};
    use vdc_model::{InstanceState, InstanceStatus, Isolation, NodeId};

    use super::*;

    fn detail(instances: usize) -> AppDetail {
        AppDetail {
            summary: AppSummary {
                name: "shop".into(),
                tenant: "default".into(),
                revision: 1,
                file: "shop.toml".into(),
                state: AppState::Ready,
                desired: instances as u32,
                ready: instances as u32,
                gateways: vec!["http://127.0.0.1:8080/".into()],
                unplaced: vec![],
            },
            components: vec![],
            listeners: vec![],
            instances: (0..instances)
                .map(|i| InstanceStatus {
                    image: None,
                    id: format!("shop/web/{i}").parse().unwrap(),
                    node: NodeId("n1".into()),
                    state: InstanceState::Ready,
                    revision: 1,
                    pid: Some(100 + i as u32),
                    program_pid: Some(200 + i as u32),
                    locators: BTreeMap::new(),
                    restarts: 0,
                    started_at_ms: None,
                    since_ms: 0,
                    isolation: Isolation::CONFINED,
                    last_exit: None,
                    message: None,
                })
                .collect(),
        }
    }

    fn header() -> Vec<String> {
        vec![
            "shop is ready in 0.56s".into(),
            "http://127.0.0.1:8080/".into(),
            "press Ctrl-C to take shop down".into(),
        ]
    }

    #[test]
    fn the_header_stays_above_the_table() {
        let screen = live_screen(&header(), &detail(2), 40);
        let lines: Vec<&str> = screen.lines().collect();
        assert_eq!(&lines[..3], header().as_slice());
        assert_eq!(lines[4], "shop: ready, 2/2 instances ready");
        assert!(lines[6].starts_with("INSTANCE"), "{screen}");
        assert!(
            lines[7].contains("shop/web/0") && lines[7].contains(" 200 "),
            "{screen}"
        );
        assert_eq!(lines.len(), 9);
    }

    #[test]
    fn a_table_taller_than_the_terminal_is_cut_not_the_header() {
        for rows in [0, 12, 24] {
            let screen = live_screen(&header(), &detail(100), rows);
            let lines: Vec<&str> = screen.lines().collect();
            assert_eq!(&lines[..3], header().as_slice());
            assert!(lines.len() <= rows.max(9), "{rows}: {} lines", lines.len());
            let last = lines.last().unwrap();
            assert!(
                last.starts_with("… ") && last.ends_with("more instances (vdc ps shop)"),
                "{last}"
            );
        }
    }
}
