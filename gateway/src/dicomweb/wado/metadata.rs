//! Retrieve Metadata (PS3.18 10.4.1.1.2): one DICOM JSON object (PS3.18
//! Annex F) per instance, in one top-level array, `application/dicom+json`.
//!
//! Each header is read up to Pixel Data and serialised with dicom-json.
//! dicom-json writes binary values inline, so before serialising, every
//! top-level binary value larger than [`BULK_DATA_THRESHOLD`] is emptied
//! and its JSON entry given a `BulkDataURI` pointing at our bulk data
//! resource instead; Pixel Data (never read here) always gets one. Binary
//! values nested in sequences stay inline.
//!
//! The array streams out as the instances are read, a few at a time in
//! parallel; a file that cannot be read aborts the stream (the client sees
//! a truncated body, never a partial array presented as complete).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use dicom_core::header::Header;
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_object::OpenFileOptions;
use futures::StreamExt;
use serde_json::Value;

use super::accept::{Offer, Packaging, accept_ranges, negotiate};
use super::part10::{self, PIXEL_DATA, PixelData};
use super::transfer_syntax::APPLICATION_DICOM_JSON;
use super::{Target, blocking, find_instances};
use crate::auth::Scope;
use crate::dicomweb::DicomwebState;
use crate::dicomweb::auth::Authenticated;
use crate::dicomweb::error::DicomWebError;

/// Binary values longer than this are sent as bulk data references.
pub const BULK_DATA_THRESHOLD: usize = 4096;
/// Instances read at once for one metadata response.
const PARALLEL_READS: usize = 4;

pub async fn study(
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Read)?;
    let target = Target::study(path.into_inner())?;
    respond(&req, &state, principal, target).await
}

pub async fn series(
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Read)?;
    let (study, series) = path.into_inner();
    let target = Target::series(study, series)?;
    respond(&req, &state, principal, target).await
}

pub async fn instance(
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Read)?;
    let (study, series, instance) = path.into_inner();
    let target = Target::instance(study, series, instance)?;
    respond(&req, &state, principal, target).await
}

async fn respond(
    req: &HttpRequest,
    state: &DicomwebState,
    principal: &crate::auth::Principal,
    target: Target,
) -> Result<HttpResponse, DicomWebError> {
    let offers = [
        Offer {
            media_type: APPLICATION_DICOM_JSON,
            transfer_syntax: None,
        },
        Offer {
            media_type: "application/json",
            transfer_syntax: None,
        },
    ];
    negotiate(&accept_ranges(req), &offers, Packaging::SINGLE_ONLY).ok_or_else(|| {
        DicomWebError::NotAcceptable("metadata is available as application/dicom+json".into())
    })?;
    let instances = find_instances(state, principal, &target).await?;
    let base = absolute_base(req);
    let count = instances.len();
    let objects = futures::stream::iter(instances)
        .map(move |instance| {
            let base = base.clone();
            async move {
                let uri = format!("{base}{}", super::instance_path(&instance));
                let path = instance.path.clone();
                blocking(move || instance_json(&path, &uri))
                    .await
                    .inspect_err(|e| tracing::error!(error = %e, "metadata of a stored instance cannot be read"))
            }
        })
        .buffered(PARALLEL_READS)
        .enumerate()
        .map(move |(index, object)| {
            // Each object becomes one element of a single JSON array.
            let object = object?;
            let mut chunk = Vec::with_capacity(object.len() + 2);
            chunk.push(if index == 0 { b'[' } else { b',' });
            chunk.extend_from_slice(&object);
            if index + 1 == count {
                chunk.push(b']');
            }
            Ok::<_, DicomWebError>(Bytes::from(chunk))
        });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, APPLICATION_DICOM_JSON))
        .streaming(objects))
}

/// `https://host:port`, as the client addressed us. Some clients (the
/// Python dicomweb-client among them) send a Host header without the port;
/// unless a proxy forwarded the request, the port we listen on is added
/// so that the BulkDataURIs resolve.
fn absolute_base(req: &HttpRequest) -> String {
    let info = req.connection_info();
    let scheme = info.scheme();
    let host = info.host();
    let proxied =
        req.headers().contains_key("forwarded") || req.headers().contains_key("x-forwarded-host");
    let port = req.app_config().local_addr().port();
    let default_port = if scheme == "https" { 443 } else { 80 };
    if proxied || has_port(host) || port == default_port {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// Whether a Host value names a port (`[::1]:8443`, `example:8443`).
fn has_port(host: &str) -> bool {
    match host.rfind(']') {
        Some(end) => host[end..].contains(':'),
        None => host.contains(':'),
    }
}

/// The DICOM JSON object of one stored instance, with `BulkDataURI`s
/// under `instance_uri`. Blocking.
pub fn instance_json(path: &std::path::Path, instance_uri: &str) -> Result<Vec<u8>, DicomWebError> {
    let layout = part10::scan(path)?;
    let mut obj = OpenFileOptions::new()
        .read_until(PIXEL_DATA)
        .open_file(path)
        .map_err(|e| DicomWebError::internal(format!("cannot read header: {e}")))?;
    let mut bulk: Vec<Tag> = Vec::new();
    let large: Vec<(Tag, VR)> = obj
        .iter()
        .filter(|e| is_binary(e.vr()))
        .filter(|e| {
            e.value()
                .primitive()
                .is_some_and(|v| v.calculate_byte_len() > BULK_DATA_THRESHOLD)
        })
        .map(|e| (e.tag(), e.vr()))
        .collect();
    for (tag, vr) in large {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
        bulk.push(tag);
    }
    let mut json = dicom_json::to_value(&*obj).map_err(DicomWebError::internal)?;
    let map = json
        .as_object_mut()
        .ok_or_else(|| DicomWebError::internal("dicom-json did not produce an object"))?;
    for tag in bulk {
        if let Some(Value::Object(entry)) = map.get_mut(&tag_key(tag)) {
            entry.insert(
                "BulkDataURI".into(),
                bulk_data_uri(instance_uri, tag).into(),
            );
        }
    }
    if let Some(pixel_data) = &layout.pixel_data {
        let vr = match pixel_data {
            PixelData::Encapsulated { .. } => VR::OB,
            PixelData::Native { vr: Some(vr), .. } => *vr,
            PixelData::Native { vr: None, .. }
                if layout.geometry.bits_allocated.unwrap_or(16) <= 8 =>
            {
                VR::OB
            }
            PixelData::Native { vr: None, .. } => VR::OW,
        };
        map.insert(
            tag_key(PIXEL_DATA),
            serde_json::json!({
                "vr": vr.to_string(),
                "BulkDataURI": bulk_data_uri(instance_uri, PIXEL_DATA),
            }),
        );
    }
    serde_json::to_vec(&json).map_err(DicomWebError::internal)
}

fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

/// `GGGGEEEE`, upper case: the key DICOM JSON uses and our bulk data path.
pub fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

fn bulk_data_uri(instance_uri: &str, tag: Tag) -> String {
    format!("{instance_uri}/bulkdata/{}", tag_key(tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_dictionary_std::tags;
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    fn write_instance(dir: &std::path::Path) -> std::path::PathBuf {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.7"),
        ));
        obj.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.3.4"),
        ));
        obj.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("Doe^Jane"),
        ));
        obj.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(2u16),
        ));
        obj.put(DataElement::new(
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::from(2u16),
        ));
        obj.put(DataElement::new(
            tags::BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(8u16),
        ));
        // A small and a large binary value.
        obj.put(DataElement::new(
            Tag(0x0009, 0x1010),
            VR::OB,
            PrimitiveValue::from(vec![1u8, 2, 3, 4]),
        ));
        obj.put(DataElement::new(
            tags::ENCAPSULATED_DOCUMENT,
            VR::OB,
            PrimitiveValue::from(vec![7u8; 10_000]),
        ));
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(vec![9u8; 4]),
        ));
        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax("1.2.840.10008.1.2.1")
                    .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
                    .media_storage_sop_instance_uid("1.2.3.4"),
            )
            .unwrap();
        let path = dir.join("i.dcm");
        file.write_to_file(&path).unwrap();
        path
    }

    #[test]
    fn hosts_with_and_without_ports() {
        assert!(has_port("localhost:8443"));
        assert!(has_port("[::1]:8443"));
        assert!(!has_port("localhost"));
        assert!(!has_port("[::1]"));
    }

    #[test]
    fn large_binaries_and_pixel_data_become_bulk_data_uris() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_instance(dir.path());
        let uri = "https://gw/dicomweb/studies/1/series/2/instances/1.2.3.4";
        let json: Value = serde_json::from_slice(&instance_json(&path, uri).unwrap()).unwrap();
        assert_eq!(json["00080018"]["Value"][0], "1.2.3.4");
        assert_eq!(json["00100010"]["Value"][0]["Alphabetic"], "Doe^Jane");
        assert_eq!(json["00091010"]["InlineBinary"], "AQIDBA==");
        assert_eq!(json["00420011"]["vr"], "OB");
        assert_eq!(
            json["00420011"]["BulkDataURI"],
            format!("{uri}/bulkdata/00420011")
        );
        assert!(json["00420011"].get("InlineBinary").is_none());
        assert_eq!(
            json["7FE00010"]["BulkDataURI"],
            format!("{uri}/bulkdata/7FE00010")
        );
        assert_eq!(json["7FE00010"]["vr"], "OB");
        // No file meta group in metadata.
        assert!(json.get("00020010").is_none());
    }
}
