//! The audit trail: append-only and hash-chained, in the index database.
//!
//! Each entry stores the SHA-256 of the previous entry and its own hash over
//! (sequence, time, actor, action, detail, previous hash), so editing,
//! inserting or deleting an entry breaks the chain that [`verify`] walks.
//! Entries are written in the same transaction as the change they record,
//! so the trail and the index never disagree. This is the one place where
//! identifiers (UIDs) are recorded; patient names, IDs and birth dates are not.
//!
//! [`query`] reads the trail back (filters, paging, a verification report
//! for the admin API); [`syslog`] follows it and sends each entry to a SIEM.

pub mod query;
pub mod syslog;

pub use query::{AuditQuery, AuditRecord, list};

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit (
    seq       INTEGER PRIMARY KEY NOT NULL,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_export (
    sink TEXT PRIMARY KEY NOT NULL,
    seq  INTEGER NOT NULL
);
"#;

/// Hash that the first entry chains to.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub(crate) fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// One audit entry before it is written.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who: `system`, `dimse:<site>/<calling AE>`, an operator identity.
    pub actor: String,
    /// What, as a stable dotted verb: `store.duplicate_rejected`, `store.replaced`…
    pub action: String,
    /// Details as a JSON object.
    pub detail: serde_json::Value,
}

/// Appends `entry` inside `tx`, chained to the last entry.
pub fn append(tx: &Transaction<'_>, entry: &AuditEntry) -> rusqlite::Result<i64> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    let at = crate::time::now_rfc3339();
    let detail = entry.detail.to_string();
    let hash = entry_hash(seq, &at, &entry.actor, &entry.action, &detail, &prev_hash);
    tx.execute(
        "INSERT INTO audit (seq, at, actor, action, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![seq, at, entry.actor, entry.action, detail, prev_hash, hash],
    )?;
    Ok(seq)
}

/// Appends `entry` in a transaction of its own on the index at
/// `index_path`. Blocking: call it from `spawn_blocking`. For records that
/// belong to no other change (refused operator actions, token changes).
pub fn append_to(index_path: &Path, entry: &AuditEntry) -> rusqlite::Result<i64> {
    let mut conn = crate::db::open(index_path)?;
    create_schema(&conn)?;
    let tx = conn.transaction()?;
    let seq = append(&tx, entry)?;
    tx.commit()?;
    Ok(seq)
}

fn entry_hash(seq: i64, at: &str, actor: &str, action: &str, detail: &str, prev: &str) -> String {
    let mut h = Sha256::new();
    for part in [seq.to_string().as_str(), at, actor, action, detail, prev] {
        // Length-prefix each field so that no two field splits hash alike.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// A break in the chain: the first entry that does not verify, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("audit entry {seq}: {reason}")]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: String,
}

/// What a walk of the whole trail found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Entries that verified, from the first up to the break (or all).
    pub verified: u64,
    /// The last entry that verified, and its hash: record it elsewhere (the
    /// syslog export does) and a rewrite of the whole chain shows too.
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
    /// The first entry that does not verify, if any.
    pub broken: Option<ChainBreak>,
}

/// Walks the whole trail; returns the number of entries or the first break.
pub fn verify(conn: &Connection) -> rusqlite::Result<Result<u64, ChainBreak>> {
    let report = verify_report(conn)?;
    Ok(match report.broken {
        Some(chain_break) => Err(chain_break),
        None => Ok(report.verified),
    })
}

/// Walks the whole trail and reports how far it verifies.
pub fn verify_report(conn: &Connection) -> rusqlite::Result<VerifyReport> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, detail, prev_hash, hash FROM audit ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut expected_prev = GENESIS.to_string();
    let mut expected_seq = 1;
    let mut count = 0;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let (at, actor, action, detail, prev, hash): (
            String,
            String,
            String,
            String,
            String,
            String,
        ) = (
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
        );
        let fail = |reason: &str| {
            Ok(VerifyReport {
                verified: count,
                head_seq: (expected_seq > 1).then_some(expected_seq - 1),
                head_hash: (expected_seq > 1).then(|| expected_prev.clone()),
                broken: Some(ChainBreak {
                    seq,
                    reason: reason.to_string(),
                }),
            })
        };
        if seq != expected_seq {
            return fail("sequence gap: an entry was deleted or inserted");
        }
        if prev != expected_prev {
            return fail("previous-hash does not match the entry before");
        }
        if entry_hash(seq, &at, &actor, &action, &detail, &prev) != hash {
            return fail("content does not match its hash: the entry was modified");
        }
        expected_prev = hash;
        expected_seq += 1;
        count += 1;
    }
    Ok(VerifyReport {
        verified: count,
        head_seq: (expected_seq > 1).then_some(expected_seq - 1),
        head_hash: (expected_seq > 1).then_some(expected_prev),
        broken: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            actor: "system".into(),
            action: action.into(),
            detail: serde_json::json!({"n": action.len()}),
        }
    }

    #[test]
    fn chain_verifies_and_detects_tampering() {
        let mut conn = Connection::open_in_memory().unwrap();
        create_schema(&conn).unwrap();
        let tx = conn.transaction().unwrap();
        for a in ["one", "two", "three"] {
            append(&tx, &entry(a)).unwrap();
        }
        tx.commit().unwrap();
        assert_eq!(verify(&conn).unwrap(), Ok(3));

        conn.execute("UPDATE audit SET detail = '{\"n\":99}' WHERE seq = 2", [])
            .unwrap();
        let broken = verify(&conn).unwrap().unwrap_err();
        assert_eq!(broken.seq, 2);
        assert!(broken.reason.contains("modified"));
    }

    #[test]
    fn deleted_entry_is_detected() {
        let mut conn = Connection::open_in_memory().unwrap();
        create_schema(&conn).unwrap();
        let tx = conn.transaction().unwrap();
        for a in ["one", "two", "three"] {
            append(&tx, &entry(a)).unwrap();
        }
        tx.commit().unwrap();
        conn.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
        assert_eq!(verify(&conn).unwrap().unwrap_err().seq, 3);
        let report = verify_report(&conn).unwrap();
        assert_eq!((report.verified, report.head_seq), (1, Some(1)));
    }

    /// A forged entry slipped in after entry 1: the later entries are
    /// renumbered to make room and the forgery chains correctly to entry 1,
    /// yet the renumbered entry no longer matches its hash.
    #[test]
    fn inserted_entry_is_detected() {
        let mut conn = Connection::open_in_memory().unwrap();
        create_schema(&conn).unwrap();
        let tx = conn.transaction().unwrap();
        for a in ["one", "two", "three"] {
            append(&tx, &entry(a)).unwrap();
        }
        tx.commit().unwrap();
        for seq in [3, 2] {
            conn.execute("UPDATE audit SET seq = seq + 1 WHERE seq = ?1", [seq])
                .unwrap();
        }
        let first_hash: String = conn
            .query_row("SELECT hash FROM audit WHERE seq = 1", [], |r| r.get(0))
            .unwrap();
        let at = "2026-01-01T00:00:00.000000Z";
        let forged = entry_hash(2, at, "mallory", "route.flip", "{}", &first_hash);
        conn.execute(
            "INSERT INTO audit VALUES (2, ?1, 'mallory', 'route.flip', '{}', ?2, ?3)",
            params![at, first_hash, forged],
        )
        .unwrap();
        let broken = verify(&conn).unwrap().unwrap_err();
        assert_eq!(broken.seq, 3, "{broken}");

        // An entry appended without the chain is caught too.
        let mut conn = Connection::open_in_memory().unwrap();
        create_schema(&conn).unwrap();
        let tx = conn.transaction().unwrap();
        append(&tx, &entry("one")).unwrap();
        tx.commit().unwrap();
        conn.execute(
            "INSERT INTO audit VALUES (2, ?1, 'mallory', 'x', '{}', ?2, ?2)",
            params![at, GENESIS],
        )
        .unwrap();
        let broken = verify(&conn).unwrap().unwrap_err();
        assert_eq!(broken.seq, 2);
        assert!(broken.reason.contains("previous-hash"), "{broken}");
    }
}
