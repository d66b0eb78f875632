//! The `allow_http` allow-list: one prefix type, its parser and the one test
//! of whether a URL is admitted.
//!
//! Prefixes are compared after normalising: scheme and host lowercased, the
//! default port (80, 443) filled in, and the path matched on `/` boundaries.
//! Names are not resolved: `localhost` and `127.0.0.1` are different
//! destinations, so list the one the plugin's config uses.
//!
//! It is configuration data (what `allow_http` may say and what it admits),
//! so it lives here; the runtime's HTTP gate and `herald:grants` use it.

use http::Uri;

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

impl std::fmt::Display for UrlPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}:{}{}",
            self.scheme, self.host, self.port, self.path
        )
    }
}

/// Whether `allow` admits a request to `uri`: the one test of outbound HTTP,
/// used by the gate and by `herald:grants/check.allows-http`.
pub fn admits(allow: &[UrlPrefix], uri: &Uri) -> bool {
    allow.iter().any(|p| p.allows(uri))
}

/// [`admits`] for a URL a plugin's config gives, with the reason when not:
/// the URL's origin (never its path or query, which can hold secrets, such as
/// a Slack webhook's) and the allowed prefixes.
pub fn explain(allow: &[UrlPrefix], url: &str) -> Result<(), String> {
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|_| "the value is not a URL (expected http:// or https://)".to_string())?;
    if admits(allow, &uri) {
        return Ok(());
    }
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let origin = format!("{scheme}://{host}:{port}");
    if allow.is_empty() {
        return Err(format!(
            "{origin} is not in allow_http (it is empty); add the destination to the instance's allow_http"
        ));
    }
    let listed: Vec<String> = allow.iter().map(|p| p.to_string()).collect();
    let listed = listed.join(", ");
    let same_origin = allow
        .iter()
        .any(|p| p.scheme == scheme && p.host == host && p.port == port);
    let why = if same_origin {
        "the URL's path is not under an allowed prefix's path"
    } else {
        "host names are not resolved: list the host exactly as the URL writes it (`localhost` and `127.0.0.1` differ)"
    };
    Err(format!(
        "{origin} is not in allow_http (it lists {listed}); {why}"
    ))
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
    fn explain_names_the_origin_and_the_allowed_prefixes_only() {
        let allow = vec![UrlPrefix::parse("http://127.0.0.1:9101").unwrap()];
        assert_eq!(explain(&allow, "http://127.0.0.1:9101/x"), Ok(()));
        let e = explain(&allow, "http://localhost:9101/secret-path?k=v").unwrap_err();
        assert!(
            e.starts_with(
                "http://localhost:9101 is not in allow_http (it lists http://127.0.0.1:9101)"
            ),
            "{e}"
        );
        assert!(!e.contains("secret") && !e.contains("k=v"), "{e}");
        let allow = vec![UrlPrefix::parse("https://hooks.example.com/services").unwrap()];
        let e = explain(&allow, "https://hooks.example.com/other").unwrap_err();
        assert!(e.contains("path is not under"), "{e}");
        assert!(explain(&[], "http://a:1/")
            .unwrap_err()
            .contains("it is empty"));
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
