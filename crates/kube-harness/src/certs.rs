//! The control plane's key material, generated per control plane: a CA,
//! the API server's serving certificate (for `127.0.0.1` and `localhost`)
//! signed by it, and the key the API server signs service account tokens
//! with. Clients trust the CA through the kubeconfig, as on a cluster.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// Where the files are, and the CA clients are to trust.
pub struct Certs {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The serving certificate.
    pub serving_cert: PathBuf,
    /// Its key.
    pub serving_key: PathBuf,
    /// The key service account tokens are signed with.
    pub service_account_key: PathBuf,
    /// Its public half, which verifies them.
    pub service_account_public: PathBuf,
}

/// Writes fresh key material into `dir`.
pub fn generate(dir: &Path) -> Certs {
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "weir test control plane CA");
    let ca_pem = ca.self_signed(&ca_key).expect("the CA certificate").pem();
    let issuer = Issuer::new(ca, ca_key);

    let serving_key = KeyPair::generate().expect("a serving key");
    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes.default.svc".to_string(),
    ])
    .expect("serving parameters");
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let serving_pem = serving
        .signed_by(&serving_key, &issuer)
        .expect("the serving certificate")
        .pem();
    let service_account = KeyPair::generate().expect("a service account key");

    let certs = Certs {
        ca_pem,
        serving_cert: dir.join("serving.crt"),
        serving_key: dir.join("serving.key"),
        service_account_key: dir.join("service-account.key"),
        service_account_public: dir.join("service-account.pub"),
    };
    write_private(&certs.serving_cert, &serving_pem);
    write_private(&certs.serving_key, &serving_key.serialize_pem());
    write_private(&certs.service_account_key, &service_account.serialize_pem());
    write_private(
        &certs.service_account_public,
        &service_account.public_key_pem(),
    );
    certs
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
