//! `GET /api/v1/studies/{study}/results`: what the models found in a study,
//! as JSON, behind the same tokens and site visibility as DICOMweb.
//!
//! Each result names the route, the step, the exact model version and the
//! SHA-256 of its file, the engine, the findings with their operating
//! points, the model's intended use and limitations, and where the DICOM SR
//! can be retrieved. Failed jobs are listed with their error, so a PACS
//! administrator sees why a study has no result.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::DicomwebState;
use super::auth::{Authenticated, site_condition};
use super::error::DicomWebError;
use crate::auth::{ReadSites, Scope};
use crate::jobs::queue::{JobRecord, jobs_of_study};
use crate::store::uid::validate_uid;

pub const RESULTS_PATH: &str = "/api/v1/studies/{study}/results";

pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.route(RESULTS_PATH, web::get().to(study_results));
}

#[derive(Debug, Serialize)]
struct StudyResults {
    study_instance_uid: String,
    results: Vec<ResultView>,
}

#[derive(Debug, Serialize)]
struct ResultView {
    #[serde(flatten)]
    job: JobRecord,
    /// WADO-RS address of the SR, relative to the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    retrieve_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_info: Option<ModelInfo>,
}

#[derive(Debug, Serialize)]
struct ModelInfo {
    demo: bool,
    clinical_use: String,
    intended_use: String,
    limitations: Vec<String>,
}

async fn study_results(
    auth: Authenticated,
    path: web::Path<String>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Read)?.clone();
    let study = path.into_inner();
    validate_uid(&study)
        .map_err(|e| DicomWebError::BadRequest(format!("study UID `{study}`: {e}")))?;
    let (condition, sites) = site_condition(&principal);
    let allowed: Option<Vec<String>> = match &principal.read_sites {
        ReadSites::All => None,
        ReadSites::Only(set) => Some(set.iter().cloned().collect()),
    };
    let query_study = study.clone();
    let (visible, jobs) = state
        .index
        .run(move |conn| {
            let sql = format!(
                "SELECT EXISTS (SELECT 1 FROM instances WHERE study_instance_uid = ? AND {condition})"
            );
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![&query_study];
            values.extend(sites.iter().map(|s| s as &dyn rusqlite::ToSql));
            let visible: bool = conn.query_row(&sql, values.as_slice(), |r| r.get(0))?;
            let jobs = jobs_of_study(conn, &query_study, allowed.as_deref())?;
            Ok((visible, jobs))
        })
        .await?;
    if !visible {
        // The same answer for a study of another site as for no study.
        return Err(DicomWebError::NotFound(format!("study {study}")));
    }
    let results = jobs
        .into_iter()
        .map(|job| {
            let retrieve_url = job
                .result_sop_uid
                .as_ref()
                .zip(job.result_series_uid.as_ref())
                .map(|(sop, series)| {
                    format!(
                        "{}/studies/{study}/series/{series}/instances/{sop}",
                        super::BASE_PATH
                    )
                });
            let model_info = state.models.as_ref().and_then(|models| {
                // The version that produced the findings, when a fallback
                // served instead of the planned one.
                let name = job.served_model.as_deref().unwrap_or(&job.model);
                let version = job.served_version.as_deref().unwrap_or(&job.version);
                let entry = models.get(name, version.parse().ok()?)?;
                let m = entry.manifest();
                Some(ModelInfo {
                    demo: m.demo,
                    clinical_use: m.clinical_use.clone(),
                    intended_use: m.intended_use.clone(),
                    limitations: m.limitations.clone(),
                })
            });
            ResultView {
                job,
                retrieve_url,
                model_info,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(StudyResults {
        study_instance_uid: study,
        results,
    }))
}
