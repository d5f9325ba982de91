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
/// its parameters. Append it with ` AND ` to queries that ask whether
/// something exists; queries that return or count instances use
/// [`Visibility`], which also picks one copy per SOP Instance UID.
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

/// Which rows of `instances` a reader sees. An instance is identified by
/// (site, SOP Instance UID), so a reader allowed several sites may find
/// two sites' copies of one UID. It sees one of them: its own site's copy
/// if its site holds one, else the copy of the lowest-named site it may
/// read. QIDO-RS then lists each UID once, with counts that match what
/// WADO-RS returns, and a retrieve by UID is never ambiguous; a reader of
/// one site sees exactly that site's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    own_site: String,
    /// `None`: every site.
    sites: Option<Vec<String>>,
}

/// Alias of the other copy in [`Visibility::condition`]'s subquery.
const OTHER_COPY: &str = "other_copy";

impl Visibility {
    pub fn of(principal: &Principal) -> Self {
        Self::new(&principal.site, &principal.read_sites)
    }

    pub fn new(own_site: &str, read_sites: &ReadSites) -> Self {
        Self {
            own_site: own_site.to_string(),
            sites: match read_sites {
                ReadSites::All => None,
                ReadSites::Only(sites) => Some(sites.iter().cloned().collect()),
            },
        }
    }

    /// The condition on the `instances` row named `table` (the table's name
    /// or its alias in the query), with its parameters in order. Append it
    /// with ` AND `.
    pub fn condition(&self, table: &str) -> (String, Vec<String>) {
        let (readable, mut params) = self.readable(table);
        if self.sites.as_ref().is_some_and(|sites| sites.len() == 1) {
            return (readable, params);
        }
        // A readable copy of the same UID in a site this reader prefers
        // hides this one (found through the `instances_sop` index).
        let (other_readable, other_params) = self.readable(OTHER_COPY);
        let sql = format!(
            "({readable} AND NOT EXISTS (SELECT 1 FROM instances AS {o} \
             WHERE {o}.sop_instance_uid = {table}.sop_instance_uid AND {o}.site <> {table}.site \
             AND {other_readable} \
             AND ({o}.site = ? OR ({table}.site <> ? AND {o}.site < {table}.site))))",
            o = OTHER_COPY,
        );
        params.extend(other_params);
        params.push(self.own_site.clone());
        params.push(self.own_site.clone());
        (sql, params)
    }

    /// `<table>.site IN (…)`, or always true for a reader of every site.
    fn readable(&self, table: &str) -> (String, Vec<String>) {
        match &self.sites {
            None => ("1 = 1".into(), Vec::new()),
            Some(sites) => {
                let marks = vec!["?"; sites.len()].join(", ");
                (format!("{table}.site IN ({marks})"), sites.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One UID held by north and south, one by south and east, one by east only.
    fn index() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE instances (site TEXT, sop_instance_uid TEXT);
             INSERT INTO instances VALUES
                 ('north', '1.1'), ('south', '1.1'),
                 ('south', '1.2'), ('east', '1.2'),
                 ('east', '1.3');",
        )
        .unwrap();
        conn
    }

    fn visible(conn: &rusqlite::Connection, visibility: &Visibility) -> Vec<(String, String)> {
        let (condition, params) = visibility.condition("i");
        let sql = format!(
            "SELECT site, sop_instance_uid FROM instances AS i WHERE {condition} \
             ORDER BY sop_instance_uid"
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(s, u)| (s.to_string(), u.to_string()))
            .collect()
    }

    #[test]
    fn a_reader_sees_one_copy_per_uid_its_own_first_else_the_lowest_named_site() {
        let conn = index();
        let only = |own: &str, read: &str| Visibility::new(own, &ReadSites::parse(own, read));
        assert_eq!(
            visible(&conn, &only("south", "")),
            pairs(&[("south", "1.1"), ("south", "1.2")]),
            "one site: exactly its rows"
        );
        assert_eq!(
            visible(&conn, &only("south", "north,east")),
            pairs(&[("south", "1.1"), ("south", "1.2"), ("east", "1.3")]),
            "its own copy wins over a lower-named site's"
        );
        assert_eq!(
            visible(&conn, &only("north", "south,east")),
            pairs(&[("north", "1.1"), ("east", "1.2"), ("east", "1.3")]),
            "no own copy: the lowest-named readable site's"
        );
        assert_eq!(
            visible(&conn, &only("north", "south")),
            pairs(&[("north", "1.1"), ("south", "1.2")]),
            "a copy in a site it may not read hides nothing"
        );
        assert_eq!(
            visible(&conn, &Visibility::new("west", &ReadSites::All)),
            pairs(&[("north", "1.1"), ("east", "1.2"), ("east", "1.3")])
        );
    }
}
