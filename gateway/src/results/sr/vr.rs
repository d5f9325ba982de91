//! Making peer-supplied strings valid for the VR they are written as.
//!
//! Patient and study attributes come from whatever a modality sent; model
//! names and descriptions come from manifests. None of it may make the SR
//! invalid or make the writer fail, so each value is cleaned rather than
//! refused: control characters and the value separator `\` become spaces,
//! surrounding spaces go, and the value is cut to the VR's length limit
//! (counted in characters, which is what PS3.5 6.2 counts for these VRs).
//! A date or time that does not parse is written empty (these attributes
//! are type 2), never guessed.

/// LO: 64 characters.
pub(crate) const LO_MAX: usize = 64;
/// SH: 16 characters.
pub(crate) const SH_MAX: usize = 16;
/// PN: 64 characters per component group.
const PN_GROUP_MAX: usize = 64;
/// Bound on a TEXT content item (UT allows far more; nobody reads more).
const TEXT_MAX: usize = 10_240;
/// DS: 16 bytes.
const DS_MAX: usize = 16;

/// A single-valued LO, SH or similar short string, cut to `max` characters.
pub(crate) fn short_string(value: &str, max: usize) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| if c.is_control() || c == '\\' { ' ' } else { c })
        .collect();
    truncate_chars(cleaned.trim(), max).trim_end().to_string()
}

pub(crate) fn lo(value: &str) -> String {
    short_string(value, LO_MAX)
}

pub(crate) fn sh(value: &str) -> String {
    short_string(value, SH_MAX)
}

/// PN: at most three component groups (alphabetic, ideographic,
/// phonetic), each at most 64 characters.
pub(crate) fn pn(value: &str) -> String {
    let groups: Vec<String> = value
        .split('=')
        .take(3)
        .map(|group| short_string(group, PN_GROUP_MAX))
        .collect();
    let joined = groups.join("=");
    joined.trim_end_matches('=').to_string()
}

/// UT for TEXT content items: line breaks and tabs are kept (UT allows
/// them), other control characters become spaces.
pub(crate) fn text(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| match c {
            '\r' | '\n' | '\t' => c,
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    truncate_chars(cleaned.trim(), TEXT_MAX)
        .trim_end()
        .to_string()
}

/// Patient's Sex (CS): `M`, `F`, `O`, or empty.
pub(crate) fn patient_sex(value: &str) -> String {
    match value.trim().to_ascii_uppercase().as_str() {
        sex @ ("M" | "F" | "O") => sex.to_string(),
        _ => String::new(),
    }
}

/// Whether `value` is a DA: `YYYYMMDD` with a real month and day.
pub(crate) fn is_date(value: &str) -> bool {
    if value.len() != 8 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let month: u32 = value[4..6].parse().unwrap_or(0);
    let day: u32 = value[6..8].parse().unwrap_or(0);
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// Whether `value` is a TM: `HH[MM[SS[.F{1,6}]]]`.
pub(crate) fn is_time(value: &str) -> bool {
    let (whole, fraction) = match value.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (value, None),
    };
    if !matches!(whole.len(), 2 | 4 | 6) || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if let Some(fraction) = fraction {
        let valid = whole.len() == 6
            && (1..=6).contains(&fraction.len())
            && fraction.bytes().all(|b| b.is_ascii_digit());
        if !valid {
            return false;
        }
    }
    let field = |i: usize| whole.get(i..i + 2).and_then(|s| s.parse::<u32>().ok());
    let hours_ok = field(0).is_some_and(|h| h < 24);
    let minutes_ok = field(2).is_none_or(|m| m < 60);
    // 60 allows a leap second, as PS3.5 does.
    let seconds_ok = field(4).is_none_or(|s| s <= 60);
    hours_ok && minutes_ok && seconds_ok
}

/// A copied date: kept when valid, empty otherwise.
pub(crate) fn date_or_empty(value: Option<&str>) -> String {
    value
        .map(str::trim)
        .filter(|v| is_date(v))
        .unwrap_or_default()
        .to_string()
}

/// A copied time: kept when valid, empty otherwise.
pub(crate) fn time_or_empty(value: Option<&str>) -> String {
    value
        .map(str::trim)
        .filter(|v| is_time(v))
        .unwrap_or_default()
        .to_string()
}

/// A DS for a finite `f32`: the shortest decimal that reads back as the
/// same `f32`, in exponent form when the plain form is longer than 16.
/// `None` for NaN and infinities, which DS cannot hold.
pub(crate) fn decimal_string(value: f32) -> Option<String> {
    if !value.is_finite() {
        return None;
    }
    let plain = value.to_string();
    if plain.len() <= DS_MAX {
        return Some(plain);
    }
    let exponent = format!("{value:e}");
    (exponent.len() <= DS_MAX).then_some(exponent)
}

/// Whether any character needs a character set beyond the default
/// repertoire (then the SR declares ISO_IR 192, UTF-8).
pub(crate) fn needs_utf8<'a>(values: impl IntoIterator<Item = &'a str>) -> bool {
    values.into_iter().any(|v| !v.is_ascii())
}

fn truncate_chars(value: &str, max: usize) -> &str {
    match value.char_indices().nth(max) {
        Some((byte_index, _)) => &value[..byte_index],
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_cleaned_and_cut_by_characters() {
        assert_eq!(lo("  Head\\CT\nroutine  "), "Head CT routine");
        assert_eq!(sh("ACC-0123456789-ABCDEF"), "ACC-0123456789-A");
        let long = "é".repeat(100);
        assert_eq!(lo(&long).chars().count(), 64);
        assert_eq!(lo(""), "");
    }

    #[test]
    fn person_names_keep_groups_and_carets() {
        assert_eq!(pn("Doe^Jane"), "Doe^Jane");
        assert_eq!(
            pn("Yamada^Tarou=山田^太郎=やまだ^たろう"),
            "Yamada^Tarou=山田^太郎=やまだ^たろう"
        );
        assert_eq!(pn("A=B=C=D"), "A=B=C");
        let long = format!("{}={}", "x".repeat(80), "y".repeat(80));
        let cleaned = pn(&long);
        let groups: Vec<&str> = cleaned.split('=').collect();
        assert_eq!(groups.len(), 2);
        assert!(groups.iter().all(|g| g.chars().count() == 64));
    }

    #[test]
    fn dates_and_times_are_checked_not_guessed() {
        assert!(is_date("20240131"));
        assert!(!is_date("2024-01-31"));
        assert!(!is_date("20241301"));
        assert!(is_time("235959"));
        assert!(is_time("0930"));
        assert!(is_time("093000.123456"));
        assert!(!is_time("09:30:00"));
        assert!(!is_time("2460"));
        assert!(!is_time("0930.5"));
        assert_eq!(date_or_empty(Some("1.1.1970")), "");
        assert_eq!(time_or_empty(Some(" 101010 ")), "101010");
    }

    #[test]
    fn decimal_strings_fit_sixteen_bytes() {
        assert_eq!(decimal_string(0.87).as_deref(), Some("0.87"));
        assert_eq!(decimal_string(1.0).as_deref(), Some("1"));
        let tiny = decimal_string(1.234_567_9e-30).unwrap();
        assert!(tiny.len() <= 16, "{tiny}");
        assert_eq!(tiny.parse::<f32>().unwrap(), 1.234_567_9e-30);
        assert!(decimal_string(f32::MIN).unwrap().len() <= 16);
        assert_eq!(decimal_string(f32::NAN), None);
        assert_eq!(decimal_string(f32::INFINITY), None);
    }

    #[test]
    fn sex_outside_the_defined_terms_is_written_empty() {
        assert_eq!(patient_sex("f"), "F");
        assert_eq!(patient_sex("female"), "");
    }
}
