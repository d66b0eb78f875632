//! The message itself (RFC 5322 + MIME): headers, and a `multipart/alternative` body with a
//! `text/plain` and a `text/html` part, both UTF-8 in base64 (safe for any text a template
//! renders, with no line-length or 8-bit concerns for the relay).
//!
//! Header values come from templates and from the event (task names, host names): control
//! characters, CR and LF included, are replaced so nothing rendered can add a header; non-ASCII
//! text is sent as RFC 2047 encoded words.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// An address with an optional display name (`Ops <ops@example.com>` or `ops@example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    /// Parses `addr` or `Name <addr>`; the error says what is wrong (the caller names the key).
    pub fn parse(s: &str) -> Result<Mailbox, String> {
        let s = s.trim();
        let (name, address) = match (s.rfind('<'), s.ends_with('>')) {
            (Some(i), true) => {
                let name = s[..i].trim().trim_matches('"').trim();
                (
                    (!name.is_empty()).then(|| name.to_string()),
                    s[i + 1..s.len() - 1].trim(),
                )
            }
            (None, false) => (None, s),
            _ => {
                return Err(format!(
                    "`{s}` is not an address (`ops@example.com` or `Ops <ops@example.com>`)"
                ))
            }
        };
        let ok_char = |c: char| c.is_ascii_graphic() && !"<>()[],;:\\\"".contains(c);
        let valid = match address.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && address.chars().all(ok_char)
            }
            None => false,
        };
        if !valid {
            return Err(format!(
                "`{address}` is not an email address (local@domain.tld)"
            ));
        }
        if let Some(n) = &name {
            if n.chars().any(|c| c.is_control()) {
                return Err("the display name holds a control character".into());
            }
        }
        Ok(Mailbox {
            name,
            address: address.to_string(),
        })
    }

    /// The domain of the address.
    pub fn domain(&self) -> &str {
        self.address.rsplit('@').next().unwrap_or("")
    }

    /// The header form: `"Ops team" <ops@example.com>`, the name encoded when not ASCII.
    pub fn header(&self) -> String {
        match &self.name {
            None => self.address.clone(),
            Some(n) if n.is_ascii() => {
                let quoted = n.replace('\\', "\\\\").replace('"', "\\\"");
                format!("\"{quoted}\" <{}>", self.address)
            }
            Some(n) => format!("{} <{}>", encode_words(n), self.address),
        }
    }
}

/// One line of header text: control characters (CR and LF among them) become spaces, runs of
/// spaces one space, and the result is cut to `max` characters.
pub fn header_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    let mut space = false;
    for c in s.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if space || out.is_empty() {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        out.push(c);
    }
    herald_sdk::text::truncate(out.trim_end(), max)
}

/// `s` as it goes in a header: as it is when printable ASCII, else RFC 2047 `B` encoded words
/// of at most 75 characters, folded onto continuation lines.
pub fn encode_words(s: &str) -> String {
    if s.chars().all(|c| (' '..='~').contains(&c)) {
        return s.to_string();
    }
    // 45 bytes of UTF-8 are 60 of base64; `=?UTF-8?B?` + `?=` make 72. Cut on char boundaries.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", B64.encode(&chunk)));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", B64.encode(&chunk)));
    }
    words.join("\r\n ")
}

/// `Sat, 05 Dec 2026 16:10:00 +0000` (RFC 5322 date-time, UTC) of milliseconds since the epoch.
pub fn rfc5322_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = herald_sdk::time::civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m as usize).saturating_sub(1).min(11)];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// base64 in lines of 76 characters, CRLF ended.
fn base64_lines(data: &[u8]) -> String {
    let b = B64.encode(data);
    let mut out = String::with_capacity(b.len() + b.len() / 38 + 2);
    for line in b.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push_str("\r\n");
    }
    out
}

/// One mail to build.
#[derive(Debug, Clone)]
pub struct Mail<'a> {
    pub from: &'a Mailbox,
    pub to: &'a [Mailbox],
    pub subject: &'a str,
    pub text: &'a str,
    /// `None` or empty: a text-only mail.
    pub html: Option<&'a str>,
    /// Without the angle brackets.
    pub message_id: &'a str,
    pub date_ms: i64,
    /// More headers (`X-Herald-Event-Id`), values made header-safe here.
    pub extra: &'a [(&'a str, String)],
}

/// Most characters of a subject.
pub const SUBJECT_MAX: usize = 200;

impl Mail<'_> {
    /// The message, CRLF line ends.
    pub fn render(&self) -> Vec<u8> {
        let mut h = String::new();
        let mut header = |name: &str, value: &str| {
            h.push_str(name);
            h.push_str(": ");
            h.push_str(value);
            h.push_str("\r\n");
        };
        header("From", &self.from.header());
        let to: Vec<String> = self.to.iter().map(Mailbox::header).collect();
        header("To", &to.join(",\r\n "));
        header(
            "Subject",
            &encode_words(&header_text(self.subject, SUBJECT_MAX)),
        );
        header("Date", &rfc5322_date(self.date_ms));
        header("Message-ID", &format!("<{}>", self.message_id));
        for (name, value) in self.extra {
            header(name, &encode_words(&header_text(value, 400)));
        }
        header("MIME-Version", "1.0");
        header("Auto-Submitted", "auto-generated");
        let text_part = |ctype: &str, body: &str| {
            format!(
                "Content-Type: {ctype}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                base64_lines(body.as_bytes())
            )
        };
        let text = normalize_newlines(self.text);
        match self.html.filter(|h| !h.trim().is_empty()) {
            None => {
                h.push_str(&text_part("text/plain", &text));
            }
            Some(html) => {
                // base64 lines never hold `=_`, so the boundary cannot occur in a part.
                let boundary = format!("=_herald_{}", boundary_of(self.message_id));
                h.push_str(&format!(
                    "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
                ));
                h.push_str("This is a MIME message with a text and an HTML part.\r\n");
                h.push_str(&format!("--{boundary}\r\n"));
                h.push_str(&text_part("text/plain", &text));
                h.push_str(&format!("--{boundary}\r\n"));
                h.push_str(&text_part("text/html", &normalize_newlines(html)));
                h.push_str(&format!("--{boundary}--\r\n"));
            }
        }
        h.into_bytes()
    }
}

fn normalize_newlines(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn boundary_of(message_id: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(message_id.as_bytes())[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes() {
        let m = Mailbox::parse("Ops team <ops@example.com>").unwrap();
        assert_eq!(m.header(), "\"Ops team\" <ops@example.com>");
        assert_eq!(m.domain(), "example.com");
        assert_eq!(
            Mailbox::parse(" ops@example.com ").unwrap().header(),
            "ops@example.com"
        );
        assert_eq!(
            Mailbox::parse("Équipe <e@example.com>").unwrap().header(),
            "=?UTF-8?B?w4lxdWlwZQ==?= <e@example.com>"
        );
        for bad in [
            "ops",
            "ops@",
            "@example.com",
            "a b@example.com",
            "x <ops@example.com",
            "a@b@example.com",
            "ops@localhost",
        ] {
            assert!(Mailbox::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_cannot_be_injected() {
        assert_eq!(
            header_text("a\r\nBcc: evil@example.com\t b", 100),
            "a Bcc: evil@example.com b"
        );
        let long = "x".repeat(300);
        assert_eq!(header_text(&long, 200).chars().count(), 200);
        let w = encode_words(&"é".repeat(40));
        assert!(w.lines().all(|l| l.trim_end().len() <= 76), "{w}");
        assert!(
            w.starts_with("=?UTF-8?B?") && w.contains("\r\n =?UTF-8?B?"),
            "{w}"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_796_487_003_000),
            "Sat, 05 Dec 2026 16:10:03 +0000"
        );
    }

    #[test]
    fn a_two_part_message() {
        let from = Mailbox::parse("Herald <herald@example.com>").unwrap();
        let to = [
            Mailbox::parse("a@example.com").unwrap(),
            Mailbox::parse("b@example.com").unwrap(),
        ];
        let extra = [("X-Herald-Event-Id", "e1".to_string())];
        let m = Mail {
            from: &from,
            to: &to,
            subject: "deploy.yml failed\r\nBcc: x@example.com",
            text: "line 1\nline 2",
            html: Some("<p>hi</p>"),
            message_id: "e1.herald@example.com",
            date_ms: 0,
            extra: &extra,
        };
        let out = String::from_utf8(m.render()).unwrap();
        assert!(
            out.contains("To: a@example.com,\r\n b@example.com\r\n"),
            "{out}"
        );
        assert!(
            out.contains("Subject: deploy.yml failed Bcc: x@example.com\r\n"),
            "{out}"
        );
        assert!(!out.contains("\r\nBcc:"));
        assert!(out.contains("Message-ID: <e1.herald@example.com>\r\n"));
        assert!(out.contains("Content-Type: multipart/alternative; boundary=\"=_herald_"));
        assert!(out.contains(&B64.encode("line 1\r\nline 2")));
        assert!(out.contains(&B64.encode("<p>hi</p>")));
        assert!(out.lines().all(|l| l.len() <= 998));
        // No HTML: a single text part.
        let m = Mail {
            html: Some("  "),
            ..m
        };
        let out = String::from_utf8(m.render()).unwrap();
        assert!(
            out.contains("Content-Type: text/plain; charset=utf-8") && !out.contains("multipart")
        );
    }
}
