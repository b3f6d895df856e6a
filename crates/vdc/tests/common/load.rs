//! An open-loop load generator: requests leave on a fixed schedule whatever
//! the answers do, so a slow server cannot slow the load down and hide its
//! own latency (no coordinated omission). Latency counts from the scheduled
//! send time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the client saw it.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it was scheduled, from the start of the run.
    pub at: Duration,
    pub latency: Duration,
    /// The HTTP status, or `None` when the exchange failed.
    pub status: Option<u16>,
    /// The answer's body, trimmed.
    pub body: String,
}

/// Samples of a run, shared with the requests still in flight.
#[derive(Clone, Default)]
pub struct Recorder {
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Recorder {
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }
}

/// Sends `rate` requests a second to `url` for `duration`, starting `offset`
/// into the recorder's run; returns when the last one is sent (answers may
/// still be coming in: [`settle`] waits for them).
pub async fn run(
    client: &reqwest::Client,
    url: &str,
    rate: f64,
    duration: Duration,
    offset: Duration,
    recorder: &Recorder,
) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let count = (duration.as_secs_f64() * rate).round() as u64;
    let start = Instant::now();
    for i in 0..count {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, url, recorder) = (client.clone(), url.to_owned(), recorder.clone());
        let at = offset + scheduled.duration_since(start);
        tokio::spawn(async move {
            let result = client.get(&url).send().await;
            let (status, body) = match result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.text().await {
                        Ok(body) => (Some(status), body.trim().to_owned()),
                        Err(e) => (None, e.to_string()),
                    }
                }
                Err(e) => (None, e.to_string()),
            };
            recorder.samples.lock().unwrap().push(Sample {
                at,
                latency: scheduled.elapsed(),
                status,
                body,
            });
        });
    }
}

/// Waits until every request sent so far has its answer (or 10 s).
pub async fn settle(recorder: &Recorder, sent: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while recorder.samples.lock().unwrap().len() < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `q` quantile (0 to 1) of the samples' latencies.
pub fn quantile(samples: &[&Sample], q: f64) -> Duration {
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    latencies.sort();
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
    latencies[rank - 1]
}

/// Requests that did not get a 200.
pub fn failures(samples: &[Sample]) -> Vec<&Sample> {
    samples.iter().filter(|s| s.status != Some(200)).collect()
}
