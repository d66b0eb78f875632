//! Herald's filters, beside minijinja's built-in ones (`tojson`, `default`,
//! `join`, `length`, `upper`, ...): `truncate` as in Jinja2, `duration`
//! and `datetime` for the context's millisecond times, and `ljust`/`rjust`
//! for the columns of a text table (Slack's PLAY RECAP).

use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind};

pub(crate) fn register(env: &mut Environment<'static>) {
    env.add_filter("truncate", truncate);
    env.add_filter("duration", duration);
    env.add_filter("datetime", datetime);
    env.add_filter("basename", basename);
    env.add_filter("ljust", ljust);
    env.add_filter("mrkdwn", mrkdwn);
    env.add_filter("rjust", rjust);
}

/// `&`, `<` and `>` escaped as Slack's mrkdwn (and Mattermost's) need, so a
/// value cannot become a link or a mention; numbers are written first.
fn mrkdwn(value: minijinja::Value) -> String {
    let text = text_of(&value);
    if !text.contains(['&', '<', '>']) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Padding to `width` characters with spaces after the value, as Python's
/// `str.ljust`; a longer value is kept whole. Numbers are written first.
fn ljust(value: minijinja::Value, width: usize) -> String {
    let mut s = text_of(&value);
    let pad = width.saturating_sub(s.chars().count());
    s.extend(std::iter::repeat_n(' ', pad));
    s
}

/// Padding to `width` characters with spaces before the value (`str.rjust`).
fn rjust(value: minijinja::Value, width: usize) -> String {
    let s = text_of(&value);
    let pad = width.saturating_sub(s.chars().count());
    let mut out = String::with_capacity(pad + s.len());
    out.extend(std::iter::repeat_n(' ', pad));
    out.push_str(&s);
    out
}

fn text_of(value: &minijinja::Value) -> String {
    match value.as_str() {
        Some(s) => s.to_string(),
        None if value.is_none() || value.is_undefined() => String::new(),
        // Integers (a recap's counters) without the formatting machinery.
        None => match i64::try_from(value.clone()) {
            Ok(n) if value.is_integer() => n.to_string(),
            _ => value.to_string(),
        },
    }
}

/// The last part of a path, as Ansible's `basename` (`plays/site.yml` → `site.yml`).
fn basename(path: String) -> String {
    path.rsplit(['/', '\\']).next().unwrap_or("").to_string()
}

/// Jinja2's `truncate(s, length=255, killwords=False, end='...', leeway=5)`:
/// a string of at most `length` characters, `end` included; cut at a word
/// boundary unless `killwords`; a string at most `leeway` characters too long
/// is kept whole.
fn truncate(
    s: String,
    length: Option<usize>,
    killwords: Option<bool>,
    end: Option<String>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let length = match length {
        Some(l) => l,
        None => kwargs.get::<Option<usize>>("length")?.unwrap_or(255),
    };
    let killwords = match killwords {
        Some(k) => k,
        None => kwargs.get::<Option<bool>>("killwords")?.unwrap_or(false),
    };
    let end = match end {
        Some(e) => e,
        None => kwargs
            .get::<Option<String>>("end")?
            .unwrap_or_else(|| "...".into()),
    };
    let leeway = kwargs.get::<Option<usize>>("leeway")?.unwrap_or(5);
    kwargs.assert_all_used()?;
    let count = s.chars().count();
    let end_len = end.chars().count();
    if length < end_len {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("truncate: length {length} is shorter than the end {end:?}"),
        ));
    }
    if count <= length + leeway {
        return Ok(s);
    }
    let keep: String = s.chars().take(length - end_len).collect();
    let keep = if killwords {
        keep
    } else {
        match keep.rfind(char::is_whitespace) {
            Some(i) => keep[..i].to_string(),
            None => keep,
        }
    };
    Ok(format!("{keep}{end}"))
}

/// A duration in milliseconds as a person reads it: `850ms`, `12.3s`,
/// `4m 05s`, `2h 03m`. `unit="s"` reads the value as seconds.
fn duration(value: Option<f64>, kwargs: Kwargs) -> Result<String, Error> {
    let unit = kwargs.get::<Option<String>>("unit")?;
    kwargs.assert_all_used()?;
    // `none` (an unknown duration) renders as nothing.
    let Some(value) = value else {
        return Ok(String::new());
    };
    let ms = match unit.as_deref() {
        None | Some("ms") => value,
        Some("s") => value * 1000.0,
        Some(other) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("duration: unit must be \"ms\" or \"s\", not {other:?}"),
            ))
        }
    };
    if !ms.is_finite() || ms < 0.0 {
        return Ok(String::new());
    }
    Ok(if ms < 1000.0 {
        format!("{}ms", ms.round() as u64)
    } else if ms < 60_000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else {
        let secs = (ms / 1000.0).round() as u64;
        if secs < 3600 {
            format!("{}m {:02}s", secs / 60, secs % 60)
        } else {
            format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
        }
    })
}

/// Milliseconds since the Unix epoch as `2026-12-05 11:20:03 UTC`, or with
/// `format=` a chrono/strftime format (always UTC).
fn datetime(ms: Option<i64>, kwargs: Kwargs) -> Result<String, Error> {
    let format = kwargs.get::<Option<String>>("format")?;
    kwargs.assert_all_used()?;
    let Some(ms) = ms else {
        return Ok(String::new());
    };
    let Some(t) = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms) else {
        return Ok(String::new());
    };
    let format = format.as_deref().unwrap_or("%Y-%m-%d %H:%M:%S UTC");
    let mut out = String::new();
    use std::fmt::Write;
    write!(out, "{}", t.format(format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("datetime: invalid format {format:?}"),
        )
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str) -> String {
        let mut env = Environment::new();
        register(&mut env);
        env.render_str(src, ())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn truncate_is_jinja2s() {
        assert_eq!(render("{{ 'short' | truncate(10) }}"), "short");
        assert_eq!(
            render("{{ 'the quick brown fox jumps' | truncate(13, leeway=0) }}"),
            "the quick..."
        );
        assert_eq!(
            render("{{ 'abcdefghijklmnop' | truncate(8, true, '~', leeway=0) }}"),
            "abcdefg~"
        );
    }

    #[test]
    fn durations_read_like_a_person_says_them() {
        assert_eq!(render("{{ 850 | duration }}"), "850ms");
        assert_eq!(render("{{ 12345 | duration }}"), "12.3s");
        assert_eq!(render("{{ 245000 | duration }}"), "4m 05s");
        assert_eq!(render("{{ 7380000 | duration }}"), "2h 03m");
        assert_eq!(render("{{ 3.5 | duration(unit='s') }}"), "3.5s");
        assert!(render("{{ 1 | duration(unit='h') }}").starts_with("ERR"));
        assert_eq!(render("{{ none | duration }}|{{ none | datetime }}"), "|");
        assert_eq!(render("{{ 'plays/site.yml' | basename }}"), "site.yml");
    }

    #[test]
    fn columns_are_padded() {
        assert_eq!(render("[{{ 'web1' | ljust(6) }}]"), "[web1  ]");
        assert_eq!(render("[{{ 42 | rjust(4) }}]"), "[  42]");
        assert_eq!(render("[{{ 'longer' | rjust(3) }}]"), "[longer]");
        assert_eq!(render("[{{ none | ljust(2) }}]"), "[  ]");
        assert_eq!(
            render("{{ '<@U1> & co' | mrkdwn }}"),
            "&lt;@U1&gt; &amp; co"
        );
    }

    #[test]
    fn datetimes_are_utc() {
        assert_eq!(
            render("{{ 1764933603000 | datetime }}"),
            "2025-12-05 11:20:03 UTC"
        );
        assert_eq!(
            render("{{ 1764933603000 | datetime(format='%H:%M') }}"),
            "11:20"
        );
    }
}
