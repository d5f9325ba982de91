//! Attribute matching (PS3.4 C.2.2.2, PS3.18 8.3.4.1): a query value is
//! parsed by its VR into a [`Matcher`], which becomes one SQL condition.
//!
//! Values never reach SQL text: every one is a bound parameter. Wildcards
//! are translated to `LIKE` (Person Names, case-insensitive) or `GLOB`
//! (everything else, case-sensitive as C.2.2.2.4 requires), with the other
//! pattern metacharacters of those operators escaped.

use dicom_core::VR;
use rusqlite::types::Value;

/// How one attribute is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Empty value or `*`: every entity matches; the attribute is returned.
    Universal,
    /// Exact value (C.2.2.2.1).
    Single(String),
    /// Value with `*` (any run) and/or `?` (one character) (C.2.2.2.4).
    Wildcard(String),
    /// Any of these values (UID list matching, C.2.2.2.2).
    List(Vec<String>),
    /// Inclusive range; an open end is `None` (C.2.2.2.5).
    Range {
        from: Option<String>,
        to: Option<String>,
    },
    /// IS and US values compare as numbers.
    Integer(i64),
}

impl Matcher {
    /// Parses `value` for an attribute of `vr`. `list` allows a list of
    /// values separated by `\` or `,` (UIDs and Modalities in Study).
    pub fn parse(vr: VR, value: &str, list: bool) -> Result<Self, String> {
        let value = value.trim_matches(|c: char| c == ' ' || c == '\0');
        if value.is_empty() || value.bytes().all(|b| b == b'*') {
            return Ok(Self::Universal);
        }
        match vr {
            VR::UI => {
                let uids: Vec<String> = split_list(value)
                    .map(|uid| check_uid(uid).map(str::to_string))
                    .collect::<Result<_, _>>()?;
                Ok(one_or_list(uids))
            }
            VR::DA => parse_range(value, check_date, |d| d.to_string(), |d| d.to_string()),
            VR::TM => parse_range(value, check_time, time_lower_bound, time_upper_bound),
            VR::IS | VR::US | VR::UL | VR::SS | VR::SL => value
                .parse::<i64>()
                .map(Self::Integer)
                .map_err(|_| format!("`{value}` is not an integer")),
            _ if list && (value.contains('\\') || value.contains(',')) => {
                let values: Vec<String> = split_list(value).map(str::to_string).collect();
                if values.iter().any(|v| has_wildcard(v)) {
                    return Err("wildcards cannot be combined with a list of values".into());
                }
                Ok(one_or_list(values))
            }
            _ if value.contains('\\') => Err(
                "a list of values (`\\`) is only supported for UIDs and ModalitiesInStudy".into(),
            ),
            _ if has_wildcard(value) => Ok(Self::Wildcard(value.to_string())),
            _ => Ok(Self::Single(value.to_string())),
        }
    }
}

/// SQL text with its bound parameters, built together so they stay in step.
#[derive(Debug, Default, Clone)]
pub struct Sql {
    pub text: String,
    pub params: Vec<Value>,
}

impl Sql {
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a `?` placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.text.push('?');
        self.params.push(value.into());
        self
    }

    /// Appends `?, ?, …` bound to `values`.
    pub fn bind_list<V: Into<Value> + Clone>(&mut self, values: &[V]) -> &mut Self {
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value.clone());
        }
        self
    }

    /// Appends a condition produced elsewhere with its parameters.
    pub fn append(&mut self, other: Sql) -> &mut Self {
        self.text.push_str(&other.text);
        self.params.extend(other.params);
        self
    }
}

/// The condition `column` satisfies `matcher`, or `None` for universal
/// matching. `column` is SQL we wrote (never peer input). With
/// `empty_value_matching` (PS3.18 8.3.4.5) an entity without a value also matches.
pub fn condition(
    column: &str,
    vr: VR,
    matcher: &Matcher,
    empty_value_matching: bool,
) -> Option<Sql> {
    let mut sql = Sql::default();
    // PN matching is case-insensitive (C.2.2.2.1 and C.2.2.2.4 leave PN to the
    // implementation; our conformance statement says: ASCII letters ignore case).
    let person_name = vr == VR::PN;
    match matcher {
        Matcher::Universal => return None,
        Matcher::Single(value) => {
            sql.push(column).push(" = ").bind(value.clone());
            if person_name {
                sql.push(" COLLATE NOCASE");
            }
        }
        Matcher::Wildcard(pattern) if person_name => {
            sql.push(column)
                .push(" LIKE ")
                .bind(like_pattern(pattern))
                .push(" ESCAPE '\\'");
        }
        Matcher::Wildcard(pattern) => {
            sql.push(column).push(" GLOB ").bind(glob_pattern(pattern));
        }
        Matcher::List(values) => {
            sql.push(column).push(" IN (").bind_list(values).push(")");
        }
        Matcher::Range { from, to } => {
            sql.push(column).push(" <> ''");
            if let Some(from) = from {
                sql.push(" AND ")
                    .push(column)
                    .push(" >= ")
                    .bind(from.clone());
            }
            if let Some(to) = to {
                sql.push(" AND ").push(column).push(" <= ").bind(to.clone());
            }
        }
        Matcher::Integer(value) => {
            sql.push(column).push(" = ").bind(*value);
        }
    }
    if empty_value_matching {
        let mut wrapped = Sql::default();
        wrapped.push("((").append(sql).push(") OR ");
        wrapped
            .push(column)
            .push(" IS NULL OR ")
            .push(column)
            .push(" = '')");
        Some(wrapped)
    } else {
        let mut wrapped = Sql::default();
        wrapped.push("(").append(sql).push(")");
        Some(wrapped)
    }
}

/// DICOM wildcards to a `LIKE … ESCAPE '\'` pattern: `*` → `%`, `?` → `_`,
/// and a literal `%`, `_` or `\` escaped.
pub fn like_pattern(dicom: &str) -> String {
    let mut out = String::with_capacity(dicom.len() + 4);
    for c in dicom.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// DICOM wildcards to a `GLOB` pattern. `*` and `?` mean the same in both;
/// the only other GLOB metacharacter outside a class is `[`, written `[[]`.
pub fn glob_pattern(dicom: &str) -> String {
    let mut out = String::with_capacity(dicom.len() + 4);
    for c in dicom.chars() {
        match c {
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

fn has_wildcard(value: &str) -> bool {
    value.contains(['*', '?'])
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(['\\', ','])
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn one_or_list(mut values: Vec<String>) -> Matcher {
    values.dedup();
    match values.len() {
        0 => Matcher::Universal,
        1 => Matcher::Single(values.remove(0)),
        _ => Matcher::List(values),
    }
}

/// The UID character set and length (PS3.5 9.1); stricter checks would
/// refuse UIDs that real archives hold and the store accepted.
fn check_uid(uid: &str) -> Result<&str, String> {
    if uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        Ok(uid)
    } else {
        Err(format!("`{uid}` is not a UID"))
    }
}

/// `value` or `from-to` with either end open; each end checked by `check`.
fn parse_range(
    value: &str,
    check: fn(&str) -> Result<(), String>,
    lower: fn(&str) -> String,
    upper: fn(&str) -> String,
) -> Result<Matcher, String> {
    if has_wildcard(value) {
        return Err(format!(
            "`{value}`: dates and times take a value or a range, not wildcards"
        ));
    }
    let Some((from, to)) = value.split_once('-') else {
        check(value)?;
        return Ok(Matcher::Single(value.to_string()));
    };
    let (from, to) = (from.trim(), to.trim());
    if from.is_empty() && to.is_empty() {
        return Err("a range needs at least one end".into());
    }
    for end in [from, to].into_iter().filter(|e| !e.is_empty()) {
        check(end)?;
    }
    let from = (!from.is_empty()).then(|| lower(from));
    let to = (!to.is_empty()).then(|| upper(to));
    if let (Some(from), Some(to)) = (&from, &to)
        && from > to
    {
        return Err(format!("range `{value}` ends before it starts"));
    }
    Ok(Matcher::Range { from, to })
}

/// DA: `YYYYMMDD` (PS3.5 6.2).
fn check_date(value: &str) -> Result<(), String> {
    let bad = || Err(format!("`{value}` is not a date (YYYYMMDD)"));
    if value.len() != 8 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return bad();
    }
    let month: u32 = value[4..6].parse().unwrap_or(0);
    let day: u32 = value[6..8].parse().unwrap_or(0);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return bad();
    }
    Ok(())
}

/// TM: `HH[MM[SS[.F{1,6}]]]` (PS3.5 6.2).
fn check_time(value: &str) -> Result<(), String> {
    let bad = || Err(format!("`{value}` is not a time (HHMMSS.FFFFFF)"));
    let (whole, fraction) = match value.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (value, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !matches!(whole.len(), 2 | 4 | 6) || !digits(whole) {
        return bad();
    }
    if let Some(fraction) = fraction
        && (whole.len() != 6 || fraction.is_empty() || fraction.len() > 6 || !digits(fraction))
    {
        return bad();
    }
    let limits = [23u32, 59, 60];
    for (i, limit) in limits.iter().enumerate().take(whole.len() / 2) {
        let part: u32 = whole[i * 2..i * 2 + 2].parse().unwrap_or(99);
        if part > *limit {
            return bad();
        }
    }
    Ok(())
}

/// `14` → `140000`: the earliest time a partial lower bound names.
fn time_lower_bound(value: &str) -> String {
    let mut out = value.to_string();
    while out.len() < 6 {
        out.push('0');
    }
    out
}

/// `1430` → `143059.999999`: the latest time a partial upper bound names,
/// so that stored values with seconds or fractions compare as within it.
fn time_upper_bound(value: &str) -> String {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let mut out = whole.to_string();
    while out.len() < 6 {
        out.push('5');
        out.push('9');
    }
    out.push('.');
    out.push_str(fraction);
    while out.len() < 13 {
        out.push('9');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vr: VR, value: &str) -> Matcher {
        Matcher::parse(vr, value, false).unwrap()
    }

    #[test]
    fn empty_and_star_are_universal() {
        for value in ["", "  ", "*", "**"] {
            assert_eq!(parse(VR::PN, value), Matcher::Universal, "{value:?}");
        }
        assert_eq!(parse(VR::UI, "*"), Matcher::Universal);
        assert!(condition("c", VR::LO, &Matcher::Universal, false).is_none());
    }

    #[test]
    fn single_and_wildcard_values() {
        assert_eq!(parse(VR::LO, "PAT-1"), Matcher::Single("PAT-1".into()));
        assert_eq!(parse(VR::PN, "DOE^*"), Matcher::Wildcard("DOE^*".into()));
        assert_eq!(parse(VR::CS, "C?"), Matcher::Wildcard("C?".into()));
        assert!(Matcher::parse(VR::LO, "A\\B", false).is_err());
    }

    #[test]
    fn uid_lists_split_on_comma_and_backslash() {
        assert_eq!(
            parse(VR::UI, "1.2.3,1.2.4\\1.2.5"),
            Matcher::List(vec!["1.2.3".into(), "1.2.4".into(), "1.2.5".into()])
        );
        assert_eq!(parse(VR::UI, "1.2.3"), Matcher::Single("1.2.3".into()));
        assert!(Matcher::parse(VR::UI, "1.2.*", false).is_err());
        assert!(Matcher::parse(VR::UI, "1.2.3' OR 1=1 --", false).is_err());
        let sql = condition("i.x", VR::UI, &parse(VR::UI, "1.2,1.3"), false).unwrap();
        assert_eq!(sql.text, "(i.x IN (?, ?))");
        assert_eq!(
            sql.params,
            vec![
                Value::from("1.2".to_string()),
                Value::from("1.3".to_string())
            ]
        );
    }

    #[test]
    fn modalities_list_matches_any() {
        assert_eq!(
            Matcher::parse(VR::CS, "CT\\MR", true).unwrap(),
            Matcher::List(vec!["CT".into(), "MR".into()])
        );
        assert_eq!(
            Matcher::parse(VR::CS, "CT,MR", true).unwrap(),
            Matcher::List(vec!["CT".into(), "MR".into()])
        );
        assert!(Matcher::parse(VR::CS, "C*,MR", true).is_err());
    }

    #[test]
    fn date_ranges_open_and_closed() {
        let range = |from: Option<&str>, to: Option<&str>| Matcher::Range {
            from: from.map(String::from),
            to: to.map(String::from),
        };
        assert_eq!(
            parse(VR::DA, "20200101-20201231"),
            range(Some("20200101"), Some("20201231"))
        );
        assert_eq!(parse(VR::DA, "-20201231"), range(None, Some("20201231")));
        assert_eq!(parse(VR::DA, "20200101-"), range(Some("20200101"), None));
        assert_eq!(
            parse(VR::DA, "20200101"),
            Matcher::Single("20200101".into())
        );
        for bad in [
            "2020",
            "20201301",
            "20200100",
            "2020-01-01",
            "-",
            "20201231-20200101",
            "2020*",
            "yesterday",
        ] {
            assert!(Matcher::parse(VR::DA, bad, false).is_err(), "{bad}");
        }
        let sql = condition("d", VR::DA, &parse(VR::DA, "20200101-20201231"), false).unwrap();
        assert_eq!(sql.text, "(d <> '' AND d >= ? AND d <= ?)");
    }

    #[test]
    fn time_ranges_cover_partial_bounds() {
        assert_eq!(
            parse(VR::TM, "14-1430"),
            Matcher::Range {
                from: Some("140000".into()),
                to: Some("143059.999999".into())
            }
        );
        assert_eq!(
            parse(VR::TM, "-101500.5"),
            Matcher::Range {
                from: None,
                to: Some("101500.599999".into())
            }
        );
        // A stored 14:30:59.5 is within "-1430"; 14:31 is not.
        let Matcher::Range { to: Some(to), .. } = parse(VR::TM, "-1430") else {
            panic!()
        };
        assert!("143059.5" <= to.as_str() && "1431" > to.as_str());
        for bad in ["25", "1460", "1", "143000.", "1430.5", "12:00"] {
            assert!(Matcher::parse(VR::TM, bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn integers_compare_as_numbers() {
        assert_eq!(parse(VR::IS, "12"), Matcher::Integer(12));
        assert!(Matcher::parse(VR::IS, "1*", false).is_err());
        assert!(Matcher::parse(VR::US, "1 OR 1=1", false).is_err());
    }

    #[test]
    fn wildcards_escape_sql_pattern_characters() {
        assert_eq!(like_pattern("DOE^J*"), "DOE^J%");
        assert_eq!(like_pattern("50%_?\\x"), "50\\%\\__\\\\x");
        assert_eq!(glob_pattern("A[1]*?"), "A[[]1]*?");
        let pn = condition("p", VR::PN, &parse(VR::PN, "d?e*"), false).unwrap();
        assert_eq!(pn.text, "(p LIKE ? ESCAPE '\\')");
        assert_eq!(pn.params, vec![Value::from("d_e%".to_string())]);
        let lo = condition("l", VR::LO, &parse(VR::LO, "AB*"), false).unwrap();
        assert_eq!(lo.text, "(l GLOB ?)");
    }

    #[test]
    fn person_names_ignore_case_others_do_not() {
        let pn = condition("p", VR::PN, &parse(VR::PN, "doe^jane"), false).unwrap();
        assert_eq!(pn.text, "(p = ? COLLATE NOCASE)");
        let lo = condition("l", VR::LO, &parse(VR::LO, "abc"), false).unwrap();
        assert_eq!(lo.text, "(l = ?)");
    }

    #[test]
    fn injection_attempts_stay_parameters() {
        let hostile = "' OR 1=1 --";
        let matcher = parse(VR::LO, hostile);
        let sql = condition("patient_id", VR::LO, &matcher, false).unwrap();
        assert_eq!(sql.text, "(patient_id = ?)");
        assert_eq!(sql.params, vec![Value::from(hostile.to_string())]);
        let sql = condition(
            "p",
            VR::PN,
            &parse(VR::PN, "x'); DROP TABLE instances; --*"),
            false,
        )
        .unwrap();
        assert!(!sql.text.contains("DROP"));
    }

    #[test]
    fn empty_value_matching_also_accepts_missing_values() {
        let sql = condition("c", VR::CS, &parse(VR::CS, "F"), true).unwrap();
        assert_eq!(sql.text, "((c = ?) OR c IS NULL OR c = '')");
    }
}
