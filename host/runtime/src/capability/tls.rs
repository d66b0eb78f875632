//! `wasi:tls/types@0.2.0-draft`: the host does TLS for a plugin over a
//! stream it already has, typically a TCP connection to an address of its
//! `allow_sockets` (SMTP STARTTLS or implicit TLS, syslog over TLS). So TLS
//! needs no grant of its own: it reaches only what the socket grant
//! reached, and the plugin never holds a private key or a root store.
//!
//! The handshake is `wasmtime-wasi-tls`'s; the provider is ours: rustls
//! with ring (as the rest of the host), the public web roots (webpki-roots)
//! plus the instance's `tls_ca_file`, so a private or test CA is trusted for
//! that instance only. Linked for every plugin; a component need not import it.

use crate::HostState;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio_rustls::rustls;
use wasmtime::component::Linker;
use wasmtime_wasi_tls::{
    TlsProvider, TlsStream, TlsTransport, WasiTlsCtx, WasiTlsCtxBuilder, WasiTlsCtxView,
    WasiTlsView,
};

/// The interface's name, as the load-time import check lists it.
pub const INTERFACE: &str = "wasi:tls/types@0.2.0-draft";

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let mut opts = wasmtime_wasi_tls::p2::LinkOptions::default();
    opts.tls(true);
    wasmtime_wasi_tls::p2::add_to_linker(linker, &opts)
}

impl WasiTlsView for HostState {
    fn tls(&mut self) -> WasiTlsCtxView<'_> {
        WasiTlsCtxView {
            table: &mut self.table,
            ctx: &mut self.tls,
        }
    }
}

/// The TLS client configuration of one plugin instance.
#[derive(Clone)]
pub struct TlsRoots {
    config: Arc<rustls::ClientConfig>,
}

impl TlsRoots {
    /// The public web roots plus `extra` (DER certificates, the instance's
    /// `tls_ca_file`). An error says which certificate rustls refused.
    pub fn new(extra: &[Vec<u8>]) -> Result<TlsRoots, String> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        for (n, der) in extra.iter().enumerate() {
            roots
                .add(rustls::pki_types::CertificateDer::from(der.clone()))
                .map_err(|e| {
                    format!("tls_ca_file: certificate {} is not a usable CA: {e}", n + 1)
                })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsRoots {
            config: Arc::new(config),
        })
    }

    /// A fresh `wasi:tls` context for one store.
    pub(crate) fn ctx(&self) -> WasiTlsCtx {
        WasiTlsCtxBuilder::new()
            .provider(Box::new(self.clone()))
            .build()
    }
}

type Handshake =
    Pin<Box<dyn Future<Output = Result<Box<dyn TlsStream>, wasmtime_wasi_tls::Error>> + Send>>;

impl TlsProvider for TlsRoots {
    fn connect(&self, server_name: String, transport: Box<dyn TlsTransport>) -> Handshake {
        let config = self.config.clone();
        Box::pin(async move {
            let name =
                rustls::pki_types::ServerName::try_from(server_name.clone()).map_err(|_| {
                    wasmtime_wasi_tls::Error::msg(format!(
                        "invalid TLS server name {server_name:?}"
                    ))
                })?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, transport)
                .await
                .map_err(|e| {
                    wasmtime_wasi_tls::Error::msg(format!("TLS handshake with {server_name}: {e}"))
                })?;
            Ok(Box::new(stream) as Box<dyn TlsStream>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_certificate_is_refused() {
        assert!(TlsRoots::new(&[]).is_ok());
        let e = TlsRoots::new(&[b"not der".to_vec()])
            .err()
            .expect("refused");
        assert!(e.contains("certificate 1"), "{e}");
    }
}
