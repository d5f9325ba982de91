//! Series assembly, between `store` and `route`: a series is ready once no
//! new instance has arrived for the configured stable time.
//!
//! Arrival is recorded by the store's committer in the same transaction as
//! the instance's index row (`store::record_arrival`; the store owns the
//! `series_activity` table and assembly only reads it), so what assembly knows is
//! exactly as durable as what was acknowledged: after a crash, a series that
//! was still assembling is picked up again. The [`Assembler`] thread finds
//! series whose last arrival is older than the stable time, routes them
//! (`route::evaluate`, pure) and turns each matched route into jobs
//! (`jobs::queue`), idempotently, in one transaction with marking the series
//! dispatched. An instance arriving after dispatch sets the series back to
//! assembling: instance-level routes then get jobs for the new instances,
//! and series-level jobs, keyed by (site, series, model version), are not
//! repeated. A series is identified by (site, Series Instance UID): two
//! sites sending the same series each get their own assembly and jobs.

mod schema;
mod series;
#[cfg(test)]
mod tests;

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use rusqlite::Connection;

use crate::jobs::{JobPurpose, JobsNotifier, NewJob};
use crate::route::{Level, RouteStateStore, RoutesHandle, RoutingInput, effective_model, evaluate};
use crate::telemetry::{Metrics, modality_label};

pub use schema::assembling_count;
pub use series::{ReadySeries, SeriesInstance, load_instance, load_series};

/// When a series counts as complete.
#[derive(Debug, Clone, Copy)]
pub struct AssemblyConfig {
    /// No new instance for this long: the series is ready.
    pub stable_time: Duration,
    /// How often the assembler looks for ready series.
    pub poll_interval: Duration,
}

/// Most series dispatched per pass; the rest wait for the next pass.
const MAX_SERIES_PER_PASS: usize = 64;

/// The assembly thread: finds ready series and dispatches them to jobs.
pub struct Assembler {
    pub conn: Connection,
    pub config: AssemblyConfig,
    pub routes: RoutesHandle,
    /// Operator state: which version serves, canary and shadow, and
    /// whether a route takes new work.
    pub states: std::sync::Arc<RouteStateStore>,
    pub jobs: JobsNotifier,
    pub metrics: Metrics,
}

/// Stops the assembler thread when dropped or sent to.
pub struct AssemblerStop(Sender<()>);

impl AssemblerStop {
    pub fn stop(self) {
        let _ = self.0.send(());
    }
}

impl Assembler {
    /// Runs on its own thread (SQLite is blocking) until stopped.
    pub fn spawn(self) -> std::io::Result<(AssemblerStop, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("assembler".into())
            .spawn(move || self.run(rx))?;
        Ok((AssemblerStop(tx), handle))
    }

    fn run(mut self, stop: Receiver<()>) {
        let mut wait = self.config.poll_interval;
        loop {
            match stop.recv_timeout(wait) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            wait = match self.pass() {
                Ok(_) => self.next_wait(),
                Err(e) => {
                    tracing::error!(error = %e, "series assembly pass failed; retrying");
                    self.config.poll_interval
                }
            };
        }
    }

    /// Sleeps until the next series is due, so a series is dispatched within
    /// milliseconds of its stable time instead of up to a poll interval late;
    /// never longer than the poll interval, which bounds how late a series
    /// that arrives meanwhile is seen.
    fn next_wait(&self) -> Duration {
        let poll = self.config.poll_interval;
        match schema::earliest_assembling_ms(&self.conn) {
            Ok(Some(last)) => {
                let due = last + self.config.stable_time.as_millis() as i64;
                let until = (due - crate::time::unix_millis()).max(5) as u64;
                poll.min(Duration::from_millis(until))
            }
            _ => poll,
        }
    }

    /// One pass: every ready series is routed and dispatched.
    pub fn pass(&mut self) -> rusqlite::Result<usize> {
        let cutoff = crate::time::unix_millis() - self.config.stable_time.as_millis() as i64;
        let ready = schema::ready_series(&self.conn, cutoff, MAX_SERIES_PER_PASS)?;
        let mut dispatched = 0;
        for pending in ready {
            let Some(series) =
                load_series(&self.conn, &pending.site, &pending.series_instance_uid)?
            else {
                // Its instances were removed (reconciliation): nothing to do.
                schema::mark_dispatched(&self.conn, &pending)?;
                continue;
            };
            let jobs = self.plan_jobs(&series, pending.last_received_ms);
            let tx = self.conn.transaction()?;
            let created = crate::jobs::queue::insert_jobs(&tx, &jobs)?;
            let still_current = schema::mark_dispatched(&tx, &pending)?;
            if still_current {
                tx.commit()?;
                dispatched += 1;
                if created > 0 {
                    self.jobs.wake();
                }
            }
            // Otherwise an instance arrived meanwhile: roll back, retry when stable.
        }
        Ok(dispatched)
    }

    /// Routes a ready series and turns each matched route into jobs.
    fn plan_jobs(&self, series: &ReadySeries, last_received_ms: i64) -> Vec<NewJob> {
        let table = self.routes.current();
        let input = RoutingInput {
            attributes: &series.first,
            site: &series.site,
            calling_ae: &series.calling_ae,
        };
        let decision = evaluate(&table, &input);
        let modality = modality_label(series.first.modality.as_deref());
        if decision.matched.is_empty() {
            self.metrics
                .pipeline
                .unrouted_series
                .with_label_values(&[series.site.as_str(), modality])
                .inc();
            tracing::info!(site = %series.site, modality, instances = series.instances.len(), "series matches no route: stored only");
            return Vec::new();
        }
        let scanner = self.metrics.performance.scanner_label(
            series.first.manufacturer.as_deref(),
            series.first.manufacturer_model_name.as_deref(),
        );
        let mut jobs = Vec::new();
        let states = self.states.snapshot();
        let now_ms = crate::time::unix_millis();
        for matched in decision.matched {
            let route = matched.route;
            let state = states.get(&route.name).cloned().unwrap_or_default();
            let step = effective_model(&route, &state, &series.study_instance_uid, now_ms);
            if !step.accepts_new_work {
                let status = if state.disabled {
                    "disabled"
                } else {
                    "draining"
                };
                self.metrics
                    .pipeline
                    .skipped_series
                    .with_label_values(&[route.name.as_str(), status])
                    .inc();
                tracing::info!(site = %series.site, route = %route.name, status, "series not started: route takes no new work");
                continue;
            }
            self.metrics
                .pipeline
                .routed_series
                .with_label_values(&[series.site.as_str(), route.name.as_str()])
                .inc();
            tracing::info!(site = %series.site, route = %route.name, model = %step.model, version_source = step.source.as_str(), shadow = ?step.shadow.as_ref().map(ToString::to_string), reasons = ?matched.reasons, "series routed");
            let targets: Vec<Option<&SeriesInstance>> = match route.level {
                Level::Series => vec![None],
                Level::Instance => series.instances.iter().map(Some).collect(),
            };
            let mut planned = vec![(
                step.model.clone(),
                step.source.as_str(),
                JobPurpose::Production,
            )];
            if let Some(shadow) = &step.shadow {
                planned.push((shadow.clone(), "shadow", JobPurpose::Shadow));
            }
            for (model, version_source, purpose) in planned {
                for target in &targets {
                    jobs.push(NewJob {
                        level: route.level,
                        study_instance_uid: series.study_instance_uid.clone(),
                        series_instance_uid: series.series_instance_uid.clone(),
                        sop_instance_uid: target.map(|i| i.sop_instance_uid.clone()),
                        site: series.site.clone(),
                        modality: modality.to_string(),
                        scanner: scanner.to_string(),
                        route: route.name.clone(),
                        model: model.clone(),
                        version_source,
                        purpose,
                        destinations: match purpose {
                            JobPurpose::Production => route.destinations.clone(),
                            // Never forwarded, whatever the route says.
                            JobPurpose::Shadow => Vec::new(),
                        },
                        ready_after_ms: last_received_ms,
                    });
                }
            }
        }
        jobs
    }
}
