//! The fast path of event validation: checks one event's JSON text against
//! the wire rules with serde visitors that borrow from the text and keep only
//! the fields Herald indexes, instead of building a `serde_json::Value` tree
//! and serialising it again. The text itself is what the journal stores.
//!
//! [`super::validate`] stays the reference: whenever this path does not
//! accept an event (it is invalid, or unusual in a way only the reference
//! handles, such as a key given twice) it answers `None` and the caller runs
//! the reference on the whole batch, which names the error. So an event this
//! path accepts is one the reference accepts with the same fields.

use super::{parse_time, too_long, EventKind, WireEvent, MAX_SAFE_INTEGER};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// Validates the event `text[start..end]` (exactly one JSON object, as in one
/// NDJSON line). `None` when the reference must decide (see the module doc).
#[inline]
pub fn parse_event(text: &Arc<String>, start: usize, end: usize) -> Option<WireEvent> {
    let envelope: Envelope<'_> = serde_json::from_str(text.get(start..end)?).ok()?;
    envelope.into_event(text, start, end)
}

/// Validates a JSON text that is an array of events, or one event object.
/// `None` when the reference must decide, also for an empty array.
pub fn parse_array(text: &Arc<String>) -> Option<Vec<WireEvent>> {
    let s = text.as_str();
    let first = skip_ws(s, 0);
    match s.as_bytes().get(first)? {
        b'{' => {
            let end = s.trim_end_matches(is_json_ws).len();
            return Some(vec![parse_event(text, first, end)?]);
        }
        b'[' => {}
        _ => return None,
    }
    let mut out = Vec::new();
    let mut pos = first + 1;
    loop {
        pos = skip_ws(s, pos);
        // Each element must be an object; `[]` and `[1]` go to the reference.
        if s.as_bytes().get(pos) != Some(&b'{') {
            return None;
        }
        let mut stream = serde_json::Deserializer::from_str(&s[pos..]).into_iter::<Envelope>();
        let envelope = stream.next()?.ok()?;
        let end = pos + stream.byte_offset();
        out.push(envelope.into_event(text, pos, end)?);
        pos = skip_ws(s, end);
        match s.as_bytes().get(pos)? {
            b',' => pos += 1,
            b']' => break,
            _ => return None,
        }
    }
    (skip_ws(s, pos + 1) == s.len()).then_some(out)
}

fn is_json_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn skip_ws(s: &str, from: usize) -> usize {
    s.as_bytes()[from.min(s.len())..]
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .map_or(s.len(), |p| from + p)
}

/// Any refusal of the fast path; the reference gives the real message.
fn refuse<E: de::Error>() -> E {
    E::custom("left to the reference validation")
}

/// The JSON type of a value whose content is validated but not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool(bool),
    Number,
    String,
    Array,
    Object,
}

/// A value parsed as strictly as a `Value` would be (through the same
/// `deserialize_any`: numbers in range, strings and escapes decoded), but not
/// kept: `IgnoredAny` and `RawValue` only check the syntax.
struct Checked(Kind);

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Checked;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Checked, E> {
                Ok(Checked(Kind::Bool(b)))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked(Kind::Number))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked(Kind::Number))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked(Kind::Number))
            }
            fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked(Kind::String))
            }
            fn visit_unit<E>(self) -> Result<Checked, E> {
                Ok(Checked(Kind::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(Checked(Kind::Array))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
                while map.next_key::<Checked>()?.is_some() {
                    map.next_value::<Checked>()?;
                }
                Ok(Checked(Kind::Object))
            }
        }
        d.deserialize_any(V)
    }
}

/// A value of which strings and non-negative integers are kept (borrowed
/// from the text unless they hold escapes).
enum Val<'a> {
    Str(Cow<'a, str>),
    U64(u64),
    Other(Kind),
}

impl<'de> Deserialize<'de> for Val<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Val<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Val<'de>, E> {
                Ok(Val::U64(n))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Val<'de>, E> {
                Ok(Val::Other(Kind::Number))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Val<'de>, E> {
                Ok(Val::Other(Kind::Number))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Val<'de>, E> {
                Ok(Val::Other(Kind::Bool(b)))
            }
            fn visit_unit<E>(self) -> Result<Val<'de>, E> {
                Ok(Val::Other(Kind::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Val<'de>, A::Error> {
                Checked::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(|c| Val::Other(c.0))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Val<'de>, A::Error> {
                Checked::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|c| Val::Other(c.0))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'a> Val<'a> {
    /// `Some(s)` for a string, `None` for null; `Err` for anything else.
    fn opt_str(v: Option<Self>) -> Result<Option<Cow<'a, str>>, ()> {
        match v {
            None | Some(Val::Other(Kind::Null)) => Ok(None),
            Some(Val::Str(s)) => Ok(Some(s)),
            Some(_) => Err(()),
        }
    }
}

/// Mirrors `id_field`: absent or null is `None`; a string of 1..=128 bytes.
fn id(v: Option<Val<'_>>) -> Result<Option<Cow<'_, str>>, ()> {
    match Val::opt_str(v)? {
        Some(s) if s.is_empty() || too_long(&s) => Err(()),
        other => Ok(other),
    }
}

/// A map key turned into a field name without allocating.
trait FieldName: Sized {
    fn of(key: &str) -> Self;
    /// A bit per known field, to refuse a key given twice (a `Value` keeps
    /// the last, the stored text would keep both).
    fn bit(&self) -> u32;
}

struct Key<F>(F);

impl<'de, F: FieldName> Deserialize<'de> for Key<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<F>(PhantomData<F>);
        impl<'de, F: FieldName> Visitor<'de> for V<F> {
            type Value = Key<F>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<F>, E> {
                Ok(Key(F::of(s)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// Reads the entries of a map with known fields, refusing a known field given twice.
fn next_field<'de, F: FieldName, A: MapAccess<'de>>(
    map: &mut A,
    seen: &mut u32,
) -> Result<Option<F>, A::Error> {
    let Some(Key(field)) = map.next_key::<Key<F>>()? else {
        return Ok(None);
    };
    let bit = field.bit();
    if *seen & bit != 0 {
        return Err(refuse());
    }
    *seen |= bit;
    Ok(Some(field))
}

#[derive(Clone, Copy)]
enum Top {
    Uuid,
    Event,
    Counter,
    Created,
    RunId,
    RunnerIdent,
    Labels,
    ParentUuid,
    Controller,
    Stdout,
    EventData,
    Other,
}

impl FieldName for Top {
    fn of(key: &str) -> Self {
        match key {
            "uuid" => Top::Uuid,
            "event" => Top::Event,
            "counter" => Top::Counter,
            "created" => Top::Created,
            "run_id" => Top::RunId,
            "runner_ident" => Top::RunnerIdent,
            "labels" => Top::Labels,
            "parent_uuid" => Top::ParentUuid,
            "controller" => Top::Controller,
            "stdout" => Top::Stdout,
            "event_data" => Top::EventData,
            _ => Top::Other,
        }
    }
    fn bit(&self) -> u32 {
        match self {
            Top::Other => 0,
            f => 1 << (*f as u32),
        }
    }
}

/// The envelope of one event as parsed; the rules are applied in `into_event`.
#[derive(Default)]
struct Envelope<'a> {
    uuid: Option<Val<'a>>,
    event: Option<Val<'a>>,
    counter: Option<Val<'a>>,
    created: Option<Val<'a>>,
    /// `None` when the key is absent; `Some(None)` when it is null.
    run_id: Option<Option<Val<'a>>>,
    runner_ident: Option<Val<'a>>,
    labels: Option<Vec<(Cow<'a, str>, Cow<'a, str>)>>,
    controller: Option<Cow<'a, str>>,
    data: Data<'a>,
}

/// What of `event_data` Herald keeps.
#[derive(Default)]
struct Data<'a> {
    playbook: Option<Cow<'a, str>>,
    host: Option<Cow<'a, str>>,
    changed: bool,
}

/// A string or null whose content is not kept (`parent_uuid`, `stdout`, `event_data.task`, ...).
fn string_or_null<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    match map.next_value::<Checked>()?.0 {
        Kind::Null | Kind::String => Ok(()),
        _ => Err(refuse()),
    }
}

fn opt_string<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Cow<'de, str>>, A::Error> {
    Val::opt_str(Some(map.next_value::<Val<'de>>()?)).map_err(|()| refuse())
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
                let mut e = Envelope::default();
                let mut seen = 0;
                while let Some(field) = next_field::<Top, A>(&mut map, &mut seen)? {
                    match field {
                        Top::Uuid => e.uuid = Some(map.next_value()?),
                        Top::Event => e.event = Some(map.next_value()?),
                        Top::Counter => e.counter = Some(map.next_value()?),
                        Top::Created => e.created = Some(map.next_value()?),
                        Top::RunId => {
                            e.run_id = Some(match map.next_value::<Val<'de>>()? {
                                Val::Other(Kind::Null) => None,
                                v => Some(v),
                            })
                        }
                        Top::RunnerIdent => e.runner_ident = Some(map.next_value()?),
                        Top::Labels => e.labels = map.next_value::<Labels<'de>>()?.0,
                        Top::ParentUuid | Top::Stdout => string_or_null(&mut map)?,
                        Top::Controller => e.controller = opt_string(&mut map)?,
                        Top::EventData => e.data = map.next_value::<EventData<'de>>()?.0,
                        Top::Other => {
                            map.next_value::<Checked>()?;
                        }
                    }
                }
                Ok(e)
            }
        }
        // Only an object: a derived struct would also take an array.
        d.deserialize_map(V)
    }
}

/// `labels`: null, or an object of strings with distinct keys.
struct Labels<'a>(Option<Vec<(Cow<'a, str>, Cow<'a, str>)>>);

impl<'de> Deserialize<'de> for Labels<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Labels<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_unit<E>(self) -> Result<Labels<'de>, E> {
                Ok(Labels(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels<'de>, A::Error> {
                let mut out: Vec<(Cow<'de, str>, Cow<'de, str>)> = Vec::new();
                while let Some(k) = map.next_key::<Val<'de>>()? {
                    let Val::Str(k) = k else {
                        return Err(refuse());
                    };
                    let Val::Str(v) = map.next_value::<Val<'de>>()? else {
                        return Err(refuse());
                    };
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(refuse());
                    }
                    out.push((k, v));
                }
                Ok(Labels(Some(out)))
            }
        }
        d.deserialize_any(V)
    }
}

/// How an `event_data` field is checked (`EVENT_DATA_STRINGS`,
/// `EVENT_DATA_OBJECTS`, `STATS_MAPS`, `duration`, `ignore_errors`); a test keeps this in
/// step with those lists.
#[derive(Clone, Copy, Debug, PartialEq)]
enum DataField {
    /// Kept strings.
    Playbook,
    Host,
    /// Timestamps (strings that must parse).
    Start,
    End,
    /// Other strings of `EVENT_DATA_STRINGS`.
    Str(u8),
    Res,
    /// Other objects of `EVENT_DATA_OBJECTS`.
    Obj(u8),
    /// Per-host counts of `STATS_MAPS`.
    Stats(u8),
    Duration,
    IgnoreErrors,
    Other,
}

impl FieldName for DataField {
    fn of(key: &str) -> Self {
        use DataField::*;
        match key {
            "playbook" => Playbook,
            "host" => Host,
            "start" => Start,
            "end" => End,
            "playbook_uuid" => Str(0),
            "play" => Str(1),
            "play_uuid" => Str(2),
            "play_pattern" => Str(3),
            "task" => Str(4),
            "task_uuid" => Str(5),
            "task_action" => Str(6),
            "task_path" => Str(7),
            "task_args" => Str(8),
            "remote_addr" => Str(9),
            "res" => Res,
            "artifact_data" => Obj(0),
            "custom_stats" => Obj(1),
            "herald" => Obj(2),
            "changed" => Stats(0),
            "dark" => Stats(1),
            "failures" => Stats(2),
            "ignored" => Stats(3),
            "ok" => Stats(4),
            "processed" => Stats(5),
            "rescued" => Stats(6),
            "skipped" => Stats(7),
            "duration" => Duration,
            "ignore_errors" => IgnoreErrors,
            _ => Other,
        }
    }
    fn bit(&self) -> u32 {
        use DataField::*;
        match self {
            Playbook => 1,
            Host => 1 << 1,
            Start => 1 << 2,
            End => 1 << 3,
            Res => 1 << 4,
            Duration => 1 << 5,
            IgnoreErrors => 1 << 6,
            Str(i) => 1 << (7 + u32::from(*i)),
            Obj(i) => 1 << (17 + u32::from(*i)),
            Stats(i) => 1 << (20 + u32::from(*i)),
            Other => 0,
        }
    }
}

/// `event_data`: null or an object.
struct EventData<'a>(Data<'a>);

impl<'de> Deserialize<'de> for EventData<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EventData<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_unit<E>(self) -> Result<EventData<'de>, E> {
                Ok(EventData(Data::default()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventData<'de>, A::Error> {
                let mut data = Data::default();
                let mut seen = 0;
                while let Some(field) = next_field::<DataField, A>(&mut map, &mut seen)? {
                    match field {
                        DataField::Playbook => data.playbook = opt_string(&mut map)?,
                        DataField::Host => data.host = opt_string(&mut map)?,
                        DataField::Start | DataField::End => {
                            if let Some(t) = opt_string(&mut map)? {
                                parse_time(&t).ok_or_else(refuse)?;
                            }
                        }
                        DataField::Str(_) => string_or_null(&mut map)?,
                        DataField::Res => data.changed = map.next_value::<Res>()?.0,
                        DataField::Obj(_) => match map.next_value::<Checked>()?.0 {
                            Kind::Null | Kind::Object => {}
                            _ => return Err(refuse()),
                        },
                        DataField::Stats(_) => {
                            map.next_value::<Counts>()?;
                        }
                        DataField::Duration => match map.next_value::<Checked>()?.0 {
                            Kind::Null | Kind::Number => {}
                            _ => return Err(refuse()),
                        },
                        DataField::IgnoreErrors => match map.next_value::<Checked>()?.0 {
                            Kind::Null | Kind::Bool(_) => {}
                            _ => return Err(refuse()),
                        },
                        DataField::Other => {
                            map.next_value::<Checked>()?;
                        }
                    }
                }
                Ok(EventData(data))
            }
        }
        d.deserialize_any(V)
    }
}

/// A per-host stats map: null, or an object of integers in
/// `0..=MAX_SAFE_INTEGER` (the reference names the host at fault).
struct Counts;

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Counts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of counts")
            }
            fn visit_unit<E>(self) -> Result<Counts, E> {
                Ok(Counts)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Counts, A::Error> {
                while map.next_key::<Checked>()?.is_some() {
                    match map.next_value::<Val<'de>>()? {
                        Val::U64(n) if n <= MAX_SAFE_INTEGER => {}
                        _ => return Err(refuse()),
                    }
                }
                Ok(Counts)
            }
        }
        d.deserialize_any(V)
    }
}

enum ResField {
    Changed,
    Other,
}

impl FieldName for ResField {
    fn of(key: &str) -> Self {
        match key {
            "changed" => ResField::Changed,
            _ => ResField::Other,
        }
    }
    fn bit(&self) -> u32 {
        match self {
            ResField::Changed => 1,
            ResField::Other => 0,
        }
    }
}

/// `event_data.res`: null or an object; keeps `changed` when it is a boolean.
struct Res(bool);

impl<'de> Deserialize<'de> for Res {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Res;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_unit<E>(self) -> Result<Res, E> {
                Ok(Res(false))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Res, A::Error> {
                let mut changed = false;
                let mut seen = 0;
                while let Some(field) = next_field::<ResField, A>(&mut map, &mut seen)? {
                    let value = map.next_value::<Checked>()?.0;
                    if let ResField::Changed = field {
                        changed = value == Kind::Bool(true);
                    }
                }
                Ok(Res(changed))
            }
        }
        d.deserialize_any(V)
    }
}

impl Envelope<'_> {
    /// Applies the rules of `validate` to what the visitors collected (types
    /// and `event_data` were checked while parsing).
    fn into_event(self, text: &Arc<String>, start: usize, end: usize) -> Option<WireEvent> {
        let uuid = id(self.uuid).ok()??;
        let kind = match self.event? {
            Val::Str(name) => EventKind::parse(&name)?,
            _ => return None,
        };
        let counter = match self.counter? {
            Val::U64(n) if n <= MAX_SAFE_INTEGER => n,
            _ => return None,
        };
        let created_ms = match self.created? {
            Val::Str(s) => parse_time(&s)?,
            _ => return None,
        };
        let (run_id, text, start, end) = match self.run_id {
            Some(Some(v)) => (id(Some(v)).ok()??, text.clone(), start, end),
            // A null `run_id` with a `runner_ident` is replaced in place: the reference's job.
            Some(None) => return None,
            None => {
                let ident = id(self.runner_ident).ok()??;
                // Only this event is written again: `run_id` goes first.
                let rest = text.get(start..end)?.strip_prefix('{')?;
                let body = format!(
                    "{{\"run_id\":{},{rest}",
                    serde_json::to_string(ident.as_ref()).ok()?
                );
                let len = body.len();
                (ident, Arc::new(body), 0, len)
            }
        };
        Some(WireEvent {
            uuid: uuid.into_owned(),
            kind,
            counter,
            created_ms,
            run_id: run_id.into_owned(),
            playbook: self.data.playbook.map(Cow::into_owned),
            controller: self.controller.map(Cow::into_owned),
            host: self.data.host.map(Cow::into_owned),
            labels: self.labels.map(|l| {
                l.into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            }),
            changed: self.data.changed,
            text,
            start,
            end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{validate, EVENT_DATA_OBJECTS, EVENT_DATA_STRINGS, STATS_MAPS};
    use super::*;
    use serde_json::Value;

    fn fast(line: &str) -> Option<WireEvent> {
        parse_event(&Arc::new(line.to_string()), 0, line.len())
    }

    fn reference(line: &str) -> Option<WireEvent> {
        validate(serde_json::from_str(line).ok()?).ok()
    }

    fn same(a: &WireEvent, b: &WireEvent) {
        assert_eq!(
            (&a.uuid, a.kind, a.counter, a.created_ms, &a.run_id),
            (&b.uuid, b.kind, b.counter, b.created_ms, &b.run_id)
        );
        assert_eq!(
            (a.playbook(), a.controller(), a.host(), a.status()),
            (b.playbook(), b.controller(), b.host(), b.status())
        );
        let labels = |e: &WireEvent| {
            let mut l = e.labels.clone();
            if let Some(l) = l.as_mut() {
                l.sort();
            }
            l
        };
        assert_eq!(labels(a), labels(b));
        let parsed = |e: &WireEvent| serde_json::from_str::<Value>(e.body()).unwrap();
        assert_eq!(parsed(a), parsed(b), "same JSON content");
    }

    const GOOD: &str = r#"{"uuid": "u1", "event": "runner_on_ok", "counter": 3, "created": "2026-11-21T10:00:00.5+00:00", "run_id": "r1", "controller": "ctl", "stdout": "\u001b[0;33mchanged\u001b[0m", "labels": {"env": "prod", "team": "w\u00e9b"}, "event_data": {"playbook": "site.yml", "host": "h1", "task_args": "", "res": {"changed": true, "rc": 0, "cmd": ["a", 1.5e3, null, {"x": [true]}]}, "duration": 0.5, "ignore_errors": null, "start": "2026-11-21T10:00:00.1+00:00", "extra": {"deep": [[[]]]}}, "unknown": -7}"#;

    /// Every line: when the fast path accepts it, the reference accepts it
    /// with the same fields and content. The first group must be accepted.
    #[test]
    fn agrees_with_the_reference() {
        let accepted = [
            GOOD.to_string(),
            r#"{"uuid":"u","event":"playbook_on_stats","counter":0,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"changed":{},"ok":{"h":1},"dark":null}}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01 00:00:00.1","run_id":"r","event_data":null,"labels":null,"parent_uuid":null}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"res":{"changed":"yes"}}}"#.into(),
            r#"{"uuid":"u\u0031","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","runner_ident":5}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","runner_ident":"id\"7"}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","labels":{}}"#.into(),
            format!(r#"{{"uuid":"{}","event":"verbose","counter":9007199254740991,"created":"2026-01-01T00:00:00","run_id":"r"}}"#, "u".repeat(128)),
            format!(r#"{{"uuid":"{}","event":"verbose","counter":1,"created":"2026-01-01T00:00:00","run_id":"r"}}"#, "é".repeat(128)),
            r#"{"uuid":"u","event":"playbook_on_stats","counter":0,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"failures":{"h1":0,"h2":9007199254740991},"rescued":{},"skipped":null,"processed":{"h1":1}}}"#.into(),
        ];
        for line in &accepted {
            let f = fast(line).unwrap_or_else(|| panic!("fast path refused {line}"));
            let r = reference(line).unwrap_or_else(|| panic!("reference refused {line}"));
            same(&f, &r);
        }
        let others = [
            r#"[]"#.to_string(),
            r#"["u", "runner_on_ok", 1, "2026-01-01T00:00:00", "r"]"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","uuid":"v"}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":null,"runner_ident":"i"}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":""}"#.into(),
            format!(r#"{{"uuid":"{}","event":"verbose","counter":1,"created":"2026-01-01T00:00:00","run_id":"r"}}"#, "u".repeat(129)),
            format!(r#"{{"uuid":"{}","event":"verbose","counter":1,"created":"2026-01-01T00:00:00","run_id":"r"}}"#, "é".repeat(129)),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1.0,"created":"2026-01-01T00:00:00","run_id":"r"}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":18446744073709551616,"created":"2026-01-01T00:00:00","run_id":"r"}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":18446744073709551615,"created":"2026-01-01T00:00:00","run_id":"r"}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":9223372036854775808,"created":"2026-01-01T00:00:00","run_id":"r"}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":9007199254740992,"created":"2026-01-01T00:00:00","run_id":"r"}"#.into(),
            r#"{"uuid":"u","event":"playbook_on_stats","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"failures":{"h1":"1"}}}"#.into(),
            r#"{"uuid":"u","event":"playbook_on_stats","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"ok":{"h1":-1}}}"#.into(),
            r#"{"uuid":"u","event":"playbook_on_stats","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"dark":{"h1":1e300}}}"#.into(),
            r#"{"uuid":"u","event":"playbook_on_stats","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"changed":{"h1":1.0}}}"#.into(),
            r#"{"uuid":"u","event":"playbook_on_stats","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"skipped":{"h1":null}}}"#.into(),
            r#"{"uuid":"u","event":"playbook_on_stats","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"ignored":{"h1":9007199254740992}}}"#.into(),
            r#"{"uuid":"u","event":"playbook_on_stats","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"processed":[1]}}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","x":1e400}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","x":"\ud800"}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","labels":{"a":"1","a":"2"}}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","labels":{"a":1}}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","labels":[]}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","stdout":1}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":[]}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"res":["changed"]}}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"res":{"changed":true,"changed":false}}}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"end":"later"}}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"duration":"1s"}}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"ignore_errors":1}}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"failures":[]}}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r","event_data":{"task":{}}}"#.into(),
            r#"{"uuid":"u","event":"runner_on_ok","counter":1,"created":"2026-01-01T00:00:00","run_id":"r"} x"#.into(),
            r#"{"uuid":"u","event":"runner_on_nothing","counter":1,"created":"2026-01-01T00:00:00","run_id":"r"}"#.into(),
        ];
        for line in &others {
            if let Some(f) = fast(line) {
                same(&f, &reference(line).expect("the reference accepts it"));
            }
        }
        // The invalid ones among them are refused by the fast path.
        for line in &others[4..] {
            if reference(line).is_none() {
                assert!(fast(line).is_none(), "fast path accepted {line}");
            }
        }
    }

    #[test]
    fn the_body_is_the_text_as_sent() {
        let text = Arc::new(format!("  {GOOD} \r\n"));
        let start = 2;
        let end = 2 + GOOD.len();
        let e = parse_event(&text, start, end).unwrap();
        assert_eq!(e.body(), GOOD);
        assert_eq!(e.label("team"), Some("wéb"));
        assert_eq!(e.status(), Some(super::super::Status::Changed));
    }

    #[test]
    fn runner_ident_is_written_in_as_run_id() {
        let line = r#"{"uuid": "u", "event": "runner_on_ok", "counter": 1, "created": "2026-01-01T00:00:00", "runner_ident": "job \"7\"", "event_data": {"host": "h"}}"#;
        let e = fast(line).unwrap();
        assert_eq!(e.run_id, "job \"7\"");
        let mut body: Value = serde_json::from_str(e.body()).unwrap();
        assert_eq!(body["run_id"], "job \"7\"");
        body.as_object_mut().unwrap().remove("run_id");
        assert_eq!(body, serde_json::from_str::<Value>(line).unwrap());
    }

    #[test]
    fn arrays_keep_each_element_as_sent() {
        let a = r#"{"uuid":"a","event":"verbose","counter":1,"created":"2026-01-01T00:00:00","run_id":"r"}"#;
        let b = r#"{ "uuid" : "b", "event":"verbose","counter":2,"created":"2026-01-01T00:00:00","run_id":"r" }"#;
        let text = Arc::new(format!("\n [ {a} ,\n\t{b}]\r\n"));
        let events = parse_array(&text).unwrap();
        let bodies: Vec<&str> = events.iter().map(WireEvent::body).collect();
        assert_eq!(bodies, [a, b]);
        let one = Arc::new(format!(" {b} "));
        assert_eq!(parse_array(&one).unwrap()[0].body(), b);
        for bad in [
            "[]",
            "[1]",
            "1",
            &format!("[{a}] x"),
            &format!("[{a},]"),
            &format!("[{a}"),
        ] {
            assert!(parse_array(&Arc::new(bad.to_string())).is_none(), "{bad}");
        }
    }

    /// The `match` in `DataField::of` must classify exactly the validation lists.
    #[test]
    fn event_data_fields_follow_the_lists() {
        let mut bits = 0u32;
        for key in EVENT_DATA_STRINGS {
            let f = DataField::of(key);
            assert!(
                matches!(
                    f,
                    DataField::Playbook
                        | DataField::Host
                        | DataField::Start
                        | DataField::End
                        | DataField::Str(_)
                ),
                "{key}"
            );
            assert_eq!(bits & f.bit(), 0, "{key} shares a bit");
            bits |= f.bit();
        }
        for key in EVENT_DATA_OBJECTS {
            let f = DataField::of(key);
            assert!(matches!(f, DataField::Res | DataField::Obj(_)), "{key}");
            assert_eq!(bits & f.bit(), 0, "{key} shares a bit");
            bits |= f.bit();
        }
        for key in STATS_MAPS {
            let f = DataField::of(key);
            assert!(matches!(f, DataField::Stats(_)), "{key}");
            assert_eq!(bits & f.bit(), 0, "{key} shares a bit");
            bits |= f.bit();
        }
        assert_eq!(DataField::of("duration"), DataField::Duration);
        assert_eq!(DataField::of("ignore_errors"), DataField::IgnoreErrors);
        let named = EVENT_DATA_STRINGS.len() + EVENT_DATA_OBJECTS.len() + STATS_MAPS.len();
        assert_eq!(bits.count_ones() as usize, named);
    }
}
