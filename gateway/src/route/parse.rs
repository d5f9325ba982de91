//! `routes.toml` text → [`RouteTable`], collecting every problem.
//!
//! Each `[[route]]` is deserialised on its own (serde, `deny_unknown_fields`)
//! so that a misspelt key in one route does not hide the problems of the
//! others; values stay strings until [`validate_route`] checks them.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};

use super::RoutesError;
use super::matcher::{Attribute, AttributeMatcher, Patterns, RouteMatcher};
use super::table::{Level, Route, RouteTable, Terminal};
use crate::models::{ModelId, Version, check_model_name};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    model: String,
    level: String,
    #[serde(default)]
    fallback: Vec<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    rollback_to: Option<String>,
    #[serde(default)]
    destinations: Vec<String>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    #[serde(default, rename = "match")]
    conditions: RawConditions,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConditions {
    modality: Option<RawPatterns>,
    body_part_examined: Option<RawPatterns>,
    protocol_name: Option<RawPatterns>,
    series_description: Option<RawPatterns>,
    manufacturer: Option<RawPatterns>,
    manufacturer_model_name: Option<RawPatterns>,
    station_name: Option<RawPatterns>,
    site: Option<RawPatterns>,
    calling_ae: Option<RawPatterns>,
    sop_class_uid: Option<RawPatterns>,
}

impl RawConditions {
    fn get(&self, attribute: Attribute) -> Option<&RawPatterns> {
        match attribute {
            Attribute::Modality => self.modality.as_ref(),
            Attribute::BodyPartExamined => self.body_part_examined.as_ref(),
            Attribute::ProtocolName => self.protocol_name.as_ref(),
            Attribute::SeriesDescription => self.series_description.as_ref(),
            Attribute::Manufacturer => self.manufacturer.as_ref(),
            Attribute::ManufacturerModelName => self.manufacturer_model_name.as_ref(),
            Attribute::StationName => self.station_name.as_ref(),
            Attribute::Site => self.site.as_ref(),
            Attribute::CallingAe => self.calling_ae.as_ref(),
            Attribute::SopClassUid => self.sop_class_uid.as_ref(),
        }
    }
}

/// `"CT"`, `["HEAD", "BRAIN"]` (globs) or `{ regex = "…" }`.
#[derive(Debug)]
enum RawPatterns {
    Globs(Vec<String>),
    Regex(String),
}

impl<'de> Deserialize<'de> for RawPatterns {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PatternsVisitor)
    }
}

struct PatternsVisitor;

impl<'de> Visitor<'de> for PatternsVisitor {
    type Value = RawPatterns;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a pattern "CT", a list ["CT", "MR"], or { regex = "..." }"#)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<RawPatterns, E> {
        Ok(RawPatterns::Globs(vec![value.to_string()]))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawPatterns, A::Error> {
        let mut globs = Vec::new();
        while let Some(glob) = seq.next_element::<String>()? {
            globs.push(glob);
        }
        Ok(RawPatterns::Globs(globs))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawPatterns, A::Error> {
        let mut regex = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "regex" {
                return Err(de::Error::unknown_field(&key, &["regex"]));
            }
            if regex.is_some() {
                return Err(de::Error::duplicate_field("regex"));
            }
            regex = Some(map.next_value::<String>()?);
        }
        regex
            .map(RawPatterns::Regex)
            .ok_or_else(|| de::Error::missing_field("regex"))
    }
}

pub(super) fn parse(text: &str) -> Result<RouteTable, RoutesError> {
    let document: toml::Table = toml::from_str(text)
        .map_err(|e| RoutesError::Invalid(vec![format!("not valid TOML: {e}")]))?;
    let mut problems = Vec::new();
    let mut routes = Vec::new();
    let mut seen = HashSet::new();
    let mut duplicates = HashSet::new();
    for (key, value) in document {
        if key != "route" {
            problems.push(format!(
                "unknown key `{key}` (a routes file holds only [[route]] tables)"
            ));
            continue;
        }
        let toml::Value::Array(entries) = value else {
            problems.push("`route` must be a list of [[route]] tables".into());
            continue;
        };
        for (index, entry) in entries.into_iter().enumerate() {
            let label = match entry.get("name").and_then(toml::Value::as_str) {
                Some(name) => {
                    // Checked on every route, valid or not, so a duplicate is
                    // reported with the other problems rather than after a fix.
                    if !seen.insert(name.to_string()) && duplicates.insert(name.to_string()) {
                        problems.push(format!("route `{name}`: the name is used twice"));
                    }
                    format!("route `{name}`")
                }
                None => format!("route #{}", index + 1),
            };
            match RawRoute::deserialize(entry) {
                Ok(raw) => {
                    if let Some(route) = validate_route(&label, raw, &mut problems) {
                        routes.push(route);
                    }
                }
                Err(e) => problems.push(format!("{label}: {}", e.message().trim())),
            }
        }
    }
    if problems.is_empty() {
        Ok(RouteTable { routes })
    } else {
        Err(RoutesError::Invalid(problems))
    }
}

/// Checks one route; pushes its problems and returns it only if it has none.
fn validate_route(label: &str, raw: RawRoute, problems: &mut Vec<String>) -> Option<Route> {
    let before = problems.len();
    if let Err(why) = check_model_name(&raw.name) {
        problems.push(format!("{label}: name `{}` {why}", raw.name));
    }
    let model = parse_model_ref(&raw.model)
        .map_err(|why| problems.push(format!("{label}: model {why}")))
        .ok();
    let level = Level::parse(raw.level.trim());
    if level.is_none() {
        problems.push(format!(
            "{label}: level `{}` must be \"series\" or \"instance\"",
            raw.level
        ));
    }
    let mut destinations: Vec<String> = Vec::with_capacity(raw.destinations.len());
    for destination in &raw.destinations {
        let destination = destination.trim();
        if destination.is_empty() {
            problems.push(format!("{label}: destinations: a name is empty"));
        } else if destinations.iter().any(|d| d == destination) {
            problems.push(format!(
                "{label}: destinations: `{destination}` is listed twice"
            ));
        } else {
            destinations.push(destination.to_string());
        }
    }
    let (fallback, terminal) = validate_fallback(label, &raw.fallback, model.as_ref(), problems);
    let timeout =
        raw.timeout
            .as_deref()
            .and_then(|text| match humantime::parse_duration(text.trim()) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => {
                    problems.push(format!("{label}: timeout must be more than zero"));
                    None
                }
                Err(e) => {
                    problems.push(format!("{label}: timeout `{text}` is not a duration: {e}"));
                    None
                }
            });
    let rollback_to = raw.rollback_to.as_deref().and_then(|text| {
        text.trim()
            .parse::<Version>()
            .map_err(|why| problems.push(format!("{label}: rollback_to {why}")))
            .ok()
    });
    if let (Some(version), Some(model)) = (rollback_to, model.as_ref())
        && version == model.version
    {
        problems.push(format!(
            "{label}: rollback_to {version} is the route's own version"
        ));
    }
    let mut conditions = Vec::new();
    for attribute in Attribute::ALL {
        let Some(raw_patterns) = raw.conditions.get(attribute) else {
            continue;
        };
        let patterns = match raw_patterns {
            RawPatterns::Globs(globs) => Patterns::globs(globs),
            RawPatterns::Regex(regex) => Patterns::regex(regex),
        };
        match patterns {
            Ok(patterns) => conditions.push(AttributeMatcher {
                attribute,
                patterns,
            }),
            Err(why) => problems.push(format!("{label}: match.{} {why}", attribute.key())),
        }
    }
    match (model, level) {
        (Some(model), Some(level)) if problems.len() == before => Some(Route {
            name: raw.name,
            model,
            fallback,
            terminal,
            timeout,
            rollback_to,
            level,
            destinations,
            enabled: raw.enabled,
            matcher: Arc::new(RouteMatcher { conditions }),
        }),
        _ => None,
    }
}

/// Most models in one fallback chain: each step can cost a timeout.
const MAX_FALLBACK_MODELS: usize = 4;

/// `fallback = ["model@version", …, "store-only" | "forward-unprocessed"]`:
/// models in order, then at most one terminal step, last. Without a
/// terminal step the chain ends `store-only`.
fn validate_fallback(
    label: &str,
    raw: &[String],
    primary: Option<&ModelId>,
    problems: &mut Vec<String>,
) -> (Vec<ModelId>, Terminal) {
    let mut models: Vec<ModelId> = Vec::new();
    let mut terminal = None;
    for (index, step) in raw.iter().enumerate() {
        let step = step.trim();
        if let Some(end) = Terminal::parse(step) {
            if index + 1 != raw.len() {
                problems.push(format!(
                    "{label}: fallback: `{step}` ends the chain, so it must come last"
                ));
            }
            terminal = Some(end);
            continue;
        }
        match parse_model_ref(step) {
            Ok(model) if primary == Some(&model) => problems.push(format!(
                "{label}: fallback: {model} is the route's own model"
            )),
            Ok(model) if models.contains(&model) => {
                problems.push(format!("{label}: fallback: {model} is listed twice"))
            }
            Ok(model) => models.push(model),
            Err(why) => problems.push(format!(
                "{label}: fallback {why}, or \"store-only\" or \"forward-unprocessed\""
            )),
        }
    }
    if models.len() > MAX_FALLBACK_MODELS {
        problems.push(format!(
            "{label}: fallback: {} models; at most {MAX_FALLBACK_MODELS} (each can cost a timeout)",
            models.len()
        ));
    }
    (models, terminal.unwrap_or(Terminal::StoreOnly))
}

/// `name@MAJOR.MINOR.PATCH`, the form models are named by everywhere.
fn parse_model_ref(text: &str) -> Result<ModelId, String> {
    let Some((name, version)) = text.trim().split_once('@') else {
        return Err(format!(
            "`{text}` must be \"name@version\", like \"ct-hyperdensity@2.0.0\""
        ));
    };
    check_model_name(name).map_err(|why| format!("`{text}`: name `{name}` {why}"))?;
    let version = version
        .parse::<Version>()
        .map_err(|why| format!("`{text}`: {why}"))?;
    Ok(ModelId {
        name: name.to_string(),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_route_parses_with_every_kind_of_pattern() {
        let table = RouteTable::from_toml(
            r#"
            [[route]]
            name = "ct-head"
            model = "ct-hyperdensity@2.0.0"
            level = "series"
            destinations = ["pacs"]
            [route.match]
            modality = "CT"
            body_part_examined = ["HEAD", "BRAIN"]
            series_description = { regex = "(?i)head|brain" }
            sop_class_uid = ["1.2.840.10008.5.1.4.1.1.2*"]

            [[route]]
            name = "off"
            model = "dx-exposure@1.0.0"
            level = "instance"
            enabled = false
            "#,
        )
        .unwrap();
        let routes = table.routes();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].destinations, vec!["pacs".to_string()]);
        assert!(routes[0].enabled);
        assert_eq!(
            routes[0].condition_keys(),
            vec![
                "modality",
                "body_part_examined",
                "series_description",
                "sop_class_uid"
            ]
        );
        assert_eq!(routes[1].level, Level::Instance);
        assert!(!routes[1].enabled);
        assert!(routes[1].destinations.is_empty());
        assert_eq!(table.enabled_count(), 1);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = RouteTable::from_toml(
            r#"
            routes_version = 2

            [[route]]
            name = "Bad Name!"
            model = "ct-hyperdensity"
            level = "study"
            destinations = ["pacs", "pacs", ""]
            [route.match]
            modality = []
            body_part_examined = ["  "]
            series_description = { regex = "(" }

            [[route]]
            name = "typo"
            model = "x@1.0.0"
            level = "series"
            [route.match]
            modalty = ["CT"]

            [[route]]
            name = "dup"
            model = "x@1.02.0"
            level = "series"

            [[route]]
            name = "dup"
            model = "x@1.0.0"
            level = "series"

            [[route]]
            name = "dup"
            model = "x@1.0.0"
            level = "series"
            [route.match]
            station_name = { regexp = "x" }
            "#,
        )
        .unwrap_err();
        let problems = err.problems();
        let expect = [
            "unknown key `routes_version`",
            "route `Bad Name!`: name `Bad Name!` must be 1-64 characters",
            "route `Bad Name!`: model `ct-hyperdensity` must be \"name@version\"",
            "route `Bad Name!`: level `study` must be \"series\" or \"instance\"",
            "route `Bad Name!`: destinations: `pacs` is listed twice",
            "route `Bad Name!`: destinations: a name is empty",
            "route `Bad Name!`: match.modality lists no patterns",
            "route `Bad Name!`: match.body_part_examined has an empty pattern",
            "route `Bad Name!`: match.series_description regex `(` is invalid",
            "route `typo`: unknown field `modalty`",
            "route `dup`: model `x@1.02.0`: `1.02.0` is not a version",
            "route `dup`: unknown field `regexp`, expected `regex`",
            "route `dup`: the name is used twice",
        ];
        for want in expect {
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "missing {want:?} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
        assert!(err.to_string().starts_with("invalid routes (13 problems)"));
    }

    #[test]
    fn names_are_bounded_metric_labels() {
        let long = "a".repeat(65);
        let text =
            format!("[[route]]\nname = \"{long}\"\nmodel = \"m@1.0.0\"\nlevel = \"series\"\n");
        assert!(RouteTable::from_toml(&text).is_err());
        let ok = text.replace(&long, &"a".repeat(64));
        assert!(RouteTable::from_toml(&ok).is_ok());
        let upper = text.replace(&long, "CT-Head");
        assert!(RouteTable::from_toml(&upper).is_err());
    }

    #[test]
    fn syntax_errors_and_missing_keys_are_reported() {
        let err = RouteTable::from_toml("[[route]\nname = 1").unwrap_err();
        assert!(err.problems()[0].starts_with("not valid TOML"), "{err}");
        let err =
            RouteTable::from_toml("[[route]]\nname = \"x\"\nlevel = \"series\"\n").unwrap_err();
        assert!(
            err.problems()[0].contains("route `x`: missing field `model`"),
            "{err}"
        );
        let err = RouteTable::from_toml("[[route]]\nmodel = \"m@1.0.0\"\nlevel = \"series\"\n")
            .unwrap_err();
        assert!(
            err.problems()[0].contains("route #1: missing field `name`"),
            "{err}"
        );
        let err = RouteTable::from_toml("route = 3").unwrap_err();
        assert!(
            err.problems()[0].contains("list of [[route]] tables"),
            "{err}"
        );
        let err = RouteTable::from_toml(
            "[[route]]\nname = \"x\"\nmodel = \"m@1.0.0\"\nlevel = \"series\"\n[route.match]\nmodality = 5\n",
        )
        .unwrap_err();
        assert!(err.problems()[0].contains("a pattern \"CT\""), "{err}");
    }

    #[test]
    fn fallback_chains_timeouts_and_rollback_versions_parse_and_are_checked() {
        let table = RouteTable::from_toml(
            r#"
            [[route]]
            name = "ct"
            model = "ct-hyperdensity@2.0.0"
            fallback = ["ct-hyperdensity@1.0.0", "forward-unprocessed"]
            timeout = "750ms"
            rollback_to = "1.0.0"
            level = "series"

            [[route]]
            name = "plain"
            model = "dx-exposure@1.0.0"
            level = "instance"
            "#,
        )
        .unwrap();
        let ct = &table.routes()[0];
        assert_eq!(ct.fallback.len(), 1);
        assert_eq!(ct.fallback[0].to_string(), "ct-hyperdensity@1.0.0");
        assert_eq!(ct.terminal, Terminal::ForwardUnprocessed);
        assert_eq!(ct.timeout, Some(std::time::Duration::from_millis(750)));
        assert_eq!(ct.rollback_to.unwrap().to_string(), "1.0.0");
        let plain = &table.routes()[1];
        assert!(plain.fallback.is_empty());
        assert_eq!(plain.terminal, Terminal::StoreOnly);
        assert_eq!(plain.timeout, None);

        let err = RouteTable::from_toml(
            r#"
            [[route]]
            name = "bad"
            model = "m@1.0.0"
            fallback = ["store-only", "m@1.0.0", "n@1.0.0", "n@1.0.0", "nope"]
            timeout = "0s"
            rollback_to = "1.0.0"
            level = "series"
            "#,
        )
        .unwrap_err();
        let problems = err.problems();
        let expect = [
            "`store-only` ends the chain, so it must come last",
            "m@1.0.0 is the route's own model",
            "n@1.0.0 is listed twice",
            "fallback `nope` must be \"name@version\"",
            "timeout must be more than zero",
            "rollback_to 1.0.0 is the route's own version",
        ];
        for want in expect {
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "missing {want:?} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    }

    #[test]
    fn an_empty_file_is_a_table_without_routes() {
        let table = RouteTable::from_toml("# nothing routed yet\n").unwrap();
        assert!(table.routes().is_empty());
    }
}
