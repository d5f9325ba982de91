//! The token table and the operations `dicom-gateway tokens …` performs.

use std::collections::BTreeSet;
use std::path::Path;

use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Principal, ReadSites, Scope};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    site        TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    read_sites  TEXT NOT NULL,
    sha256      TEXT NOT NULL UNIQUE,
    label       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
"#;

/// Prefix that makes a gateway token recognisable in a secret scanner.
const TOKEN_PREFIX: &str = "dgw_";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("no token with id {0}")]
    NotFound(String),
    #[error("unknown scope `{0}` (expected read and/or write)")]
    BadScope(String),
    #[error("a token needs at least one scope")]
    NoScope,
}

/// One token as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRecord {
    pub id: String,
    pub site: String,
    pub scopes: String,
    pub read_sites: String,
    pub label: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A new random token: `dgw_<id>_<secret>`; the id is public, the whole
/// string is the credential.
pub fn generate_token() -> (String, String) {
    let mut bytes = [0u8; 36];
    rand::rng().fill_bytes(&mut bytes);
    let id = hex::encode(&bytes[..4]);
    let secret = hex::encode(&bytes[4..]);
    (id.clone(), format!("{TOKEN_PREFIX}{id}_{secret}"))
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

pub fn parse_scopes(value: &str) -> Result<BTreeSet<Scope>, TokenError> {
    let scopes: BTreeSet<Scope> = value
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Scope::parse(s).ok_or_else(|| TokenError::BadScope(s.trim().to_string())))
        .collect::<Result<_, _>>()?;
    if scopes.is_empty() {
        return Err(TokenError::NoScope);
    }
    Ok(scopes)
}

fn render_scopes(scopes: &BTreeSet<Scope>) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Token operations on the gateway's database.
pub struct TokenStore {
    conn: Connection,
}

impl TokenStore {
    /// Opens the token table in the index database of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, TokenError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            TokenError::Database(rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
        })?;
        let conn = crate::store::index::open(&data_dir.join("index.sqlite"))?;
        create_schema(&conn)?;
        Ok(Self { conn })
    }

    /// Creates a token and returns (record, the token itself: shown once).
    pub fn create(
        &mut self,
        site: &str,
        scopes: &str,
        read_sites: &str,
        label: &str,
    ) -> Result<(TokenRecord, String), TokenError> {
        let scopes = parse_scopes(scopes)?;
        let read_sites = ReadSites::parse(site, read_sites).render();
        let (id, token) = generate_token();
        let record = TokenRecord {
            id,
            site: site.to_string(),
            scopes: render_scopes(&scopes),
            read_sites,
            label: label.to_string(),
            created_at: crate::time::now_rfc3339(),
            revoked_at: None,
        };
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO tokens (id, site, scopes, read_sites, sha256, label, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![record.id, record.site, record.scopes, record.read_sites, hash_token(&token), record.label, record.created_at],
        )?;
        crate::audit::append(
            &tx,
            &crate::audit::AuditEntry {
                actor: "cli".into(),
                action: "token.created".into(),
                detail: serde_json::json!({"token_id": record.id, "site": record.site, "scopes": record.scopes, "read_sites": record.read_sites}),
            },
        )?;
        tx.commit()?;
        Ok((record, token))
    }

    pub fn list(&self) -> Result<Vec<TokenRecord>, TokenError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, site, scopes, read_sites, label, created_at, revoked_at FROM tokens ORDER BY created_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(TokenRecord {
                id: r.get(0)?,
                site: r.get(1)?,
                scopes: r.get(2)?,
                read_sites: r.get(3)?,
                label: r.get(4)?,
                created_at: r.get(5)?,
                revoked_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn revoke(&mut self, id: &str) -> Result<(), TokenError> {
        let tx = self.conn.transaction()?;
        let changed = tx.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, crate::time::now_rfc3339()],
        )?;
        if changed == 0 {
            return Err(TokenError::NotFound(id.to_string()));
        }
        crate::audit::append(
            &tx,
            &crate::audit::AuditEntry {
                actor: "cli".into(),
                action: "token.revoked".into(),
                detail: serde_json::json!({"token_id": id}),
            },
        )?;
        tx.commit()?;
        Ok(())
    }
}

pub(crate) fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// Looks a presented token up by hash; `None` if unknown or revoked.
pub fn lookup(conn: &Connection, token: &str) -> rusqlite::Result<Option<Principal>> {
    conn.query_row(
        "SELECT id, site, scopes, read_sites FROM tokens WHERE sha256 = ?1 AND revoked_at IS NULL",
        [hash_token(token)],
        |r| {
            let (id, site, scopes, read_sites): (String, String, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            Ok(Principal {
                token_id: id,
                scopes: parse_scopes(&scopes).unwrap_or_default(),
                read_sites: ReadSites::parse(&site, &read_sites),
                site,
            })
        },
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_lookup_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TokenStore::open(dir.path()).unwrap();
        let (record, token) = store.create("demo", "read,write", "", "pacs").unwrap();
        assert!(token.starts_with("dgw_") && token.contains(&record.id));
        let principal = lookup(&store.conn, &token).unwrap().expect("token works");
        assert_eq!(principal.site, "demo");
        assert!(principal.has(Scope::Read) && principal.has(Scope::Write));
        assert!(lookup(&store.conn, "dgw_nope").unwrap().is_none());
        // Only the hash is stored.
        let stored: String = store
            .conn
            .query_row("SELECT sha256 FROM tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, hash_token(&token));
        assert!(!stored.contains(&token[10..]));
        store.revoke(&record.id).unwrap();
        assert!(lookup(&store.conn, &token).unwrap().is_none());
        assert!(matches!(
            store.revoke(&record.id),
            Err(TokenError::NotFound(_))
        ));
        assert_eq!(crate::audit::verify(&store.conn).unwrap(), Ok(2));
    }

    #[test]
    fn scopes_are_validated() {
        assert!(matches!(parse_scopes("read,admin"), Err(TokenError::BadScope(s)) if s == "admin"));
        assert!(matches!(parse_scopes(""), Err(TokenError::NoScope)));
        assert_eq!(parse_scopes("write, read").unwrap().len(), 2);
    }
}
