//! A development certificate authority kept in the data directory, and the server certificate
//! it signs for the simulators. Clients trust the CA file, as they would a corporate CA bundle.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

/// File name of the CA certificate (PEM) inside the data directory.
pub const CA_FILE: &str = "simulator-ca.pem";
const CA_KEY_FILE: &str = "simulator-ca.key";

/// A server certificate chain and key, PEM encoded.
pub struct ServerIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_file: PathBuf,
}

/// Errors creating or reading the development CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The CA files could not be read or written.
    #[error("CA file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Key or certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Loads the CA from `dir` (creating it on first use) and issues a fresh server certificate for
/// the loopback names. Reusing the CA keeps clients that already trust it working across runs.
pub fn server_identity(dir: &Path) -> Result<ServerIdentity, TlsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let ca_file = dir.join(CA_FILE);
    let key_file = dir.join(CA_KEY_FILE);
    let (ca_pem, ca_key) = if ca_file.exists() && key_file.exists() {
        let key_pem = std::fs::read_to_string(&key_file).map_err(io(&key_file))?;
        let ca_pem = std::fs::read_to_string(&ca_file).map_err(io(&ca_file))?;
        (ca_pem, KeyPair::from_pem(&key_pem)?)
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        write_private(&key_file, &key.serialize_pem()).map_err(io(&key_file))?;
        std::fs::write(&ca_file, cert.pem()).map_err(io(&ca_file))?;
        (cert.pem(), key)
    };
    let issuer_params = ca_params();
    let issuer = Issuer::from_params(&issuer_params, ca_key);
    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "changeflow simulator");
    let cert = params.signed_by(&server_key, &issuer)?;
    Ok(ServerIdentity {
        cert_pem: format!("{}{}", cert.pem(), ca_pem),
        key_pem: server_key.serialize_pem(),
        ca_file,
    })
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "changeflow development CA");
    name.push(DnType::OrganizationName, "changeflow");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("cf-tls-{}", uuid::Uuid::new_v4()));
        let first = server_identity(&dir).unwrap();
        let ca_before = std::fs::read_to_string(&first.ca_file).unwrap();
        let second = server_identity(&dir).unwrap();
        assert_eq!(ca_before, std::fs::read_to_string(&second.ca_file).unwrap());
        assert!(
            second.cert_pem.ends_with(&ca_before),
            "chain carries the CA"
        );
        assert_ne!(
            first.key_pem, second.key_pem,
            "each start gets a fresh server key"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
