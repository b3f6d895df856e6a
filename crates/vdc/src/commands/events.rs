//! `vdc events [APP] [-f]`: lifecycle events, past and live.

use futures_util::StreamExt;
use vdc_telemetry::{Event, Message};

use crate::cli::Format;
use crate::client::{url_path_escape, Client};

pub async fn run(
    client: &Client,
    app: Option<&str>,
    follow: bool,
    limit: usize,
    format: Format,
) -> anyhow::Result<()> {
    let query = app
        .map(|a| format!("app={}", url_path_escape(a)))
        .unwrap_or_default();
    let past: Vec<Event> = client
        .get(&format!("/v1/events?limit={limit}&{query}"))
        .await?;
    for e in &past {
        print_event(e, format)?;
    }
    if !follow {
        return Ok(());
    }
    let response = client
        .stream(&format!("/v1/streams/events?{query}"))
        .await?;
    let mut body = response.bytes_stream();
    let mut sse = SseReader::default();
    while let Some(chunk) = body.next().await {
        for data in sse.push(&chunk?) {
            match serde_json::from_str::<Message>(&data) {
                Ok(Message::Event(e)) => print_event(&e, format)?,
                Ok(Message::Dropped { count }) => {
                    eprintln!("({count} events were dropped: this terminal fell behind)")
                }
                Ok(_) => {}
                Err(e) => eprintln!("unreadable event: {e}"),
            }
        }
    }
    Ok(())
}

fn print_event(e: &Event, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string(e)?),
        Format::Table | Format::Csv => {
            let kind = serde_json::to_value(e.kind)?;
            let what = e.instance.clone().unwrap_or_else(|| e.app.clone());
            println!(
                "{}  {:<18} {:<20} {}",
                clock(e.ts_ms),
                kind.as_str().unwrap_or("?"),
                what,
                e.reason
            );
        }
    }
    Ok(())
}

/// `HH:MM:SS.mmm` (UTC) of a unix time in milliseconds.
pub fn clock(ts_ms: u64) -> String {
    let day_ms = ts_ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        (day_ms / 60_000) % 60,
        (day_ms / 1000) % 60,
        day_ms % 1000
    )
}

/// Splits a Server-Sent Events byte stream into the `data` of each event.
#[derive(Debug, Default)]
pub struct SseReader {
    buffer: String,
}

impl SseReader {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.push_events(bytes)
            .into_iter()
            .map(|(_, data)| data)
            .collect()
    }

    /// Each complete event's name (`message` when it has none) and data.
    pub fn push_events(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        self.buffer.push_str(&String::from_utf8_lossy(bytes));
        let mut out = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map_or("message", |n| n.trim());
            if !data.is_empty() {
                out.push((name.to_owned(), data.join("\n")));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks() {
        let mut r = SseReader::default();
        assert!(r.push(b"event: event\ndata: {\"a\"").is_empty());
        assert_eq!(
            r.push(b":1}\n\n: keep-alive\n\nevent: x\ndata: 2\n\n"),
            ["{\"a\":1}", "2"]
        );
    }

    #[test]
    fn clock_reads_utc() {
        assert_eq!(clock(3_723_004), "01:02:03.004");
    }
}
