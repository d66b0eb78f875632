//! The outbound HTTP capability: `wasi:http` requests pass only to the URL
//! prefixes an instance's `allow_http` lists.
//!
//! Prefixes are compared after normalising: scheme and host lowercased, the
//! default port (80, 443) filled in, and the path matched on `/` boundaries.
//! Names are not resolved: `localhost` and `127.0.0.1` are different
//! destinations, so list the one the plugin's config uses.
//!
//! Allowed requests go out through the runtime's keep-alive pool
//! ([`super::pool`]), with the guest's timeouts or the host's defaults.

use super::pool::OutboundPool;
use super::CallCounters;
use http::Uri;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// One allowed `scheme://host[:port][/path]` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPrefix {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

impl UrlPrefix {
    /// Parses and normalises a prefix; the error explains the expected form.
    pub fn parse(s: &str) -> Result<UrlPrefix, String> {
        let uri: Uri = s.parse().map_err(|e| {
            format!("{s:?} is not a URL ({e}); expected scheme://host[:port][/path]")
        })?;
        let scheme = uri
            .scheme_str()
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| format!("{s:?} has no scheme; expected http:// or https://"))?;
        if scheme != "http" && scheme != "https" {
            return Err(format!("{s:?}: only http and https URLs can be allowed"));
        }
        let host = uri
            .host()
            .map(|h| h.to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{s:?} has no host"))?;
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let path = uri.path().trim_end_matches('/').to_string();
        Ok(UrlPrefix {
            scheme,
            host,
            port,
            path,
        })
    }

    /// Whether `uri` falls under this prefix.
    pub fn allows(&self, uri: &Uri) -> bool {
        let Some(scheme) = uri.scheme_str().map(str::to_ascii_lowercase) else {
            return false;
        };
        let Some(host) = uri.host().map(str::to_ascii_lowercase) else {
            return false;
        };
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        if scheme != self.scheme || host != self.host || port != self.port {
            return false;
        }
        let path = uri.path();
        self.path.is_empty()
            || path == self.path
            || (path.starts_with(&self.path) && path[self.path.len()..].starts_with('/'))
    }
}

/// The `wasi:http` hooks of one plugin instance.
pub struct HttpGate {
    pub(super) allow: Arc<Vec<UrlPrefix>>,
    pub(super) counters: Arc<CallCounters>,
    /// The runtime's keep-alive connections.
    pub(super) pool: OutboundPool,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

type SendFuture = Box<
    dyn std::future::Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let destination = redact_query(request.uri());
        if !self.allow.iter().any(|p| p.allows(request.uri())) {
            self.counters.soft_fault("denied_http", || {
                format!("outbound HTTP request to {destination} refused: not in the instance's allow_http")
            });
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        if !self.counters.take_http_request(&destination) {
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        // Guests may pass no options: never inherit the 600 s defaults.
        let options = options.unwrap_or_default();
        let connect = options.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
        let first_byte = options.first_byte_timeout.unwrap_or(FIRST_BYTE_TIMEOUT);
        let between_bytes = options
            .between_bytes_timeout
            .unwrap_or(BETWEEN_BYTES_TIMEOUT);
        let pool = self.pool.clone();
        Box::new(async move {
            let response = pool
                .send(request, connect, first_byte, between_bytes)
                .await?;
            // The pool drives its connections in tasks of its own.
            Ok((
                response,
                Box::new(async { Ok(()) })
                    as Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

/// The URI without its query string, which may carry credentials.
fn redact_query(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map(|a| a.as_str()).unwrap_or("?"),
        uri.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(prefix: &str, url: &str) -> bool {
        UrlPrefix::parse(prefix)
            .unwrap()
            .allows(&url.parse().unwrap())
    }

    #[test]
    fn normalises_case_ports_and_paths() {
        assert!(allows(
            "http://127.0.0.1:9000",
            "http://127.0.0.1:9000/anything"
        ));
        assert!(allows("HTTP://Example.COM", "http://example.com:80/x"));
        assert!(allows(
            "https://hooks.example.com/services/",
            "https://hooks.example.com:443/services/T1"
        ));
        assert!(allows(
            "https://hooks.example.com/services",
            "https://hooks.example.com/services"
        ));
        assert!(!allows(
            "https://hooks.example.com/services",
            "https://hooks.example.com/servicesevil"
        ));
        assert!(!allows(
            "https://hooks.example.com/services",
            "http://hooks.example.com/services/x"
        ));
        assert!(!allows("http://127.0.0.1:9000", "http://127.0.0.1:9001/"));
        assert!(!allows("http://127.0.0.1:9000", "http://localhost:9000/"));
        assert!(!allows("http://localhost:9000", "http://127.0.0.1:9000/"));
    }

    #[test]
    fn refuses_bad_prefixes() {
        assert!(UrlPrefix::parse("ftp://x").is_err());
        assert!(UrlPrefix::parse("127.0.0.1:80").is_err());
        assert!(UrlPrefix::parse("not a url").is_err());
    }
}
