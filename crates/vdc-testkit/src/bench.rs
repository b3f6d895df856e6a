//! What the micro-benchmarks print: the machine they ran on, and each
//! measurement's median and 90th percentile.

use std::time::Duration;

/// One line on the machine: CPUs, kernel and load average, since every
/// figure depends on them.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cpus} CPUs, Linux {}, load average {}",
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// A duration in µs or ms, with one or two decimals.
pub fn human(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// The sample at quantile `q` (0 to 1) of `samples`, which must not be
/// empty.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = ((sorted.len().saturating_sub(1)) as f64 * q) as usize;
    sorted.get(at).copied().unwrap_or_default()
}

/// Prints `what` with the median and 90th percentile of `samples`, and the
/// median's ratio to `base` when given.
pub fn report(what: &str, samples: &[Duration], base: Option<Duration>) {
    let median = quantile(samples, 0.5);
    let ratio = base.map_or_else(String::new, |b| {
        format!("{:>7.1}x", median.as_secs_f64() / b.as_secs_f64())
    });
    println!(
        "{what:<44} {:>10} {:>10} {ratio:>8} {:>6}",
        human(median),
        human(quantile(samples, 0.9)),
        samples.len()
    );
}
