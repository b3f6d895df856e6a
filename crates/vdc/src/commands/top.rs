//! `vdc top [APP]`: a live terminal view, one row per component and per
//! link, refreshed every second. Works in any terminal that understands
//! ANSI escapes (over SSH too); q or Ctrl-C quits, s changes the sort.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use crossterm::{cursor, execute, terminal};
use vdc_api::{AppSummary, Topology};

use crate::client::{url_path_escape, Client};
use crate::commands::stats::{components_table, links_table};

/// What the component rows are sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sort {
    Name,
    Requests,
    Latency,
    Cpu,
    Memory,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Name => Sort::Requests,
            Sort::Requests => Sort::Latency,
            Sort::Latency => Sort::Cpu,
            Sort::Cpu => Sort::Memory,
            Sort::Memory => Sort::Name,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::Requests => "req/s",
            Sort::Latency => "p99",
            Sort::Cpu => "cpu",
            Sort::Memory => "memory",
        }
    }
}

/// Restores the terminal however `top` ends.
struct Screen {
    raw: bool,
}

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        if !std::io::stdout().is_terminal() {
            return Ok(Screen { raw: false });
        }
        terminal::enable_raw_mode()?;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        Ok(Screen { raw: true })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if self.raw {
            let _ = execute!(
                std::io::stdout(),
                cursor::Show,
                terminal::LeaveAlternateScreen
            );
            let _ = terminal::disable_raw_mode();
        }
    }
}

pub async fn run(client: &Client, app: Option<&str>) -> anyhow::Result<()> {
    // Fail before touching the terminal if the server is not there.
    let _: Vec<AppSummary> = client.get("/v1/apps").await?;
    let screen = Screen::enter()?;
    let (keys_tx, mut keys) = tokio::sync::mpsc::channel::<KeyEvent>(16);
    if screen.raw {
        // Reading keys blocks; a thread keeps it off the runtime.
        std::thread::spawn(move || loop {
            match crossterm::event::read() {
                Ok(TermEvent::Key(k)) => {
                    if keys_tx.blocking_send(k).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        });
    }
    let mut sort = Sort::Name;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            key = keys.recv() => match key {
                Some(k) if k.code == KeyCode::Char('q') || k.code == KeyCode::Esc
                    || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL)) => return Ok(()),
                Some(k) if k.code == KeyCode::Char('s') => sort = sort.next(),
                _ => continue,
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let frame = match frame(client, app, sort).await {
            Ok(f) => f,
            Err(e) => format!("vdc top: {e}\n"),
        };
        draw(&frame, screen.raw)?;
    }
}

async fn frame(client: &Client, only: Option<&str>, sort: Sort) -> anyhow::Result<String> {
    let apps: Vec<AppSummary> = client.get("/v1/apps").await?;
    let mut out = format!(
        "vdc top — {} — sorted by {} (s: sort, q: quit)\n\n",
        client.addr(),
        sort.label()
    );
    for a in apps.iter().filter(|a| only.is_none_or(|o| o == a.name)) {
        let mut t: Topology = client
            .get(&format!(
                "/v1/apps/{}/topology?seconds=2",
                url_path_escape(&a.name)
            ))
            .await?;
        sort_components(&mut t, sort);
        out.push_str(&format!(
            "{} ({})  {}  {}/{} ready  {}\n",
            t.app,
            t.tenant,
            t.state,
            a.ready,
            a.desired,
            a.gateways.join(" ")
        ));
        out.push_str(&components_table(&t).render());
        out.push_str(&links_table(&t).render());
        out.push('\n');
    }
    if apps.is_empty() {
        out.push_str("no apps\n");
    }
    Ok(out)
}

fn sort_components(t: &mut Topology, sort: Sort) {
    let key = |c: &vdc_api::TopologyComponent| match sort {
        Sort::Name => 0.0,
        Sort::Requests => -c.requests_per_s,
        Sort::Latency => -c.p99_ms.unwrap_or(0.0),
        Sort::Cpu => -c.cpu_percent,
        Sort::Memory => -(c.memory_bytes as f64),
    };
    t.components
        .sort_by(|a, b| key(a).total_cmp(&key(b)).then_with(|| a.name.cmp(&b.name)));
}

fn draw(frame: &str, raw: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if raw {
        // Raw mode needs explicit carriage returns.
        execute!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        out.write_all(frame.replace('\n', "\r\n").as_bytes())?;
    } else {
        out.write_all(frame.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}
