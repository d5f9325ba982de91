//! UTC timestamps for the index and the audit trail.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now as RFC 3339 UTC with microseconds, e.g. `2026-11-21T20:31:02.123456Z`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// Nanoseconds since the Unix epoch, for unique file suffixes.
pub fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch: what the pipeline tables store, so
/// times survive a restart (unlike `Instant`).
pub fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
