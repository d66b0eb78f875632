//! Text helpers: bounded strings for reasons, summaries and messages.

/// At most `max` characters of `s`; when cut, the last one is `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// At most `max` bytes of `s` (cut on a character boundary), `…` appended when cut (so the
/// result may be up to `max + 3` bytes).
pub fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `s` on one line: every run of white space (new lines included) becomes one space, and
/// leading and trailing white space goes.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A bounded, single-line rendering of a response body for error reasons.
pub fn body_snippet(body: &[u8], max: usize) -> String {
    truncate(&one_line(&String::from_utf8_lossy(body)), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation() {
        assert_eq!(truncate("hello", 5), "hello");
        assert_eq!(truncate("hello!", 5), "hell…");
        assert_eq!(truncate("héllo wörld", 3).chars().count(), 3);
        assert_eq!(truncate_bytes("ééé", 3), "é…");
        assert_eq!(one_line("  a\n  b\tc \r\n"), "a b c");
        assert_eq!(one_line(""), "");
        assert_eq!(body_snippet(b"a\n  b\tc", 10), "a b c");
        assert_eq!(body_snippet(&[0xff, b'x'], 10), "\u{fffd}x");
    }
}
