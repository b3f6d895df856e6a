//! Resource units: CPU in thousandths of a core, memory and disk in bytes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// CPU in thousandths of a core: `MilliCpu(500)` is half a core.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MilliCpu(pub u64);

/// A quantity of memory or disk, in bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Bytes(pub u64);

impl fmt::Display for MilliCpu {
    /// `1.5`, `0.25`, `4`: cores with up to three decimals, no trailing zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 1000;
        let frac = self.0 % 1000;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let s = format!("{frac:03}");
            write!(f, "{whole}.{}", s.trim_end_matches('0'))
        }
    }
}

impl fmt::Display for Bytes {
    /// The largest binary unit that keeps the value at or above one, with up to
    /// one decimal: `256MiB`, `1.5GiB`, `512B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, size) in UNITS {
            if self.0 >= size {
                let tenths = (self.0 as u128 * 10 / size as u128) as u64;
                return if tenths % 10 == 0 {
                    write!(f, "{}{name}", tenths / 10)
                } else {
                    write!(f, "{}.{}{name}", tenths / 10, tenths % 10)
                };
            }
        }
        write!(f, "{}B", self.0)
    }
}
