//! A throw-away local certificate authority for `keel up --tls` and the TLS tests: a CA, one
//! certificate for the nodes (valid for `localhost`, `127.0.0.1` and `::1`, for both server
//! and client authentication, so a node can also call its own client port) and one client
//! certificate for SDKs and the CLI. Never meant for production: keys are written unencrypted.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Where the generated PEM files are.
#[derive(Debug, Clone)]
pub struct LocalCerts {
    pub ca: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl LocalCerts {
    /// The files' places in `dir` (as [`generate`] writes them).
    pub fn in_dir(dir: &Path) -> LocalCerts {
        LocalCerts {
            ca: dir.join("ca.pem"),
            node_cert: dir.join("node.pem"),
            node_key: dir.join("node-key.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
        }
    }
}

/// Writes a new CA and its node and client certificates (PEM) into `dir`; `name` goes into
/// the subjects (e.g. the cluster id).
pub fn generate(dir: &Path, name: &str) -> anyhow::Result<LocalCerts> {
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("{name} local CA (keel up --tls)"),
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let leaf = |cn: &str, sans: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(sans)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = usages;
        let cert = p.signed_by(&key, &issuer)?;
        anyhow::Ok((cert.pem(), key.serialize_pem()))
    };
    let (node_pem, node_key) = leaf(
        &format!("{name} node"),
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )?;
    let (client_pem, client_key) = leaf(
        &format!("{name} client"),
        vec!["keel-client".into()],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    )?;
    let out = LocalCerts::in_dir(dir);
    std::fs::write(&out.ca, ca_cert.pem())?;
    std::fs::write(&out.node_cert, node_pem)?;
    write_private(&out.node_key, &node_key)?;
    std::fs::write(&out.client_cert, client_pem)?;
    write_private(&out.client_key, &client_key)?;
    Ok(out)
}

fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(pem.as_bytes())
}
