//! From a request (target resource and query string) to a [`SearchPlan`]:
//! which level to search, the filters, what to return, and the page.
//!
//! Query parameters follow PS3.18 8.3.4: `{attribute}={value}` by keyword or
//! tag, `includefield`, `fuzzymatching`, `limit`, `offset`,
//! `emptyvaluematching` and `multiplevaluematching`. Anything else is a
//! client error, reported with the offending key.

use std::collections::BTreeSet;

use actix_web::web;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;

use super::catalog::{self, Attribute, Level, Source};
use super::matching::Matcher;

/// A QIDO-RS query the client got wrong; answered 400 with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

fn bad<T>(message: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError(message.into()))
}

/// The resource a search was addressed to (PS3.18 10.6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    AllStudies,
    AllSeries,
    StudySeries { study: String },
    AllInstances,
    StudyInstances { study: String },
    SeriesInstances { study: String, series: String },
}

impl Target {
    pub fn level(&self) -> Level {
        match self {
            Self::AllStudies => Level::Study,
            Self::AllSeries | Self::StudySeries { .. } => Level::Series,
            Self::AllInstances | Self::StudyInstances { .. } | Self::SeriesInstances { .. } => {
                Level::Instance
            }
        }
    }

    /// Levels whose required attributes every result also carries
    /// (PS3.18 10.6.3.3.2 and 10.6.3.3.3): the levels above the result
    /// that the target did not fix.
    fn returned_levels(&self) -> &'static [Level] {
        match self {
            Self::AllStudies => &[Level::Study],
            Self::StudySeries { .. } => &[Level::Series],
            Self::AllSeries => &[Level::Study, Level::Series],
            Self::SeriesInstances { .. } => &[Level::Instance],
            Self::StudyInstances { .. } => &[Level::Series, Level::Instance],
            Self::AllInstances => &[Level::Study, Level::Series, Level::Instance],
        }
    }

    fn path_uids(&self) -> Vec<(Tag, &str)> {
        match self {
            Self::AllStudies | Self::AllSeries | Self::AllInstances => Vec::new(),
            Self::StudySeries { study } | Self::StudyInstances { study } => {
                vec![(tags::STUDY_INSTANCE_UID, study)]
            }
            Self::SeriesInstances { study, series } => vec![
                (tags::STUDY_INSTANCE_UID, study),
                (tags::SERIES_INSTANCE_UID, series),
            ],
        }
    }
}

/// One condition of a search.
#[derive(Debug, Clone)]
pub struct Filter {
    pub attribute: &'static Attribute,
    pub matcher: Matcher,
}

/// Page size limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub default: usize,
    pub max: usize,
}

/// Everything needed to run a search and render its results.
#[derive(Debug, Clone)]
pub struct SearchPlan {
    pub level: Level,
    pub filters: Vec<Filter>,
    /// Catalog attributes to return, in tag order.
    pub returns: BTreeSet<Tag>,
    /// Other attributes to return, read from a stored header.
    pub from_headers: BTreeSet<Tag>,
    pub limit: u64,
    pub offset: u64,
    /// The page size is the server's (default or cap), not the client's:
    /// when more matches remain the response says so (PS3.18 8.3.4.4.1).
    pub server_limited: bool,
    pub empty_value_matching: bool,
    /// `fuzzymatching=true` was asked for; we match literally and say so.
    pub fuzzy_requested: bool,
}

impl SearchPlan {
    pub fn build(target: &Target, query: &str, limits: Limits) -> Result<Self, QueryError> {
        let request = QueryParameters::parse(query)?;
        let level = target.level();
        let mut returns: BTreeSet<Tag> = target
            .returned_levels()
            .iter()
            .flat_map(|l| catalog::defaults(*l).iter().copied())
            .collect();
        let mut from_headers = BTreeSet::new();
        let mut filters = Vec::new();

        for (tag, uid) in target.path_uids() {
            let attribute = catalog::lookup(tag).expect("UIDs are in the catalog");
            match Matcher::parse(VR::UI, uid, false) {
                Ok(matcher @ Matcher::Single(_)) => filters.push(Filter { attribute, matcher }),
                _ => return bad(format!("`{uid}` in the path is not a UID")),
            }
        }

        for (tag, values) in &request.matches {
            let Some(attribute) = catalog::lookup(*tag) else {
                if values.iter().all(|v| v.trim().is_empty()) {
                    from_headers.insert(*tag);
                    continue;
                }
                return bad(format!(
                    "matching on {} is not supported; request it with includefield instead",
                    catalog::describe(*tag)
                ));
            };
            if attribute.source == Source::SpecificCharacterSet {
                // Never matched (PS3.4 C.2.2.2); our answers are UTF-8 whatever it says.
                continue;
            }
            let list = attribute.source == Source::ModalitiesInStudy;
            let value = values.join("\\");
            let matcher = Matcher::parse(attribute.vr, &value, list)
                .map_err(|e| QueryError(format!("{}: {e}", catalog::describe(*tag))))?;
            if attribute.level > level {
                if matcher == Matcher::Universal {
                    // Like an includefield of a lower level: not returned (PS3.18 10.6.3.3).
                    continue;
                }
                return bad(format!(
                    "{} is a {}-level attribute and cannot be matched in a {} search",
                    catalog::describe(*tag),
                    attribute.level.as_str(),
                    level.as_str()
                ));
            }
            returns.insert(*tag);
            if matcher == Matcher::Universal {
                continue;
            }
            if attribute.match_column().is_none() {
                return bad(format!(
                    "{} can be returned but not matched",
                    catalog::describe(*tag)
                ));
            }
            filters.push(Filter { attribute, matcher });
        }

        match &request.include {
            Include::All => returns.extend(
                catalog::ATTRIBUTES
                    .iter()
                    .filter(|a| a.level <= level)
                    .map(|a| a.tag),
            ),
            Include::Some(tags) => {
                for tag in tags {
                    match catalog::lookup(*tag) {
                        // Attributes of a lower level are not returned (PS3.18 10.6.3.3.1).
                        Some(attribute) if attribute.level > level => {}
                        Some(_) => {
                            returns.insert(*tag);
                        }
                        None => {
                            from_headers.insert(*tag);
                        }
                    }
                }
            }
        }

        let (limit, server_limited) = effective_limit(request.limit, limits);
        Ok(Self {
            level,
            filters,
            returns,
            from_headers,
            limit,
            offset: request.offset,
            server_limited,
            empty_value_matching: request.empty_value_matching,
            fuzzy_requested: request.fuzzy_matching,
        })
    }
}

/// The page size: the client's `limit` capped at the configured maximum,
/// or the configured default. The flag says whether the server chose it.
pub fn effective_limit(requested: Option<u64>, limits: Limits) -> (u64, bool) {
    let max = limits.max.max(1) as u64;
    match requested {
        None => ((limits.default.max(1) as u64).min(max), true),
        Some(n) if n > max => (max, true),
        Some(n) => (n, false),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Include {
    All,
    Some(Vec<Tag>),
}

/// The query string, parsed but not yet checked against a level.
#[derive(Debug)]
struct QueryParameters {
    /// Each attribute once, in order of first appearance, with its values.
    matches: Vec<(Tag, Vec<String>)>,
    include: Include,
    limit: Option<u64>,
    offset: u64,
    fuzzy_matching: bool,
    empty_value_matching: bool,
}

impl QueryParameters {
    fn parse(query: &str) -> Result<Self, QueryError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|e| QueryError(format!("query string does not parse: {e}")))?
            .into_inner();
        let mut parsed = Self {
            matches: Vec::new(),
            include: Include::Some(Vec::new()),
            limit: None,
            offset: 0,
            fuzzy_matching: false,
            empty_value_matching: false,
        };
        let mut seen_parameters = BTreeSet::new();
        for (key, value) in pairs {
            let key = key.trim();
            let once = |seen: &mut BTreeSet<String>| {
                if seen.insert(key.to_string()) {
                    Ok(())
                } else {
                    bad(format!("`{key}` may appear only once"))
                }
            };
            match key {
                "limit" => {
                    once(&mut seen_parameters)?;
                    parsed.limit = Some(parse_uint(key, &value)?);
                }
                "offset" => {
                    once(&mut seen_parameters)?;
                    parsed.offset = parse_uint(key, &value)?;
                }
                "fuzzymatching" => {
                    once(&mut seen_parameters)?;
                    parsed.fuzzy_matching = parse_bool(key, &value)?;
                }
                "emptyvaluematching" => {
                    once(&mut seen_parameters)?;
                    parsed.empty_value_matching = parse_bool(key, &value)?;
                }
                // Our indexed attributes are single-valued, so this changes nothing.
                "multiplevaluematching" => {
                    once(&mut seen_parameters)?;
                    parse_bool(key, &value)?;
                }
                "includefield" => parsed.add_includes(&value)?,
                _ => parsed.add_match(key, value)?,
            }
        }
        Ok(parsed)
    }

    fn add_includes(&mut self, value: &str) -> Result<(), QueryError> {
        for id in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            if id == "all" {
                self.include = Include::All;
                continue;
            }
            let tag = resolve_attribute(id, "includefield")?;
            if let Include::Some(tags) = &mut self.include {
                tags.push(tag);
            }
        }
        Ok(())
    }

    fn add_match(&mut self, key: &str, value: String) -> Result<(), QueryError> {
        let tag = resolve_attribute(key, "query key")?;
        match self.matches.iter_mut().find(|(t, _)| *t == tag) {
            // Only UID list matching may spread over repeated keys (PS3.18 8.3.4.1).
            Some((_, values)) if catalog::dictionary_vr(tag) == Some(VR::UI) => values.push(value),
            Some(_) => return bad(format!("`{key}` may appear only once")),
            None => self.matches.push((tag, vec![value])),
        }
        Ok(())
    }
}

fn resolve_attribute(id: &str, what: &str) -> Result<Tag, QueryError> {
    if id.contains('.') {
        return bad(format!(
            "{what} `{id}`: matching inside sequences is not supported"
        ));
    }
    catalog::resolve(id).ok_or_else(|| {
        QueryError(format!(
            "unknown {what} `{id}`: not a DICOM keyword or tag, nor a QIDO-RS parameter"
        ))
    })
}

fn parse_uint(key: &str, value: &str) -> Result<u64, QueryError> {
    value
        .trim()
        .parse::<u64>()
        .map(|n| n.min(i64::MAX as u64))
        .map_err(|_| {
            QueryError(format!(
                "`{key}` must be an unsigned integer, not `{value}`"
            ))
        })
}

fn parse_bool(key: &str, value: &str) -> Result<bool, QueryError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => bad(format!("`{key}` must be true or false, not `{value}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        default: 100,
        max: 1000,
    };

    fn plan(target: &Target, query: &str) -> Result<SearchPlan, QueryError> {
        SearchPlan::build(target, query, LIMITS)
    }

    fn study_plan(query: &str) -> SearchPlan {
        plan(&Target::AllStudies, query).unwrap()
    }

    fn error(target: &Target, query: &str) -> String {
        plan(target, query).unwrap_err().0
    }

    #[test]
    fn keys_by_keyword_or_tag() {
        let p = study_plan("PatientID=P1&00100010=DOE*");
        assert_eq!(p.filters.len(), 2);
        assert_eq!(p.filters[0].attribute.tag, tags::PATIENT_ID);
        assert_eq!(p.filters[0].matcher, Matcher::Single("P1".into()));
        assert_eq!(p.filters[1].attribute.tag, tags::PATIENT_NAME);
        assert_eq!(p.filters[1].matcher, Matcher::Wildcard("DOE*".into()));
    }

    #[test]
    fn percent_encoding_is_decoded() {
        let p = study_plan("PatientName=DOE%5EJ%2A&PatientID=%27%20OR%201%3D1%20--");
        assert_eq!(p.filters[0].matcher, Matcher::Wildcard("DOE^J*".into()));
        assert_eq!(p.filters[1].matcher, Matcher::Single("' OR 1=1 --".into()));
    }

    #[test]
    fn unknown_keys_and_bad_parameters_are_rejected() {
        let all = Target::AllStudies;
        assert!(error(&all, "PatientNam=X").contains("unknown query key `PatientNam`"));
        assert!(error(&all, "includefield=Nonsense").contains("unknown includefield"));
        assert!(error(&all, "limit=-1").contains("unsigned integer"));
        assert!(error(&all, "limit=1&limit=2").contains("only once"));
        assert!(error(&all, "fuzzymatching=yes").contains("true or false"));
        assert!(error(&all, "PatientID=A&PatientID=B").contains("only once"));
        assert!(error(&all, "StudyDate=2020").contains("StudyDate (0008,0020)"));
        assert!(error(&all, "ReferencedStudySequence.StudyInstanceUID=1").contains("sequences"));
        assert!(error(&all, "PatientWeight=70").contains("not supported"));
        assert!(error(&all, "NumberOfStudyRelatedSeries=2").contains("not matched"));
    }

    #[test]
    fn lower_level_keys_are_refused_for_matching_but_ignored_as_includes() {
        let e = error(&Target::AllStudies, "Modality=CT");
        assert!(
            e.contains("series-level") && e.contains("study search"),
            "{e}"
        );
        let p = study_plan("includefield=Modality,SOPClassUID");
        assert!(!p.returns.contains(&tags::MODALITY));
        let p = plan(&Target::AllSeries, "Modality=CT&PatientID=P").unwrap();
        assert_eq!(p.filters.len(), 2);
    }

    #[test]
    fn uid_lists_from_one_or_repeated_keys() {
        let p = study_plan("StudyInstanceUID=1.2,1.3&StudyInstanceUID=1.4");
        assert_eq!(
            p.filters[0].matcher,
            Matcher::List(vec!["1.2".into(), "1.3".into(), "1.4".into()])
        );
    }

    #[test]
    fn path_uids_become_filters_and_are_checked() {
        let target = Target::SeriesInstances {
            study: "1.2".into(),
            series: "1.2.3".into(),
        };
        let p = plan(&target, "").unwrap();
        assert_eq!(p.level, Level::Instance);
        assert_eq!(p.filters.len(), 2);
        let bad_target = Target::StudySeries {
            study: "1.2' OR '1'='1".into(),
        };
        assert!(error(&bad_target, "").contains("not a UID"));
        let list_target = Target::StudySeries {
            study: "1.2,1.3".into(),
        };
        assert!(error(&list_target, "").contains("not a UID"));
    }

    #[test]
    fn returns_follow_the_target() {
        let p = study_plan("");
        assert!(p.returns.contains(&tags::NUMBER_OF_STUDY_RELATED_INSTANCES));
        assert!(!p.returns.contains(&tags::STUDY_DESCRIPTION));
        let p = plan(&Target::AllSeries, "").unwrap();
        assert!(
            p.returns.contains(&tags::PATIENT_NAME),
            "all series carry study attributes"
        );
        let p = plan(
            &Target::StudySeries {
                study: "1.2".into(),
            },
            "",
        )
        .unwrap();
        assert!(!p.returns.contains(&tags::PATIENT_NAME));
        assert!(
            p.returns
                .contains(&tags::NUMBER_OF_SERIES_RELATED_INSTANCES)
        );
        let p = plan(
            &Target::StudyInstances {
                study: "1.2".into(),
            },
            "",
        )
        .unwrap();
        assert!(p.returns.contains(&tags::MODALITY) && !p.returns.contains(&tags::PATIENT_ID));
    }

    #[test]
    fn matched_and_included_attributes_are_returned() {
        let p = study_plan("StudyDescription=&includefield=00081030,InstitutionAddress");
        assert!(p.returns.contains(&tags::STUDY_DESCRIPTION));
        assert!(p.from_headers.contains(&tags::INSTITUTION_ADDRESS));
        assert!(p.filters.is_empty(), "empty value is universal matching");
        let p = study_plan("includefield=all");
        assert!(p.returns.contains(&tags::STUDY_DESCRIPTION));
        assert!(!p.returns.contains(&tags::MODALITY));
        let p = study_plan("KVP=");
        assert!(p.from_headers.contains(&tags::KVP));
    }

    #[test]
    fn limit_defaults_and_caps() {
        let limits = Limits {
            default: 10,
            max: 50,
        };
        assert_eq!(effective_limit(None, limits), (10, true));
        assert_eq!(effective_limit(Some(20), limits), (20, false));
        assert_eq!(effective_limit(Some(50), limits), (50, false));
        assert_eq!(effective_limit(Some(51), limits), (50, true));
        assert_eq!(effective_limit(Some(u64::MAX), limits), (50, true));
        let p = plan(&Target::AllStudies, "limit=5000&offset=7").unwrap();
        assert_eq!((p.limit, p.offset, p.server_limited), (1000, 7, true));
    }

    #[test]
    fn matching_options_are_accepted() {
        let p =
            study_plan("fuzzymatching=true&emptyvaluematching=true&multiplevaluematching=false");
        assert!(p.fuzzy_requested && p.empty_value_matching);
        assert!(!study_plan("fuzzymatching=false").fuzzy_requested);
    }
}
