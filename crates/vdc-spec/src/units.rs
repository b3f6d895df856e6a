//! Resource units: CPU in thousandths of a core, memory and disk in bytes.

use std::fmt;
use std::time::Duration;

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
                let tenths = u128::from(self.0) * 10 / u128::from(size);
                let (whole, tenth) = (tenths / 10, tenths % 10);
                return if tenth == 0 {
                    write!(f, "{whole}{name}")
                } else {
                    write!(f, "{whole}.{tenth}{name}")
                };
            }
        }
        write!(f, "{}B", self.0)
    }
}

// === parsing ===

/// What a unit string was meant to be, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantity {
    Memory,
    Cpu,
    Duration,
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quantity::Memory => "memory size",
            Quantity::Cpu => "CPU amount",
            Quantity::Duration => "duration",
        })
    }
}

/// A quantity that could not be parsed. `input` is the value as written
/// (quoted when it was a string), `reason` says what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input} is not a valid {quantity}: {reason}")]
pub struct UnitError {
    pub quantity: Quantity,
    pub input: String,
    pub reason: String,
}

impl UnitError {
    fn new(quantity: Quantity, input: &str, reason: impl Into<String>) -> Self {
        UnitError {
            quantity,
            input: format!("{input:?}"),
            reason: reason.into(),
        }
    }
}

const MEMORY_UNITS: [(&str, u64); 5] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];
const MEMORY_EXPECTED: &str =
    "expected a number followed by a unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`, like \"256MiB\"";

/// Parses a memory or disk size written with binary units: `"512B"`,
/// `"64KiB"`, `"256MiB"`, `"1.5GiB"`, `"2TiB"`. Decimal (SI) units such as
/// `"4GB"` or `"512k"` are refused with the binary unit that was probably
/// meant, because silently reading them either way surprises someone.
/// Fractions of a byte are dropped; the size must be greater than zero.
pub fn parse_memory(s: &str) -> Result<Bytes, UnitError> {
    let err = |reason: &str| UnitError::new(Quantity::Memory, s, reason);
    let text = s.trim();
    if text.starts_with('-') {
        return Err(err("a size cannot be negative"));
    }
    let (number, unit) = split_number(text);
    let decimal = Decimal::parse(number).map_err(|e| err(e.unwrap_or(MEMORY_EXPECTED)))?;
    let unit = unit.trim_start();
    let Some(size) = MEMORY_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, size)| *size)
    else {
        return Err(err(&memory_unit_hint(number, unit)));
    };
    let (whole, exact) = decimal
        .times(u128::from(size))
        .ok_or_else(|| err("it is too large"))?;
    if size == 1 && !exact {
        return Err(err("a number of bytes must be whole"));
    }
    match u64::try_from(whole) {
        Ok(0) => Err(err("it must be greater than zero")),
        Ok(bytes) => Ok(Bytes(bytes)),
        Err(_) => Err(err("it is too large")),
    }
}

/// A memory size given as a bare TOML integer: a number of bytes.
pub fn memory_from_int(n: i64) -> Result<Bytes, UnitError> {
    let err = |reason: &str| UnitError {
        quantity: Quantity::Memory,
        input: n.to_string(),
        reason: reason.to_owned(),
    };
    match u64::try_from(n) {
        Ok(0) => Err(err("it must be greater than zero")),
        Ok(bytes) => Ok(Bytes(bytes)),
        Err(_) => Err(err("a size cannot be negative")),
    }
}

/// The reason for an unknown memory unit, naming the binary unit that was
/// probably meant when there is one.
fn memory_unit_hint(number: &str, unit: &str) -> String {
    if unit.is_empty() {
        return format!(
            "it needs a unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`; did you mean \"{number}B\"? \
             (a number of bytes can also be written without quotes)"
        );
    }
    let meant = match unit.to_ascii_lowercase().as_str() {
        "b" => Some("B"),
        "k" | "kb" | "ki" | "kib" => Some("KiB"),
        "m" | "mb" | "mi" | "mib" => Some("MiB"),
        "g" | "gb" | "gi" | "gib" => Some("GiB"),
        "t" | "tb" | "ti" | "tib" => Some("TiB"),
        _ => None,
    };
    match meant {
        Some(meant) if unit.eq_ignore_ascii_case(meant) => {
            format!("units are case-sensitive; did you mean \"{number}{meant}\"?")
        }
        Some(meant) => format!("vdc uses binary units; did you mean \"{number}{meant}\"?"),
        None => format!("unknown unit `{unit}`; {MEMORY_EXPECTED}"),
    }
}

const CPU_EXPECTED: &str =
    "expected a number of cores like \"0.5\" or \"2\", or millicores like \"500m\"";

/// Parses a CPU amount: cores (`"0.5"`, `"2"`, at most three decimals) or
/// millicores (`"500m"`). It must be greater than zero.
pub fn parse_cpu(s: &str) -> Result<MilliCpu, UnitError> {
    parse_cpu_as(s, format!("{s:?}"))
}

/// A CPU amount given as a bare TOML number of cores (`0.5`, `2`).
pub fn cpu_from_cores(cores: f64) -> Result<MilliCpu, UnitError> {
    // `Display` for floats never uses exponent notation and prints the
    // shortest text that reads back as the same number, so `0.1` is "0.1"
    // and the decimal rules below apply to what the user wrote.
    let text = format!("{cores}");
    if !cores.is_finite() {
        return Err(UnitError {
            quantity: Quantity::Cpu,
            input: text,
            reason: CPU_EXPECTED.to_owned(),
        });
    }
    parse_cpu_as(&text, text.clone())
}

fn parse_cpu_as(s: &str, input: String) -> Result<MilliCpu, UnitError> {
    let err = |reason: &str| UnitError {
        quantity: Quantity::Cpu,
        input: input.clone(),
        reason: reason.to_owned(),
    };
    let text = s.trim();
    if text.starts_with('-') {
        return Err(err("it must be greater than zero"));
    }
    let (number, unit) = split_number(text);
    let decimal = Decimal::parse(number).map_err(|e| err(e.unwrap_or(CPU_EXPECTED)))?;
    let (millis, exact) = match unit.trim_start() {
        "" => decimal.times(1000).ok_or_else(|| err("it is too large"))?,
        "m" => {
            let (millis, exact) = decimal.times(1).ok_or_else(|| err("it is too large"))?;
            if !exact {
                return Err(err("millicores must be a whole number, like \"250m\""));
            }
            (millis, exact)
        }
        _ => return Err(err(CPU_EXPECTED)),
    };
    if !exact {
        return Err(err(
            "CPU is counted in thousandths of a core, so at most three decimals, like \"0.125\"",
        ));
    }
    match u64::try_from(millis) {
        Ok(0) => Err(err("it must be greater than zero")),
        Ok(m) => Ok(MilliCpu(m)),
        Err(_) => Err(err("it is too large")),
    }
}

const DURATION_UNITS: [(&str, u128); 4] = [
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a duration: a number and a unit (`ms`, `s`, `m`, `h`), or several
/// of them in a row (`"1m30s"`). Decimals are allowed (`"1.5s"`); fractions
/// of a nanosecond are dropped.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let err = |reason: String| UnitError::new(Quantity::Duration, s, reason);
    let expected = "expected a number followed by a unit: `ms`, `s`, `m` or `h`, like \"5s\"";
    let mut rest = s.trim();
    if rest.starts_with('-') {
        return Err(err("a duration cannot be negative".to_owned()));
    }
    if rest.is_empty() {
        return Err(err(expected.to_owned()));
    }
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let (number, after) = split_number(rest);
        let decimal = Decimal::parse(number).map_err(|e| err(e.unwrap_or(expected).to_owned()))?;
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        let Some(size) = DURATION_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, size)| *size)
        else {
            return Err(err(if unit.is_empty() {
                format!(
                    "it needs a unit: `ms`, `s`, `m` or `h`; did you mean \"{}s\"?",
                    s.trim()
                )
            } else {
                format!("unknown unit `{unit}`; {expected}")
            }));
        };
        let (part, _) = decimal
            .times(size)
            .ok_or_else(|| err("it is too long".to_owned()))?;
        nanos = nanos
            .checked_add(part)
            .ok_or_else(|| err("it is too long".to_owned()))?;
        rest = tail.trim_start();
    }
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| err("it is too long".to_owned()))
}

/// Formats a duration the way [`parse_duration`] reads it: `500ms`, `5s`,
/// `1m30s`, `1h`. Exact for whole milliseconds; finer parts are dropped.
pub fn format_duration(d: Duration) -> String {
    let mut millis = d.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (name, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if millis >= size {
            out.push_str(&format!("{}{name}", millis / size));
            millis %= size;
        }
    }
    out
}

// === decimal numbers ===

/// Splits `"1.5GiB"` into `("1.5", "GiB")`.
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s.split_at(end)
}

/// A non-negative decimal kept exact: `12.5` is `mantissa` 125, `scale` 1.
#[derive(Clone, Copy, Debug)]
struct Decimal {
    mantissa: u128,
    scale: u32,
}

impl Decimal {
    /// Digits with at most one `.` that has digits on both sides. The error
    /// is the reason to give, for the caller to combine with what it
    /// expected.
    fn parse(s: &str) -> Result<Decimal, Option<&'static str>> {
        let (int, frac) = match s.split_once('.') {
            Some((int, frac)) => (int, frac),
            None => (s, ""),
        };
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !all_digits(int) || !all_digits(frac) || s.ends_with('.') {
            return Err(None);
        }
        // Leading zeros of the integer part and trailing zeros of the
        // fraction change nothing; dropping them keeps long but harmless
        // inputs like "0.500000" within range.
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        // 30 digits keep every product with a unit within u128.
        if int.len() > 18 {
            return Err(Some("it is too large"));
        }
        if frac.len() > 12 {
            return Err(Some("it has too many decimals"));
        }
        let mut mantissa: u128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa * 10 + u128::from(b - b'0');
        }
        Ok(Decimal {
            mantissa,
            scale: u32::try_from(frac.len()).map_err(|_| Some("it has too many decimals"))?,
        })
    }

    /// `self × unit`, rounded down, and whether that was exact; `None` on
    /// overflow.
    fn times(self, unit: u128) -> Option<(u128, bool)> {
        let product = self.mantissa.checked_mul(unit)?;
        let divisor = 10u128.checked_pow(self.scale)?;
        Some((product / divisor, product % divisor == 0))
    }
}

#[cfg(test)]
mod tests;
