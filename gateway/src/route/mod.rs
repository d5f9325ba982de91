//! Routing by protocol, between `assemble` and `infer`: ordered rules on
//! DICOM attributes pick the routes (models and destinations) of a series.
//!
//! - [`RouteTable`] (`table.rs`): `routes.toml` parsed and validated, every
//!   problem reported at once; [`RouteTable::check`] cross-checks it against
//!   the deployed models and egress destinations.
//! - `matcher.rs`: one condition per attribute, case-insensitive globs or a
//!   regex, compiled once at load.
//! - [`evaluate`] (`evaluate.rs`): the pure decision for one series or
//!   instance, with a readable reason for every route taken or not.
//! - [`RoutesHandle`] (`reload.rs`): the live table, reloaded from the file
//!   without a restart; a bad file keeps the last good table.
//! - [`RouteState`] (`state.rs`): operator state overlaid on the config
//!   (forced fallback, pin, promote/rollback, canary, shadow, disable,
//!   drain) and [`effective_model`], the pure step for one series.
//! - [`RouteStateStore`] (`state_store.rs`): that state persisted in the
//!   index, audited, and published to readers without a restart.
//! - [`test_files`] (`cli.rs`): `dicom-gateway routes test FILE.dcm…`.
//!
//! A series may take several routes (fan-out); a series that takes none is
//! stored only.

mod cli;
mod evaluate;
mod matcher;
mod parse;
mod reload;
mod state;
mod state_store;
mod table;

use std::path::PathBuf;

pub use cli::test_files;
pub use evaluate::{RouteMatch, RouteMiss, RoutingDecision, RoutingInput, evaluate};
pub use matcher::Attribute;
pub use reload::{ReloadOutcome, RoutesHandle, RoutesValidator};
pub use state::{
    Canary, EffectiveStep, ForcedFallback, Promotion, RouteState, Shadow, StateError, StateFault,
    VersionSource, canary_bucket, effective_model,
};
pub(crate) use state_store::create_schema as create_state_schema;
pub use state_store::{Deployment, OperatorRequest, RouteCommand, RouteStateStore, RouteStates};
pub use table::{EMBEDDED_ROUTES_TOML, Level, Route, RouteTable, Terminal};

/// Everything that can go wrong with a routes file. All of it is the
/// operator's to fix (the file or the deployment it names); none is worth
/// retrying unchanged, and none is caused by a DICOM peer.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    /// Every problem found in one routes file, one per line.
    #[error("invalid routes ({} problem{}):\n  - {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  - "))]
    Invalid(Vec<String>),
    #[error("cannot read routes file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot register route metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot render the routing report as JSON: {0}")]
    Render(#[from] serde_json::Error),
}

impl RoutesError {
    /// The individual problems (one for a read or metrics failure).
    pub fn problems(&self) -> Vec<String> {
        match self {
            RoutesError::Invalid(problems) => problems.clone(),
            other => vec![other.to_string()],
        }
    }
}
