//! The validated route table: ordered routes, each a model, a level, the
//! destinations of its results and the conditions a series must meet.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use super::RoutesError;
use super::matcher::RouteMatcher;
use crate::models::ModelId;

/// The routes a fresh installation runs with: CT head series to the
/// hyperdensity model and radiographs to the exposure model, so a new user
/// sees a result with no configuration.
pub const EMBEDDED_ROUTES_TOML: &str = include_str!("../../../config/routes.toml");

/// Parsed once: [`RouteTable::embedded_default`] is called at start-up and
/// by every reload that has no file, and the text never changes.
static EMBEDDED: LazyLock<Result<RouteTable, String>> =
    LazyLock::new(|| RouteTable::from_toml(EMBEDDED_ROUTES_TOML).map_err(|e| e.to_string()));

/// How often a route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Once per ready series, on the series as a whole.
    Series,
    /// Once per instance (radiographs, single frames).
    Instance,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Series => "series",
            Level::Instance => "instance",
        }
    }

    pub(super) fn parse(text: &str) -> Option<Level> {
        match text {
            "series" => Some(Level::Series),
            "instance" => Some(Level::Instance),
            _ => None,
        }
    }
}

/// What a route does when every model in its chain has failed: the
/// images are already stored, so the only question is whether PACS gets
/// them without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Terminal {
    /// Keep the images at the gateway; nothing is sent.
    StoreOnly,
    /// Send the source images, unprocessed, to the route's destinations.
    ForwardUnprocessed,
}

impl Terminal {
    pub fn as_str(self) -> &'static str {
        match self {
            Terminal::StoreOnly => "store-only",
            Terminal::ForwardUnprocessed => "forward-unprocessed",
        }
    }

    pub(super) fn parse(text: &str) -> Option<Terminal> {
        match text {
            "store-only" => Some(Terminal::StoreOnly),
            "forward-unprocessed" => Some(Terminal::ForwardUnprocessed),
            _ => None,
        }
    }
}

/// One rule of the table.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique in the table; a metric label, so `[a-z0-9-_]{1,64}`.
    pub name: String,
    /// The primary model@version (operator state may serve another
    /// version of the same model: see [`super::effective_model`]).
    pub model: ModelId,
    /// Models tried in order when the one before fails, times out or has
    /// its circuit open.
    pub fallback: Vec<ModelId>,
    /// What happens when the whole chain has failed.
    pub terminal: Terminal,
    /// Longest one model may take on one job before the next step runs;
    /// `None`: the pipeline's `attempt_timeout`.
    pub timeout: Option<std::time::Duration>,
    /// The version of `model` that `rollback` returns to when no promote
    /// has recorded one.
    pub rollback_to: Option<crate::models::Version>,
    pub level: Level,
    /// Egress destination names the results go to; may be empty.
    pub destinations: Vec<String>,
    pub enabled: bool,
    /// Shared: a decision clones the routes it takes.
    pub(super) matcher: Arc<RouteMatcher>,
}

impl Route {
    /// The TOML keys of the attributes this route looks at, in evaluation order.
    pub fn condition_keys(&self) -> Vec<&'static str> {
        self.matcher
            .conditions
            .iter()
            .map(|c| c.attribute.key())
            .collect()
    }
}

/// The ordered routes. Order matters only for how decisions are listed:
/// every enabled route whose conditions hold is taken.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub(super) routes: Vec<Route>,
}

impl RouteTable {
    /// Parses and validates `routes.toml`, reporting every problem at once.
    pub fn from_toml(text: &str) -> Result<RouteTable, RoutesError> {
        super::parse::parse(text)
    }

    /// The table compiled into the binary from `config/routes.toml`.
    pub fn embedded_default() -> RouteTable {
        match &*EMBEDDED {
            Ok(table) => table.clone(),
            // A unit test parses the embedded file, so this cannot ship.
            Err(why) => panic!("the embedded config/routes.toml is invalid: {why}"),
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn get(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Routes that can be taken.
    pub fn enabled_count(&self) -> usize {
        self.routes.iter().filter(|r| r.enabled).count()
    }

    /// Cross-checks the table against what is deployed, reporting every
    /// problem at once. Disabled routes are not checked: disabling a route
    /// is how an administrator stages one for a model not deployed yet.
    pub fn check(
        &self,
        model_exists: &dyn Fn(&ModelId) -> bool,
        destinations: &[String],
    ) -> Result<(), RoutesError> {
        let known: HashSet<&str> = destinations.iter().map(String::as_str).collect();
        let mut problems = Vec::new();
        for route in self.routes.iter().filter(|r| r.enabled) {
            if !model_exists(&route.model) {
                problems.push(format!(
                    "route `{}`: model {} is not in the model repository",
                    route.name, route.model
                ));
            }
            for fallback in &route.fallback {
                if !model_exists(fallback) {
                    problems.push(format!(
                        "route `{}`: fallback model {fallback} is not in the model repository",
                        route.name
                    ));
                }
            }
            if let Some(version) = route.rollback_to {
                let target = ModelId {
                    name: route.model.name.clone(),
                    version,
                };
                if !model_exists(&target) {
                    problems.push(format!(
                        "route `{}`: rollback_to {target} is not in the model repository",
                        route.name
                    ));
                }
            }
            for destination in &route.destinations {
                if !known.contains(destination.as_str()) {
                    let mut names: Vec<&str> = known.iter().copied().collect();
                    names.sort_unstable();
                    let configured = if names.is_empty() {
                        "none are configured".to_string()
                    } else {
                        format!("configured: {}", names.join(", "))
                    };
                    problems.push(format!(
                        "route `{}`: destination `{destination}` is not configured ({configured})",
                        route.name
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RoutesError::Invalid(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Version;

    #[test]
    fn embedded_default_parses_and_routes_ct_head_and_radiographs() {
        let table = RouteTable::from_toml(EMBEDDED_ROUTES_TOML).expect("embedded routes are valid");
        let summary: Vec<(String, String, Level)> = table
            .routes()
            .iter()
            .map(|r| (r.name.clone(), r.model.to_string(), r.level))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "ct-head-hyperdensity".to_string(),
                    "ct-hyperdensity@2.0.0".to_string(),
                    Level::Series
                ),
                (
                    "radiograph-exposure".to_string(),
                    "dx-exposure@1.0.0".to_string(),
                    Level::Instance
                ),
            ]
        );
        assert!(
            table
                .routes()
                .iter()
                .all(|r| r.enabled && r.destinations.is_empty())
        );
        assert_eq!(RouteTable::embedded_default().routes().len(), 2);
    }

    #[test]
    fn check_reports_unknown_models_and_destinations_together() {
        let table = RouteTable::from_toml(
            r#"
            [[route]]
            name = "a"
            model = "ct-hyperdensity@2.0.0"
            level = "series"
            destinations = ["pacs", "archive"]

            [[route]]
            name = "b"
            model = "missing@1.0.0"
            level = "instance"

            [[route]]
            name = "staged"
            model = "not-yet@1.0.0"
            level = "instance"
            destinations = ["nowhere"]
            enabled = false
            "#,
        )
        .unwrap();
        let deployed = |id: &ModelId| {
            id.name == "ct-hyperdensity"
                && id.version
                    == Version {
                        major: 2,
                        minor: 0,
                        patch: 0,
                    }
        };
        let err = table.check(&deployed, &["pacs".to_string()]).unwrap_err();
        let problems = err.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0]
                .contains("route `a`: destination `archive` is not configured (configured: pacs)")
        );
        assert!(
            problems[1].contains("route `b`: model missing@1.0.0 is not in the model repository")
        );
        assert!(
            table
                .check(&|_| true, &["pacs".into(), "archive".into()])
                .is_ok()
        );
    }
}
