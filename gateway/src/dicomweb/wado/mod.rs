//! WADO-RS (PS3.18 10.4): stored instances back out of the gateway, as the
//! Part 10 files we received (byte for byte, never transcoded), as
//! DICOM JSON metadata, as bulk data and frames cut from the files, and
//! rendered to JPEG or PNG.
//!
//! Every route resolves its target through the index with the caller's
//! [`Visibility`], so a study another site owns answers exactly like a
//! missing one, and where two readable sites hold a copy of one SOP
//! Instance UID the caller gets one: its own site's, else the
//! lowest-named site's. Responses stream from disk (`multipart`); only rendering
//! and decoding load an instance into memory, one at a time per core
//! (`decode`).
//!
//! - `retrieve`: study, series and instance resources (`application/dicom`).
//! - `metadata`: `.../metadata` (`application/dicom+json`).
//! - `pixels`: `.../frames/{list}` and `.../bulkdata/{tag}`.
//! - `rendered`: `.../rendered` and `.../thumbnail`.
//!
//! Beneath them: `accept` (Accept parsing and negotiation),
//! `transfer_syntax` (media types and defaults of PS3.18 8.7.3),
//! `part10` (where each element lies in a stored file), `frames`
//! (frame arithmetic), `multipart` (streamed bodies), `decode`
//! (bounded decoding with dicom-pixeldata).

mod accept;
mod decode;
mod frames;
mod metadata;
mod multipart;
mod part10;
mod pixels;
mod rendered;
mod retrieve;
mod transcode;
mod transfer_syntax;

use std::path::{Component, Path, PathBuf};

use actix_web::web;

use super::DicomwebState;
use super::auth::Visibility;
use super::error::DicomWebError;
use crate::auth::Principal;
use crate::store::uid::validate_uid;

/// Registers the WADO-RS routes (under the `/dicomweb` scope).
pub fn register(cfg: &mut web::ServiceConfig) {
    const STUDY: &str = "/studies/{study}";
    const SERIES: &str = "/studies/{study}/series/{series}";
    const INSTANCE: &str = "/studies/{study}/series/{series}/instances/{instance}";
    cfg.route(STUDY, web::get().to(retrieve::study))
        .route(&format!("{STUDY}/metadata"), web::get().to(metadata::study))
        .route(
            &format!("{STUDY}/thumbnail"),
            web::get().to(rendered::study_thumbnail),
        )
        .route(SERIES, web::get().to(retrieve::series))
        .route(
            &format!("{SERIES}/metadata"),
            web::get().to(metadata::series),
        )
        .route(
            &format!("{SERIES}/thumbnail"),
            web::get().to(rendered::series_thumbnail),
        )
        .route(INSTANCE, web::get().to(retrieve::instance))
        .route(
            &format!("{INSTANCE}/metadata"),
            web::get().to(metadata::instance),
        )
        .route(
            &format!("{INSTANCE}/bulkdata/{{tag}}"),
            web::get().to(pixels::bulk_data),
        )
        .route(
            &format!("{INSTANCE}/frames/{{frames}}"),
            web::get().to(pixels::frames),
        )
        .route(
            &format!("{INSTANCE}/rendered"),
            web::get().to(rendered::instance_rendered),
        )
        .route(
            &format!("{INSTANCE}/thumbnail"),
            web::get().to(rendered::instance_thumbnail),
        )
        .route(
            &format!("{INSTANCE}/frames/{{frames}}/rendered"),
            web::get().to(rendered::frame_rendered),
        )
        .route(
            &format!("{INSTANCE}/frames/{{frames}}/thumbnail"),
            web::get().to(rendered::frame_thumbnail),
        );
}

/// The study, series or instance a request names, its UIDs checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub study: String,
    pub series: Option<String>,
    pub instance: Option<String>,
}

impl Target {
    pub fn study(study: String) -> Result<Self, DicomWebError> {
        check_uid("study", &study)?;
        Ok(Self {
            study,
            series: None,
            instance: None,
        })
    }

    pub fn series(study: String, series: String) -> Result<Self, DicomWebError> {
        check_uid("series", &series)?;
        Ok(Self {
            series: Some(series),
            ..Self::study(study)?
        })
    }

    pub fn instance(
        study: String,
        series: String,
        instance: String,
    ) -> Result<Self, DicomWebError> {
        check_uid("sop instance", &instance)?;
        Ok(Self {
            instance: Some(instance),
            ..Self::series(study, series)?
        })
    }

    fn level(&self) -> &'static str {
        match (&self.series, &self.instance) {
            (_, Some(_)) => "instance",
            (Some(_), None) => "series",
            (None, None) => "study",
        }
    }
}

/// `/dicomweb/studies/{s}/series/{se}/instances/{i}` of a stored instance.
pub(crate) fn instance_path(instance: &IndexedInstance) -> String {
    format!(
        "{}/studies/{}/series/{}/instances/{}",
        super::BASE_PATH,
        instance.study_instance_uid,
        instance.series_instance_uid,
        instance.sop_instance_uid
    )
}

fn check_uid(what: &str, uid: &str) -> Result<(), DicomWebError> {
    validate_uid(uid).map_err(|e| {
        DicomWebError::BadRequest(format!("{what} instance uid in the path is malformed: {e}"))
    })
}

/// One stored instance, as the index knows it.
#[derive(Debug, Clone)]
pub(crate) struct IndexedInstance {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    pub file_size: u64,
    /// Absolute path of the stored file.
    pub path: PathBuf,
}

/// Every instance of `target` the principal may read, in series and
/// instance number order; `NotFound` when there is none, whether it does
/// not exist or belongs to a site the caller may not read.
pub(crate) async fn find_instances(
    state: &DicomwebState,
    principal: &Principal,
    target: &Target,
) -> Result<Vec<IndexedInstance>, DicomWebError> {
    let (site_sql, site_params) = Visibility::of(principal).condition("instances");
    let mut sql = String::from(
        "SELECT study_instance_uid, series_instance_uid, sop_instance_uid, transfer_syntax_uid, \
         file_size, path FROM instances WHERE study_instance_uid = ?",
    );
    let mut params = vec![target.study.clone()];
    if let Some(series) = &target.series {
        sql.push_str(" AND series_instance_uid = ?");
        params.push(series.clone());
    }
    if let Some(instance) = &target.instance {
        sql.push_str(" AND sop_instance_uid = ?");
        params.push(instance.clone());
    }
    sql.push_str(&format!(" AND {site_sql}"));
    params.extend(site_params);
    sql.push_str(" ORDER BY series_number, series_instance_uid, instance_number, sop_instance_uid");
    let rows = state
        .index
        .run(move |conn| {
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
    if rows.is_empty() {
        return Err(DicomWebError::NotFound(format!(
            "{} not found",
            target.level()
        )));
    }
    let root = state.store.layout().root();
    rows.into_iter()
        .map(
            |(study, series, instance, transfer_syntax_uid, file_size, relative)| {
                Ok(IndexedInstance {
                    study_instance_uid: study,
                    series_instance_uid: series,
                    sop_instance_uid: instance,
                    transfer_syntax_uid,
                    file_size: u64::try_from(file_size).map_err(DicomWebError::internal)?,
                    path: stored_path(root, &relative)?,
                })
            },
        )
        .collect()
}

/// The one instance `target` names.
pub(crate) async fn find_instance(
    state: &DicomwebState,
    principal: &Principal,
    target: &Target,
) -> Result<IndexedInstance, DicomWebError> {
    find_instances(state, principal, target)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| DicomWebError::NotFound("instance not found".into()))
}

/// Joins an indexed path to the data directory; the index only holds
/// relative paths we derived, but a path that would leave the data
/// directory is refused all the same.
fn stored_path(root: &Path, relative: &str) -> Result<PathBuf, DicomWebError> {
    let relative = Path::new(relative);
    if relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        Ok(root.join(relative))
    } else {
        Err(DicomWebError::internal(format!(
            "index holds a path outside the data directory: {}",
            relative.display()
        )))
    }
}

/// Runs blocking work (file walks, decoding) on the blocking pool; a panic
/// there becomes a 500, never a crash.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, DicomWebError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, DicomWebError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DicomWebError::internal(format!("blocking task failed: {e}")))?
}

impl From<part10::LayoutError> for DicomWebError {
    fn from(e: part10::LayoutError) -> Self {
        DicomWebError::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_check_every_uid() {
        assert!(Target::study("1.2.3".into()).is_ok());
        assert!(matches!(
            Target::study("1.2.03".into()),
            Err(DicomWebError::BadRequest(_))
        ));
        assert!(matches!(
            Target::series("1.2.3".into(), "x".into()),
            Err(DicomWebError::BadRequest(_))
        ));
        let t = Target::instance("1.2".into(), "1.3".into(), "1.4".into()).unwrap();
        assert_eq!(t.level(), "instance");
        assert!(Target::instance("1.2".into(), "1.3".into(), "1..4".into()).is_err());
    }

    #[test]
    fn indexed_paths_stay_inside_the_data_directory() {
        let root = Path::new("/data");
        assert_eq!(
            stored_path(root, "instances/ab/cd/e.dcm").unwrap(),
            PathBuf::from("/data/instances/ab/cd/e.dcm")
        );
        assert!(stored_path(root, "../etc/passwd").is_err());
        assert!(stored_path(root, "/etc/passwd").is_err());
    }
}
