//! One audit entry as one RFC 5424 message: header, our structured data
//! (sequence number, actor, action, hashes) and the entry's JSON detail.

use super::Facility;
use crate::audit::AuditRecord;

/// The fixed parts of every message's header.
#[derive(Debug, Clone)]
pub struct Origin {
    pub hostname: String,
    pub procid: String,
    pub facility: Facility,
}

impl Origin {
    /// This host and process.
    pub fn local(facility: Facility) -> Origin {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        Origin {
            hostname: header_field(&hostname, 255),
            procid: std::process::id().to_string(),
            facility,
        }
    }
}

/// Application name in every message.
pub const APP_NAME: &str = "dicom-gateway";

/// SD-ID of our structured data. 32473 is the enterprise number RFC 5612
/// reserves for examples: the project has none of its own.
pub const SD_ID: &str = "audit@32473";

/// Largest message we send: well under the UDP datagram limit, and what
/// common receivers accept by default. Longer details are cut (and say so).
pub const MAX_MESSAGE: usize = 8 * 1024;

/// Severity: warning for refused or forbidden attempts, notice otherwise.
fn severity(action: &str) -> u8 {
    if ["forbidden", "refused", "rejected"]
        .iter()
        .any(|word| action.contains(word))
    {
        4
    } else {
        5
    }
}

/// One audit entry as an RFC 5424 message (without transport framing).
pub fn format_message(record: &AuditRecord, origin: &Origin) -> String {
    let priority = u16::from(origin.facility.code()) * 8 + u16::from(severity(&record.action));
    let header = format!(
        "<{priority}>1 {} {} {APP_NAME} {} {}",
        header_field(&record.at, 64),
        origin.hostname,
        origin.procid,
        header_field(&record.action, 32),
    );
    let params = [
        ("seq", record.seq.to_string()),
        ("actor", record.actor.clone()),
        ("action", record.action.clone()),
        ("hash", record.hash.clone()),
        ("prev", record.prev_hash.clone()),
    ];
    let mut sd = format!("[{SD_ID}");
    for (name, value) in &params {
        sd.push_str(&format!(" {name}=\"{}\"", sd_escape(value)));
    }
    let detail = record.detail.to_string();
    // Header, SD, the truncation flag, the space and the BOM must fit.
    let room = MAX_MESSAGE.saturating_sub(header.len() + sd.len() + 40);
    let (detail, truncated) = if detail.len() > room {
        (cut_at_char_boundary(&detail, room), true)
    } else {
        (detail.as_str(), false)
    };
    if truncated {
        sd.push_str(" truncated=\"true\"");
    }
    sd.push(']');
    format!("{header} {sd} \u{feff}{detail}")
}

/// PRINTUSASCII only (RFC 5424 header fields), at most `max` characters,
/// `-` (the nil value) when empty.
pub(super) fn header_field(value: &str, max: usize) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| if ('!'..='~').contains(&c) { c } else { '_' })
        .take(max)
        .collect();
    if cleaned.is_empty() {
        "-".to_string()
    } else {
        cleaned
    }
}

/// PARAM-VALUE escaping: `"`, `\` and `]` take a backslash.
fn sd_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn cut_at_char_boundary(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
