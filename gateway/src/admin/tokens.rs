//! Operator tokens for the admin API: table `admin_tokens` in the index
//! database and what `dicom-gateway admin-tokens …` does with it.
//!
//! Like the DICOMweb tokens (`auth/`), a token is a random 256-bit secret
//! shown once; only its SHA-256 is stored, and the running gateway looks it
//! up on every request, so a new or revoked token takes effect at once. The
//! token's name is the operator's identity in the audit trail; a name is
//! held by at most one active token, so it always means one person.

use std::path::Path;

use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::roles::Role;
use crate::audit::{self, AuditEntry};
use crate::auth::hash_token;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS admin_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    sha256      TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS admin_tokens_active_name
    ON admin_tokens (name) WHERE revoked_at IS NULL;
"#;

/// Prefix of operator tokens: recognisable to a secret scanner, and never
/// mistaken for a DICOMweb token (`dgw_`).
const TOKEN_PREFIX: &str = "dga_";

/// Identities the gateway itself writes into the audit trail.
const RESERVED_NAMES: [&str; 3] = ["system", "cli", "anonymous"];

/// Creates `admin_tokens` if needed. The admin server and the CLI call it
/// before they touch the table.
pub fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error("token database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("cannot create the data directory: {0}")]
    DataDir(std::io::Error),
    #[error(
        "name `{0}` is not 1-64 characters of letters, digits, '.', '_', '-' or '@' (or it is reserved)"
    )]
    BadName(String),
    #[error("unknown role `{0}` (expected viewer, operator or admin)")]
    BadRole(String),
    #[error("`{0}` already has an active token; revoke it first")]
    NameTaken(String),
    #[error("no active token with name or id `{0}`")]
    NotFound(String),
}

/// One token as listed (never the secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminTokenRecord {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// An authenticated operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The token's name: the identity the audit trail records.
    pub name: String,
    pub role: Role,
    /// The token's public id, for logs.
    pub token_id: String,
}

/// A valid identity: what an auditor reads, so nothing that needs escaping.
pub fn check_name(name: &str) -> Result<(), AdminTokenError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        && !RESERVED_NAMES.contains(&name);
    if ok {
        Ok(())
    } else {
        Err(AdminTokenError::BadName(name.to_string()))
    }
}

/// Looks a presented token up; `None` when unknown, revoked, or stored
/// with a role this build does not know.
pub fn lookup(conn: &Connection, token: &str) -> rusqlite::Result<Option<Operator>> {
    let row: Option<(String, String, String)> = conn
        .query_row(
            "SELECT id, name, role FROM admin_tokens WHERE sha256 = ?1 AND revoked_at IS NULL",
            [hash_token(token)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(row.and_then(|(token_id, name, role)| {
        Some(Operator {
            role: Role::parse(&role)?,
            name,
            token_id,
        })
    }))
}

/// Token operations on a gateway's database (the CLI).
pub struct AdminTokenStore {
    conn: Connection,
    /// Who runs the CLI, for the audit trail (`cli` plus the OS user).
    actor: String,
}

impl AdminTokenStore {
    /// Opens the table in the index database of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, AdminTokenError> {
        std::fs::create_dir_all(data_dir).map_err(AdminTokenError::DataDir)?;
        let conn = crate::store::index::open(&data_dir.join("index.sqlite"))?;
        create_schema(&conn)?;
        Ok(Self {
            conn,
            actor: "cli".to_string(),
        })
    }

    /// Creates a token; returns its record and the token (shown once).
    pub fn create(
        &mut self,
        name: &str,
        role: &str,
    ) -> Result<(AdminTokenRecord, String), AdminTokenError> {
        check_name(name)?;
        let role = Role::parse(role).ok_or_else(|| AdminTokenError::BadRole(role.to_string()))?;
        let (id, token) = generate_token();
        let record = AdminTokenRecord {
            id,
            name: name.to_string(),
            role: role.as_str().to_string(),
            created_at: crate::time::now_rfc3339(),
            revoked_at: None,
        };
        let tx = self.conn.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO admin_tokens (id, name, role, sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![record.id, record.name, record.role, hash_token(&token), record.created_at],
        );
        match inserted {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(AdminTokenError::NameTaken(name.to_string()));
            }
            other => other?,
        };
        audit::append(
            &tx,
            &AuditEntry {
                actor: self.actor.clone(),
                action: "admin_token.created".into(),
                detail: serde_json::json!({
                    "token_id": record.id,
                    "name": record.name,
                    "role": record.role,
                    "os_user": os_user(),
                }),
            },
        )?;
        tx.commit()?;
        Ok((record, token))
    }

    /// Every token, active and revoked, oldest first.
    pub fn list(&self) -> Result<Vec<AdminTokenRecord>, AdminTokenError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, name, role, created_at, revoked_at FROM admin_tokens ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AdminTokenRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                role: r.get(2)?,
                created_at: r.get(3)?,
                revoked_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes the active token with this name or id; a running gateway
    /// refuses it from its next request.
    pub fn revoke(&mut self, name_or_id: &str) -> Result<AdminTokenRecord, AdminTokenError> {
        let tx = self.conn.transaction()?;
        let found: Option<(String, String, String, String)> = tx
            .query_row(
                "SELECT id, name, role, created_at FROM admin_tokens
                 WHERE (id = ?1 OR name = ?1) AND revoked_at IS NULL",
                [name_or_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let (id, name, role, created_at) =
            found.ok_or_else(|| AdminTokenError::NotFound(name_or_id.to_string()))?;
        let revoked_at = crate::time::now_rfc3339();
        tx.execute(
            "UPDATE admin_tokens SET revoked_at = ?2 WHERE id = ?1",
            params![id, revoked_at],
        )?;
        audit::append(
            &tx,
            &AuditEntry {
                actor: self.actor.clone(),
                action: "admin_token.revoked".into(),
                detail: serde_json::json!({
                    "token_id": id,
                    "name": name,
                    "role": role,
                    "os_user": os_user(),
                }),
            },
        )?;
        tx.commit()?;
        Ok(AdminTokenRecord {
            id,
            name,
            role,
            created_at,
            revoked_at: Some(revoked_at),
        })
    }
}

/// A new random token, `dga_<id>_<secret>`: the id is public, the whole
/// string is the credential.
fn generate_token() -> (String, String) {
    let mut bytes = [0u8; 36];
    rand::rng().fill_bytes(&mut bytes);
    let id = hex::encode(&bytes[..4]);
    let secret = hex::encode(&bytes[4..]);
    (id.clone(), format!("{TOKEN_PREFIX}{id}_{secret}"))
}

/// The OS account running the CLI, when the environment says.
fn os_user() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_lookup_revoke_and_audit() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = AdminTokenStore::open(dir.path()).unwrap();
        let (record, token) = store.create("alice", "operator").unwrap();
        assert!(token.starts_with("dga_") && token.contains(&record.id));
        let operator = lookup(&store.conn, &token).unwrap().expect("token works");
        assert_eq!(
            (operator.name.as_str(), operator.role),
            ("alice", Role::Operator)
        );
        assert!(lookup(&store.conn, "dga_nope").unwrap().is_none());
        // Only the hash is stored.
        let stored: String = store
            .conn
            .query_row("SELECT sha256 FROM admin_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, hash_token(&token));

        assert!(matches!(
            store.create("alice", "admin"),
            Err(AdminTokenError::NameTaken(_))
        ));
        store.revoke("alice").unwrap();
        assert!(lookup(&store.conn, &token).unwrap().is_none());
        assert!(matches!(
            store.revoke(&record.id),
            Err(AdminTokenError::NotFound(_))
        ));
        // A revoked name may be issued again.
        let (_, again) = store.create("alice", "admin").unwrap();
        assert_eq!(
            lookup(&store.conn, &again).unwrap().unwrap().role,
            Role::Admin
        );
        assert_eq!(store.list().unwrap().len(), 2);

        let actions: Vec<String> = store
            .conn
            .prepare("SELECT action FROM audit ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            actions,
            [
                "admin_token.created",
                "admin_token.revoked",
                "admin_token.created"
            ]
        );
        assert_eq!(crate::audit::verify(&store.conn).unwrap(), Ok(3));
    }

    #[test]
    fn names_and_roles_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = AdminTokenStore::open(dir.path()).unwrap();
        for bad in ["", "has space", "system", "a\"b", &"x".repeat(65)] {
            assert!(
                matches!(
                    store.create(bad, "viewer"),
                    Err(AdminTokenError::BadName(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            store.create("bob", "root"),
            Err(AdminTokenError::BadRole(_))
        ));
        assert!(store.create("bob@radiology.example", "viewer").is_ok());
    }
}
