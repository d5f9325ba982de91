//! Keeps the Grafana dashboard (`deploy/grafana/gateway-dashboard.json`)
//! honest: it must parse, have the expected variables, and query only
//! metric names that the code registers, so that renaming a metric cannot
//! leave a panel silently empty.

use std::collections::BTreeSet;
use std::path::Path;

const DASHBOARD: &str = include_str!("../../../deploy/grafana/gateway-dashboard.json");

/// Families announced for work in progress (circuit breaker and route
/// state metrics from the job runner, result-cache metrics). Remove a name
/// here once the code registers it.
const PENDING: &[&str] = &[];

/// Every `"gateway_…"` string literal in the crate's sources: where metric
/// families are named (stage modules register their own in the registry).
fn names_in_code() -> BTreeSet<String> {
    fn walk(dir: &Path, pattern: &regex_lite::Regex, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, pattern, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                found.extend(pattern.captures_iter(&text).map(|c| c[1].to_string()));
            }
        }
    }
    let pattern = regex_lite::Regex::new(r#""(gateway_[a-z0-9_]+)""#).unwrap();
    let mut found = BTreeSet::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &pattern,
        &mut found,
    );
    found
}

/// Every string under a key named `expr` or `query`/`definition` (variables).
fn queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

#[test]
fn dashboard_queries_only_metrics_that_exist() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let known = names_in_code();
    assert!(
        known.contains("gateway_site_received_instances_total"),
        "{known:?}"
    );
    let mut exprs = Vec::new();
    queries(&dashboard, &mut exprs);
    assert!(exprs.len() > 20, "{} queries", exprs.len());
    let name = regex_lite::Regex::new(r"\bgateway_[a-z0-9_]+").unwrap();
    let mut unknown = BTreeSet::new();
    for expr in &exprs {
        for found in name.find_iter(expr).map(|m| m.as_str()) {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| found.strip_suffix(suffix))
                .filter(|base| known.contains(*base))
                .unwrap_or(found);
            if !known.contains(family) && !PENDING.contains(&family) {
                unknown.insert(found.to_string());
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the dashboard queries unknown metrics: {unknown:?}"
    );
}

#[test]
fn dashboard_has_variables_and_well_formed_panels() {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    assert_eq!(d["schemaVersion"], 39);
    let variables: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        variables,
        ["datasource", "site", "scanner", "route", "model"]
    );
    let mut ids = BTreeSet::new();
    for panel in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "duplicate id in {panel}"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_i64().unwrap(), grid["w"].as_i64().unwrap());
        assert!(x + w <= 24, "{}", panel["title"]);
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            assert!(!t["expr"].as_str().unwrap().trim().is_empty());
        }
    }
}
