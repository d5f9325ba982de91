//! Readable tables for the CLI, from the admin API's JSON. Working on JSON
//! (not the server's types) keeps the CLI tolerant of fields it does not
//! know yet.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Unix milliseconds as RFC 3339 UTC, to the second.
fn time_of(ms: &Value) -> String {
    ms.as_u64()
        .map(|ms| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        })
        .unwrap_or_else(|| "-".into())
}

/// What an operator has set on a route, in a few words.
fn overlay(state: &Value) -> String {
    let mut notes = Vec::new();
    if let Some(forced) = state.get("forced_fallback").filter(|v| !v.is_null()) {
        let until = forced.get("until_ms").filter(|v| !v.is_null());
        notes.push(match until {
            Some(ms) => format!("fallback until {}", time_of(ms)),
            None => "fallback".to_string(),
        });
    }
    if let Some(pinned) = state.get("pinned").and_then(Value::as_str) {
        notes.push(format!("pinned {pinned}"));
    }
    if let Some(promotion) = state.get("promotion").filter(|v| !v.is_null()) {
        notes.push(match promotion["previous"].as_str() {
            Some(previous) => format!("promoted (was {previous})"),
            None => "rolled back".to_string(),
        });
    }
    if let Some(canary) = state.get("canary").filter(|v| !v.is_null()) {
        notes.push(format!(
            "canary {} {}%",
            text(&canary["version"]),
            text(&canary["percent"])
        ));
    }
    if let Some(shadow) = state.get("shadow").filter(|v| !v.is_null()) {
        notes.push(format!("shadow {}", text(&shadow["version"])));
    }
    if notes.is_empty() {
        "-".into()
    } else {
        notes.join(", ")
    }
}

/// `GET /v1/routes`.
pub fn routes_table(body: &Value) -> String {
    let mut out = format!(
        "{:<28} {:<16} {:<9} {:<28} {:<9} {:<9} {:<6} {}\n",
        "ROUTE", "STATUS", "HEALTH", "SERVING", "SOURCE", "CIRCUIT", "FILE", "OPERATOR STATE"
    );
    for route in body["routes"].as_array().into_iter().flatten() {
        let serving = &route["chain"][0];
        let _ = writeln!(
            out,
            "{:<28} {:<16} {:<9} {:<28} {:<9} {:<9} {:<6} {}",
            text(&route["name"]),
            text(&route["status"]),
            text(&route["health"]),
            text(&route["serving"]),
            text(&route["serving_source"]),
            text(&serving["circuit"]),
            text(&serving["file"]),
            overlay(&route["state"]),
        );
    }
    out
}

/// `GET /v1/routes/{route}`.
pub fn route_detail(route: &Value) -> String {
    let mut out = String::new();
    let fallback: Vec<String> = route["fallback"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .chain(std::iter::once(text(&route["terminal"])))
        .collect();
    let state = &route["state"];
    let forced_reason = state["forced_fallback"]["reason"].as_str();
    for (label, value) in [
        ("route", text(&route["name"])),
        ("status", text(&route["status"])),
        ("health", text(&route["health"])),
        ("level", text(&route["level"])),
        ("configured model", text(&route["model"])),
        (
            "serving",
            format!(
                "{} ({})",
                text(&route["serving"]),
                text(&route["serving_source"])
            ),
        ),
        ("fallback chain", fallback.join(" → ")),
        ("timeout", format!("{} ms", text(&route["timeout_ms"]))),
        ("rollback to", text(&route["rollback_to"])),
        ("operator state", overlay(state)),
        ("fallback reason", forced_reason.unwrap_or("-").to_string()),
    ] {
        let _ = writeln!(out, "{label:<17} {value}");
    }
    let _ = writeln!(
        out,
        "\n{:<28} {:<11} {:<7} {:<9} {:<12} WHY",
        "MODEL", "FILE", "LOADED", "CIRCUIT", "HEALTH"
    );
    for step in route["chain"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<28} {:<11} {:<7} {:<9} {:<12} {}",
            text(&step["model"]),
            text(&step["file"]),
            text(&step["loaded"]),
            text(&step["circuit"]),
            text(&step["health"]["state"]),
            text(&step["health"]["detail"]),
        );
    }
    out
}

/// The answer to a route action.
pub fn action_result(body: &Value) -> String {
    let view = &body["view"];
    format!(
        "{}: {} by {} applied; now {}, serving {} ({}); operator state: {}\n",
        text(&body["route"]),
        text(&body["action"]),
        text(&body["actor"]),
        text(&view["status"]),
        text(&view["serving"]),
        text(&view["serving_source"]),
        overlay(&body["state"]),
    )
}

/// `GET /v1/audit`: one line per entry, the route and reason when the
/// entry has them, otherwise its detail.
pub fn audit_table(body: &Value) -> String {
    let mut out = format!(
        "{:>6} {:<27} {:<16} {:<28} {}\n",
        "SEQ", "AT (UTC)", "ACTOR", "ACTION", "DETAIL"
    );
    for entry in body["entries"].as_array().into_iter().flatten() {
        let detail = &entry["detail"];
        let summary = match (detail.get("route"), detail.get("reason")) {
            (Some(route), Some(reason)) if !reason.is_null() => {
                format!("{}: {}", text(route), text(reason))
            }
            _ => text(detail),
        };
        let summary: String = summary.chars().take(120).collect();
        let _ = writeln!(
            out,
            "{:>6} {:<27} {:<16} {:<28} {}",
            text(&entry["seq"]),
            text(&entry["at"]),
            text(&entry["actor"]),
            text(&entry["action"]),
            summary,
        );
    }
    out
}

/// A reload's report: what is in force now, what waits for a restart.
pub fn reload_report(body: &Value) -> String {
    let report = &body["report"];
    let list = |v: &Value| {
        let items: Vec<String> = v.as_array().into_iter().flatten().map(text).collect();
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    let mut out = format!(
        "configuration reloaded: {} routes, {} model versions; unloaded: {}
         applied now: {}
         needs a restart to apply: {}
",
        text(&report["routes"]),
        text(&report["models"]),
        list(&report["unloaded"]),
        list(&report["applied"]),
        list(&report["restart_required"]),
    );
    let destinations = &report["destinations"];
    if destinations.is_object() {
        out.push_str(&format!(
            "destinations: added {}; removed {}; changed {}
",
            list(&destinations["added"]),
            list(&destinations["removed"]),
            list(&destinations["changed"]),
        ));
        for (name, n) in destinations["pending_on_removed"]
            .as_object()
            .into_iter()
            .flatten()
        {
            out.push_str(&format!(
                "  {name}: {} pending deliveries stay queued until it is configured again\n",
                text(n)
            ));
        }
    }
    for note in report["notes"].as_array().into_iter().flatten() {
        out.push_str(&format!("note: {}\n", text(note)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route() -> Value {
        json!({
            "name": "ct-head-hyperdensity", "status": "forced_fallback", "level": "series",
            "model": "ct-hyperdensity@2.0.0", "serving": "ct-hyperdensity@2.0.0",
            "serving_source": "config", "fallback": [], "terminal": "store-only",
            "timeout_ms": 30000, "rollback_to": null,
            "state": {"forced_fallback": {"until_ms": 1_800_000_000_000u64, "reason": "bad output"},
                      "pinned": null, "promotion": null, "disabled": false, "draining": false,
                      "canary": {"version": "2.1.0", "percent": 5}, "shadow": null},
            "health": "degraded",
            "chain": [
                {"model": "ct-hyperdensity@2.0.0", "file": "ok", "loaded": false, "circuit": "closed",
                 "health": {"state": "unavailable", "detail": "model not-ready-ct is not ready"}},
                {"model": "ct-hyperdensity@1.0.0", "file": "ok", "loaded": true, "circuit": "closed",
                 "health": {"state": "ready", "detail": null}}
            ]
        })
    }

    #[test]
    fn tables_show_status_and_operator_state() {
        let table = routes_table(&json!({ "routes": [route()] }));
        let line = table.lines().nth(1).unwrap();
        assert!(line.starts_with("ct-head-hyperdensity"), "{table}");
        assert!(
            line.contains("forced_fallback")
                && line.contains("degraded")
                && line.contains("closed"),
            "{line}"
        );
        assert!(
            line.contains("fallback until 2027-01-15T08:00:00Z"),
            "{line}"
        );
        assert!(line.contains("canary 2.1.0 5%"), "{line}");
        let detail = route_detail(&route());
        assert!(detail.contains("fallback reason   bad output"), "{detail}");
        assert!(detail.contains("store-only"), "{detail}");
        assert!(detail.contains("health            degraded"), "{detail}");
        let first = detail
            .lines()
            .find(|l| l.starts_with("ct-hyperdensity@2.0.0"))
            .unwrap();
        assert!(
            first.contains("unavailable") && first.ends_with("model not-ready-ct is not ready"),
            "{first}"
        );
        let second = detail
            .lines()
            .find(|l| l.starts_with("ct-hyperdensity@1.0.0"))
            .unwrap();
        assert!(
            second.contains("ready") && second.ends_with('-'),
            "{second}"
        );
    }

    #[test]
    fn audit_lines_prefer_route_and_reason() {
        let body = json!({ "entries": [
            {"seq": 3, "at": "2026-11-21T20:31:02.123456Z", "actor": "alice", "action": "route.flip",
             "detail": {"route": "ct", "reason": "false positives", "before": {}, "after": {}}},
            {"seq": 4, "at": "2026-11-21T20:32:00.000000Z", "actor": "system", "action": "model.loaded",
             "detail": {"model": "ct"}}
        ]});
        let table = audit_table(&body);
        assert!(table.contains("ct: false positives"), "{table}");
        assert!(table.contains("{\"model\":\"ct\"}"), "{table}");
    }

    #[test]
    fn reload_report_names_what_applies_and_what_waits_for_a_restart() {
        let body = json!({ "reloaded": true, "report": {
            "routes": 2, "models": 3, "unloaded": [],
            "applied": ["destinations", "sites"], "restart_required": ["drift", "store"],
            "notes": ["logging.level: RUST_LOG is set"],
            "destinations": {"added": ["pacs-b"], "removed": ["pacs-a"], "changed": [],
                             "pending_on_removed": {"pacs-a": 4}}
        }});
        let text = reload_report(&body);
        assert!(text.contains("applied now: destinations, sites"), "{text}");
        assert!(
            text.contains("needs a restart to apply: drift, store"),
            "{text}"
        );
        assert!(
            text.contains("added pacs-b; removed pacs-a; changed none"),
            "{text}"
        );
        assert!(text.contains("pacs-a: 4 pending deliveries"), "{text}");
        assert!(
            text.contains("note: logging.level: RUST_LOG is set"),
            "{text}"
        );
    }
}
