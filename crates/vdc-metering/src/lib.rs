//! Metering: turns per-second observations of instances and traffic into a
//! per-minute usage ledger, and a ledger into bills.
//!
//! **Invariant:** this crate does no I/O and reads no clock. Every
//! observation carries its unix second; the caller decides when a minute is
//! closed. Sums are kept in integers while a minute is open, so feeding the
//! same observations with or without a checkpoint and restore in the middle
//! gives identical entries, and money is fixed-point: no float ever holds an
//! amount of money.
//!
//! ```
//! use vdc_metering::*;
//! use vdc_spec::{Bytes, MilliCpu, Resources};
//! use vdc_telemetry::Tags;
//!
//! let mut meter = Accumulator::new();
//! let tags = Tags::new("acme", "shop", "web").with_instance("shop/web/0");
//! let reservation = Reservation {
//!     instances: 1,
//!     per_instance: Resources { cpu: MilliCpu(1000), memory: Bytes(1 << 30) },
//!     burst_instances: 0,
//! };
//! // One instance busy on one core for a minute, holding 512 MiB.
//! for s in 0..60 {
//!     let ts = 1_700_000_040 + s; // minute 28_333_334 starts at ..._040
//!     meter.observe_resources(ts, &tags, (s + 1) * 1_000_000, 512 << 20)?;
//!     meter.observe_reservation(ts, "acme", "shop", "web", reservation)?;
//! }
//! let entries = meter.close_until(Minute(28_333_335));
//! assert_eq!(entries.len(), 1);
//! assert_eq!(entries[0].cpu_seconds_used, 60.0);
//! assert_eq!(entries[0].cpu_minutes_reserved_quota, 1.0);
//! assert_eq!(entries[0].memory_gib_minutes_used, 0.5);
//! assert_eq!(entries[0].key(), "acme/shop/web/0028333334");
//!
//! let prices = Prices { cpu_minute: "0.0004".parse()?, ..Prices::default() };
//! let bill = Bill::compute(&entries, &prices, Minute(28_333_334), Minute(28_333_335));
//! assert_eq!(bill.total.charges.total.to_string(), "0.000400");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Code map:
//! - `minute`: the [`Minute`] newtype and its RFC 3339 rendering;
//! - `money`: fixed-point [`Money`] and usage quantities ([`Qty`]);
//! - `entry`: [`LedgerEntry`], one component's usage over one minute;
//! - `accumulator`: [`Accumulator`], its [`Checkpoint`] and the rules that
//!   turn observations into entries;
//! - `bill`: [`Prices`] and [`Bill`];
//! - `csv`: the CSV renderers behind `vdc usage -o csv`.
//!
//! docs/metering.md describes the rules and the contract the caller keeps.

#![forbid(unsafe_code)]

mod accumulator;
mod bill;
mod csv;
mod entry;
mod minute;
mod money;

#[cfg(test)]
mod proptests;

pub use accumulator::{
    Accumulator, AccumulatorStats, Checkpoint, CheckpointError, ObserveError, Observed,
    Reservation, CHECKPOINT_VERSION, CLOSE_GRACE_SECONDS, SERIES_IDLE_MINUTES,
};
pub use bill::{Bill, BillLine, BillTotal, Charges, Prices, Usage};
pub use csv::usage_csv;
pub use entry::LedgerEntry;
pub use minute::Minute;
pub use money::{Money, MoneyError, Qty};
