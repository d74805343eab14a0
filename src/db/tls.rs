//! TLS to PostgreSQL with rustls, following libpq's `sslmode`:
//! `disable`, `prefer` (the default: TLS when the server offers it),
//! `require` (encrypted, server not verified unless `sslrootcert` is given),
//! `verify-ca` (chain checked) and `verify-full` (chain and host name).
//! tokio-postgres knows only the first three, so `sslmode` and
//! `sslrootcert` are taken out of the URL here and turned into a rustls
//! configuration.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Where `verify-ca`/`verify-full` find trusted roots without `sslrootcert`.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// libpq's TLS modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Never TLS.
    Disable,
    /// TLS when offered, unverified.
    Prefer,
    /// TLS or fail, unverified (verified like `verify-ca` with `sslrootcert`).
    Require,
    /// TLS, certificate chain verified.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

/// A parsed connection string: the driver's config and its TLS connector.
#[derive(Clone)]
pub struct DbConfig {
    /// Everything but TLS.
    pub pg: tokio_postgres::Config,
    /// The connector every connection uses.
    pub tls: MakeRustlsConnect,
    /// The mode asked for.
    pub mode: TlsMode,
}

/// Parses a URL or key=value connection string, with libpq's `sslmode`.
pub fn parse(url: &str) -> Result<DbConfig, String> {
    let (rest, sslmode, rootcert) = take_tls_params(url);
    let mut pg: tokio_postgres::Config = rest
        .parse()
        .map_err(|_| "DATABASE_URL is not a valid PostgreSQL connection string".to_owned())?;
    let mut mode = match sslmode.as_deref() {
        None | Some("prefer") | Some("allow") => TlsMode::Prefer,
        Some("disable") => TlsMode::Disable,
        Some("require") => TlsMode::Require,
        Some("verify-ca") => TlsMode::VerifyCa,
        Some("verify-full") => TlsMode::VerifyFull,
        Some(other) => return Err(format!("DATABASE_URL: unknown sslmode {other:?}")),
    };
    if mode == TlsMode::Require && rootcert.is_some() {
        // As libpq: a root certificate turns `require` into `verify-ca`.
        mode = TlsMode::VerifyCa;
    }
    pg.ssl_mode(match mode {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    let tls = MakeRustlsConnect::new(client_config(mode, rootcert.as_deref())?);
    Ok(DbConfig { pg, tls, mode })
}

/// Splits `sslmode` and `sslrootcert` off a URL's query or a key=value string.
fn take_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let (mut sslmode, mut rootcert) = (None, None);
    let mut keep = |key: &str, value: &str| match key {
        "sslmode" => {
            sslmode = Some(value.to_owned());
            false
        }
        "sslrootcert" => {
            rootcert = Some(value.to_owned());
            false
        }
        _ => true,
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
                        keep(k, &v)
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        url.split_whitespace()
            .filter(|token| {
                let (k, v) = token.split_once('=').unwrap_or((token, ""));
                keep(k.trim(), v.trim().trim_matches('\''))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rest, sslmode, rootcert)
}

fn client_config(mode: TlsMode, rootcert: Option<&str>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => {
            Arc::new(Unverified(provider.clone()))
        }
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let roots = roots(rootcert)?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("DATABASE_URL: TLS roots: {e}"))?;
            if mode == TlsMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn roots(rootcert: Option<&str>) -> Result<RootCertStore, String> {
    let path = rootcert.unwrap_or(SYSTEM_ROOTS);
    let mut store = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("DATABASE_URL: sslrootcert {path}: {e}"))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("DATABASE_URL: sslrootcert {path}: {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("DATABASE_URL: sslrootcert {path}: {e}"))?;
    }
    if store.is_empty() {
        return Err(format!(
            "DATABASE_URL: sslrootcert {path} holds no certificate"
        ));
    }
    Ok(store)
}

/// `require`/`prefer`: encrypted, but any certificate is taken (libpq's
/// semantics; the handshake signatures are still checked).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name may differ.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_urls_and_key_values() {
        let (rest, mode, root) = take_tls_params("postgres://u:p@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem");
        assert_eq!(rest, "postgres://u:p@h:5/db?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/tmp/ca.pem"));
        let (rest, mode, _) = take_tls_params("host=h dbname=db sslmode=require");
        assert_eq!(
            (rest.as_str(), mode.as_deref()),
            ("host=h dbname=db", Some("require"))
        );
    }

    #[test]
    fn modes_map_onto_the_driver() {
        assert_eq!(
            parse("postgres://u@h/db").expect("ok").mode,
            TlsMode::Prefer
        );
        let require = parse("postgres://u@h/db?sslmode=require").expect("ok");
        assert_eq!(
            (require.mode, require.pg.get_ssl_mode()),
            (TlsMode::Require, SslMode::Require)
        );
        assert_eq!(
            parse("postgres://u@h/db?sslmode=disable")
                .expect("ok")
                .pg
                .get_ssl_mode(),
            SslMode::Disable
        );
        assert!(parse("postgres://u@h/db?sslmode=sometimes").is_err());
        let missing = parse("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem");
        assert!(missing.is_err_and(|e| e.contains("sslrootcert")));
    }
}
