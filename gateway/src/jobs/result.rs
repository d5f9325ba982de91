//! What a finished job leaves behind: the SR stored in the study (named by
//! a UID derived from the job, so a re-run after a crash finds it instead
//! of making a second one), the deliveries queued for the route's
//! destinations, and the JSON the job row and the audit trail record.

use std::path::PathBuf;
use std::sync::Arc;

use super::chain::GivenUp;
use super::conn::IndexDb;
use super::error::JobError;
use super::queue::{Job, ServedBy};
use crate::assemble::{ReadySeries, SeriesInstance};
use crate::egress::{EgressHandle, NewDelivery};
use crate::infer::{Classification, LoadedModel};
use crate::results::sr::{
    self, Algorithm, COMPREHENSIVE_SR_STORAGE, Finding, ResultProvenance, SourceInstance,
    SrRequest, StudyContext,
};
use crate::store::Store;

/// Explicit VR Little Endian: what the SR writer produces.
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
/// Series Number of result series (the highest a scanner rarely uses).
const RESULT_SERIES_NUMBER: i64 = 9900;

/// A stored result SR.
pub(super) struct StoredResult {
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub path: PathBuf,
}

/// Which step served, for the SR's provenance.
pub(super) struct Step<'a> {
    pub name: &'static str,
    pub reason: Option<&'a str>,
}

/// What storing and forwarding a result needs: the index (to find a
/// result an earlier run stored), the store, the egress queue (absent when
/// egress is not running), and the names the SR is made under.
pub(super) struct ResultOutput<'a> {
    pub db: &'a IndexDb,
    pub store: &'a Store,
    pub egress: Option<&'a EgressHandle>,
    /// UID root for result series and instances.
    pub uid_root: &'a str,
    pub ae_title: &'a str,
}

impl ResultOutput<'_> {
    /// Writes the SR of `classification` by `model` and stores it in the
    /// study, unless an earlier run of the same job already did.
    pub(super) async fn store_sr(
        &self,
        job: &Job,
        series: &ReadySeries,
        sources: &[SeriesInstance],
        model: &LoadedModel,
        classification: &Classification,
        step: Step<'_>,
    ) -> Result<StoredResult, JobError> {
        let key = job.key();
        let key_refs: Vec<&str> = key.iter().map(String::as_str).collect();
        let sop_instance_uid =
            sr::derived_uid(self.uid_root, &[&["result"], &key_refs[..]].concat());
        let planned = job.model.to_string();
        let series_instance_uid = sr::derived_uid(
            self.uid_root,
            &[
                "result-series",
                &job.site,
                &job.series_instance_uid,
                &planned,
                &job.route,
            ],
        );
        let manifest = Arc::clone(model.manifest());
        let (content_date, content_time) = utc_date_time();
        let request = SrRequest {
            study: study_context(series),
            sources: sources
                .iter()
                .map(|s| SourceInstance {
                    sop_class_uid: s.sop_class_uid.clone(),
                    sop_instance_uid: s.sop_instance_uid.clone(),
                    series_instance_uid: series.series_instance_uid.clone(),
                })
                .collect(),
            algorithm: Algorithm {
                name: manifest.name.clone(),
                version: manifest.version.to_string(),
                sha256: manifest.sha256.clone(),
                engine: model.engine_kind().to_string(),
                demo: manifest.demo,
                clinical_use: manifest.clinical_use.clone(),
                intended_use: manifest.intended_use.clone(),
                limitations: manifest.limitations.clone(),
            },
            provenance: ResultProvenance {
                route: job.route.clone(),
                step: step.name.into(),
                step_reason: step.reason.map(str::to_string),
            },
            findings: classification
                .labels
                .iter()
                .map(|l| Finding {
                    label: l.label.clone(),
                    score: l.score,
                    threshold: l.threshold,
                    positive: l.positive,
                })
                .collect(),
            series_instance_uid: series_instance_uid.clone(),
            sop_instance_uid: sop_instance_uid.clone(),
            series_number: RESULT_SERIES_NUMBER,
            series_description: format!("AI result: {} {}", manifest.name, manifest.version),
            content_date,
            content_time,
            manufacturer: "DICOM Inference Gateway".into(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            station_ae_title: self.ae_title.to_string(),
        };

        // A re-run after a crash finds its result already stored (in the
        // job's site, where it is stored): keep it.
        let existing_uid = sop_instance_uid.clone();
        let existing_site = job.site.clone();
        let existing = self
            .db
            .run(move |c| crate::store::index::find(c, &existing_site, &existing_uid))
            .await?;
        let path = match existing {
            Some(found) => PathBuf::from(found.path),
            None => {
                let bytes = tokio::task::spawn_blocking(move || sr::write_sr(&request))
                    .await
                    .map_err(|e| JobError::Internal(format!("SR task: {e}")))??;
                self.store
                    .store_generated(&bytes, &job.site, self.ae_title)
                    .await?
                    .path
            }
        };
        Ok(StoredResult {
            series_instance_uid,
            sop_instance_uid,
            path,
        })
    }

    /// Queues the result SR for each of the route's destinations.
    pub(super) async fn deliver_sr(
        &self,
        job: &Job,
        stored: &StoredResult,
    ) -> Result<(), JobError> {
        let delivery = |destination: &String| NewDelivery {
            destination: destination.clone(),
            sop_class_uid: COMPREHENSIVE_SR_STORAGE.to_string(),
            sop_instance_uid: stored.sop_instance_uid.clone(),
            transfer_syntax_uid: EXPLICIT_VR_LITTLE_ENDIAN.to_string(),
            path: stored.path.to_string_lossy().into_owned(),
            origin: format!("job:{}", job.id),
        };
        self.enqueue(job, job.destinations.iter().map(delivery).collect())
            .await
    }

    /// Queues the source images themselves, as stored, for each of the
    /// route's destinations (`forward-unprocessed`). Returns how many.
    pub(super) async fn deliver_unprocessed(
        &self,
        job: &Job,
        sources: &[SeriesInstance],
    ) -> Result<usize, JobError> {
        let mut deliveries = Vec::new();
        for destination in &job.destinations {
            for source in sources {
                deliveries.push(NewDelivery {
                    destination: destination.clone(),
                    sop_class_uid: source.sop_class_uid.clone(),
                    sop_instance_uid: source.sop_instance_uid.clone(),
                    transfer_syntax_uid: source.transfer_syntax_uid.clone(),
                    path: source.path.clone(),
                    origin: format!("job:{}:unprocessed", job.id),
                });
            }
        }
        let count = deliveries.len();
        self.enqueue(job, deliveries).await?;
        Ok(count)
    }

    /// Idempotent per (destination, instance).
    async fn enqueue(&self, job: &Job, deliveries: Vec<NewDelivery>) -> Result<(), JobError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let egress = self.egress.ok_or_else(|| {
            JobError::Egress("route names destinations but egress is not running".into())
        })?;
        for delivery in deliveries {
            egress
                .enqueue(delivery)
                .await
                .map_err(|e| JobError::Egress(format!("job {}: {e}", job.id)))?;
        }
        Ok(())
    }
}

/// What produced a result: model, file hash and engine.
pub(super) fn served_by(model: &LoadedModel) -> ServedBy {
    ServedBy {
        model: model.id(),
        sha256: model.manifest().sha256.clone(),
        engine: model.engine_kind().to_string(),
    }
}

pub(super) fn findings_json(classification: &Classification) -> serde_json::Value {
    serde_json::Value::Array(
        classification
            .labels
            .iter()
            .map(|l| {
                serde_json::json!({
                    "label": l.label,
                    "score": l.score,
                    "threshold": l.threshold,
                    "positive": l.positive,
                })
            })
            .collect(),
    )
}

/// A shadow's agreement with production, label by label: same decision
/// or not, and the score difference.
pub(super) fn compare_findings(
    shadow: &serde_json::Value,
    production: &serde_json::Value,
) -> Vec<(String, bool, f64)> {
    let labels = |v: &serde_json::Value| -> Vec<(String, bool, f64)> {
        v.as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        Some((
                            item.get("label")?.as_str()?.to_string(),
                            item.get("positive")?.as_bool()?,
                            item.get("score")?.as_f64()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let production = labels(production);
    labels(shadow)
        .into_iter()
        .filter_map(|(label, positive, score)| {
            let (_, prod_positive, prod_score) = production.iter().find(|(l, _, _)| *l == label)?;
            Some((label, positive == *prod_positive, score - prod_score))
        })
        .collect()
}

/// The audit record of a job's end: inputs, route, step, reasons, the
/// model version and SHA-256 that served, and the output.
pub(super) fn completion_detail(
    job: &Job,
    sources: &[SeriesInstance],
    served: Option<&ServedBy>,
    step: &str,
    given_up: &[GivenUp],
    findings: Option<&serde_json::Value>,
    result_sop_instance_uid: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "job": job.id,
        "purpose": job.purpose.as_str(),
        "route": job.route,
        "step": step,
        "planned_model": job.model.name,
        "planned_version": job.model.version.to_string(),
        "model": served.map(|s| s.model.name.clone()),
        "version": served.map(|s| s.model.version.to_string()),
        "model_sha256": served.map(|s| s.sha256.clone()),
        "engine": served.map(|s| s.engine.clone()),
        "given_up": given_up.iter().map(GivenUp::to_json).collect::<Vec<_>>(),
        "study_instance_uid": job.study_instance_uid,
        "series_instance_uid": job.series_instance_uid,
        "source_instances": sources.iter().map(|s| s.sop_instance_uid.as_str()).collect::<Vec<_>>(),
        "result_sop_instance_uid": result_sop_instance_uid,
        "findings": findings,
    })
}

pub(super) fn failure_detail(job: &Job, kind: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "job": job.id,
        "purpose": job.purpose.as_str(),
        "route": job.route,
        "model": job.model.name,
        "version": job.model.version.to_string(),
        "study_instance_uid": job.study_instance_uid,
        "series_instance_uid": job.series_instance_uid,
        "sop_instance_uid": job.sop_instance_uid,
        "error_kind": kind,
        "error": message,
    })
}

fn study_context(series: &ReadySeries) -> StudyContext {
    let a = &series.first;
    StudyContext {
        study_instance_uid: series.study_instance_uid.clone(),
        patient_name: a.patient_name.clone(),
        patient_id: a.patient_id.clone(),
        patient_birth_date: a.patient_birth_date.clone(),
        patient_sex: a.patient_sex.clone(),
        study_date: a.study_date.clone(),
        study_time: a.study_time.clone(),
        accession_number: a.accession_number.clone(),
        study_id: a.study_id.clone(),
        referring_physician_name: a.referring_physician_name.clone(),
        study_description: a.study_description.clone(),
    }
}

/// Today's date and time in UTC as DICOM DA and TM values.
fn utc_date_time() -> (String, String) {
    // RFC 3339 in UTC: 2026-11-21T22:40:00Z (fraction optional).
    let now = crate::time::now_rfc3339();
    let date: String = now.chars().take(10).filter(char::is_ascii_digit).collect();
    let time: String = now
        .chars()
        .skip(11)
        .take(8)
        .filter(char::is_ascii_digit)
        .collect();
    (date, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_comparison_matches_labels_and_reports_agreement() {
        let shadow = serde_json::json!([
            {"label": "a", "score": 0.9, "threshold": 0.5, "positive": true},
            {"label": "b", "score": 0.2, "threshold": 0.5, "positive": false},
            {"label": "only-shadow", "score": 0.2, "threshold": 0.5, "positive": false},
        ]);
        let production = serde_json::json!([
            {"label": "a", "score": 0.7, "threshold": 0.5, "positive": true},
            {"label": "b", "score": 0.6, "threshold": 0.5, "positive": true},
        ]);
        let compared = compare_findings(&shadow, &production);
        assert_eq!(compared.len(), 2);
        assert_eq!(compared[0].0, "a");
        assert!(compared[0].1);
        assert!((compared[0].2 - 0.2).abs() < 1e-9);
        assert_eq!(compared[1].0, "b");
        assert!(!compared[1].1);
    }
}
