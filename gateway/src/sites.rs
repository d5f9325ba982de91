//! Sites: who may send to us, from where.
//!
//! A site owns calling AE titles and, optionally, the peer addresses they may
//! connect from. Both DIMSE ingest and (later) DICOMweb resolve a peer to a
//! site here, so the site name is the one bounded label that metrics, the
//! index and routing share. [`SharedSites`] is the registry in force, which
//! an admin reload replaces without a restart.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use crate::config::{GatewayConfig, SiteConfig};

/// Why a peer was turned away. Carries no peer data, so it can be logged and
/// used as a metric label as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteRejection {
    /// The calling AE title belongs to no site (and unknown AEs are not accepted).
    UnknownCallingAe,
    /// The called AE title is not ours.
    WrongCalledAe,
    /// The calling AE title is known but the peer address is not allowed for its site.
    AddressNotAllowed,
}

impl SiteRejection {
    pub fn as_label(self) -> &'static str {
        match self {
            Self::UnknownCallingAe => "rejected_calling_ae",
            Self::WrongCalledAe => "rejected_called_ae",
            Self::AddressNotAllowed => "rejected_address",
        }
    }
}

/// Calling AE title → site, built once from the configuration.
#[derive(Debug, Clone)]
pub struct SiteRegistry {
    our_ae_title: String,
    by_ae_title: HashMap<String, SiteConfig>,
    unknown_ae_site: Option<String>,
}

impl SiteRegistry {
    pub fn from_config(config: &GatewayConfig) -> Self {
        let by_ae_title = config
            .sites
            .iter()
            .flat_map(|site| {
                site.ae_titles
                    .iter()
                    .map(move |t| (t.clone(), site.clone()))
            })
            .collect();
        Self {
            our_ae_title: config.ae_title.trim().to_string(),
            by_ae_title,
            unknown_ae_site: config.dimse.unknown_ae_site.clone(),
        }
    }

    /// Decides whether `calling_ae` at `peer` may associate with us as
    /// `called_ae`, and as which site. AE titles compare without their
    /// padding spaces (PS3.8 9.3.2: leading and trailing spaces are not
    /// significant).
    pub fn resolve(
        &self,
        calling_ae: &str,
        called_ae: &str,
        peer: IpAddr,
    ) -> Result<String, SiteRejection> {
        if called_ae.trim() != self.our_ae_title {
            return Err(SiteRejection::WrongCalledAe);
        }
        match self.by_ae_title.get(calling_ae.trim()) {
            Some(site) if site_allows(site, peer) => Ok(site.name.clone()),
            Some(_) => Err(SiteRejection::AddressNotAllowed),
            None => self
                .unknown_ae_site
                .clone()
                .ok_or(SiteRejection::UnknownCallingAe),
        }
    }

    /// Every site name, for pre-registering metric label values.
    pub fn site_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_ae_title.values().map(|s| s.name.clone()).collect();
        names.extend(self.unknown_ae_site.clone());
        names.sort();
        names.dedup();
        names
    }
}

/// The registry in force, shared by every listener. A reload swaps in a
/// whole new registry at once, so a negotiation sees either the old sites or
/// the new ones, never a mix. Cheap to clone; every clone sees the same
/// registry.
#[derive(Debug, Clone)]
pub struct SharedSites(Arc<RwLock<Arc<SiteRegistry>>>);

impl SharedSites {
    pub fn new(registry: SiteRegistry) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(registry))))
    }

    /// The registry in force. Hold the `Arc` for one negotiation, not
    /// longer, so the next one sees a reload.
    pub fn current(&self) -> Arc<SiteRegistry> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `registry` in force for every negotiation that starts from now.
    pub fn replace(&self, registry: SiteRegistry) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(registry);
    }
}

fn site_allows(site: &SiteConfig, peer: IpAddr) -> bool {
    let peer = canonical(peer);
    site.allowed_peers.is_empty() || site.allowed_peers.iter().any(|net| net.contains(&peer))
}

/// An IPv4 peer on a dual-stack socket shows up as `::ffff:a.b.c.d`.
fn canonical(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CliOverrides, load_from_str};

    fn registry(extra: &str) -> SiteRegistry {
        let text = format!(
            r#"
            {extra}
            [[sites]]
            name = "north"
            ae_titles = ["CT-NORTH", "MR-NORTH"]
            allowed_peers = ["10.1.0.0/16"]
            [[sites]]
            name = "anywhere"
            ae_titles = ["MOBILE"]
            "#
        );
        let config = load_from_str(
            &text,
            Vec::<(String, String)>::new(),
            &CliOverrides::default(),
        )
        .unwrap();
        SiteRegistry::from_config(&config)
    }

    #[test]
    fn resolves_known_ae_from_allowed_address() {
        let r = registry("");
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(r.resolve("CT-NORTH", "GATEWAY", peer), Ok("north".into()));
        assert_eq!(
            r.resolve("  MR-NORTH ", "GATEWAY  ", peer),
            Ok("north".into())
        );
        let mapped: IpAddr = "::ffff:10.1.9.9".parse().unwrap();
        assert_eq!(r.resolve("CT-NORTH", "GATEWAY", mapped), Ok("north".into()));
        assert_eq!(
            r.resolve("MOBILE", "GATEWAY", "192.0.2.1".parse().unwrap()),
            Ok("anywhere".into())
        );
    }

    #[test]
    fn rejections_are_specific() {
        let r = registry("");
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        let outside: IpAddr = "10.2.2.3".parse().unwrap();
        assert_eq!(
            r.resolve("CT-NORTH", "OTHER", inside),
            Err(SiteRejection::WrongCalledAe)
        );
        assert_eq!(
            r.resolve("NOBODY", "GATEWAY", inside),
            Err(SiteRejection::UnknownCallingAe)
        );
        assert_eq!(
            r.resolve("CT-NORTH", "GATEWAY", outside),
            Err(SiteRejection::AddressNotAllowed)
        );
    }

    #[test]
    fn a_replaced_registry_applies_to_the_next_lookup_only() {
        let shared = SharedSites::new(registry(""));
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let before = shared.current();
        let config = load_from_str(
            "[[sites]]\nname = \"south\"\nae_titles = [\"CT-SOUTH\"]\n",
            Vec::<(String, String)>::new(),
            &CliOverrides::default(),
        )
        .unwrap();
        shared.replace(SiteRegistry::from_config(&config));
        let after = shared.current();
        assert_eq!(
            after.resolve("CT-SOUTH", "GATEWAY", peer),
            Ok("south".into())
        );
        assert_eq!(
            after.resolve("CT-NORTH", "GATEWAY", peer),
            Err(SiteRejection::UnknownCallingAe)
        );
        // A negotiation holding the old registry finishes on it.
        assert_eq!(
            before.resolve("CT-NORTH", "GATEWAY", peer),
            Ok("north".into())
        );
    }

    #[test]
    fn unknown_ae_goes_to_default_site_only_when_enabled() {
        let r = registry("[dimse]\naccept_unknown_ae = true\nunknown_ae_site = \"walk-in\"");
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(r.resolve("NOBODY", "GATEWAY", peer), Ok("walk-in".into()));
        // A known AE from the wrong address is still rejected.
        assert_eq!(
            r.resolve("CT-NORTH", "GATEWAY", peer),
            Err(SiteRejection::AddressNotAllowed)
        );
    }
}
