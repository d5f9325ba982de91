//! Raw → typed, collecting every problem instead of stopping at the first.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::raw::RawConfig;
use super::{
    CliOverrides, DicomwebConfig, DimseConfig, DuplicatePolicy, GatewayConfig, LoggingConfig,
    MetricsConfig, SiteConfig, StoreConfig, TlsFiles,
};

/// Smallest and largest max PDU we allow an operator to configure (bytes).
/// PS3.8 allows up to 2^32-1; we cap well below so a PDU always fits memory.
const MAX_PDU_RANGE: std::ops::RangeInclusive<u32> = 4096..=4 * 1024 * 1024;
/// Sequence nesting a peer may use: at least one level, and no deeper than
/// fo-dicom's 256 (dicom-rs parses that on a 2 MiB blocking-thread stack).
const MAX_NESTING_DEPTH_RANGE: std::ops::RangeInclusive<usize> =
    1..=crate::store::validate::MAX_CONFIGURABLE_DEPTH;
/// Connections allowed to negotiate at once. Each may buffer one
/// A-ASSOCIATE-RQ of up to `max_pdu_length` bytes, so the top of the range
/// bounds that memory (1024 × 4 MiB at the very worst).
const MAX_NEGOTIATING_RANGE: std::ops::RangeInclusive<usize> = 1..=1024;

pub(super) struct Problems(pub(super) Vec<String>);

impl Problems {
    pub(super) fn push(&mut self, problem: String) {
        self.0.push(problem);
    }

    fn addr(&mut self, key: &str, value: &str) -> SocketAddr {
        value.parse().unwrap_or_else(|e| {
            self.push(format!("{key}: `{value}` is not an address:port ({e})"));
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }

    pub(super) fn duration(&mut self, key: &str, value: &str) -> Duration {
        match humantime::parse_duration(value) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.push(format!("{key}: must be greater than zero"));
                Duration::from_secs(1)
            }
            Err(e) => {
                self.push(format!(
                    "{key}: `{value}` is not a duration like \"10s\" ({e})"
                ));
                Duration::from_secs(1)
            }
        }
    }

    fn size(&mut self, key: &str, value: &str) -> u64 {
        value
            .parse::<bytesize::ByteSize>()
            .map(|s| s.as_u64())
            .unwrap_or_else(|e| {
                self.push(format!(
                    "{key}: `{value}` is not a size like \"512MiB\" ({e})"
                ));
                0
            })
    }

    fn ae_title(&mut self, key: &str, value: &str) {
        if let Err(why) = check_ae_title(value) {
            self.push(format!("{key}: AE title `{value}` {why}"));
        }
    }
}

/// PS3.5 AE VR: 1–16 characters of the default repertoire, no backslash or
/// control characters, not only spaces.
pub fn check_ae_title(value: &str) -> Result<(), &'static str> {
    if value.trim().is_empty() {
        return Err("is empty");
    }
    if value.len() > 16 {
        return Err("is longer than 16 characters");
    }
    if !value
        .chars()
        .all(|c| c.is_ascii() && !c.is_ascii_control() && c != '\\')
    {
        return Err("has characters outside the DICOM default repertoire");
    }
    Ok(())
}

/// Names that become metric label values or path segments (sites,
/// destinations): keep them tame.
pub fn check_label_name(value: &str) -> Result<(), &'static str> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err("must be 1-64 characters of a-z, 0-9, '-' or '_'")
    }
}

/// The typed configuration and every problem found. With problems, the
/// configuration holds placeholders where values were bad: use it only to
/// look for more problems (the files it names), never to run.
pub(super) fn validate(raw: RawConfig, cli: &CliOverrides) -> (GatewayConfig, Vec<String>) {
    let mut p = Problems(Vec::new());
    let mut effective = raw.clone();

    p.ae_title("gateway.ae_title", &raw.gateway.ae_title);
    let data_dir = match &cli.data_dir {
        Some(dir) => dir.clone(),
        None if raw.gateway.data_dir.trim().is_empty() => {
            p.push("gateway.data_dir: must not be empty".into());
            PathBuf::new()
        }
        None => PathBuf::from(&raw.gateway.data_dir),
    };
    effective.gateway.data_dir = data_dir.display().to_string();

    let shutdown_grace = p.duration("gateway.shutdown_grace", &raw.gateway.shutdown_grace);
    let d = &raw.dimse;
    let dimse_listen = match cli.dimse_addr {
        Some(addr) => addr,
        None => p.addr("dimse.listen", &d.listen),
    };
    effective.dimse.listen = dimse_listen.to_string();
    if !MAX_PDU_RANGE.contains(&d.max_pdu_length) {
        p.push(format!(
            "dimse.max_pdu_length: {} is outside {}..={}",
            d.max_pdu_length,
            MAX_PDU_RANGE.start(),
            MAX_PDU_RANGE.end()
        ));
    }
    if d.max_associations == 0 {
        p.push("dimse.max_associations: must be at least 1".into());
    }
    if !MAX_NEGOTIATING_RANGE.contains(&d.max_negotiating) {
        p.push(format!(
            "dimse.max_negotiating: {} is outside {}..={}",
            d.max_negotiating,
            MAX_NEGOTIATING_RANGE.start(),
            MAX_NEGOTIATING_RANGE.end()
        ));
    }
    if d.max_negotiating_per_peer == 0 || d.max_negotiating_per_peer > d.max_negotiating {
        p.push(format!(
            "dimse.max_negotiating_per_peer: {} is outside 1..=dimse.max_negotiating ({})",
            d.max_negotiating_per_peer, d.max_negotiating
        ));
    }
    let max_instance_size = p.size("dimse.max_instance_size", &d.max_instance_size);
    if max_instance_size == 0 && d.max_instance_size.parse::<bytesize::ByteSize>().is_ok() {
        p.push("dimse.max_instance_size: must be greater than zero".into());
    }
    let unknown_ae_site = if d.accept_unknown_ae {
        if let Err(why) = check_label_name(&d.unknown_ae_site) {
            p.push(format!(
                "dimse.unknown_ae_site: `{}` {why}",
                d.unknown_ae_site
            ));
        }
        Some(d.unknown_ae_site.clone())
    } else {
        None
    };
    let dimse = DimseConfig {
        listen: dimse_listen,
        max_pdu_length: d.max_pdu_length,
        max_associations: d.max_associations.max(1),
        max_negotiating: d
            .max_negotiating
            .clamp(*MAX_NEGOTIATING_RANGE.start(), *MAX_NEGOTIATING_RANGE.end()),
        max_negotiating_per_peer: d.max_negotiating_per_peer.max(1),
        establish_timeout: p.duration("dimse.establish_timeout", &d.establish_timeout),
        message_timeout: p.duration("dimse.message_timeout", &d.message_timeout),
        idle_timeout: p.duration("dimse.idle_timeout", &d.idle_timeout),
        max_instance_size,
        unknown_ae_site,
    };

    let dicomweb = validate_dicomweb(&raw, cli, &mut p, &mut effective);

    let duplicate_policy = match raw.store.duplicate_policy.as_str() {
        "reject" => DuplicatePolicy::Reject,
        "replace" => DuplicatePolicy::Replace,
        other => {
            p.push(format!(
                "store.duplicate_policy: `{other}` is not one of \"reject\", \"replace\""
            ));
            DuplicatePolicy::Reject
        }
    };
    if !MAX_NESTING_DEPTH_RANGE.contains(&raw.store.max_nesting_depth) {
        p.push(format!(
            "store.max_nesting_depth: {} is outside {}..={}",
            raw.store.max_nesting_depth,
            MAX_NESTING_DEPTH_RANGE.start(),
            MAX_NESTING_DEPTH_RANGE.end()
        ));
    }
    let store = StoreConfig {
        min_free_space: p.size("store.min_free_space", &raw.store.min_free_space),
        duplicate_policy,
        max_nesting_depth: raw.store.max_nesting_depth,
    };

    let metrics_listen = match cli.metrics_addr {
        Some(addr) => addr,
        None => p.addr("metrics.listen", &raw.metrics.listen),
    };
    effective.metrics.listen = metrics_listen.to_string();

    let json = match raw.logging.format.as_str() {
        "text" => false,
        "json" => true,
        other => {
            p.push(format!(
                "logging.format: `{other}` is not one of \"text\", \"json\""
            ));
            false
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&raw.logging.level).is_err() {
        p.push(format!(
            "logging.level: `{}` is not a valid filter",
            raw.logging.level
        ));
    }

    let sites = validate_sites(&raw, &mut p);
    let admin = super::admin::validate_admin(&raw, cli, &mut p, &mut effective);
    let audit = super::admin::validate_audit(&raw.audit, &mut p);
    let pipeline = super::pipeline::validate_pipeline(&raw.pipeline, &mut p);
    let drift = super::drift::validate_drift(&raw.drift, &mut p);
    let (destinations, retry) = match crate::egress::validate(&raw.destinations, &raw.egress.retry)
    {
        Ok(valid) => valid,
        Err(problems) => {
            p.0.extend(problems);
            (
                Vec::new(),
                crate::egress::RetryPolicy {
                    initial_backoff: Duration::from_secs(2),
                    max_backoff: Duration::from_secs(300),
                    max_attempts: 10,
                },
            )
        }
    };

    let cache = crate::cache::validate(&raw.cache).unwrap_or_else(|problems| {
        p.0.extend(problems);
        crate::cache::CacheConfig::memory(1, Duration::from_secs(1))
    });
    // `check-config` prints the effective configuration: never a secret.
    if !effective.cache.redis.password.is_empty() {
        effective.cache.redis.password = crate::cache::REDACTED.into();
    }

    let config = GatewayConfig {
        ae_title: raw.gateway.ae_title.clone(),
        data_dir,
        shutdown_grace,
        dimse,
        dicomweb,
        store,
        metrics: MetricsConfig {
            listen: metrics_listen,
        },
        logging: LoggingConfig {
            json,
            level: raw.logging.level.clone(),
        },
        sites,
        pipeline,
        destinations,
        egress_retry: retry,
        drift,
        admin,
        audit,
        cache,
        effective,
        source: None,
        cli: cli.clone(),
    };
    (config, p.0)
}

fn validate_sites(raw: &RawConfig, p: &mut Problems) -> Vec<SiteConfig> {
    let mut names = HashSet::new();
    let mut titles = HashSet::new();
    let mut sites = Vec::new();
    for (i, site) in raw.sites.iter().enumerate() {
        let key = format!("sites[{i}]");
        if let Err(why) = check_label_name(&site.name) {
            p.push(format!("{key}.name: `{}` {why}", site.name));
        }
        if !names.insert(site.name.clone()) {
            p.push(format!("{key}.name: site `{}` is defined twice", site.name));
        }
        if site.ae_titles.is_empty() {
            p.push(format!(
                "{key}.ae_titles: site `{}` lists no AE title",
                site.name
            ));
        }
        for title in &site.ae_titles {
            p.ae_title(&format!("{key}.ae_titles"), title);
            if !titles.insert(title.trim().to_string()) {
                p.push(format!(
                    "{key}.ae_titles: `{title}` belongs to more than one site"
                ));
            }
        }
        let mut allowed_peers = Vec::new();
        for peer in &site.allowed_peers {
            match parse_peer(peer) {
                Some(net) => allowed_peers.push(net),
                None => p.push(format!(
                    "{key}.allowed_peers: `{peer}` is not an IP address or CIDR"
                )),
            }
        }
        sites.push(SiteConfig {
            name: site.name.clone(),
            ae_titles: site
                .ae_titles
                .iter()
                .map(|t| t.trim().to_string())
                .collect(),
            allowed_peers,
        });
    }
    if let Some(unknown) = raw
        .dimse
        .accept_unknown_ae
        .then_some(&raw.dimse.unknown_ae_site)
        && names.contains(unknown)
    {
        p.push(format!(
            "dimse.unknown_ae_site: `{unknown}` is also a configured site; pick a separate name"
        ));
    }
    sites
}

/// An address alone means exactly that host.
fn parse_peer(value: &str) -> Option<IpNet> {
    value
        .parse::<IpNet>()
        .ok()
        .or_else(|| value.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn validate_dicomweb(
    raw: &RawConfig,
    cli: &CliOverrides,
    p: &mut Problems,
    effective: &mut RawConfig,
) -> DicomwebConfig {
    use crate::auth::{Principal, ReadSites, parse_scopes};
    let w = &raw.dicomweb;
    let listen = match cli.http_addr {
        Some(addr) => addr,
        None => p.addr("dicomweb.listen", &w.listen),
    };
    effective.dicomweb.listen = listen.to_string();
    let tls = w.tls.then(|| TlsFiles {
        cert: PathBuf::from(&w.cert),
        key: PathBuf::from(&w.key),
        create_dev_certs: w.dev_certs,
    });
    if w.max_parts == 0 {
        p.push("dicomweb.max_parts: must be at least 1".into());
    }
    if w.qido_default_limit == 0 || w.qido_default_limit > w.qido_max_limit {
        p.push("dicomweb.qido_default_limit: must be between 1 and dicomweb.qido_max_limit".into());
    }
    let site_names: HashSet<&str> = raw.sites.iter().map(|s| s.name.as_str()).collect();
    let mut tokens = Vec::new();
    let mut token_hashes = Vec::new();
    for (i, token) in w.tokens.iter().enumerate() {
        let key = format!("dicomweb.tokens[{i}]");
        if !site_names.contains(token.site.as_str()) {
            p.push(format!(
                "{key}.site: `{}` is not a configured site",
                token.site
            ));
        }
        let scopes = match parse_scopes(&token.scopes.join(",")) {
            Ok(scopes) => scopes,
            Err(e) => {
                p.push(format!("{key}.scopes: {e}"));
                Default::default()
            }
        };
        let hash = token.sha256.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            p.push(format!(
                "{key}.sha256: must be the 64 hex digits of the token's SHA-256"
            ));
        }
        tokens.push(Principal {
            token_id: if token.id.is_empty() {
                format!("config-{i}")
            } else {
                token.id.clone()
            },
            site: token.site.clone(),
            scopes,
            read_sites: ReadSites::parse(&token.site, &token.read_sites.join(",")),
        });
        token_hashes.push(hash);
    }
    DicomwebConfig {
        enabled: w.enabled,
        listen,
        tls,
        max_body_size: p.size("dicomweb.max_body_size", &w.max_body_size),
        max_parts: w.max_parts.max(1),
        body_timeout: p.duration("dicomweb.body_timeout", &w.body_timeout),
        qido_default_limit: w.qido_default_limit.max(1),
        qido_max_limit: w.qido_max_limit.max(1),
        tokens,
        token_hashes,
    }
}
