//! Checks every sink's [`crate::Plugin::new`] repeats: the `timeout_ms` key, numeric ranges,
//! optional strings that must not be blank, and URLs of the config.
//!
//! Each returns its error in the form the host locates in `herald.toml`
//! (``config key `<key>`: <why>``), so `new` can pass it on with `?`:
//!
//! ```ignore
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct Config {
//!     url: String,
//!     #[serde(default = "herald_sdk::config::default_timeout_ms")]
//!     timeout_ms: u64,
//! }
//!
//! fn new(c: Config) -> Result<Self, String> {
//!     let url = herald_sdk::config::granted_url("url", &c.url)?;
//!     herald_sdk::config::check_timeout_ms(c.timeout_ms)?;
//!     // ...
//! }
//! ```

use crate::http::Url;

/// The default `timeout_ms` of the shipped HTTP sinks: 10 seconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// The largest `timeout_ms` a sink accepts: 10 minutes.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// [`DEFAULT_TIMEOUT_MS`], as a serde default:
/// `#[serde(default = "herald_sdk::config::default_timeout_ms")]`.
pub fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// Ok when `timeout_ms` is between 1 and [`MAX_TIMEOUT_MS`]; else
/// ``config key `timeout_ms`: must be between 1 and 600000``.
pub fn check_timeout_ms(timeout_ms: u64) -> Result<(), String> {
    in_range("timeout_ms", timeout_ms, 1, MAX_TIMEOUT_MS)
}

/// Ok when `min <= value <= max`; else ``config key `<key>`: must be between <min> and <max>``.
pub fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "config key `{key}`: must be between {min} and {max}"
        ))
    }
}

/// Ok when `value` is absent or has a non-white-space character; else
/// ``config key `<key>`: must not be empty`` (an optional key given as `""` or `" "`).
pub fn not_blank(key: &str, value: Option<&str>) -> Result<(), String> {
    match value {
        Some(s) if s.trim().is_empty() => Err(format!("config key `{key}`: must not be empty")),
        _ => Ok(()),
    }
}

/// Ok when `value` (a token or key the sink sends in a request header) is
/// absent or a non-blank string a header can carry: no line breaks or other
/// control characters. Else ``config key `<key>`: ...``, so a pasted secret
/// with a trailing newline fails `herald check` instead of every delivery.
/// The message never repeats the value.
pub fn header_secret(key: &str, value: Option<&str>) -> Result<(), String> {
    let Some(v) = value else { return Ok(()) };
    if v.trim().is_empty() {
        return Err(format!("config key `{key}`: must not be empty"));
    }
    if !is_header_value(v) {
        return Err(format!(
            "config key `{key}`: must be a single line without control characters (a header carries it)"
        ));
    }
    Ok(())
}

/// Whether an HTTP header can carry `v`: tabs and visible characters, no
/// line breaks or other control characters.
pub fn is_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Parses the URL under `key`; else ``config key `<key>`: <why>``.
pub fn url(key: &str, value: &str) -> Result<Url, String> {
    Url::parse(value).map_err(|e| format!("config key `{key}`: {e}"))
}

/// Parses the destination URL under `key` ([`url`]) and asks the host whether the instance's
/// `allow_http` admits it ([`crate::grants::require_http`]), so a destination the sandbox would
/// refuse fails `herald check` at that key.
pub fn granted_url(key: &str, value: &str) -> Result<Url, String> {
    let url = url(key, value)?;
    crate::grants::require_http(key, &url.as_string())?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[serde(default = "crate::config::default_timeout_ms")]
        timeout_ms: u64,
    }

    #[test]
    fn timeout_default_and_bounds() {
        let c: Cfg = crate::parse_config("{}").unwrap();
        assert_eq!(c.timeout_ms, 10_000);
        let c: Cfg = crate::parse_config(r#"{"timeout_ms":2500}"#).unwrap();
        assert_eq!(c.timeout_ms, 2500);
        assert_eq!(check_timeout_ms(1), Ok(()));
        assert_eq!(check_timeout_ms(600_000), Ok(()));
        for bad in [0, 600_001] {
            assert_eq!(
                check_timeout_ms(bad).unwrap_err(),
                "config key `timeout_ms`: must be between 1 and 600000"
            );
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(in_range("max_hosts", 1, 1, 100), Ok(()));
        assert_eq!(in_range("max_hosts", 100, 1, 100), Ok(()));
        assert_eq!(
            in_range("max_hosts", 101, 1, 100).unwrap_err(),
            "config key `max_hosts`: must be between 1 and 100"
        );
        assert_eq!(
            in_range("max_message_bytes", 63, 64, 65_000).unwrap_err(),
            "config key `max_message_bytes`: must be between 64 and 65000"
        );
    }

    #[test]
    fn header_secrets() {
        assert_eq!(header_secret("token", None), Ok(()));
        assert_eq!(header_secret("token", Some("abc\tdef")), Ok(()));
        assert_eq!(
            header_secret("token", Some(" ")).unwrap_err(),
            "config key `token`: must not be empty"
        );
        for bad in ["s3cret\n", "a\rb", "a\u{7f}"] {
            let e = header_secret("bearer_token", Some(bad)).unwrap_err();
            assert!(
                e.starts_with("config key `bearer_token`: must be a single line"),
                "{e}"
            );
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn blank_strings() {
        assert_eq!(not_blank("source", None), Ok(()));
        assert_eq!(not_blank("source", Some("ctl")), Ok(()));
        assert_eq!(not_blank("source", Some(" x ")), Ok(()));
        for blank in ["", " ", "\t\n"] {
            assert_eq!(
                not_blank("tags[1]", Some(blank)).unwrap_err(),
                "config key `tags[1]`: must not be empty"
            );
        }
    }

    #[test]
    fn urls_name_the_key() {
        let u = url("events_url", "https://events.example.com/v2/enqueue").unwrap();
        assert_eq!(u.path_with_query, "/v2/enqueue");
        let e = url("events_url", "x").unwrap_err();
        assert!(e.starts_with("config key `events_url`: "), "{e}");
        // Off-wasm the host grants everything; the parse error still names the key.
        assert!(granted_url("url", "http://127.0.0.1:9000/hook").is_ok());
        let e = granted_url("webhook_url", "ftp://x").unwrap_err();
        assert!(e.starts_with("config key `webhook_url`: "), "{e}");
    }
}
