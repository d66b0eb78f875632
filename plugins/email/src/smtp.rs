//! The SMTP client side (RFC 5321) over any [`Transport`]: greeting, EHLO, STARTTLS
//! (RFC 3207), AUTH PLAIN / LOGIN (RFC 4954), MAIL, RCPT, DATA, QUIT.
//!
//! Every failure says what the server answered and whether it may pass: a 4xx reply or a
//! broken connection is [`SmtpError::Transient`], a 5xx reply, a missing extension or a TLS
//! failure is [`SmtpError::Permanent`]. Nothing here ever puts a credential in an error or a
//! log line: the AUTH exchanges are reported by their reply only.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// A byte stream to an SMTP server that can be turned into TLS in place.
pub trait Transport {
    fn read_line(&mut self) -> Result<String, String>;
    fn write_all(&mut self, data: &[u8]) -> Result<(), String>;
    /// Turns the connection into TLS, verifying the certificate for `server_name`.
    fn start_tls(&mut self, server_name: &str) -> Result<(), SmtpError>;
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain SMTP, then STARTTLS before anything else (port 587, or 25): refused if the
    /// server does not offer it.
    Starttls,
    /// TLS from the first byte (port 465, "SMTPS").
    Implicit,
    /// No TLS at all (a relay on the same host or network). AUTH is then refused.
    None,
}

/// Which SASL mechanism to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMechanism {
    /// PLAIN when the server offers it, else LOGIN.
    Auto,
    Plain,
    Login,
}

/// Credentials for AUTH.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub mechanism: AuthMechanism,
}

// Never printed: the password is a secret.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// What one session needs.
#[derive(Debug, Clone)]
pub struct Session<'a> {
    pub security: Security,
    /// The name the certificate must be valid for.
    pub server_name: &'a str,
    /// Our name in EHLO.
    pub helo: &'a str,
    pub credentials: Option<&'a Credentials>,
}

/// One envelope and its message.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// The reverse path (`MAIL FROM`), a bare address.
    pub from: &'a str,
    /// The forward paths (`RCPT TO`), bare addresses.
    pub to: &'a [String],
    /// The whole message (headers and body), CRLF line ends; dot-stuffed here.
    pub message: &'a [u8],
}

/// Why a mail was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpError {
    /// May pass: a 4xx reply, a timeout, a broken connection.
    Transient(String),
    /// Will not pass by retrying: a 5xx reply, an extension the server lacks, TLS refused.
    Permanent(String),
}

impl std::fmt::Display for SmtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SmtpError::Transient(m) | SmtpError::Permanent(m) => f.write_str(m),
        }
    }
}

/// A server reply: its code and its lines' text (without the code), joined by ` / `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// `250 first line / second line`, at most 400 characters.
    pub fn text(&self) -> String {
        let t = format!("{} {}", self.code, self.lines.join(" / "));
        herald_sdk::text::truncate(&t, 400)
    }
    fn positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// What was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivered {
    /// The recipients the server accepted.
    pub accepted: Vec<String>,
    /// Those it refused for good, with its reply.
    pub refused: Vec<(String, String)>,
    /// The server's answer to the message (its queue id, usually).
    pub queued: String,
}

fn transient(e: String) -> SmtpError {
    SmtpError::Transient(e)
}

/// Reads one reply, multi-line or not (`250-...` lines then `250 ...`).
pub fn read_reply<T: Transport>(t: &mut T) -> Result<Reply, SmtpError> {
    let mut lines = Vec::new();
    loop {
        let line = t.read_line().map_err(transient)?;
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| {
                SmtpError::Transient(format!(
                    "not an SMTP reply: {:?}",
                    herald_sdk::text::truncate(&line, 100)
                ))
            })?;
        let sep = line.as_bytes().get(3).copied();
        lines.push(line.get(4..).unwrap_or("").trim().to_string());
        if lines.len() > 100 {
            return Err(SmtpError::Transient(
                "a reply of more than 100 lines".into(),
            ));
        }
        match sep {
            Some(b'-') => continue,
            _ => return Ok(Reply { code, lines }),
        }
    }
}

/// The error of an unexpected reply to `what`: 4xx transient, 5xx (or anything else) permanent.
pub fn refused(what: &str, r: &Reply) -> SmtpError {
    let m = format!("{what}: the server answered {}", r.text());
    if (400..500).contains(&r.code) {
        SmtpError::Transient(m)
    } else {
        SmtpError::Permanent(m)
    }
}

fn command<T: Transport>(t: &mut T, line: &str) -> Result<Reply, SmtpError> {
    t.write_all(format!("{line}\r\n").as_bytes())
        .map_err(transient)?;
    read_reply(t)
}

fn expect<T: Transport>(t: &mut T, line: &str, what: &str, code: u16) -> Result<Reply, SmtpError> {
    let r = command(t, line)?;
    if r.code == code || (code == 250 && r.code == 251) {
        Ok(r)
    } else {
        Err(refused(what, &r))
    }
}

/// The EHLO keywords, upper case (`STARTTLS`, `AUTH PLAIN LOGIN`, `SIZE 10240000`).
fn extensions(r: &Reply) -> Vec<String> {
    r.lines
        .iter()
        .skip(1)
        .map(|l| l.to_ascii_uppercase())
        .collect()
}

fn has(ext: &[String], name: &str) -> bool {
    ext.iter()
        .any(|e| e.split_whitespace().next() == Some(name))
}

fn auth_mechanisms(ext: &[String]) -> Vec<String> {
    ext.iter()
        .filter(|e| e.split_whitespace().next() == Some("AUTH"))
        .flat_map(|e| e.split_whitespace().skip(1).map(str::to_string))
        .collect()
}

fn ehlo<T: Transport>(t: &mut T, helo: &str) -> Result<Vec<String>, SmtpError> {
    let r = expect(t, &format!("EHLO {helo}"), "EHLO", 250)?;
    Ok(extensions(&r))
}

fn authenticate<T: Transport>(t: &mut T, ext: &[String], c: &Credentials) -> Result<(), SmtpError> {
    let offered = auth_mechanisms(ext);
    let offers = |m: &str| offered.iter().any(|o| o == m);
    let mechanism =
        match c.mechanism {
            AuthMechanism::Plain => "PLAIN",
            AuthMechanism::Login => "LOGIN",
            AuthMechanism::Auto if offers("PLAIN") => "PLAIN",
            AuthMechanism::Auto if offers("LOGIN") => "LOGIN",
            AuthMechanism::Auto => {
                return Err(SmtpError::Permanent(format!(
                "the server offers no AUTH mechanism Herald speaks (PLAIN, LOGIN); it offers: {}",
                if offered.is_empty() { "none".to_string() } else { offered.join(" ") }
            )))
            }
        };
    if !offers(mechanism) {
        return Err(SmtpError::Permanent(format!(
            "the server does not offer AUTH {mechanism} (it offers: {})",
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(" ")
            }
        )));
    }
    let done = if mechanism == "PLAIN" {
        let token = B64.encode(format!("\0{}\0{}", c.username, c.password));
        command(t, &format!("AUTH PLAIN {token}"))?
    } else {
        let r = command(t, "AUTH LOGIN")?;
        if r.code != 334 {
            return Err(refused("AUTH LOGIN", &r));
        }
        let r = command(t, &B64.encode(&c.username))?;
        if r.code != 334 {
            return Err(refused("AUTH LOGIN (user name)", &r));
        }
        command(t, &B64.encode(&c.password))?
    };
    if done.code == 235 {
        Ok(())
    } else {
        Err(refused(&format!("AUTH {mechanism}"), &done))
    }
}

/// Doubles a `.` at the start of each line (RFC 5321 4.5.2) and ends with `CRLF . CRLF`.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Runs one session: secures and authenticates the connection as `s` says, then sends `e`.
/// Recipients refused with a 5xx are skipped (reported in [`Delivered::refused`]); if every
/// recipient is refused the mail is a permanent failure; a 4xx for any recipient makes the
/// whole mail transient (nothing was sent yet: RSET, and the retry sends it to all).
pub fn send<T: Transport>(
    t: &mut T,
    s: &Session<'_>,
    e: &Envelope<'_>,
) -> Result<Delivered, SmtpError> {
    if s.security == Security::Implicit {
        t.start_tls(s.server_name)?;
    }
    let greeting = read_reply(t)?;
    if greeting.code != 220 {
        return Err(refused("greeting", &greeting));
    }
    let mut ext = ehlo(t, s.helo)?;
    if s.security == Security::Starttls {
        if !has(&ext, "STARTTLS") {
            return Err(SmtpError::Permanent(
                "the server does not offer STARTTLS (set tls = \"implicit\" for port 465, or \"none\" for a relay without TLS)".into(),
            ));
        }
        expect(t, "STARTTLS", "STARTTLS", 220)?;
        t.start_tls(s.server_name)?;
        ext = ehlo(t, s.helo)?;
    }
    if let Some(c) = s.credentials {
        authenticate(t, &ext, c)?;
    }
    expect(t, &format!("MAIL FROM:<{}>", e.from), "MAIL FROM", 250)?;
    let mut delivered = Delivered::default();
    for rcpt in e.to {
        let r = command(t, &format!("RCPT TO:<{rcpt}>"))?;
        match r.code {
            250 | 251 => delivered.accepted.push(rcpt.clone()),
            400..=499 => {
                let err = refused(&format!("RCPT TO {rcpt}"), &r);
                let _ = command(t, "RSET");
                return Err(err);
            }
            _ => delivered.refused.push((rcpt.clone(), r.text())),
        }
    }
    if delivered.accepted.is_empty() {
        let _ = command(t, "RSET");
        let all: Vec<String> = delivered
            .refused
            .iter()
            .map(|(a, r)| format!("{a}: {r}"))
            .collect();
        return Err(SmtpError::Permanent(format!(
            "every recipient was refused: {}",
            all.join("; ")
        )));
    }
    let r = command(t, "DATA")?;
    if r.code != 354 {
        return Err(refused("DATA", &r));
    }
    t.write_all(&dot_stuff(e.message)).map_err(transient)?;
    let r = read_reply(t)?;
    if !r.positive() {
        return Err(refused("the message", &r));
    }
    delivered.queued = r.text();
    // The mail is accepted; a failed QUIT changes nothing.
    let _ = command(t, "QUIT");
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A scripted server: replies to give, in order, and what the client wrote.
    struct Script {
        replies: VecDeque<&'static str>,
        written: String,
        tls: Vec<String>,
        tls_fails: bool,
    }

    impl Script {
        fn new(replies: &[&'static str]) -> Script {
            Script {
                replies: replies.iter().copied().collect(),
                written: String::new(),
                tls: Vec::new(),
                tls_fails: false,
            }
        }
    }

    impl Transport for Script {
        fn read_line(&mut self) -> Result<String, String> {
            self.replies
                .pop_front()
                .map(str::to_string)
                .ok_or_else(|| "connection closed by the peer".to_string())
        }
        fn write_all(&mut self, data: &[u8]) -> Result<(), String> {
            self.written.push_str(&String::from_utf8_lossy(data));
            Ok(())
        }
        fn start_tls(&mut self, name: &str) -> Result<(), SmtpError> {
            if self.tls_fails {
                return Err(SmtpError::Permanent(
                    "invalid peer certificate: UnknownIssuer".into(),
                ));
            }
            self.tls.push(name.to_string());
            Ok(())
        }
    }

    fn creds(m: AuthMechanism) -> Credentials {
        Credentials {
            username: "herald".into(),
            password: "s3cret".into(),
            mechanism: m,
        }
    }

    fn session<'a>(security: Security, c: Option<&'a Credentials>) -> Session<'a> {
        Session {
            security,
            server_name: "mail.example.com",
            helo: "herald.example.com",
            credentials: c,
        }
    }

    const TO: [&str; 0] = [];

    fn to(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn starttls_then_auth_plain_then_two_recipients() {
        let mut s = Script::new(&[
            "220 mail.example.com ESMTP",
            "250-mail.example.com",
            "250-SIZE 1000000",
            "250 STARTTLS",
            "220 go ahead",
            "250-mail.example.com",
            "250-AUTH LOGIN PLAIN",
            "250 8BITMIME",
            "235 2.7.0 Authentication successful",
            "250 OK",
            "250 OK",
            "250 OK",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as ABC123",
            "221 Bye",
        ]);
        let c = creds(AuthMechanism::Auto);
        let rcpt = to(&["a@example.com", "b@example.com"]);
        let d = send(
            &mut s,
            &session(Security::Starttls, Some(&c)),
            &Envelope {
                from: "herald@example.com",
                to: &rcpt,
                message: b"Subject: x\r\n\r\n.hidden\r\nbody",
            },
        )
        .unwrap();
        assert_eq!(d.accepted, rcpt);
        assert_eq!(d.queued, "250 2.0.0 Ok: queued as ABC123");
        assert_eq!(s.tls, vec!["mail.example.com"]);
        let w = &s.written;
        let plain = B64.encode("\0herald\0s3cret");
        assert!(
            w.starts_with("EHLO herald.example.com\r\nSTARTTLS\r\nEHLO herald.example.com\r\n"),
            "{w}"
        );
        assert!(w.contains(&format!("AUTH PLAIN {plain}\r\nMAIL FROM:<herald@example.com>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")), "{w}");
        assert!(
            w.ends_with("Subject: x\r\n\r\n..hidden\r\nbody\r\n.\r\nQUIT\r\n"),
            "{w}"
        );
        let _ = TO;
    }

    #[test]
    fn auth_login_and_errors_carry_no_secret() {
        let mut s = Script::new(&[
            "220 hi",
            "250-hi",
            "250 AUTH LOGIN",
            "334 VXNlcm5hbWU6",
            "334 UGFzc3dvcmQ6",
            "535 5.7.8 Authentication credentials invalid",
        ]);
        let c = creds(AuthMechanism::Auto);
        let rcpt = to(&["a@example.com"]);
        let e = send(
            &mut s,
            &session(Security::None, Some(&c)),
            &Envelope {
                from: "h@example.com",
                to: &rcpt,
                message: b"x",
            },
        )
        .unwrap_err();
        assert_eq!(
            e,
            SmtpError::Permanent(
                "AUTH LOGIN: the server answered 535 5.7.8 Authentication credentials invalid"
                    .into()
            )
        );
        assert!(s.written.contains(&B64.encode("herald")));
        assert!(s.written.contains(&B64.encode("s3cret")));
        assert!(
            !e.to_string().contains("s3cret") && !e.to_string().contains(&B64.encode("s3cret"))
        );
    }

    #[test]
    fn transient_and_permanent_replies() {
        // 4xx on MAIL: transient, with the server's words.
        let mut s = Script::new(&["220 hi", "250 hi", "451 4.3.0 Try again later"]);
        let rcpt = to(&["a@example.com"]);
        let env = Envelope {
            from: "h@example.com",
            to: &rcpt,
            message: b"x",
        };
        let e = send(&mut s, &session(Security::None, None), &env).unwrap_err();
        assert_eq!(
            e,
            SmtpError::Transient("MAIL FROM: the server answered 451 4.3.0 Try again later".into())
        );
        // 5xx after DATA: permanent.
        let mut s = Script::new(&[
            "220 hi",
            "250 hi",
            "250 ok",
            "250 ok",
            "354 go",
            "554 5.6.0 Message rejected",
        ]);
        let e = send(&mut s, &session(Security::None, None), &env).unwrap_err();
        assert_eq!(
            e,
            SmtpError::Permanent(
                "the message: the server answered 554 5.6.0 Message rejected".into()
            )
        );
        // A recipient refused for good is skipped; the others get the mail.
        let two = to(&["a@example.com", "nobody@example.com"]);
        let mut s = Script::new(&[
            "220 hi",
            "250 hi",
            "250 ok",
            "250 ok",
            "550 5.1.1 No such user",
            "354 go",
            "250 queued",
            "221 bye",
        ]);
        let d = send(
            &mut s,
            &session(Security::None, None),
            &Envelope {
                to: &two,
                ..env.clone()
            },
        )
        .unwrap();
        assert_eq!(d.accepted, to(&["a@example.com"]));
        assert_eq!(
            d.refused,
            vec![(
                "nobody@example.com".to_string(),
                "550 5.1.1 No such user".to_string()
            )]
        );
        // Every recipient refused: permanent, naming them.
        let mut s = Script::new(&[
            "220 hi",
            "250 hi",
            "250 ok",
            "550 5.1.1 No such user",
            "250 reset",
        ]);
        let e = send(&mut s, &session(Security::None, None), &env).unwrap_err();
        assert!(
            matches!(&e, SmtpError::Permanent(m) if m.contains("a@example.com: 550 5.1.1 No such user")),
            "{e}"
        );
        // A 4xx recipient: transient, the transaction reset.
        let mut s = Script::new(&[
            "220 hi",
            "250 hi",
            "250 ok",
            "452 4.2.2 Mailbox full",
            "250 reset",
        ]);
        let e = send(&mut s, &session(Security::None, None), &env).unwrap_err();
        assert!(matches!(e, SmtpError::Transient(_)));
        assert!(s.written.ends_with("RSET\r\n"));
        // A closed connection: transient.
        let mut s = Script::new(&[]);
        assert!(matches!(
            send(&mut s, &session(Security::None, None), &env),
            Err(SmtpError::Transient(_))
        ));
    }

    #[test]
    fn starttls_is_required_and_tls_failures_are_permanent() {
        let rcpt = to(&["a@example.com"]);
        let env = Envelope {
            from: "h@example.com",
            to: &rcpt,
            message: b"x",
        };
        let mut s = Script::new(&["220 hi", "250-hi", "250 AUTH PLAIN"]);
        let e = send(&mut s, &session(Security::Starttls, None), &env).unwrap_err();
        assert!(
            matches!(&e, SmtpError::Permanent(m) if m.contains("does not offer STARTTLS")),
            "{e}"
        );
        let mut s = Script::new(&["220 hi"]);
        s.tls_fails = true;
        let e = send(&mut s, &session(Security::Implicit, None), &env).unwrap_err();
        assert_eq!(
            e,
            SmtpError::Permanent("invalid peer certificate: UnknownIssuer".into())
        );
        // AUTH asked but not offered.
        let c = creds(AuthMechanism::Plain);
        let mut s = Script::new(&["220 hi", "250-hi", "250 AUTH LOGIN"]);
        let e = send(&mut s, &session(Security::None, Some(&c)), &env).unwrap_err();
        assert!(
            matches!(&e, SmtpError::Permanent(m) if m.contains("does not offer AUTH PLAIN (it offers: LOGIN)")),
            "{e}"
        );
    }

    #[test]
    fn replies_and_stuffing() {
        let mut s = Script::new(&["250-a", "250-b", "250 c"]);
        let r = read_reply(&mut s).unwrap();
        assert_eq!((r.code, r.text()), (250, "250 a / b / c".to_string()));
        let mut s = Script::new(&["hello"]);
        assert!(matches!(read_reply(&mut s), Err(SmtpError::Transient(_))));
        assert_eq!(dot_stuff(b".a\r\nb\r\n."), b"..a\r\nb\r\n..\r\n.\r\n");
    }
}
