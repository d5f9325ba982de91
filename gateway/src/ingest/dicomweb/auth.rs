//! Bearer-token authentication for every DICOMweb route, and the site
//! visibility rule: a token reads only the sites it was granted, and a study
//! it may not see answers exactly like one that does not exist.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use super::DicomwebState;
use super::error::DicomWebError;
use crate::auth::{Principal, ReadSites, Scope, hash_token, lookup};

/// An authenticated caller; extracting it is what makes a route protected.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl Authenticated {
    /// 403 unless the token has `scope`.
    pub fn require(&self, scope: Scope) -> Result<&Principal, DicomWebError> {
        if self.0.has(scope) {
            Ok(&self.0)
        } else {
            Err(DicomWebError::Forbidden(scope.as_str()))
        }
    }
}

impl FromRequest for Authenticated {
    type Error = DicomWebError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<DicomwebState>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| DicomWebError::internal("DICOMweb state missing"))?;
            let token = token.ok_or(DicomWebError::Unauthorized)?;
            let hash = hash_token(&token);
            if let Some(i) = state.config.token_hashes.iter().position(|h| *h == hash) {
                return Ok(Authenticated(state.config.tokens[i].clone()));
            }
            let found = state.index.run(move |conn| lookup(conn, &token)).await?;
            found.map(Authenticated).ok_or(DicomWebError::Unauthorized)
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .then(|| token.trim().to_string())
}

/// A SQL condition on `instances.site` for what `principal` may read, with
/// its parameters. Append it to every query with ` AND `.
pub fn site_condition(principal: &Principal) -> (String, Vec<String>) {
    match &principal.read_sites {
        ReadSites::All => ("1 = 1".into(), Vec::new()),
        ReadSites::Only(sites) => {
            let marks = vec!["?"; sites.len()].join(", ");
            (
                format!("site IN ({marks})"),
                sites.iter().cloned().collect(),
            )
        }
    }
}
