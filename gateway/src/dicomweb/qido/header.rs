//! Attributes the index does not hold, read from the stored header of one
//! instance per result (`includefield` of anything outside the catalog).
//!
//! Only the results of the current page are read, and only up to Pixel
//! Data, so the cost is one small read per result.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use serde_json::{Value, json};

use super::catalog;

/// The DICOM JSON of each of `wanted` in the file at `path`. An attribute
/// the file lacks is returned empty (universal matching returns it with
/// zero length); an unreadable file yields nothing, and a warning.
pub fn read_attributes(path: &Path, wanted: &BTreeSet<Tag>) -> BTreeMap<Tag, Value> {
    let object = match OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
    {
        Ok(object) => object,
        Err(e) => {
            // The path is derived from hashes, never from patient data.
            tracing::warn!(path = %path.display(), error = %e, "cannot read a stored header for QIDO-RS");
            return BTreeMap::new();
        }
    };
    let mut out = BTreeMap::new();
    for tag in wanted {
        let value = match object.element(*tag) {
            Ok(element) => match dicom_json::to_value(element) {
                Ok(mut value) => {
                    numbers_as_numbers(&mut value);
                    value
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot encode a stored attribute as DICOM JSON");
                    continue;
                }
            },
            Err(_) => match catalog::dictionary_vr(*tag) {
                Some(vr) => json!({"vr": vr.to_string()}),
                None => continue,
            },
        };
        out.insert(*tag, value);
    }
    out
}

/// DICOM JSON encodes IS and DS values as JSON numbers (PS3.18 F.2.3), but
/// dicom-json passes on the text of values read from a file. Convert them,
/// inside sequence items too; a value that is not a number stays as it is.
fn numbers_as_numbers(element: &mut Value) {
    let vr = element.get("vr").and_then(Value::as_str).unwrap_or("");
    match vr {
        "IS" | "DS" => {
            if let Some(Value::Array(values)) = element.get_mut("Value") {
                for value in values {
                    let Some(text) = value.as_str() else { continue };
                    let text = text.trim();
                    let number = text.parse::<i64>().map(Value::from).ok().or_else(|| {
                        let x = text.parse::<f64>().ok()?;
                        serde_json::Number::from_f64(x).map(Value::Number)
                    });
                    if let Some(number) = number {
                        *value = number;
                    }
                }
            }
        }
        "SQ" => {
            if let Some(Value::Array(items)) = element.get_mut("Value") {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    item.values_mut().for_each(numbers_as_numbers);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_and_decimal_strings_become_numbers() {
        let mut ds = json!({"vr": "DS", "Value": ["120", " 2.5 ", "-1e3", "n/a"]});
        numbers_as_numbers(&mut ds);
        assert_eq!(ds, json!({"vr": "DS", "Value": [120, 2.5, -1000.0, "n/a"]}));
        let mut sq = json!({"vr": "SQ", "Value": [{"00200013": {"vr": "IS", "Value": ["7"]}}]});
        numbers_as_numbers(&mut sq);
        assert_eq!(sq["Value"][0]["00200013"]["Value"][0], 7);
        let mut lo = json!({"vr": "LO", "Value": ["120"]});
        numbers_as_numbers(&mut lo);
        assert_eq!(lo["Value"][0], "120");
    }
}
