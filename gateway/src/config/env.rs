//! Environment overrides: `DICOM_GATEWAY__<SECTION>__<KEY>=value`.
//!
//! Applied to the parsed TOML tree before it is deserialised, so an override
//! goes through exactly the same checks as the file. Values are read as TOML
//! when they parse as a TOML value (numbers, booleans, arrays, quoted
//! strings) and as a plain string otherwise.

use toml::{Table, Value};

/// Prefix of every override variable.
pub const ENV_PREFIX: &str = "DICOM_GATEWAY__";

/// Applies every `DICOM_GATEWAY__A__B=v` in `vars` as `a.b = v`.
///
/// Returns the problems found (for example an override that names a key
/// inside a value that is not a table); they join the validation report.
pub fn apply_overrides(
    tree: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, raw_value) in vars {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            problems.push(format!("environment override {name}: empty key segment"));
            continue;
        }
        if let Err(problem) = set_path(tree, &keys, parse_value(&raw_value)) {
            problems.push(format!("environment override {name}: {problem}"));
        }
    }
    problems
}

fn parse_value(raw: &str) -> Value {
    // `v = <raw>` parses for numbers, booleans, arrays and quoted strings.
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut table) => table
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.into())),
        Err(_) => Value::String(raw.to_string()),
    }
}

fn set_path(tree: &mut Table, keys: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("no key")?;
    let mut table = tree;
    for key in parents {
        let entry = table
            .entry(key.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{key}` is not a table"))?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_set_nested_keys_with_toml_types() {
        let mut tree: Table = "[dimse]\nlisten = \"0.0.0.0:11112\"".parse().unwrap();
        let problems = apply_overrides(
            &mut tree,
            [
                (
                    "DICOM_GATEWAY__DIMSE__LISTEN".into(),
                    "127.0.0.1:104".into(),
                ),
                ("DICOM_GATEWAY__DIMSE__MAX_ASSOCIATIONS".into(), "4".into()),
                (
                    "DICOM_GATEWAY__STORE__DUPLICATE_POLICY".into(),
                    "replace".into(),
                ),
                ("UNRELATED".into(), "x".into()),
            ],
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(tree["dimse"]["listen"].as_str(), Some("127.0.0.1:104"));
        assert_eq!(tree["dimse"]["max_associations"].as_integer(), Some(4));
        assert_eq!(tree["store"]["duplicate_policy"].as_str(), Some("replace"));
    }

    #[test]
    fn override_into_a_scalar_is_reported() {
        let mut tree: Table = "[dimse]\nlisten = \"x\"".parse().unwrap();
        let problems = apply_overrides(
            &mut tree,
            [("DICOM_GATEWAY__DIMSE__LISTEN__PORT".into(), "1".into())],
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("not a table"), "{}", problems[0]);
    }
}
