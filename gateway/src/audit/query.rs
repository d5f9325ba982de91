//! Reading the audit trail back: filtered, paged listings for the admin API
//! and `dicom-gateway audit list`. Writing stays in [`super::append`].

use rusqlite::{Connection, params_from_iter};
use serde::Serialize;

/// Most entries one listing returns, whatever the caller asks for.
pub const MAX_LIMIT: usize = 1000;

/// Entries one listing returns when the caller does not say.
pub const DEFAULT_LIMIT: usize = 100;

/// Which entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Entries after this sequence number, oldest first (paging forward).
    /// `None`: the newest `limit` entries, still in ascending order.
    pub since: Option<i64>,
    /// An exact action (`route.flip`), or a prefix ending in `*`
    /// (`route.*`, `route.flip*`).
    pub action: Option<String>,
    /// An exact actor (`alice`, `system`, `cli`).
    pub actor: Option<String>,
    /// At most this many entries (capped at [`MAX_LIMIT`]).
    pub limit: usize,
}

/// One stored entry as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    /// RFC 3339 UTC.
    pub at: String,
    pub actor: String,
    pub action: String,
    /// The detail object; a detail that is not JSON (an edited row) is
    /// returned as a string rather than hidden.
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The entries `query` selects, in ascending sequence order.
pub fn list(conn: &Connection, query: &AuditQuery) -> rusqlite::Result<Vec<AuditRecord>> {
    let mut conditions = Vec::new();
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(since) = query.since {
        conditions.push("seq > ?");
        values.push(since.into());
    }
    match query.action.as_deref() {
        Some(prefix) if prefix.ends_with('*') => {
            // substr instead of LIKE: no escaping of `_` and `%` needed.
            let prefix = prefix.trim_end_matches('*');
            conditions.push("substr(action, 1, ?) = ?");
            values.push((prefix.chars().count() as i64).into());
            values.push(prefix.to_string().into());
        }
        Some(action) => {
            conditions.push("action = ?");
            values.push(action.to_string().into());
        }
        None => {}
    }
    if let Some(actor) = &query.actor {
        conditions.push("actor = ?");
        values.push(actor.clone().into());
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    // Paging forward reads oldest first; without `since` the newest page is
    // wanted, read newest first and turned around below.
    let order = if query.since.is_some() { "ASC" } else { "DESC" };
    let limit = query.limit.clamp(1, MAX_LIMIT);
    let sql = format!(
        "SELECT seq, at, actor, action, detail, prev_hash, hash FROM audit {filter} ORDER BY seq {order} LIMIT {limit}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), |r| {
        let detail: String = r.get(4)?;
        Ok(AuditRecord {
            seq: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
            prev_hash: r.get(5)?,
            hash: r.get(6)?,
        })
    })?;
    let mut records: Vec<AuditRecord> = rows.collect::<Result<_, _>>()?;
    if query.since.is_none() {
        records.reverse();
    }
    Ok(records)
}

/// Entries after `since`, oldest first, unfiltered: what an exporter reads.
pub fn after(conn: &Connection, since: i64, limit: usize) -> rusqlite::Result<Vec<AuditRecord>> {
    list(
        conn,
        &AuditQuery {
            since: Some(since),
            limit,
            ..AuditQuery::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEntry, append, create_schema};

    fn trail() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        create_schema(&conn).unwrap();
        let tx = conn.transaction().unwrap();
        for (actor, action) in [
            ("system", "model.loaded"),
            ("alice", "route.flip"),
            ("bob", "route.flip.forbidden"),
            ("alice", "route.unflip"),
            ("system", "job.failed"),
        ] {
            let entry = AuditEntry {
                actor: actor.into(),
                action: action.into(),
                detail: serde_json::json!({ "route": "r" }),
            };
            append(&tx, &entry).unwrap();
        }
        tx.commit().unwrap();
        conn
    }

    fn seqs(records: &[AuditRecord]) -> Vec<i64> {
        records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn without_since_the_newest_page_comes_in_ascending_order() {
        let conn = trail();
        let query = AuditQuery {
            limit: 2,
            ..AuditQuery::default()
        };
        assert_eq!(seqs(&list(&conn, &query).unwrap()), vec![4, 5]);
    }

    #[test]
    fn since_pages_forward() {
        let conn = trail();
        let query = AuditQuery {
            since: Some(1),
            limit: 2,
            ..AuditQuery::default()
        };
        assert_eq!(seqs(&list(&conn, &query).unwrap()), vec![2, 3]);
        assert_eq!(seqs(&after(&conn, 3, 10).unwrap()), vec![4, 5]);
    }

    #[test]
    fn action_prefix_and_actor_filter() {
        let conn = trail();
        let query = |action: &str, actor: Option<&str>| AuditQuery {
            action: Some(action.into()),
            actor: actor.map(Into::into),
            limit: 100,
            ..AuditQuery::default()
        };
        assert_eq!(
            seqs(&list(&conn, &query("route.flip", None)).unwrap()),
            vec![2]
        );
        assert_eq!(
            seqs(&list(&conn, &query("route.*", None)).unwrap()),
            vec![2, 3, 4]
        );
        assert_eq!(
            seqs(&list(&conn, &query("route.flip*", None)).unwrap()),
            vec![2, 3]
        );
        assert_eq!(
            seqs(&list(&conn, &query("route.*", Some("alice"))).unwrap()),
            vec![2, 4]
        );
        // `_` and `%` are literal, not patterns.
        assert!(list(&conn, &query("route_%*", None)).unwrap().is_empty());
    }

    #[test]
    fn an_edited_detail_that_is_not_json_is_still_shown() {
        let conn = trail();
        conn.execute("UPDATE audit SET detail = 'oops' WHERE seq = 2", [])
            .unwrap();
        let records = after(&conn, 1, 1).unwrap();
        assert_eq!(records[0].detail, serde_json::json!("oops"));
    }
}
