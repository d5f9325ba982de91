//! Results as DICOM JSON (PS3.18 F.2): one object per result, members keyed
//! by tag in tag order, each `{"vr": …, "Value": […]}`, with PN values as
//! `{"Alphabetic": …}` objects, IS and US values as numbers, and an empty
//! attribute as `{"vr": …}` alone.

use std::collections::BTreeMap;

use dicom_core::{Tag, VR};
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value, json};

use super::catalog::{self, Level, Source};
use super::plan::SearchPlan;
use super::search::Found;

/// `ISO_IR 192`: DICOM JSON is always UTF-8.
const UTF8: &str = "ISO_IR 192";

/// Builds the DICOM JSON object of one result. `base` is the absolute URL
/// of the DICOMweb service; `from_header` holds attributes already read
/// from the result's stored header.
pub fn result_object(
    found: &Found,
    plan: &SearchPlan,
    base: &str,
    from_header: BTreeMap<Tag, Value>,
) -> Value {
    let mut members: BTreeMap<Tag, Value> = from_header;
    for tag in &plan.returns {
        let Some(attribute) = catalog::lookup(*tag) else {
            continue;
        };
        let value = match attribute.source {
            Source::Column(column) => column_value(attribute.vr, found.columns.get(column)),
            Source::ModalitiesInStudy => strings(
                VR::CS,
                found
                    .study
                    .as_ref()
                    .map(|s| s.modalities.clone())
                    .unwrap_or_default(),
            ),
            Source::StudySeriesCount => number(VR::IS, found.study.as_ref().map(|s| s.series)),
            Source::StudyInstanceCount => number(VR::IS, found.study.as_ref().map(|s| s.instances)),
            Source::SeriesInstanceCount => number(VR::IS, found.series_instances),
            Source::RetrieveUrl => strings(VR::UR, vec![retrieve_url(found, plan.level, base)]),
            Source::InstanceAvailability => strings(VR::CS, vec!["ONLINE".into()]),
            Source::SpecificCharacterSet => strings(VR::CS, vec![UTF8.into()]),
        };
        if attribute.conditional && value.get("Value").is_none() {
            continue;
        }
        members.insert(*tag, value);
    }
    let mut object = Map::with_capacity(members.len());
    for (tag, value) in members {
        object.insert(tag_key(tag), value);
    }
    Value::Object(object)
}

/// `0020000D`: the member name of a tag (PS3.18 F.2.1.1).
pub fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.0, tag.1)
}

/// The WADO-RS resource of a result (PS3.18 10.4.1).
fn retrieve_url(found: &Found, level: Level, base: &str) -> String {
    match level {
        Level::Study => format!("{base}/studies/{}", found.study_uid),
        Level::Series => format!(
            "{base}/studies/{}/series/{}",
            found.study_uid, found.series_uid
        ),
        Level::Instance => format!(
            "{base}/studies/{}/series/{}/instances/{}",
            found.study_uid, found.series_uid, found.sop_uid
        ),
    }
}

/// The JSON of an indexed value of `vr`.
pub fn column_value(vr: VR, value: Option<&SqlValue>) -> Value {
    match value {
        None | Some(SqlValue::Null) | Some(SqlValue::Blob(_)) => empty(vr),
        Some(SqlValue::Integer(n)) if is_numeric(vr) => number(vr, Some(*n)),
        Some(SqlValue::Integer(n)) => strings(vr, vec![n.to_string()]),
        Some(SqlValue::Real(x)) => match serde_json::Number::from_f64(*x) {
            Some(n) if is_numeric(vr) => json!({"vr": vr.to_string(), "Value": [n]}),
            _ => strings(vr, vec![x.to_string()]),
        },
        Some(SqlValue::Text(text)) if is_numeric(vr) => {
            let numbers: Vec<Value> = text
                .split('\\')
                .filter_map(|v| v.trim().parse::<i64>().ok())
                .map(Value::from)
                .collect();
            with_values(vr, numbers)
        }
        Some(SqlValue::Text(text)) => {
            // LT, ST, UT and UR are single-valued; a backslash is text there.
            let values = if matches!(vr, VR::LT | VR::ST | VR::UT | VR::UR) {
                vec![text.clone()]
            } else {
                text.split('\\').map(String::from).collect()
            };
            strings(vr, values)
        }
    }
}

fn is_numeric(vr: VR) -> bool {
    matches!(
        vr,
        VR::IS | VR::DS | VR::US | VR::UL | VR::SS | VR::SL | VR::FL | VR::FD
    )
}

fn empty(vr: VR) -> Value {
    json!({"vr": vr.to_string()})
}

fn with_values(vr: VR, values: Vec<Value>) -> Value {
    if values.is_empty() {
        empty(vr)
    } else {
        json!({"vr": vr.to_string(), "Value": values})
    }
}

fn number(vr: VR, value: Option<i64>) -> Value {
    with_values(vr, value.into_iter().map(Value::from).collect())
}

fn strings(vr: VR, values: Vec<String>) -> Value {
    let values = values
        .into_iter()
        .map(|v| v.trim_end_matches([' ', '\0']).to_string())
        .filter(|v| !v.is_empty())
        .map(|v| {
            if vr == VR::PN {
                person_name(&v)
            } else {
                Value::String(v)
            }
        })
        .collect();
    with_values(vr, values)
}

/// `Alphabetic=Ideographic=Phonetic` component groups (PS3.18 F.2.2).
fn person_name(value: &str) -> Value {
    let mut name = Map::new();
    for (key, group) in ["Alphabetic", "Ideographic", "Phonetic"]
        .into_iter()
        .zip(value.split('='))
    {
        if !group.is_empty() {
            name.insert(key.into(), Value::String(group.into()));
        }
    }
    Value::Object(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_use_their_vr_encoding() {
        assert_eq!(
            column_value(VR::PN, Some(&SqlValue::Text("DOE^JANE".into()))),
            json!({"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]})
        );
        assert_eq!(
            column_value(
                VR::PN,
                Some(&SqlValue::Text("YAMADA^TARO=山田^太郎".into()))
            ),
            json!({"vr": "PN", "Value": [{"Alphabetic": "YAMADA^TARO", "Ideographic": "山田^太郎"}]})
        );
        assert_eq!(
            column_value(VR::IS, Some(&SqlValue::Integer(3))),
            json!({"vr": "IS", "Value": [3]})
        );
        assert_eq!(
            column_value(VR::US, Some(&SqlValue::Integer(512))),
            json!({"vr": "US", "Value": [512]})
        );
        assert_eq!(
            column_value(VR::DA, Some(&SqlValue::Text("20240115".into()))),
            json!({"vr": "DA", "Value": ["20240115"]})
        );
        assert_eq!(
            column_value(VR::CS, Some(&SqlValue::Text("A\\B".into()))),
            json!({"vr": "CS", "Value": ["A", "B"]})
        );
        assert_eq!(column_value(VR::LO, None), json!({"vr": "LO"}));
        assert_eq!(
            column_value(VR::PN, Some(&SqlValue::Null)),
            json!({"vr": "PN"})
        );
    }

    #[test]
    fn tag_keys_are_upper_case_hex() {
        assert_eq!(tag_key(Tag(0x0020, 0x000D)), "0020000D");
    }
}
