//! `GET /api/v1/performance?site=…&since=…`: the performance report
//! (`report`) as JSON, behind the same tokens and site visibility as
//! DICOMweb: a token sees only the sites it may read, filtered in SQL, and
//! asking for another site answers like a site with no traffic.
//!
//! `since` is an RFC 3339 UTC time or a duration back from now (`24h`, the
//! default). Drift rows come from the live monitor; the model-level
//! baselines (pooled over every site) are shown only to tokens that read
//! all sites.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::DicomwebState;
use super::auth::Authenticated;
use super::error::DicomWebError;
use crate::auth::{Principal, ReadSites, Scope};
use crate::config::check_label_name;
use crate::report::{self, DriftSection, ReportError, ReportQuery};

pub const PERFORMANCE_PATH: &str = "/api/v1/performance";

pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.route(PERFORMANCE_PATH, web::get().to(performance));
}

#[derive(Debug, Deserialize)]
struct PerformanceParams {
    site: Option<String>,
    since: Option<String>,
}

/// The sites the report may cover: `None` for all.
fn visible_sites(principal: &Principal, wanted: Option<&str>) -> Option<Vec<String>> {
    match (&principal.read_sites, wanted) {
        (ReadSites::All, None) => None,
        (ReadSites::All, Some(site)) => Some(vec![site.to_string()]),
        (ReadSites::Only(sites), None) => Some(sites.iter().cloned().collect()),
        // Not readable: the same (empty) answer as a site without traffic.
        (ReadSites::Only(sites), Some(site)) => Some(
            sites
                .contains(site)
                .then(|| site.to_string())
                .into_iter()
                .collect(),
        ),
    }
}

fn report_error(e: ReportError) -> DicomWebError {
    if e.is_caller_error() {
        DicomWebError::BadRequest(e.to_string())
    } else {
        DicomWebError::internal(e)
    }
}

async fn performance(
    auth: Authenticated,
    params: web::Query<PerformanceParams>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Read)?.clone();
    if let Some(site) = &params.site
        && let Err(why) = check_label_name(site)
    {
        return Err(DicomWebError::BadRequest(format!("site: {why}")));
    }
    let sites = visible_sites(&principal, params.site.as_deref());
    let since = params.since.as_deref().unwrap_or(report::DEFAULT_SINCE);
    let query =
        ReportQuery::new(sites.clone(), since, crate::time::unix_millis()).map_err(report_error)?;
    let monitor = &state.metrics.drift;
    let drift = DriftSection {
        threshold: monitor.config().threshold,
        rows: monitor.rows(sites.as_deref()),
        baselines: match principal.read_sites {
            ReadSites::All => monitor.baselines(),
            ReadSites::Only(_) => Vec::new(),
        },
    };
    let scanners = state.metrics.performance.scanner_labels().clone();
    let built = state
        .index
        .run(move |conn| Ok(report::build(conn, &query, &scanners, drift)))
        .await?;
    Ok(HttpResponse::Ok().json(built.map_err(report_error)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(read_sites: ReadSites) -> Principal {
        Principal {
            token_id: "t".into(),
            site: "north".into(),
            scopes: Default::default(),
            read_sites,
        }
    }

    #[test]
    fn a_token_sees_only_its_sites() {
        let all = principal(ReadSites::All);
        assert_eq!(visible_sites(&all, None), None);
        assert_eq!(
            visible_sites(&all, Some("south")),
            Some(vec!["south".into()])
        );
        let north = principal(ReadSites::Only(["north".to_string()].into_iter().collect()));
        assert_eq!(visible_sites(&north, None), Some(vec!["north".into()]));
        assert_eq!(
            visible_sites(&north, Some("north")),
            Some(vec!["north".into()])
        );
        assert_eq!(visible_sites(&north, Some("south")), Some(vec![]));
    }
}
