//! Formatting the templates share: times, durations, URL parts, and the
//! page frame ([`Chrome`]).

use crate::session::Session;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters left as they are in a URL component.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A URL component (a query value, a path segment), percent-encoded.
pub fn url(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// `2026-12-05 16:10:02` (UTC) of epoch milliseconds.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// RFC 3339 of epoch milliseconds (the `datetime` of a `<time>`).
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A duration for people: `850 ms`, `12.4 s`, `3 m 05 s`, `2 h 07 m`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} m {:02} s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{} h {:02} m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// A long id shortened for tables (the full id is the link).
pub fn short(id: &str) -> &str {
    match id.char_indices().nth(12) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

/// What every page's frame shows: who is signed in, the CSRF token of the
/// sign-out form, the current section.
pub struct Chrome {
    pub tenant: String,
    pub admin: bool,
    pub csrf: String,
    pub section: &'static str,
}

impl Chrome {
    /// The frame of a page of `section` for this session.
    pub fn new(s: &Session, section: &'static str) -> Chrome {
        Chrome {
            tenant: s.tenant.clone(),
            admin: s.admin,
            csrf: s.csrf.clone(),
            section,
        }
    }

    /// `class="here"` on the current section's link.
    pub fn here(&self, section: &str) -> &'static str {
        if self.section == section {
            "here"
        } else {
            ""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_400), "12.4 s");
        assert_eq!(duration(185_000), "3 m 05 s");
        assert_eq!(duration(7_620_000), "2 h 07 m");
        assert_eq!(duration(-5), "0 ms");
    }

    #[test]
    fn components_are_encoded() {
        assert_eq!(url("/runs?x=1&y"), "%2Fruns%3Fx%3D1%26y");
        assert_eq!(url("web-1.example"), "web-1.example");
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}
