//! `dicom-gateway certs dev`: a local development CA and a server
//! certificate signed by it, so HTTPS works out of the box on a laptop or in
//! tests. Never for production: the CA key sits next to the certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Names every development server certificate carries.
pub const DEFAULT_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where `write_dev_certs` put things.
#[derive(Debug, Clone)]
pub struct DevCertFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Writes `ca.pem`, `ca.key`, and a server certificate and key to the given
/// paths (the certificate file holds the chain: server, then CA). Private
/// keys are created readable by the owner only.
pub fn write_dev_certs(
    server_cert: &Path,
    server_key: &Path,
    extra_names: &[String],
) -> Result<DevCertFiles, CertError> {
    let dir = server_cert.parent().unwrap_or(Path::new("."));
    let ca_cert_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name = name("dicom-gateway development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let mut names: Vec<String> = DEFAULT_NAMES.iter().map(|s| s.to_string()).collect();
    names.extend(extra_names.iter().cloned());
    names.dedup();
    let server_key_pair = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = name("dicom-gateway development server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let server = params.signed_by(&server_key_pair, &issuer)?;

    write(&ca_cert_path, ca_cert.pem().as_bytes(), false)?;
    write(&ca_key_path, ca_key.serialize_pem().as_bytes(), true)?;
    write(
        server_cert,
        format!("{}{}", server.pem(), ca_cert.pem()).as_bytes(),
        false,
    )?;
    write(server_key, server_key_pair.serialize_pem().as_bytes(), true)?;
    Ok(DevCertFiles {
        ca_cert: ca_cert_path,
        server_cert: server_cert.to_path_buf(),
        server_key: server_key.to_path_buf(),
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "dicom-gateway (development only)");
    dn
}

fn write(path: &Path, bytes: &[u8], private: bool) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_chain_and_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_dev_certs(
            &dir.path().join("server.pem"),
            &dir.path().join("server.key"),
            &["gw.example".into()],
        )
        .unwrap();
        let chain = std::fs::read_to_string(&files.server_cert).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files.server_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key must not be group/world readable");
        assert!(files.ca_cert.exists());
    }
}
