//! The files a valid configuration names, checked to exist and parse:
//! TLS certificates and keys, CA files, the model repository, the routes
//! file and the ONNX Runtime library. `check-config`, `serve` and an admin
//! reload all run these checks (through [`super::load_checked`]), so a file
//! that is missing or broken is reported with every other problem, before
//! anything starts or changes, rather than by the listener or engine that
//! first opens it.
//!
//! Only what the configuration will use is checked: the DICOMweb files
//! when DICOMweb runs with TLS, the admin files when the admin API does,
//! the pipeline's files when the pipeline is enabled. A certificate and key
//! that are both missing are fine where `dev_certs` says they are created
//! at start-up (see `dicomweb::tls::server_config`).

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{GatewayConfig, TlsFiles};
use crate::infer::EngineConfig;

/// Every problem with the files `config` names, one sentence each, naming
/// the configuration key and the path.
pub fn check_files(config: &GatewayConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if config.dicomweb.enabled
        && let Some(tls) = &config.dicomweb.tls
    {
        check_tls("dicomweb", tls, &mut problems);
    }
    if config.admin.enabled
        && let Some(tls) = &config.admin.tls
    {
        let shared = config.dicomweb.enabled
            && config.dicomweb.tls.as_ref().is_some_and(|d| {
                d.cert == tls.cert && d.key == tls.key && d.create_dev_certs == tls.create_dev_certs
            });
        // The DICOMweb files again (the default): reported once.
        if !shared {
            check_tls("admin", tls, &mut problems);
        }
    }
    if config.pipeline.enabled {
        check_pipeline(config, &mut problems);
    }
    problems
}

fn check_pipeline(config: &GatewayConfig, problems: &mut Vec<String>) {
    let pipeline = &config.pipeline;
    let models = &pipeline.models_dir;
    match std::fs::metadata(models) {
        // Empty is already a problem of its own (validate).
        _ if models.as_os_str().is_empty() => {}
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => problems.push(format!(
            "pipeline.models_dir: {} is not a directory",
            models.display()
        )),
        Err(e) => problems.push(format!(
            "pipeline.models_dir: {}: {}",
            models.display(),
            describe(&e)
        )),
    }
    if let Some(routes) = &pipeline.routes_file {
        match std::fs::read_to_string(routes) {
            Ok(text) => {
                if let Err(e) = crate::route::RouteTable::from_toml(&text) {
                    for problem in e.problems() {
                        problems.push(format!(
                            "pipeline.routes_file: {}: {problem}",
                            routes.display()
                        ));
                    }
                }
            }
            Err(e) => problems.push(format!(
                "pipeline.routes_file: {}: {}",
                routes.display(),
                describe(&e)
            )),
        }
    }
    if let Some(ca) = pipeline.triton.as_ref().and_then(|t| t.tls_ca.as_ref()) {
        check_ca("pipeline.triton.tls_ca", ca, problems);
    }
    match &pipeline.engine {
        EngineConfig::Triton(triton) => {
            if let Some(ca) = &triton.tls_ca {
                check_ca("pipeline.engine.tls_ca", ca, problems);
            }
        }
        EngineConfig::Onnxruntime(ort) => {
            if let Some(library) = &ort.library_path {
                check_regular_file("pipeline.engine.library_path", library, problems);
            }
        }
        EngineConfig::Onnx(_) => {}
    }
    if let Some(ca) = config.cache.redis().and_then(|r| r.ca_file.as_ref()) {
        check_ca("cache.redis.ca_file", ca, problems);
    }
}

/// A certificate chain and its private key: both parse, and they belong
/// together (as the listener will require).
fn check_tls(section: &str, tls: &TlsFiles, problems: &mut Vec<String>) {
    if tls.create_dev_certs && !tls.cert.exists() && !tls.key.exists() {
        return;
    }
    let cert_key = format!("{section}.cert");
    let key_key = format!("{section}.key");
    let chain = read_certificates(&cert_key, &tls.cert, problems);
    let key = if check_regular_file(&key_key, &tls.key, problems) {
        PrivateKeyDer::from_pem_file(&tls.key)
            .map_err(|e| {
                problems.push(format!(
                    "{key_key}: {}: no PEM private key ({e})",
                    tls.key.display()
                ))
            })
            .ok()
    } else {
        None
    };
    if tls.create_dev_certs && (chain.is_none() || key.is_none()) {
        problems.push(format!(
            "{section}.dev_certs: development certificates are created only when both the certificate and the key are missing"
        ));
    }
    if let (Some(chain), Some(key)) = (chain, key) {
        let provider = rustls::crypto::ring::default_provider();
        if let Err(e) = rustls::sign::CertifiedKey::from_der(chain, key, &provider) {
            problems.push(format!(
                "{cert_key}, {key_key}: {} and {} do not make a usable certificate and key ({e})",
                tls.cert.display(),
                tls.key.display()
            ));
        }
    }
}

/// A CA file for a client connection: at least one PEM certificate.
fn check_ca(key: &str, path: &Path, problems: &mut Vec<String>) {
    let _ = read_certificates(key, path, problems);
}

/// The PEM certificates in `path`, or `None` with the problem recorded.
fn read_certificates(
    key: &str,
    path: &Path,
    problems: &mut Vec<String>,
) -> Option<Vec<CertificateDer<'static>>> {
    if !check_regular_file(key, path, problems) {
        return None;
    }
    let parsed: Result<Vec<CertificateDer<'static>>, _> = match CertificateDer::pem_file_iter(path)
    {
        Ok(iter) => iter.collect(),
        Err(e) => Err(e),
    };
    match parsed {
        Ok(chain) if chain.is_empty() => {
            problems.push(format!(
                "{key}: {}: no PEM certificate in it",
                path.display()
            ));
            None
        }
        Ok(chain) => Some(chain),
        Err(e) => {
            problems.push(format!(
                "{key}: {}: not a PEM certificate file ({e})",
                path.display()
            ));
            None
        }
    }
}

/// Whether `path` is a readable regular file; records why not.
fn check_regular_file(key: &str, path: &Path, problems: &mut Vec<String>) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => true,
        Ok(_) => {
            problems.push(format!("{key}: {} is not a file", path.display()));
            false
        }
        Err(e) => {
            problems.push(format!("{key}: {}: {}", path.display(), describe(&e)));
            false
        }
    }
}

/// "does not exist" rather than the OS's "No such file or directory (os
/// error 2)", which reads oddly in a list of configuration problems.
fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".into(),
        std::io::ErrorKind::PermissionDenied => "cannot be read (permission denied)".into(),
        _ => format!("cannot be read ({e})"),
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
