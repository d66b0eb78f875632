//! TLS to PostgreSQL: libpq's `sslmode` values, on the host's rustls (ring
//! provider, as everywhere else in Herald: no OpenSSL).
//!
//! tokio-postgres understands only `disable`, `prefer` and `require`, so
//! Herald takes `sslmode` off the URL itself and maps libpq's six values:
//!
//! | `sslmode` | encrypted | server certificate |
//! |---|---|---|
//! | `disable`, `allow` | no | - |
//! | `prefer` (libpq's default) | when the server offers TLS | not checked, unless `tls_ca_file` is set |
//! | `require` | always | not checked, unless `tls_ca_file` is set (as libpq with a root certificate) |
//! | `verify-ca` | always | chains to `tls_ca_file` or a public root |
//! | `verify-full` | always | as `verify-ca`, and names the host of the URL |
//!
//! An unchecked certificate still has its handshake signatures verified:
//! it only guards against a passive listener, as in libpq.

use super::PgError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode`, as Herald applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    /// Parses libpq's value; the error lists the accepted ones.
    pub fn parse(value: &str) -> Result<Mode, String> {
        Ok(match value {
            "disable" | "allow" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode `{other}`: expected disable, allow, prefer, require, verify-ca or verify-full"
                ))
            }
        })
    }
}

/// Takes `sslmode` out of a URL (`postgres://…?sslmode=x&…`) or a libpq
/// `key=value` string, so tokio-postgres never sees libpq-only values.
/// Returns the rest of the URL and the mode (libpq's default: `prefer`).
pub fn split_sslmode(url: &str) -> Result<(String, Mode), String> {
    let mut mode = None;
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|kv| match kv.split_once('=') {
                        Some(("sslmode", v)) => {
                            mode = Some(v.to_string());
                            false
                        }
                        _ => true,
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        match keyword_value(url, "sslmode") {
            None => url.to_string(),
            Some((range, value)) => {
                mode = Some(value);
                let mut rest = url.to_string();
                rest.replace_range(range, "");
                rest.trim().to_string()
            }
        }
    };
    let mode = match mode {
        Some(m) => Mode::parse(&m)?,
        None => Mode::Prefer,
    };
    Ok((rest, mode))
}

/// Where `key = value` is in a libpq `key=value` string (the byte range, its
/// value unquoted): values may be single-quoted with `\'` and `\\` escapes,
/// so a password with spaces is not split.
fn keyword_value(conn: &str, key: &str) -> Option<(std::ops::Range<usize>, String)> {
    let b = conn.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = &conn[start..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return None;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch = conn[i..].chars().next()?;
                value.push(ch);
                i += ch.len_utf8();
            }
            i += 1;
        } else {
            let v0 = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            value.push_str(&conn[v0..i]);
        }
        if name == key {
            return Some((start..i.min(b.len()), value));
        }
    }
    None
}

/// The connector for `mode`, trusting `ca` (DER certificates of the
/// storage's `tls_ca_file`) besides the public web roots, and the
/// tokio-postgres mode to set on the connection's config.
pub(crate) fn connector(mode: Mode, ca: &[Vec<u8>]) -> Result<(SslMode, MakeRustls), PgError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    for (n, der) in ca.iter().enumerate() {
        roots.add(CertificateDer::from(der.clone())).map_err(|e| {
            PgError::Other(format!(
                "tls_ca_file: certificate {} is not a usable CA: {e}",
                n + 1
            ))
        })?;
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| PgError::Other(format!("TLS roots: {e}")))?;
    let check = match mode {
        Mode::Disable => Check::Nothing,
        Mode::Prefer | Mode::Require if ca.is_empty() => Check::Nothing,
        Mode::Prefer | Mode::Require | Mode::VerifyCa => Check::Chain,
        Mode::VerifyFull => Check::ChainAndName,
    };
    let verifier = Arc::new(Verifier {
        webpki,
        provider: provider.clone(),
        check,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Other(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let ssl_mode = match mode {
        Mode::Disable => SslMode::Disable,
        Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    };
    Ok((
        ssl_mode,
        MakeRustls {
            config: Arc::new(config),
        },
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// rustls's web-PKI verifier, with what `sslmode` asks of it.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    check: Check,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.check == Check::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // verify-ca: a trusted chain is enough, whatever name it is for.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.check == Check::Chain => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Makes a TLS connector per connection, for the host named in the URL.
#[derive(Clone)]
pub(crate) struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(domain.to_string()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{domain}` is not a host name TLS can check"),
            )
        })?;
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

/// The TLS handshake of one connection.
pub(crate) struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

type Handshake<S> = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Handshake<S>;

    fn connect(self, stream: S) -> Handshake<S> {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// A connection to PostgreSQL over TLS.
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM then authenticates without channel binding (libpq's
        // `channel_binding=prefer` does the same when it has none).
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_taken_off_the_url() {
        let (u, m) =
            split_sslmode("postgres://h:5432/db?sslmode=verify-full&connect_timeout=3").unwrap();
        assert_eq!(
            (u.as_str(), m),
            ("postgres://h:5432/db?connect_timeout=3", Mode::VerifyFull)
        );
        let (u, m) = split_sslmode("postgres://h/db?sslmode=require").unwrap();
        assert_eq!((u.as_str(), m), ("postgres://h/db", Mode::Require));
        let (u, m) = split_sslmode("host=h dbname=db sslmode=verify-ca").unwrap();
        assert_eq!((u.as_str(), m), ("host=h dbname=db", Mode::VerifyCa));
        // Quoted values stay whole, spaces and all.
        let (u, m) =
            split_sslmode(r"host=h password='a b\'c' sslmode = 'require' dbname=db").unwrap();
        assert_eq!(
            (u.as_str(), m),
            (r"host=h password='a b\'c'  dbname=db", Mode::Require)
        );
        let (u, m) = split_sslmode("host=h password='x y'").unwrap();
        assert_eq!((u.as_str(), m), ("host=h password='x y'", Mode::Prefer));
        assert_eq!(split_sslmode("postgres://h/db").unwrap().1, Mode::Prefer);
        assert_eq!(
            split_sslmode("postgres://h/db?sslmode=allow").unwrap().1,
            Mode::Disable
        );
        let e = split_sslmode("postgres://h/db?sslmode=verify").unwrap_err();
        assert!(e.contains("sslmode `verify`: expected disable"), "{e}");
    }
}
