//! Request correlation: the ids one API request carries through ingest into
//! the journal and on to the deliveries it causes (W3C trace context).

/// Correlation ids of one API request, set by [`observe`] and read by the
/// handlers (ingest stores them with each event, so the deliveries an event
/// causes log the same ids).
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// From `X-Request-Id` when it is a sane token, else generated; echoed in the answer.
    pub request_id: String,
    /// W3C trace id: from an incoming `traceparent`, else generated.
    pub trace_id: String,
    /// The caller's span id from `traceparent`, if any.
    pub parent_span_id: Option<String>,
    /// This request's own span id (the `ingest` span of `POST /v1/events`;
    /// stored with the events so delivery spans are its children).
    pub span_id: String,
}

/// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn parse_traceparent(v: &str) -> Option<(String, String)> {
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex_of = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex_of(version, 2)
        || version == "ff"
        || !hex_of(trace, 32)
        || !hex_of(span, 16)
        || !hex_of(flags, 2)
    {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || span.bytes().all(|b| b == b'0') {
        return None;
    }
    Some((trace.to_ascii_lowercase(), span.to_ascii_lowercase()))
}

#[cfg(test)]
mod context_tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let (t, s) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            (t.as_str(), s.as_str()),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
        );
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(parse_traceparent("00-xyz-00f067aa0ba902b7-01").is_none());
        assert!(
            parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none()
        );
    }
}
