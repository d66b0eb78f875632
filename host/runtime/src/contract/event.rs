//! The host's view of one journaled event: the typed fields a plugin is
//! given, in the latest contract's types. Contract 0.2.0 reads them field by
//! field (its `event` resource, [`super::v0_2::LazyEvent`]); 0.1.0 moves
//! them into its record ([`super::v0_1::event`]).

use super::{map_event_kind, EventKind, HostStats, Play, Run, Stats, Status, Task, Timing};
use serde_json::{Map, Value};
use thiserror::Error;

/// Why a journaled event cannot be given to plugins (it never will be: the
/// call is answered with a permanent failure naming this).
#[derive(Debug, Clone, Error)]
pub enum EventError {
    #[error("journaled event is not JSON: {0}")]
    NotJson(String),
    #[error("journaled event is not an object")]
    NotObject,
    #[error("unknown event kind {0:?}")]
    UnknownKind(String),
}

/// The typed fields of one event. The tenant and the journaled text itself
/// are not repeated here: whoever holds a view holds them.
#[derive(Debug, Clone)]
pub struct EventView {
    pub id: String,
    pub parent_id: Option<String>,
    pub kind: EventKind,
    pub run: Run,
    pub sequence: u64,
    pub created_ms: i64,
    pub play: Option<Play>,
    pub task: Option<Task>,
    pub host: Option<String>,
    pub status: Option<Status>,
    pub changed: bool,
    pub ignore_errors: bool,
    pub timing: Option<Timing>,
    /// The module result (`event_data.res`), as JSON text.
    pub res: Option<String>,
    pub stats: Option<Stats>,
}

/// Reads the typed fields of a journaled event.
///
/// Host events are read with a typed, borrowing parse that skips what
/// plugins are not given and keeps `res` as its raw text (no JSON tree per
/// delivery: this runs once per event and plugin instance). Stats events,
/// and anything the typed parse refuses (a duplicate key, say), take the
/// general path over a `serde_json::Value`, which gives the same result.
pub fn parse(body: &str) -> Result<EventView, EventError> {
    match fast::parse(body) {
        Some(event) => Ok(event),
        None => parse_general(body),
    }
}

/// The general parse, over a `serde_json::Value` tree.
fn parse_general(body: &str) -> Result<EventView, EventError> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| EventError::NotJson(e.to_string()))?;
    let obj = value.as_object().ok_or(EventError::NotObject)?;
    let name = str_of(obj, "event").unwrap_or_default();
    let kind = herald_event::EventKind::parse(&name)
        .ok_or_else(|| EventError::UnknownKind(name.clone()))?;
    let empty = Map::new();
    let data = obj
        .get("event_data")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let res = data.get("res").and_then(Value::as_object);
    let changed = res
        .and_then(|r| r.get("changed"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let status = status_of(kind, changed);
    let play = str_of(data, "play_uuid").map(|id| Play {
        id,
        name: str_of(data, "play").unwrap_or_default(),
        pattern: str_of(data, "play_pattern"),
    });
    let task = str_of(data, "task_uuid").map(|id| Task {
        id,
        name: str_of(data, "task").unwrap_or_default(),
        action: str_of(data, "task_action").unwrap_or_default(),
        path: str_of(data, "task_path"),
    });
    let timing = match (
        str_of(data, "start").and_then(|s| herald_event::parse_time(&s)),
        str_of(data, "end").and_then(|s| herald_event::parse_time(&s)),
    ) {
        (Some(start_ms), Some(end_ms)) => Some(Timing {
            start_ms,
            end_ms,
            duration_ms: data
                .get("duration")
                .and_then(Value::as_f64)
                .map(|d| (d * 1000.0).round().max(0.0) as u64)
                .unwrap_or_else(|| (end_ms - start_ms).max(0) as u64),
        }),
        _ => None,
    };
    let stats = (kind == herald_event::EventKind::PlaybookOnStats).then(|| stats_of(data));
    Ok(EventView {
        id: str_of(obj, "uuid").unwrap_or_default(),
        parent_id: str_of(obj, "parent_uuid"),
        kind: wit_kind(kind),
        run: Run {
            id: str_of(obj, "run_id").unwrap_or_default(),
            playbook: str_of(data, "playbook").unwrap_or_default(),
            controller: str_of(obj, "controller"),
        },
        sequence: obj.get("counter").and_then(Value::as_u64).unwrap_or(0),
        created_ms: str_of(obj, "created")
            .and_then(|s| herald_event::parse_time(&s))
            .unwrap_or(0),
        play,
        task,
        host: str_of(data, "host"),
        status,
        changed,
        ignore_errors: data
            .get("ignore_errors")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        timing,
        res: res.map(|r| Value::Object(r.clone()).to_string()),
        stats,
    })
}

/// The typed conversion of host and task events.
mod fast {
    use super::{status_of, wit_kind, EventView, Play, Run, Task, Timing};
    use herald_event::{parse_time, EventKind};
    use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde::Deserialize;
    use serde_json::value::RawValue;
    use std::marker::PhantomData;

    /// A field read the way the general path reads it: a value of another
    /// type (or `null`) counts as absent instead of failing the parse.
    struct Lenient<T>(Option<T>);

    impl<T> Default for Lenient<T> {
        fn default() -> Self {
            Lenient(None)
        }
    }

    /// The JSON scalars a lenient field accepts.
    trait Scalar: Sized {
        fn from_str(_: &str) -> Option<Self> {
            None
        }
        fn from_bool(_: bool) -> Option<Self> {
            None
        }
        fn from_u64(_: u64) -> Option<Self> {
            None
        }
        fn from_i64(_: i64) -> Option<Self> {
            None
        }
        fn from_f64(_: f64) -> Option<Self> {
            None
        }
    }

    impl Scalar for String {
        fn from_str(v: &str) -> Option<Self> {
            Some(v.to_string())
        }
    }
    impl Scalar for bool {
        fn from_bool(v: bool) -> Option<Self> {
            Some(v)
        }
    }
    impl Scalar for u64 {
        fn from_u64(v: u64) -> Option<Self> {
            Some(v)
        }
    }
    impl Scalar for f64 {
        fn from_u64(v: u64) -> Option<Self> {
            Some(v as f64)
        }
        fn from_i64(v: i64) -> Option<Self> {
            Some(v as f64)
        }
        fn from_f64(v: f64) -> Option<Self> {
            Some(v)
        }
    }

    struct LenientVisitor<T>(PhantomData<T>);

    impl<'de, T: Scalar> Visitor<'de> for LenientVisitor<T> {
        type Value = Lenient<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Lenient(T::from_str(v)))
        }
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Lenient(T::from_bool(v)))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Lenient(T::from_u64(v)))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Lenient(T::from_i64(v)))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Lenient(T::from_f64(v)))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Lenient(None))
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(Lenient(None))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Lenient(None))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Lenient(None))
        }
    }

    impl<'de, T: Scalar> Deserialize<'de> for Lenient<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(LenientVisitor(PhantomData))
        }
    }

    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(default)]
        event: Lenient<String>,
        #[serde(default)]
        uuid: Lenient<String>,
        #[serde(default)]
        parent_uuid: Lenient<String>,
        #[serde(default)]
        run_id: Lenient<String>,
        #[serde(default)]
        controller: Lenient<String>,
        #[serde(default)]
        counter: Lenient<u64>,
        #[serde(default)]
        created: Lenient<String>,
        #[serde(borrow, default)]
        event_data: Option<&'a RawValue>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Data<'a> {
        playbook: Lenient<String>,
        play_uuid: Lenient<String>,
        play: Lenient<String>,
        play_pattern: Lenient<String>,
        task_uuid: Lenient<String>,
        task: Lenient<String>,
        task_action: Lenient<String>,
        task_path: Lenient<String>,
        host: Lenient<String>,
        start: Lenient<String>,
        end: Lenient<String>,
        duration: Lenient<f64>,
        ignore_errors: Lenient<bool>,
        #[serde(borrow)]
        res: Option<&'a RawValue>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Res {
        changed: Lenient<bool>,
    }

    fn is_object(raw: &RawValue) -> bool {
        raw.get().starts_with('{')
    }

    /// `None` sends the event down the general path.
    pub(super) fn parse(body: &str) -> Option<EventView> {
        let top: Body = serde_json::from_str(body).ok()?;
        let kind = EventKind::parse(top.event.0.as_deref()?)?;
        if kind == EventKind::PlaybookOnStats {
            return None;
        }
        let data: Data = match top.event_data {
            Some(raw) if is_object(raw) => serde_json::from_str(raw.get()).ok()?,
            _ => Data::default(),
        };
        let res = data.res.filter(|r| is_object(r));
        let changed = match res {
            Some(r) => serde_json::from_str::<Res>(r.get()).ok()?.changed.0,
            None => None,
        }
        .unwrap_or(false);
        let play = data.play_uuid.0.map(|id| Play {
            id,
            name: data.play.0.unwrap_or_default(),
            pattern: data.play_pattern.0,
        });
        let task = data.task_uuid.0.map(|id| Task {
            id,
            name: data.task.0.unwrap_or_default(),
            action: data.task_action.0.unwrap_or_default(),
            path: data.task_path.0,
        });
        let timing = match (
            data.start.0.as_deref().and_then(parse_time),
            data.end.0.as_deref().and_then(parse_time),
        ) {
            (Some(start_ms), Some(end_ms)) => Some(Timing {
                start_ms,
                end_ms,
                duration_ms: data
                    .duration
                    .0
                    .map(|d| (d * 1000.0).round().max(0.0) as u64)
                    .unwrap_or_else(|| (end_ms - start_ms).max(0) as u64),
            }),
            _ => None,
        };
        Some(EventView {
            id: top.uuid.0.unwrap_or_default(),
            parent_id: top.parent_uuid.0,
            kind: wit_kind(kind),
            run: Run {
                id: top.run_id.0.unwrap_or_default(),
                playbook: data.playbook.0.unwrap_or_default(),
                controller: top.controller.0,
            },
            sequence: top.counter.0.unwrap_or(0),
            created_ms: top.created.0.as_deref().and_then(parse_time).unwrap_or(0),
            play,
            task,
            host: data.host.0,
            status: status_of(kind, changed),
            changed,
            ignore_errors: data.ignore_errors.0.unwrap_or(false),
            timing,
            res: res.map(|r| r.get().to_string()),
            stats: None,
        })
    }
}

fn str_of(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_string)
}

fn status_of(kind: herald_event::EventKind, changed: bool) -> Option<Status> {
    use herald_event::Status as S;
    Some(match S::of(kind, changed)? {
        S::Ok => Status::Ok,
        S::Changed => Status::Changed,
        S::Failed => Status::Failed,
        S::Skipped => Status::Skipped,
        S::Unreachable => Status::Unreachable,
    })
}

fn stats_of(data: &Map<String, Value>) -> Stats {
    let count = |field: &str, host: &str| -> u32 {
        data.get(field)
            .and_then(|m| m.get(host))
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32
    };
    let mut hosts: Vec<String> = Vec::new();
    for field in [
        "processed",
        "ok",
        "changed",
        "failures",
        "dark",
        "skipped",
        "rescued",
        "ignored",
    ] {
        if let Some(m) = data.get(field).and_then(Value::as_object) {
            for h in m.keys() {
                if !hosts.contains(h) {
                    hosts.push(h.clone());
                }
            }
        }
    }
    hosts.sort();
    let custom = match data.get("custom_stats").and_then(Value::as_object) {
        Some(c) if !c.is_empty() => Some(Value::Object(c.clone()).to_string()),
        _ => match data.get("artifact_data").and_then(Value::as_object) {
            Some(a) if !a.is_empty() => Some(serde_json::json!({ "_run": a }).to_string()),
            _ => None,
        },
    };
    Stats {
        hosts: hosts
            .iter()
            .map(|h| HostStats {
                host: h.clone(),
                ok: count("ok", h),
                changed: count("changed", h),
                failures: count("failures", h),
                unreachable: count("dark", h),
                skipped: count("skipped", h),
                rescued: count("rescued", h),
                ignored: count("ignored", h),
            })
            .collect(),
        custom,
    }
}

fn wit_kind(kind: herald_event::EventKind) -> EventKind {
    map_event_kind!(kind, herald_event::EventKind => EventKind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_result_gets_status_timing_and_result() {
        let body = json!({"uuid": "u", "event": "runner_on_ok", "counter": 4, "run_id": "r",
            "created": "2026-01-01T00:00:01+00:00", "controller": "ctl",
            "event_data": {"playbook": "site.yml", "play_uuid": "p", "play": "Play", "task_uuid": "t",
              "task": "Touch", "task_action": "command", "host": "h1", "res": {"changed": true, "rc": 0},
              "start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T00:00:00.250+00:00", "duration": 0.25}});
        let e = parse(&body.to_string()).unwrap();
        assert!(matches!(e.status, Some(Status::Changed)));
        assert_eq!(e.timing.as_ref().unwrap().duration_ms, 250);
        assert_eq!(e.run.playbook, "site.yml");
        assert_eq!(e.task.as_ref().unwrap().action, "command");
        assert_eq!(e.sequence, 4);
        assert!(e.res.unwrap().contains("\"rc\":0"));
    }

    #[test]
    fn typed_and_general_paths_agree() {
        let bodies = [
            json!({"uuid": "u", "event": "runner_on_failed", "counter": 4, "run_id": "r", "parent_uuid": "t",
                "created": "2026-01-01T00:00:01+00:00", "controller": "ctl",
                "event_data": {"playbook": "site.yml", "play_uuid": "p", "play": "Play", "play_pattern": "all",
                  "task_uuid": "t", "task": "Touch", "task_action": "command", "task_path": "/x.yml:3",
                  "host": "h1", "ignore_errors": true, "res": {"changed": false, "msg": "no\n\"quote\"", "rc": 2},
                  "start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T00:00:01+00:00"}}),
            // Fields of the wrong type count as absent, as in the general path.
            json!({"uuid": 5, "event": "runner_on_ok", "counter": -1, "run_id": "r", "controller": null,
                "event_data": {"host": ["h"], "duration": "slow", "ignore_errors": "yes", "res": {"changed": "yes"},
                  "start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T00:00:00.500+00:00", "task_uuid": {}}}),
            json!({"uuid": "u", "event": "playbook_on_start", "run_id": "r", "event_data": "not an object"}),
            json!({"uuid": "u", "event": "runner_on_ok", "run_id": "r", "event_data": {"res": [1, 2]}}),
        ];
        for body in bodies {
            let text = body.to_string();
            let typed = fast::parse(&text).expect("the typed path takes host events");
            let general = parse_general(&text).unwrap();
            assert_eq!(format!("{typed:?}"), format!("{general:?}"), "{text}");
        }
        // A duplicate key is refused by the typed parse and handled by the general one.
        let dup = r#"{"uuid": "u", "event": "runner_on_ok", "run_id": "r", "run_id": "s"}"#;
        assert!(fast::parse(dup).is_none());
        assert_eq!(parse(dup).unwrap().run.id, "s");
        assert!(parse(r#"{"event": "nope"}"#).is_err());
    }

    #[test]
    fn stats_event_carries_hosts_and_custom_stats() {
        let body = json!({"uuid": "u", "event": "playbook_on_stats", "counter": 9, "run_id": "r",
            "created": "2026-01-01T00:00:01", "event_data": {
              "ok": {"a": 3, "b": 2}, "changed": {"a": 1}, "failures": {"b": 1}, "dark": {},
              "skipped": {}, "rescued": {}, "ignored": {"a": 1}, "processed": {"a": 1, "b": 1},
              "artifact_data": {"x": 1}, "custom_stats": {"_run": {"x": 1}, "a": {"y": 2}}}});
        let e = parse(&body.to_string()).unwrap();
        let s = e.stats.unwrap();
        assert_eq!(s.hosts.len(), 2);
        assert_eq!(
            (s.hosts[0].ok, s.hosts[0].changed, s.hosts[0].ignored),
            (3, 1, 1)
        );
        assert_eq!(s.hosts[1].failures, 1);
        assert!(s.custom.unwrap().contains("\"a\":{\"y\":2}"));
    }
}
