//! The gateway process as the kernel sees it: peak resident memory and
//! whether it is still running. Hostile-input tests bound the first and
//! require the second after every object they send.

use crate::TestGateway;

/// Peak resident set size (`VmHWM` in `/proc/<pid>/status`) of a process,
/// in bytes. The high-water mark never goes down, so one reading after an
/// exchange sees any spike during it, however short.
///
/// Panics if the process is gone or the line is missing (a test that asks
/// about a process expects it to be there).
pub fn peak_rss_bytes(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:") * 1024
}

/// Current resident set size (`VmRSS`), in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:") * 1024
}

/// Whether `pid` is running: present in `/proc` and not a zombie (a
/// crashed child stays a zombie until the harness reaps it on drop).
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("State:"))
            .is_some_and(|state| !state.trim_start().starts_with(['Z', 'X']))
    })
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e} (the process is gone)"));
    status
        .lines()
        .find_map(|line| {
            let value = line.strip_prefix(field)?.trim().strip_suffix("kB")?;
            value.trim().parse::<u64>().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

impl TestGateway {
    /// [`peak_rss_bytes`] of the gateway process.
    pub fn peak_rss_bytes(&self) -> u64 {
        peak_rss_bytes(self.pid().expect("gateway running"))
    }

    /// Whether the gateway process is still running (not exited, not a zombie).
    pub fn is_running(&self) -> bool {
        self.pid().is_some_and(is_running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(is_running(me));
        let peak = peak_rss_bytes(me);
        assert!(peak >= rss_bytes(me) && peak > 1024 * 1024, "{peak}");
        // Touching 64 MiB raises the high-water mark by about that much.
        let block = vec![1u8; 64 * 1024 * 1024];
        assert!(
            peak_rss_bytes(me) >= peak.max(64 * 1024 * 1024),
            "{}",
            block.len()
        );
        assert!(!is_running(u32::MAX));
    }
}
