//! Latency histograms: a lock-free one the data plane records into on the hot
//! path, and an owned, mergeable one that snapshots, windows and expositions
//! carry.
//!
//! Both use one fixed log-linear bucket layout (as HDR histograms do): values
//! below 128 µs each have a bucket of their own; above that, every power of
//! two `[2^e, 2^(e+1))` is split into 64 equal sub-buckets, so a bucket is
//! never wider than 1/64 (≈1.6 %) of the values it holds. Values up to
//! 2^27 − 1 µs (≈134 s) are tracked; larger ones land in the last bucket and
//! still raise the maximum.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

// === layout ===

/// log2 of the number of sub-buckets per power of two.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values below this have one bucket each.
const LINEAR: u64 = 2 * SUB;
/// The highest exponent tracked: values `< 2^(MAX_EXP + 1)`.
const MAX_EXP: u32 = 26;
/// The largest value with a bucket of its own (≈134 s).
pub const MAX_TRACKABLE_US: u64 = (1 << (MAX_EXP + 1)) - 1;
/// How many buckets the layout has.
pub const BUCKETS: usize = bucket_index(MAX_TRACKABLE_US) + 1;

/// The bucket a value falls in; values above [`MAX_TRACKABLE_US`] saturate
/// into the last one.
#[inline]
pub(crate) const fn bucket_index(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    if us > MAX_TRACKABLE_US {
        return bucket_index(MAX_TRACKABLE_US);
    }
    let exp = 63 - us.leading_zeros();
    let shift = exp - SUB_BITS;
    (shift as u64 * SUB + (us >> shift)) as usize
}

/// The smallest value bucket `index` holds.
pub(crate) const fn bucket_lowest(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR {
        return index;
    }
    let shift = index / SUB - 1;
    (index % SUB + SUB) << shift
}

/// The largest value bucket `index` holds (before saturation).
pub(crate) const fn bucket_highest(index: usize) -> u64 {
    let i = index as u64;
    if i < LINEAR {
        return i;
    }
    bucket_lowest(index) + (1 << (i / SUB - 1)) - 1
}

// === types ===

/// Lock-free latency histogram for the hot path.
///
/// `record` is a thread-local read and at most three relaxed atomic
/// operations (its bucket, this thread's stripe of the sum, and the maximum
/// only when it grows): no allocation, no lock, no syscall. The collector
/// calls [`take`](Self::take) once a second. One histogram takes about
/// 12 KiB.
///
/// There is no separate count: a snapshot's count is the sum of its buckets,
/// so it always agrees with the quantiles computed from them.
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    /// The sum, striped over cache lines by recording thread: every record
    /// adds to it, so one shared word would bounce between cores.
    sums: Box<[PaddedU64]>,
    max: AtomicU64,
}

/// An atomic alone on its cache line (128 bytes: adjacent-line prefetch
/// pairs lines on x86).
#[derive(Default)]
#[repr(align(128))]
struct PaddedU64(AtomicU64);

/// How many stripes the sum has.
const SUM_STRIPES: usize = 8;

thread_local! {
    /// The sum stripe of this thread, given out round robin.
    static STRIPE: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Relaxed) % SUM_STRIPES
    };
}

/// An owned, mergeable histogram with the same bucket layout as
/// [`LatencyHistogram`], stored sparsely (only buckets that hold values).
///
/// Serialized as `{"count":3,"sum_us":3190,"max_us":1300,"buckets":[[600,1],[1280,1],[1296,1]]}`,
/// where each bucket is `[lowest value in µs, count]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "HistogramRepr", into = "HistogramRepr")]
pub struct Histogram {
    /// `(bucket index, count)`, sorted by index, counts non-zero.
    buckets: Vec<(u16, u64)>,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

/// A latency summary in milliseconds with three decimals (microsecond
/// resolution), as subscribers receive it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Why a serialized histogram was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistogramError {
    #[error("bucket {0} µs is not the lowest value of a bucket")]
    NotABucket(u64),
    #[error("buckets must be in increasing order with non-zero counts")]
    Unordered,
    #[error("count {count} does not match the bucket total {total}")]
    CountMismatch { count: u64, total: u64 },
}

#[derive(Serialize, Deserialize)]
struct HistogramRepr {
    count: u64,
    sum_us: u64,
    max_us: u64,
    buckets: Vec<(u64, u64)>,
}

// === impl LatencyHistogram ===

impl LatencyHistogram {
    pub fn new() -> Self {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sums: (0..SUM_STRIPES).map(|_| PaddedU64::default()).collect(),
            max: AtomicU64::new(0),
        }
    }

    /// Records one duration (truncated to whole microseconds).
    #[inline]
    pub fn record(&self, d: Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one value in microseconds.
    #[inline]
    pub fn record_us(&self, us: u64) {
        if let Some(bucket) = self.buckets.get(bucket_index(us)) {
            bucket.fetch_add(1, Relaxed);
        }
        let stripe = STRIPE.with(|s| *s);
        if let Some(sum) = self.sums.get(stripe) {
            sum.0.fetch_add(us, Relaxed);
        }
        // Reading first keeps the common case (not a new maximum) free of a
        // read-modify-write on a line every recorder shares.
        if us > self.max.load(Relaxed) {
            self.max.fetch_max(us, Relaxed);
        }
    }

    /// Moves everything recorded so far into a snapshot and resets to zero.
    ///
    /// Each bucket is swapped with zero, so a record racing with `take` lands
    /// in this snapshot or the next, never in both and never in neither. The
    /// sum and maximum are swapped separately: in a snapshot taken during
    /// records, the sum may include a value whose bucket lands in the next
    /// one (totals over consecutive snapshots are exact), and the maximum is
    /// raised to at least the lowest value of the highest bucket.
    pub fn take(&self) -> Histogram {
        let mut out = Histogram::new();
        for (index, bucket) in self.buckets.iter().enumerate() {
            // Skipping empty buckets without a write keeps `take` from
            // stealing cache lines the recorders are using.
            if bucket.load(Relaxed) == 0 {
                continue;
            }
            let n = bucket.swap(0, Relaxed);
            if n > 0 {
                out.buckets.push((index as u16, n));
                out.count = out.count.saturating_add(n);
            }
        }
        out.sum_us = self
            .sums
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.swap(0, Relaxed)));
        out.max_us = self.max.swap(0, Relaxed);
        out.repair_max();
        out
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field(
                "sum_us",
                &self
                    .sums
                    .iter()
                    .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Relaxed))),
            )
            .field("max_us", &self.max.load(Relaxed))
            .finish_non_exhaustive()
    }
}

// === impl Histogram ===

impl Histogram {
    pub fn new() -> Self {
        Histogram::default()
    }

    pub fn record_us(&mut self, us: u64) {
        let index = bucket_index(us) as u16;
        match self.buckets.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(at) => self.buckets[at].1 = self.buckets[at].1.saturating_add(1),
            Err(at) => self.buckets.insert(at, (index, 1)),
        }
        self.count = self.count.saturating_add(1);
        self.sum_us = self.sum_us.wrapping_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// Adds everything `other` holds to `self`.
    pub fn merge(&mut self, other: &Histogram) {
        if other.buckets.is_empty() && other.sum_us == 0 && other.max_us == 0 {
            return;
        }
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut a, mut b) = (
            self.buckets.iter().peekable(),
            other.buckets.iter().peekable(),
        );
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&(ia, na)), Some(&&(ib, nb))) if ia == ib => {
                    a.next();
                    b.next();
                    (ia, na.saturating_add(nb))
                }
                (Some(&&x), Some(&&y)) => {
                    if x.0 < y.0 {
                        a.next();
                        x
                    } else {
                        b.next();
                        y
                    }
                }
                (Some(&&x), None) => {
                    a.next();
                    x
                }
                (None, Some(&&y)) => {
                    b.next();
                    y
                }
                (None, None) => break,
            };
            merged.push(next);
        }
        self.buckets = merged;
        self.count = self.count.saturating_add(other.count);
        self.sum_us = self.sum_us.wrapping_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// Value at quantile `q` in `0..=1`, in µs: the upper edge of the bucket
    /// holding the value of rank `ceil(q × count)`, capped at the maximum.
    /// 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for &(index, n) in &self.buckets {
            seen = seen.saturating_add(n);
            if seen >= rank {
                if usize::from(index) == BUCKETS - 1 {
                    return self.max_us;
                }
                return bucket_highest(usize::from(index)).min(self.max_us);
            }
        }
        self.max_us
    }

    /// p50, p90, p99, p99.9, max and mean in milliseconds, and the count.
    pub fn summary(&self) -> Latency {
        if self.count == 0 {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: self.count,
            p50_ms: ms(self.quantile_us(0.5)),
            p90_ms: ms(self.quantile_us(0.9)),
            p99_ms: ms(self.quantile_us(0.99)),
            p999_ms: ms(self.quantile_us(0.999)),
            max_ms: ms(self.max_us),
            mean_ms: (self.sum_us as f64 / self.count as f64).round() / 1000.0,
        }
    }

    /// Cumulative counts at the given upper bounds (µs), for Prometheus `le`
    /// buckets: for each bound, the count of every bucket whose lowest value
    /// is at or below it (so a value equal to a bound is always counted, and
    /// one up to 1.6 % above it may be).
    pub fn cumulative(&self, bounds_us: &[u64]) -> Vec<u64> {
        bounds_us
            .iter()
            .map(|&bound| {
                self.buckets
                    .iter()
                    .take_while(|&&(index, _)| bucket_lowest(usize::from(index)) <= bound)
                    .map(|&(_, n)| n)
                    .sum()
            })
            .collect()
    }

    /// The non-empty buckets as `(lowest µs, highest µs, count)`, in order.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.buckets.iter().map(|&(index, n)| {
            let index = usize::from(index);
            (bucket_lowest(index), bucket_highest(index), n)
        })
    }

    /// A snapshot taken while records race may hold a bucket whose value
    /// raised the maximum of the previous snapshot; never let the maximum
    /// (which caps quantiles) fall below what the buckets prove.
    fn repair_max(&mut self) {
        if let Some(&(index, _)) = self.buckets.last() {
            self.max_us = self.max_us.max(bucket_lowest(usize::from(index)));
        }
    }
}

impl From<Histogram> for HistogramRepr {
    fn from(h: Histogram) -> Self {
        HistogramRepr {
            count: h.count,
            sum_us: h.sum_us,
            max_us: h.max_us,
            buckets: h
                .buckets
                .iter()
                .map(|&(index, n)| (bucket_lowest(usize::from(index)), n))
                .collect(),
        }
    }
}

impl TryFrom<HistogramRepr> for Histogram {
    type Error = HistogramError;

    fn try_from(repr: HistogramRepr) -> Result<Self, Self::Error> {
        let mut buckets = Vec::with_capacity(repr.buckets.len());
        let mut total = 0u64;
        for (lowest, n) in repr.buckets {
            let index = bucket_index(lowest);
            if bucket_lowest(index) != lowest {
                return Err(HistogramError::NotABucket(lowest));
            }
            let index = index as u16;
            if n == 0 || buckets.last().is_some_and(|&(last, _)| last >= index) {
                return Err(HistogramError::Unordered);
            }
            buckets.push((index, n));
            total = total.saturating_add(n);
        }
        if total != repr.count {
            return Err(HistogramError::CountMismatch {
                count: repr.count,
                total,
            });
        }
        let mut h = Histogram {
            buckets,
            count: repr.count,
            sum_us: repr.sum_us,
            max_us: repr.max_us,
        };
        h.repair_max();
        Ok(h)
    }
}

// === impl Latency ===

impl From<&Histogram> for Latency {
    fn from(h: &Histogram) -> Self {
        h.summary()
    }
}

#[cfg(test)]
mod tests;
