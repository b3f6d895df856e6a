//! What `/proc` says about a process: enough to tell whether it still runs,
//! which process group it is in, and when it started.

use std::fs;

/// The fields of `/proc/<pid>/stat` the driver needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 3: 'R', 'S', 'D', 'Z' (zombie), ...
    pub state: char,
    /// Field 5: the process group id.
    pub pgid: i32,
    /// Field 22: start time in clock ticks since boot. Together with the pid
    /// this identifies a process across pid reuse.
    pub start_ticks: u64,
}

// === impl ProcStat ===

impl ProcStat {
    /// Reads `/proc/<pid>/stat`; `None` when the process does not exist.
    pub fn read(pid: u32) -> Option<ProcStat> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        ProcStat::parse(&text)
    }

    /// Parses a stat line. The command name (field 2) is in parentheses and
    /// may itself contain spaces and parentheses, so fields are counted from
    /// the last ')'.
    pub fn parse(text: &str) -> Option<ProcStat> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(ProcStat {
            state: fields.first()?.chars().next()?,
            pgid: fields.get(2)?.parse().ok()?,
            start_ticks: fields.get(19)?.parse().ok()?,
        })
    }

    /// False for zombies, which are dead and only wait to be reaped.
    pub fn is_running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// True when `pid` exists and is not a zombie.
pub(crate) fn is_running(pid: u32) -> bool {
    ProcStat::read(pid).is_some_and(|s| s.is_running())
}

/// The live processes whose process group is `pgid`, with their stat.
pub(crate) fn group_members(pgid: i32) -> Vec<(u32, ProcStat)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, ProcStat::read(pid)?)))
        .filter(|(_, stat)| stat.pgid == pgid && stat.is_running())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_with_spaces_and_parentheses() {
        let line = "4242 (a b) (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                state: 'S',
                pgid: 4242,
                start_ticks: 987654
            })
        );
    }

    #[test]
    fn reads_our_own_process() {
        let own = ProcStat::read(std::process::id());
        assert!(own.is_some_and(|s| s.is_running() && s.start_ticks > 0));
    }

    #[test]
    fn truncated_lines_are_rejected() {
        assert_eq!(ProcStat::parse("1 (init) S 0 1"), None);
        assert_eq!(ProcStat::parse("garbage"), None);
    }
}
