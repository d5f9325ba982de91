//! Who may use the HTTP APIs: per-site bearer tokens with scopes.
//!
//! Tokens are random 256-bit secrets shown once at creation; only their
//! SHA-256 is stored (a slow password hash buys nothing for secrets with
//! this much entropy). They live in the index database, so a token created
//! with `dicom-gateway tokens create` works at once on a running gateway,
//! and may also be listed, hashed, in the config for deployments managed as
//! code. Each token belongs to one site; by default it sees only that
//! site's studies.

mod tokens;

pub(crate) use tokens::create_schema;
pub use tokens::{
    TokenError, TokenRecord, TokenStore, generate_token, hash_token, lookup, parse_scopes,
};

use std::collections::BTreeSet;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// QIDO-RS, WADO-RS, results.
    Read,
    /// STOW-RS.
    Write,
}

impl Scope {
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// Which sites' studies a principal may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadSites {
    /// Every site.
    All,
    /// These sites (always including the token's own).
    Only(BTreeSet<String>),
}

impl ReadSites {
    pub fn allows(&self, site: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(sites) => sites.contains(site),
        }
    }

    /// `*` means every site; otherwise a comma-separated list.
    pub fn parse(own_site: &str, value: &str) -> Self {
        if value.split(',').any(|s| s.trim() == "*") {
            return Self::All;
        }
        let mut sites: BTreeSet<String> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        sites.insert(own_site.to_string());
        Self::Only(sites)
    }

    pub fn render(&self) -> String {
        match self {
            Self::All => "*".into(),
            Self::Only(sites) => sites.iter().cloned().collect::<Vec<_>>().join(","),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token id (not the secret): what logs and the audit trail name.
    pub token_id: String,
    pub site: String,
    pub scopes: BTreeSet<Scope>,
    pub read_sites: ReadSites,
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_sites_always_include_the_own_site() {
        let r = ReadSites::parse("north", "south");
        assert!(r.allows("north") && r.allows("south") && !r.allows("east"));
        assert_eq!(
            ReadSites::parse("north", ""),
            ReadSites::Only(["north".to_string()].into())
        );
        assert!(ReadSites::parse("north", "*").allows("anything"));
        assert_eq!(ReadSites::parse("a", "b,a").render(), "a,b");
    }
}
