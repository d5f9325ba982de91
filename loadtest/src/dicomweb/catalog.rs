//! What the server holds, learned with QIDO-RS (PS3.18 10.6): studies and
//! their series, read from DICOM JSON. The QIDO mix aims at these; WADO
//! finds the series it retrieves here.

use reqwest::header::ACCEPT;
use serde_json::Value;

use super::{Endpoint, error_chain};

pub const STUDY_INSTANCE_UID: &str = "0020000D";
pub const SERIES_INSTANCE_UID: &str = "0020000E";
pub const PATIENT_ID: &str = "00100020";
pub const PATIENT_NAME: &str = "00100010";
pub const STUDY_DATE: &str = "00080020";
pub const MODALITIES_IN_STUDY: &str = "00080061";
pub const MODALITY: &str = "00080060";
pub const NUMBER_OF_SERIES_RELATED_INSTANCES: &str = "00201209";

/// A study the server reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyEntry {
    pub study_uid: String,
    pub patient_id: Option<String>,
    /// The Alphabetic component group, e.g. `DOE^JANE`.
    pub patient_name: Option<String>,
    pub study_date: Option<String>,
    pub modalities: Vec<String>,
}

/// A series the server reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesEntry {
    pub study_uid: String,
    pub series_uid: String,
    pub modality: Option<String>,
    pub instances: Option<u64>,
}

/// What the mix may search for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub studies: Vec<StudyEntry>,
    pub series: Vec<SeriesEntry>,
}

/// Why the catalog could not be learned.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("GET {path} failed: {message}")]
    Transport { path: String, message: String },
    #[error("GET {path} answered HTTP {status}")]
    Status { path: String, status: u16 },
    #[error("GET {path} did not answer a DICOM JSON array")]
    NotJson { path: String },
}

/// GET a QIDO path and return its DICOM JSON objects (204: none).
pub async fn search(
    endpoint: &Endpoint,
    path: &str,
    params: &[(String, String)],
) -> Result<Vec<Value>, DiscoveryError> {
    let transport = |error: reqwest::Error| DiscoveryError::Transport {
        path: path.to_string(),
        message: error_chain(&error),
    };
    let response = endpoint
        .get(path, params)
        .header(ACCEPT, "application/dicom+json")
        .send()
        .await
        .map_err(transport)?;
    let status = response.status().as_u16();
    if status == 204 {
        return Ok(Vec::new());
    }
    if status != 200 {
        return Err(DiscoveryError::Status {
            path: path.to_string(),
            status,
        });
    }
    let body = response.bytes().await.map_err(transport)?;
    serde_json::from_slice(&body).map_err(|_| DiscoveryError::NotJson {
        path: path.to_string(),
    })
}

/// Learn studies with one `/studies?limit=…` search, then the series of up
/// to `series_studies` of them, spread evenly over the list.
pub async fn discover(
    endpoint: &Endpoint,
    study_limit: usize,
    series_studies: usize,
    filters: &[(String, String)],
) -> Result<Catalog, DiscoveryError> {
    let mut params = filters.to_vec();
    params.push(("limit".into(), study_limit.to_string()));
    let studies: Vec<StudyEntry> = search(endpoint, "/studies", &params)
        .await?
        .iter()
        .filter_map(study_entry)
        .collect();
    let mut series = Vec::new();
    for study in spread(&studies, series_studies) {
        let path = format!("/studies/{}/series", study.study_uid);
        for object in search(endpoint, &path, &[]).await? {
            if let Some(mut entry) = series_entry(&object) {
                if entry.study_uid.is_empty() {
                    entry.study_uid.clone_from(&study.study_uid);
                }
                series.push(entry);
            }
        }
    }
    Ok(Catalog { studies, series })
}

/// Up to `count` items, evenly spaced, first included.
pub fn spread<T>(items: &[T], count: usize) -> Vec<&T> {
    let count = count.min(items.len());
    (0..count)
        .map(|k| &items[k * items.len() / count])
        .collect()
}

/// The first value of a DICOM JSON element as a string; for PN, its
/// Alphabetic component group.
pub fn first_string(object: &Value, tag: &str) -> Option<String> {
    let value = object.get(tag)?.get("Value")?.get(0)?;
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(pn) => pn.get("Alphabetic")?.as_str().map(str::to_string),
        _ => None,
    }
}

fn all_strings(object: &Value, tag: &str) -> Vec<String> {
    object
        .get(tag)
        .and_then(|e| e.get("Value"))
        .and_then(Value::as_array)
        .map(|values| {
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn study_entry(object: &Value) -> Option<StudyEntry> {
    Some(StudyEntry {
        study_uid: first_string(object, STUDY_INSTANCE_UID)?,
        patient_id: first_string(object, PATIENT_ID),
        patient_name: first_string(object, PATIENT_NAME),
        study_date: first_string(object, STUDY_DATE),
        modalities: all_strings(object, MODALITIES_IN_STUDY),
    })
}

pub fn series_entry(object: &Value) -> Option<SeriesEntry> {
    Some(SeriesEntry {
        study_uid: first_string(object, STUDY_INSTANCE_UID).unwrap_or_default(),
        series_uid: first_string(object, SERIES_INSTANCE_UID)?,
        modality: first_string(object, MODALITY),
        instances: first_string(object, NUMBER_OF_SERIES_RELATED_INSTANCES)
            .and_then(|n| n.parse().ok()),
    })
}

#[cfg(test)]
mod tests;
