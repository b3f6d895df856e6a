//! The unit of the ledger: one minute of unix time.

use std::fmt;

use serde::{Deserialize, Serialize};

// === types ===

/// A minute of unix time: unix seconds divided by 60 (UTC, leap seconds
/// ignored as unix time ignores them). `Minute(28_333_334)` is the minute
/// starting at 2023-11-14T22:14:00Z.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Minute(pub u64);

// === impl Minute ===

impl Minute {
    /// The minute holding the unix second `ts`.
    pub const fn of(ts: u64) -> Minute {
        Minute(ts / 60)
    }

    /// The unix second the minute starts at.
    pub const fn start(self) -> u64 {
        self.0.saturating_mul(60)
    }

    /// The minute after this one.
    pub const fn next(self) -> Minute {
        Minute(self.0.saturating_add(1))
    }

    /// True when the unix second `ts` falls in this minute.
    pub const fn contains(self, ts: u64) -> bool {
        ts / 60 == self.0
    }
}

impl fmt::Display for Minute {
    /// The start of the minute in RFC 3339, UTC: `2023-11-14T22:14:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0 / (24 * 60);
        let in_day = self.0 % (24 * 60);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:00Z",
            in_day / 60,
            in_day % 60
        )
    }
}

/// Year, month and day of the `days`-th day after 1970-01-01, in the
/// proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`, for
/// non-negative day numbers).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so that leap days end a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_of_a_second_and_back() {
        assert_eq!(Minute::of(0), Minute(0));
        assert_eq!(Minute::of(59), Minute(0));
        assert_eq!(Minute::of(60), Minute(1));
        assert_eq!(Minute(3).start(), 180);
        assert!(Minute(3).contains(239));
        assert!(!Minute(3).contains(240));
        assert_eq!(Minute(3).next(), Minute(4));
    }

    #[test]
    fn displays_rfc3339_start() {
        assert_eq!(Minute(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Minute::of(1_700_000_040).to_string(),
            "2023-11-14T22:14:00Z"
        );
        // A leap day and the day after it.
        assert_eq!(
            Minute::of(1_709_164_800).to_string(),
            "2024-02-29T00:00:00Z"
        );
        assert_eq!(
            Minute::of(1_709_251_199).to_string(),
            "2024-02-29T23:59:00Z"
        );
        assert_eq!(
            Minute::of(1_709_251_200).to_string(),
            "2024-03-01T00:00:00Z"
        );
        assert_eq!(Minute::of(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(
            Minute::of(4_102_444_800).to_string(),
            "2100-01-01T00:00:00Z"
        );
    }
}
