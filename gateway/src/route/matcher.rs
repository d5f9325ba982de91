//! The conditions of one route: one matcher per attribute, all of which must
//! hold. Globs and regexes are compiled once when the table is loaded, so
//! evaluation never fails and never allocates a new automaton.
//!
//! Regexes use `regex-lite`: its searches are linear in the value, so a
//! pathological pattern cannot stall routing on a long SeriesDescription.

use std::fmt;

use regex_lite::{Regex, RegexBuilder};

use super::evaluate::RoutingInput;

/// Upper bound on a compiled pattern, so a typo like `(a*){1000}` is a load
/// error instead of megabytes per route.
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;

/// What a route can match on: six series attributes, the SOP class, and
/// where the data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attribute {
    Modality,
    BodyPartExamined,
    ProtocolName,
    SeriesDescription,
    Manufacturer,
    ManufacturerModelName,
    StationName,
    /// The gateway's site name for the sender (from the site registry).
    Site,
    /// The calling AE title of the association (or the STOW client's site AE).
    CallingAe,
    SopClassUid,
}

impl Attribute {
    /// Evaluation order: the cheap, most selective conditions first, so the
    /// reason for a miss is the one an administrator expects.
    pub const ALL: [Attribute; 10] = [
        Attribute::Modality,
        Attribute::BodyPartExamined,
        Attribute::ProtocolName,
        Attribute::SeriesDescription,
        Attribute::Manufacturer,
        Attribute::ManufacturerModelName,
        Attribute::StationName,
        Attribute::Site,
        Attribute::CallingAe,
        Attribute::SopClassUid,
    ];

    /// The key under `[route.match]` in `routes.toml`.
    pub fn key(self) -> &'static str {
        match self {
            Attribute::Modality => "modality",
            Attribute::BodyPartExamined => "body_part_examined",
            Attribute::ProtocolName => "protocol_name",
            Attribute::SeriesDescription => "series_description",
            Attribute::Manufacturer => "manufacturer",
            Attribute::ManufacturerModelName => "manufacturer_model_name",
            Attribute::StationName => "station_name",
            Attribute::Site => "site",
            Attribute::CallingAe => "calling_ae",
            Attribute::SopClassUid => "sop_class_uid",
        }
    }

    /// The name shown in reasons: the DICOM keyword where there is one.
    pub fn label(self) -> &'static str {
        match self {
            Attribute::Modality => "Modality",
            Attribute::BodyPartExamined => "BodyPartExamined",
            Attribute::ProtocolName => "ProtocolName",
            Attribute::SeriesDescription => "SeriesDescription",
            Attribute::Manufacturer => "Manufacturer",
            Attribute::ManufacturerModelName => "ManufacturerModelName",
            Attribute::StationName => "StationName",
            Attribute::Site => "site",
            Attribute::CallingAe => "calling AE title",
            Attribute::SopClassUid => "SOPClassUID",
        }
    }

    /// The trimmed value for this input; absent or blank is `None`.
    pub fn value<'a>(self, input: &RoutingInput<'a>) -> Option<&'a str> {
        let a = input.attributes;
        let raw: Option<&'a str> = match self {
            Attribute::Modality => a.modality.as_deref(),
            Attribute::BodyPartExamined => a.body_part_examined.as_deref(),
            Attribute::ProtocolName => a.protocol_name.as_deref(),
            Attribute::SeriesDescription => a.series_description.as_deref(),
            Attribute::Manufacturer => a.manufacturer.as_deref(),
            Attribute::ManufacturerModelName => a.manufacturer_model_name.as_deref(),
            Attribute::StationName => a.station_name.as_deref(),
            Attribute::Site => Some(input.site),
            Attribute::CallingAe => Some(input.calling_ae),
            Attribute::SopClassUid => Some(a.sop_class_uid.as_str()),
        };
        // DICOM pads with spaces (and UIDs with NUL); neither is meaningful.
        raw.map(|v| v.trim_matches(|c: char| c == '\0' || c.is_whitespace()))
            .filter(|v| !v.is_empty())
    }
}

/// The patterns of one attribute as written: globs (any of them) or a regex.
#[derive(Debug, Clone)]
pub(super) enum Patterns {
    /// Case-insensitive (ASCII case folding: DICOM code strings are ASCII),
    /// anchored globs (`*` and `?`); the value matches if any of them does.
    Globs(Vec<(String, Regex)>),
    /// Searched (not anchored) as written; add `(?i)` or `^…$` as needed.
    Regex(String, Regex),
}

impl Patterns {
    /// Compiles globs; `Err` says which one is unusable and why.
    pub(super) fn globs(globs: &[String]) -> Result<Patterns, String> {
        if globs.is_empty() {
            return Err(
                "lists no patterns, so it could never match (remove it to match anything)".into(),
            );
        }
        let mut compiled = Vec::with_capacity(globs.len());
        for glob in globs {
            let glob = glob.trim();
            if glob.is_empty() {
                return Err("has an empty pattern (values are never empty)".into());
            }
            let regex = compile(&glob_to_regex(glob), false)
                .map_err(|e| format!("pattern `{glob}` cannot be used: {e}"))?;
            compiled.push((glob.to_string(), regex));
        }
        Ok(Patterns::Globs(compiled))
    }

    pub(super) fn regex(pattern: &str) -> Result<Patterns, String> {
        if pattern.is_empty() {
            return Err(
                "has an empty regex, which matches anything (remove the matcher instead)".into(),
            );
        }
        let regex =
            compile(pattern, true).map_err(|e| format!("regex `{pattern}` is invalid: {e}"))?;
        Ok(Patterns::Regex(pattern.to_string(), regex))
    }

    /// The pattern that matches `value`, if any.
    fn matching(&self, value: &str) -> Option<&str> {
        match self {
            Patterns::Globs(globs) => globs
                .iter()
                .find(|(_, regex)| regex.is_match(value))
                .map(|(glob, _)| glob.as_str()),
            Patterns::Regex(text, regex) => regex.is_match(value).then_some(text.as_str()),
        }
    }
}

impl fmt::Display for Patterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Patterns::Globs(globs) => {
                for (i, (glob, _)) in globs.iter().enumerate() {
                    if i > 0 {
                        f.write_str("|")?;
                    }
                    f.write_str(glob)?;
                }
                Ok(())
            }
            Patterns::Regex(text, _) => write!(f, "regex {text}"),
        }
    }
}

/// One condition: `attribute` must be present and match `patterns`.
#[derive(Debug, Clone)]
pub(super) struct AttributeMatcher {
    pub(super) attribute: Attribute,
    pub(super) patterns: Patterns,
}

/// All conditions of one route, in [`Attribute::ALL`] order.
#[derive(Debug, Clone, Default)]
pub(super) struct RouteMatcher {
    pub(super) conditions: Vec<AttributeMatcher>,
}

impl RouteMatcher {
    /// `Ok(reasons)`, one per condition, or `Err(reason)` for the first
    /// condition that fails.
    pub(super) fn check(&self, input: &RoutingInput<'_>) -> Result<Vec<String>, String> {
        if self.conditions.is_empty() {
            return Ok(vec![
                "the route has no conditions, so it matches everything".into(),
            ]);
        }
        let mut reasons = Vec::with_capacity(self.conditions.len());
        for condition in &self.conditions {
            let name = condition.attribute.label();
            let patterns = &condition.patterns;
            let Some(value) = condition.attribute.value(input) else {
                return Err(format!("{name} is absent (the route needs {patterns})"));
            };
            let shown = shown(value);
            match patterns.matching(value) {
                Some(pattern) if matches!(patterns, Patterns::Globs(_)) => {
                    reasons.push(format!("{name} {shown} matches {pattern}"));
                }
                Some(_) => reasons.push(format!("{name} {shown} matches {patterns}")),
                None => return Err(format!("{name} {shown} does not match {patterns}")),
            }
        }
        Ok(reasons)
    }
}

/// Quotes values with spaces so a reason still reads unambiguously.
fn shown(value: &str) -> String {
    if value.contains(char::is_whitespace) {
        format!("{value:?}")
    } else {
        value.to_string()
    }
}

/// `*` → any run, `?` → one character, everything else literal; anchored.
pub(super) fn glob_to_regex(glob: &str) -> String {
    let mut regex = String::with_capacity(glob.len() + 8);
    regex.push_str("(?s)^(?:");
    for c in glob.chars() {
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            other => regex.push_str(&regex_lite::escape(other.encode_utf8(&mut [0; 4]))),
        }
    }
    regex.push_str(")$");
    regex
}

fn compile(pattern: &str, as_written: bool) -> Result<Regex, regex_lite::Error> {
    RegexBuilder::new(pattern)
        // Globs are case-insensitive; regexes say so themselves with (?i).
        .case_insensitive(!as_written)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::IndexedAttributes;

    fn input<'a>(attributes: &'a IndexedAttributes) -> RoutingInput<'a> {
        RoutingInput {
            attributes,
            site: "north",
            calling_ae: "CT_SCANNER_1",
        }
    }

    fn matcher(attribute: Attribute, patterns: Patterns) -> RouteMatcher {
        RouteMatcher {
            conditions: vec![AttributeMatcher {
                attribute,
                patterns,
            }],
        }
    }

    fn globs(list: &[&str]) -> Patterns {
        Patterns::globs(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn globs_are_anchored_case_insensitive_and_escape_everything_else() {
        let p = globs(&["head*", "BR?IN", "a.b"]);
        assert_eq!(p.matching("HEAD NECK"), Some("head*"));
        assert_eq!(p.matching("brain"), Some("BR?IN"));
        assert_eq!(p.matching("BRAINS"), None, "anchored at the end");
        assert_eq!(p.matching("XHEAD"), None, "anchored at the start");
        assert_eq!(p.matching("a.b"), Some("a.b"));
        assert_eq!(p.matching("axb"), None, "a dot is literal in a glob");
        let brackets = globs(&["[x]+"]);
        assert_eq!(brackets.matching("[X]+"), Some("[x]+"));
        assert_eq!(brackets.matching("x"), None);
    }

    #[test]
    fn regex_is_searched_as_written() {
        let p = Patterns::regex("(?i)head|brain").unwrap();
        assert!(p.matching("Routine HEAD w/o").is_some());
        assert!(p.matching("Chest").is_none());
        let sensitive = Patterns::regex("^AX").unwrap();
        assert!(sensitive.matching("AX 5mm").is_some());
        assert!(sensitive.matching("ax 5mm").is_none());
    }

    #[test]
    fn unusable_patterns_are_explained() {
        assert!(Patterns::globs(&[]).unwrap_err().contains("no patterns"));
        assert!(
            Patterns::globs(&["  ".into()])
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            Patterns::regex("(")
                .unwrap_err()
                .contains("regex `(` is invalid")
        );
        assert!(Patterns::regex("").unwrap_err().contains("empty regex"));
        assert!(Patterns::regex("(a*){20000}").is_err(), "size limit");
    }

    #[test]
    fn every_attribute_reads_its_own_value_trimmed() {
        let attributes = IndexedAttributes {
            modality: Some("CT ".into()),
            body_part_examined: Some("HEAD".into()),
            protocol_name: Some("P1".into()),
            series_description: Some("S1".into()),
            manufacturer: Some("M1".into()),
            manufacturer_model_name: Some("MM1".into()),
            station_name: Some("ST1".into()),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2\0".into(),
            ..Default::default()
        };
        let i = input(&attributes);
        let expected = [
            "CT",
            "HEAD",
            "P1",
            "S1",
            "M1",
            "MM1",
            "ST1",
            "north",
            "CT_SCANNER_1",
            "1.2.840.10008.5.1.4.1.1.2",
        ];
        for (attribute, want) in Attribute::ALL.iter().zip(expected) {
            assert_eq!(attribute.value(&i), Some(want), "{attribute:?}");
            let m = matcher(*attribute, globs(&[want]));
            let reasons = m.check(&i).unwrap();
            assert_eq!(
                reasons,
                vec![format!("{} {want} matches {want}", attribute.label())]
            );
            let miss = matcher(*attribute, globs(&["nope"])).check(&i).unwrap_err();
            assert_eq!(
                miss,
                format!("{} {want} does not match nope", attribute.label())
            );
        }
    }

    #[test]
    fn an_absent_attribute_does_not_match_and_says_so() {
        let attributes = IndexedAttributes {
            body_part_examined: Some("   ".into()),
            ..Default::default()
        };
        let m = matcher(Attribute::BodyPartExamined, globs(&["*"]));
        assert_eq!(
            m.check(&input(&attributes)).unwrap_err(),
            "BodyPartExamined is absent (the route needs *)"
        );
        let blank_site = RoutingInput {
            attributes: &attributes,
            site: "",
            calling_ae: " ",
        };
        let m = matcher(Attribute::CallingAe, globs(&["*"]));
        assert!(
            m.check(&blank_site)
                .unwrap_err()
                .contains("calling AE title is absent")
        );
    }

    #[test]
    fn reasons_name_values_patterns_and_regexes() {
        let attributes = IndexedAttributes {
            modality: Some("CT".into()),
            body_part_examined: Some("CHEST".into()),
            series_description: Some("Head CT 5mm".into()),
            ..Default::default()
        };
        let i = input(&attributes);
        let m = RouteMatcher {
            conditions: vec![
                AttributeMatcher {
                    attribute: Attribute::Modality,
                    patterns: globs(&["CT"]),
                },
                AttributeMatcher {
                    attribute: Attribute::SeriesDescription,
                    patterns: Patterns::regex("(?i)head").unwrap(),
                },
            ],
        };
        assert_eq!(
            m.check(&i).unwrap(),
            vec![
                "Modality CT matches CT".to_string(),
                "SeriesDescription \"Head CT 5mm\" matches regex (?i)head".to_string(),
            ]
        );
        let miss = matcher(Attribute::BodyPartExamined, globs(&["HEAD", "BRAIN"]));
        assert_eq!(
            miss.check(&i).unwrap_err(),
            "BodyPartExamined CHEST does not match HEAD|BRAIN"
        );
        let nothing = RouteMatcher::default();
        assert!(nothing.check(&i).unwrap()[0].contains("matches everything"));
    }
}
