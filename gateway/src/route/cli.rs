//! `dicom-gateway routes test FILE.dcm…`: which routes each file would take
//! and why, so an administrator can check a routes file before deploying it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use serde_json::json;

use super::RoutesError;
use super::evaluate::{RoutingDecision, RoutingInput, evaluate};
use super::table::RouteTable;
use crate::store::IndexedAttributes;

/// Reads each file's header (not its pixel data), evaluates `table` as if
/// the file came from `site` / `calling_ae`, and renders the decisions as
/// readable text or, with `json`, as a JSON array with one object per file.
/// A file that cannot be read is reported in its place; the others are
/// still evaluated.
pub fn test_files(
    table: &RouteTable,
    files: &[PathBuf],
    site: &str,
    calling_ae: &str,
    json: bool,
) -> Result<String, RoutesError> {
    let results: Vec<FileResult<'_>> = files
        .iter()
        .map(|path| {
            let outcome = read_header(path).map(|attributes| {
                let decision = evaluate(
                    table,
                    &RoutingInput {
                        attributes: &attributes,
                        site,
                        calling_ae,
                    },
                );
                (attributes, decision)
            });
            (path.as_path(), outcome)
        })
        .collect();
    if json {
        render_json(&results)
    } else {
        Ok(render_text(&results))
    }
}

fn read_header(path: &Path) -> Result<IndexedAttributes, String> {
    let object = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| format!("cannot read a DICOM header: {e}"))?;
    Ok(IndexedAttributes::from_object(&object))
}

type FileResult<'a> = (
    &'a Path,
    Result<(IndexedAttributes, RoutingDecision), String>,
);

fn render_text(results: &[FileResult<'_>]) -> String {
    let mut out = String::new();
    for (path, outcome) in results {
        let _ = writeln!(out, "{}", path.display());
        let (attributes, decision) = match outcome {
            Ok(ok) => ok,
            Err(why) => {
                let _ = writeln!(out, "  error: {why}\n");
                continue;
            }
        };
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        let _ = writeln!(
            out,
            "  Modality {}, BodyPartExamined {}, SeriesDescription {}",
            show(&attributes.modality),
            show(&attributes.body_part_examined),
            show(&attributes.series_description),
        );
        if decision.is_unrouted() {
            let _ = writeln!(out, "  no route matches: stored only");
        }
        for taken in &decision.matched {
            let route = &taken.route;
            let destinations = if route.destinations.is_empty() {
                "none".to_string()
            } else {
                route.destinations.join(", ")
            };
            let _ = writeln!(
                out,
                "  route {}: {} per {}, destinations: {destinations}",
                route.name,
                route.model,
                route.level.as_str(),
            );
            for reason in &taken.reasons {
                let _ = writeln!(out, "    because {reason}");
            }
        }
        for missed in &decision.not_matched {
            let _ = writeln!(out, "  not {}: {}", missed.route, missed.reason);
        }
        out.push('\n');
    }
    out
}

fn render_json(results: &[FileResult<'_>]) -> Result<String, RoutesError> {
    let files: Vec<serde_json::Value> = results
        .iter()
        .map(|(path, outcome)| match outcome {
            Err(why) => json!({ "file": path.display().to_string(), "error": why }),
            Ok((attributes, decision)) => json!({
                "file": path.display().to_string(),
                "modality": attributes.modality,
                "body_part_examined": attributes.body_part_examined,
                "series_description": attributes.series_description,
                "unrouted": decision.is_unrouted(),
                "matched": decision.matched.iter().map(|m| json!({
                    "route": m.route.name,
                    "model": m.route.model.to_string(),
                    "level": m.route.level.as_str(),
                    "destinations": m.route.destinations,
                    "reasons": m.reasons,
                })).collect::<Vec<_>>(),
                "not_matched": decision.not_matched.iter().map(|m| json!({
                    "route": m.route,
                    "reason": m.reason,
                })).collect::<Vec<_>>(),
            }),
        })
        .collect();
    Ok(serde_json::to_string_pretty(&files)?)
}

#[cfg(test)]
mod tests {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    use super::*;

    fn write_ct(dir: &Path, body_part: &str) -> PathBuf {
        let sop_class = "1.2.840.10008.5.1.4.1.1.2";
        let mut obj = InMemDicomObject::new_empty();
        let mut put = |tag, vr, value: &str| {
            obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
        };
        put(tags::SOP_CLASS_UID, VR::UI, sop_class);
        put(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4");
        put(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3");
        put(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.5");
        put(tags::MODALITY, VR::CS, "CT");
        put(tags::BODY_PART_EXAMINED, VR::CS, body_part);
        put(tags::SERIES_DESCRIPTION, VR::LO, "Head routine");
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(vec![0u8; 8]),
        ));
        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax("1.2.840.10008.1.2.1")
                    .media_storage_sop_class_uid(sop_class)
                    .media_storage_sop_instance_uid("1.2.3.4"),
            )
            .unwrap();
        let path = dir.join(format!("{body_part}.dcm"));
        file.write_to_file(&path).unwrap();
        path
    }

    #[test]
    fn names_the_route_and_the_reason_and_reports_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        let head = write_ct(dir.path(), "HEAD");
        let chest = write_ct(dir.path(), "CHEST");
        let junk = dir.path().join("junk.dcm");
        std::fs::write(&junk, b"not dicom").unwrap();
        let table = RouteTable::embedded_default();
        let files = vec![head, junk, chest];

        let text = test_files(&table, &files, "north", "CT1", false).unwrap();
        assert!(
            text.contains("route ct-head-hyperdensity: ct-hyperdensity@2.0.0 per series"),
            "{text}"
        );
        assert!(
            text.contains("because BodyPartExamined HEAD matches HEAD"),
            "{text}"
        );
        assert!(
            text.contains("junk.dcm\n  error: cannot read a DICOM header"),
            "{text}"
        );
        assert!(text.contains("no route matches: stored only"), "{text}");
        assert!(text.contains(
            "not ct-head-hyperdensity: BodyPartExamined CHEST does not match HEAD|BRAIN"
        ));

        let rendered = test_files(&table, &files, "north", "CT1", true).unwrap();
        let value: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        let entries = value.as_array().unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0]["matched"][0]["route"], "ct-head-hyperdensity");
        assert_eq!(
            entries[0]["matched"][0]["reasons"][0],
            "Modality CT matches CT"
        );
        assert_eq!(entries[0]["unrouted"], false);
        assert!(
            entries[1]["error"]
                .as_str()
                .unwrap()
                .contains("cannot read")
        );
        assert_eq!(entries[2]["unrouted"], true);
    }
}
