//! Admin reload: re-read the configuration and every file it names, check
//! all of it, then put into force what a running process can change and say
//! exactly what needs a restart.
//!
//! Every top-level section of the effective configuration is compared as
//! TOML with the one in force. The sections (or `section.key`s) listed in
//! [`APPLIED_LIVE`] are put into force; any other difference, including a
//! section added to the configuration later and listed nowhere, is reported
//! in `restart_required`. A reload never reports as applied what it did not
//! apply: a live change that could not take effect moves to
//! `restart_required` or `notes`, with why.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use super::Control;
use crate::config::{GatewayConfig, RawConfig};
use crate::egress::DestinationChanges;
use crate::models::ModelRepository;
use crate::route::RouteTable;
use crate::sites::SiteRegistry;
use crate::telemetry::{LogLevelChange, set_log_level};

/// What a reload puts into force: whole top-level sections, or one key of
/// a section as `section.key`.
pub const APPLIED_LIVE: &[&str] = &["sites", "destinations", "logging.level"];

/// Top-level sections that apply only at the next start (for `logging`:
/// every key but `level`). Not consulted by reload, which treats anything
/// outside [`APPLIED_LIVE`] this way; a unit test checks that every section
/// of the configuration is in one list or the other, so a new section is a
/// conscious choice.
pub const RESTART_SECTIONS: &[&str] = &[
    "gateway", "dimse", "dicomweb", "store", "metrics", "logging", "pipeline", "egress", "drift",
    "admin", "audit", "cache",
];

/// What a reload changed.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    pub routes: usize,
    pub models: usize,
    pub unloaded: Vec<String>,
    /// Changed settings now in force: sections (`sites`, `destinations`)
    /// or keys (`logging.level`).
    pub applied: Vec<String>,
    /// Changed settings that apply only at the next start: sections, or
    /// `section.key` where the rest of the section applies live.
    pub restart_required: Vec<String>,
    /// Changed settings that take no effect, and why (`RUST_LOG` set), or
    /// what could not be found out.
    pub notes: Vec<String>,
    /// Destinations added, removed and changed, and what removed ones
    /// leave in the queue; absent when `destinations` did not change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destinations: Option<DestinationChanges>,
}

/// A reload refused: nothing changed.
#[derive(Debug, thiserror::Error)]
#[error("reload refused ({} problem{}): {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("; "))]
pub struct ReloadRefused(pub Vec<String>);

/// The effective configuration in force, as the TOML table reload compares
/// with: the start-up one, with each live change applied since.
pub struct InForce {
    table: toml::Table,
}

impl InForce {
    pub fn new(config: &GatewayConfig) -> Self {
        Self {
            table: table_of(&config.effective).unwrap_or_default(),
        }
    }
}

impl Control {
    /// Re-reads the configuration file and validates all of it and the
    /// files it names, rescans the model repository and checks the routes
    /// file against it and the new destinations; only if everything passes
    /// do models, routes, destinations, sites and the log level go into
    /// force. A refused reload changes nothing and says why. Both outcomes
    /// are audited under `actor`, with what was applied and what needs a
    /// restart.
    pub async fn reload(self: &Arc<Self>, actor: &str) -> Result<ReloadReport, ReloadRefused> {
        let outcome = self.try_reload().await;
        let detail = match &outcome {
            Ok(report) => serde_json::json!({
                "outcome": "reloaded",
                "applied": report.applied,
                "restart_required": report.restart_required,
                "report": report,
            }),
            Err(refused) => serde_json::json!({ "outcome": "refused", "problems": refused.0 }),
        };
        let action = if outcome.is_ok() {
            "config.reload"
        } else {
            "config.reload_refused"
        };
        if let Err(e) = self.audit(actor, action, detail).await {
            tracing::error!(error = %e, "cannot audit a reload");
        }
        match &outcome {
            Ok(report) => tracing::info!(actor, ?report, "configuration reloaded"),
            Err(refused) => {
                tracing::warn!(actor, problems = ?refused.0, "configuration reload refused; the running configuration stays")
            }
        }
        outcome
    }

    async fn try_reload(&self) -> Result<ReloadReport, ReloadRefused> {
        let mut in_force = self.in_force.lock().await;
        let started = &self.config;
        let source = started.source.clone();
        let cli = started.cli.clone();
        let fresh = tokio::task::spawn_blocking(move || {
            crate::config::load_checked(source.as_deref(), &cli)
        })
        .await
        .map_err(|e| ReloadRefused(vec![format!("reload task: {e}")]))?
        .map_err(|e| ReloadRefused(e.0))?;
        let fresh_table = table_of(&fresh.effective).map_err(|e| ReloadRefused(vec![e]))?;
        let Changes {
            live,
            mut restart_required,
        } = classify(&in_force.table, &fresh_table);
        // `effective` shows a Redis password redacted: compare the real one.
        if started.cache != fresh.cache && !restart_required.iter().any(|k| k == "cache") {
            restart_required.push("cache".into());
            restart_required.sort();
        }

        // The repository and routes file of the running pipeline section
        // (a changed one needs a restart), checked against the new
        // destinations.
        let models_dir = started.pipeline.models_dir.clone();
        let repository = tokio::task::spawn_blocking(move || ModelRepository::open(&models_dir))
            .await
            .map_err(|e| ReloadRefused(vec![format!("reload task: {e}")]))?
            .map_err(|e| ReloadRefused(vec![format!("model repository: {e}")]))?;
        let mut problems: Vec<String> = repository
            .invalid()
            .iter()
            .map(|m| format!("model {}: {}", m.dir.display(), m.problems.join("; ")))
            .collect();
        let table = match &started.pipeline.routes_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| vec![format!("cannot read routes file {}: {e}", path.display())])
                .and_then(|text| RouteTable::from_toml(&text).map_err(|e| e.problems())),
            None => Ok(RouteTable::embedded_default()),
        };
        let destinations: Vec<String> = fresh.destinations.iter().map(|d| d.name.clone()).collect();
        match table {
            Ok(table) => {
                if let Err(e) = table.check(
                    &|id| repository.get(&id.name, id.version).is_some(),
                    &destinations,
                ) {
                    problems.extend(e.problems());
                }
            }
            Err(p) => problems.extend(p),
        }
        if !problems.is_empty() {
            return Err(ReloadRefused(problems));
        }

        let mut applied = Vec::new();
        let mut notes = Vec::new();
        // Destinations first: the routes validator checks against them.
        let before = self.egress.destinations();
        let mut destination_changes = None;
        if live.iter().any(|k| k == "destinations") {
            let mut changes = self.egress.apply_destinations(fresh.destinations.clone());
            match self.egress.pending_deliveries(&changes.removed).await {
                Ok(pending) => changes.pending_on_removed = pending,
                Err(e) => notes.push(format!(
                    "destinations: cannot count the deliveries left to removed destinations ({e})"
                )),
            }
            applied.push("destinations".to_string());
            destination_changes = Some(changes);
        }
        let models = repository.entries().len();
        let unloaded = self.models.replace_repository(Arc::new(repository)).await;
        let routes = match self.routes.reload_now() {
            Ok(_) => self.routes.current().routes().len(),
            // Only if the file changed between the check and now.
            Err(e) => {
                if destination_changes.is_some() {
                    self.egress.apply_destinations(before);
                }
                return Err(ReloadRefused(e.problems()));
            }
        };
        if live.iter().any(|k| k == "sites") {
            // Our AE title and the unknown-AE site stay those of the start.
            let mut basis = started.clone();
            basis.sites = fresh.sites.clone();
            self.sites.replace(SiteRegistry::from_config(&basis));
            applied.push("sites".to_string());
        }
        if live.iter().any(|k| k == "logging.level") {
            match set_log_level(&fresh.logging.level) {
                LogLevelChange::Applied => applied.push("logging.level".to_string()),
                LogLevelChange::OverriddenByEnvironment => notes.push(
                    "logging.level: RUST_LOG is set and decides the log filter; it stays as it is"
                        .to_string(),
                ),
                LogLevelChange::NotInstalled => restart_required.push("logging.level".to_string()),
                LogLevelChange::Failed(e) => {
                    notes.push(format!("logging.level: not applied ({e})"));
                    restart_required.push("logging.level".to_string());
                }
            }
        }
        for key in &applied {
            copy_key(&mut in_force.table, &fresh_table, key);
        }
        restart_required.sort();
        Ok(ReloadReport {
            routes,
            models,
            unloaded: unloaded.iter().map(ToString::to_string).collect(),
            applied,
            restart_required,
            notes,
            destinations: destination_changes,
        })
    }
}

/// Differences between the configuration in force and a new one.
#[derive(Debug, Default, PartialEq)]
struct Changes {
    /// Keys of [`APPLIED_LIVE`] that differ.
    live: Vec<String>,
    /// Everything else that differs.
    restart_required: Vec<String>,
}

/// Compares every top-level key of both tables: a differing section is live
/// when [`APPLIED_LIVE`] names it; when it names some of its keys, the
/// section's keys are compared one by one; otherwise it needs a restart.
fn classify(in_force: &toml::Table, fresh: &toml::Table) -> Changes {
    let mut changes = Changes::default();
    let sections: BTreeSet<&String> = in_force.keys().chain(fresh.keys()).collect();
    for section in sections {
        let (old, new) = (in_force.get(section), fresh.get(section));
        if old == new {
            continue;
        }
        if APPLIED_LIVE.contains(&section.as_str()) {
            changes.live.push(section.clone());
            continue;
        }
        let prefix = format!("{section}.");
        let live_keys: Vec<&str> = APPLIED_LIVE
            .iter()
            .filter_map(|k| k.strip_prefix(prefix.as_str()))
            .collect();
        match (
            old.and_then(|v| v.as_table()),
            new.and_then(|v| v.as_table()),
        ) {
            (Some(old), Some(new)) if !live_keys.is_empty() => {
                let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
                for key in keys.into_iter().filter(|k| old.get(*k) != new.get(*k)) {
                    let path = format!("{section}.{key}");
                    if live_keys.contains(&key.as_str()) {
                        changes.live.push(path);
                    } else {
                        changes.restart_required.push(path);
                    }
                }
            }
            _ => changes.restart_required.push(section.clone()),
        }
    }
    changes
}

/// Sets `key` (a section, or `section.key`) of `into` to its value in
/// `from` (or removes it where `from` has none).
fn copy_key(into: &mut toml::Table, from: &toml::Table, key: &str) {
    let (into, from, key) = match key.split_once('.') {
        None => (into, Some(from), key),
        Some((section, key)) => {
            let from = from.get(section).and_then(|v| v.as_table());
            match into.get_mut(section).and_then(|v| v.as_table_mut()) {
                Some(into) => (into, from, key),
                None => return,
            }
        }
    };
    match from.and_then(|f| f.get(key)) {
        Some(value) => {
            into.insert(key.to_string(), value.clone());
        }
        None => {
            into.remove(key);
        }
    }
}

fn table_of(raw: &RawConfig) -> Result<toml::Table, String> {
    toml::Table::try_from(raw).map_err(|e| format!("cannot compare configurations: {e}"))
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
