//! `herald-event`: the wire event (docs/wire-format.md), the bottom of the
//! host's crate graph.
//!
//! It owns what an event means to Herald: the kinds ([`EventKind`]), the
//! host-result [`Status`], validation of what producers send (the reference
//! [`validate`], which names the wrong field, and the fast path
//! [`parse_event`] / [`parse_array`] over the event text), the validated
//! [`WireEvent`], [`routes`]: which events a plugin instance receives, and
//! [`shard`]: which of an instance's delivery streams a run belongs to.
//!
//! It depends on no other host crate; every other host crate may depend on it.

use serde_json::{Map, Value};
use std::sync::Arc;
use thiserror::Error;

mod fast;
pub mod routes;
pub mod shard;
pub use fast::{parse_array, parse_event};

/// Every event name Herald accepts, in ansible-runner's spelling.
// The names are derived from the variants (snake_case): this enum is the
// one table of kinds. strum's `EnumString` is a `match` on the text (no
// allocation, no linear search), `IntoStaticStr` a `match` to a literal.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::EnumCount,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum EventKind {
    PlaybookOnStart,
    PlaybookOnPlayStart,
    PlaybookOnTaskStart,
    PlaybookOnHandlerTaskStart,
    PlaybookOnCleanupTaskStart,
    PlaybookOnNoHostsMatched,
    PlaybookOnNoHostsRemaining,
    PlaybookOnInclude,
    PlaybookOnNotify,
    PlaybookOnVarsPrompt,
    PlaybookOnImportForHost,
    PlaybookOnNotImportForHost,
    PlaybookOnSetup,
    PlaybookOnStats,
    RunnerOnStart,
    RunnerOnOk,
    RunnerOnFailed,
    RunnerOnSkipped,
    RunnerOnUnreachable,
    RunnerOnNoHosts,
    RunnerOnAsyncPoll,
    RunnerOnAsyncOk,
    RunnerOnAsyncFailed,
    RunnerItemOnOk,
    RunnerItemOnFailed,
    RunnerItemOnSkipped,
    RunnerRetry,
    RunnerOnFileDiff,
    Verbose,
    Debug,
    Warning,
    Deprecated,
    Error,
    SystemWarning,
}

impl EventKind {
    /// All kinds, in the order of the WIT enum (the order of declaration).
    // An array (not strum's slice) so that callers iterate kinds by value.
    pub const ALL: [EventKind; <Self as strum::EnumCount>::COUNT] = {
        let variants = <Self as strum::VariantArray>::VARIANTS;
        let mut all = [Self::PlaybookOnStart; <Self as strum::EnumCount>::COUNT];
        let mut i = 0;
        while i < all.len() {
            all[i] = variants[i];
            i += 1;
        }
        all
    };

    /// The ansible-runner name (`runner_on_ok`).
    #[inline]
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses an ansible-runner event name.
    #[inline]
    pub fn parse(name: &str) -> Option<Self> {
        name.parse().ok()
    }

    /// Host result events: these carry a host, a status and usually a result.
    #[inline]
    pub fn is_host_result(self) -> bool {
        matches!(
            self,
            Self::RunnerOnOk
                | Self::RunnerOnFailed
                | Self::RunnerOnSkipped
                | Self::RunnerOnUnreachable
                | Self::RunnerOnAsyncOk
                | Self::RunnerOnAsyncFailed
                | Self::RunnerItemOnOk
                | Self::RunnerItemOnFailed
                | Self::RunnerItemOnSkipped
        )
    }
}

/// The outcome of a host's task, derived from the kind and `res.changed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Changed,
    Failed,
    Unreachable,
    Skipped,
}

impl Status {
    /// Derives the status of a host result event; `None` for other events.
    #[inline]
    pub fn of(kind: EventKind, changed: bool) -> Option<Status> {
        use EventKind::*;
        Some(match kind {
            RunnerOnOk | RunnerOnAsyncOk | RunnerItemOnOk => {
                if changed {
                    Status::Changed
                } else {
                    Status::Ok
                }
            }
            RunnerOnFailed | RunnerOnAsyncFailed | RunnerItemOnFailed => Status::Failed,
            RunnerOnSkipped | RunnerItemOnSkipped => Status::Skipped,
            RunnerOnUnreachable => Status::Unreachable,
            _ => return None,
        })
    }

    /// The lowercase name.
    #[inline]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Failed => "failed",
            Status::Unreachable => "unreachable",
            Status::Skipped => "skipped",
        }
    }
}

/// Why an event was refused; names the field as a dotted path.
#[derive(Debug, Error, PartialEq)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path of the offending field (`event_data.host`).
    pub field: String,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An event that passed validation: the fields the journal indexes and routes
/// match on, and the event's JSON text as it is journaled.
#[derive(Debug, Clone)]
pub struct WireEvent {
    pub uuid: String,
    pub kind: EventKind,
    pub counter: u64,
    pub created_ms: i64,
    pub run_id: String,
    playbook: Option<String>,
    controller: Option<String>,
    host: Option<String>,
    labels: Option<Vec<(String, String)>>,
    changed: bool,
    /// The event's JSON text: `text[start..end]`. Events of one request share
    /// the request body, so journaling one stores the bytes as sent.
    text: Arc<String>,
    start: usize,
    end: usize,
}

impl WireEvent {
    /// The whole event as JSON text: as sent, or with `run_id` filled in from
    /// `runner_ident` when absent.
    #[inline]
    pub fn body(&self) -> &str {
        &self.text[self.start..self.end]
    }

    /// `event_data.playbook`, if present.
    #[inline]
    pub fn playbook(&self) -> Option<&str> {
        self.playbook.as_deref()
    }

    /// `controller`, if present.
    #[inline]
    pub fn controller(&self) -> Option<&str> {
        self.controller.as_deref()
    }

    /// `event_data.host`, if present.
    #[inline]
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The run labels (from `labels` in the envelope), in the order sent.
    pub fn labels(&self) -> &[(String, String)] {
        self.labels.as_deref().unwrap_or(&[])
    }

    /// The run label `key` (from `labels` in the envelope), if present.
    #[inline]
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .as_ref()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The host result's status, if this is a host result event.
    #[inline]
    pub fn status(&self) -> Option<Status> {
        Status::of(self.kind, self.changed)
    }
}

const MAX_ID_LEN: usize = 128;

/// The largest integer Herald accepts in `counter` and the per-host stats:
/// 2^53−1, the largest integer every JSON reader (JavaScript, jq) holds
/// exactly, and the OpenAPI maximum. Larger values would be stored wrapped
/// or rounded.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// `event_data` keys of `playbook_on_stats` that map a host to a count.
pub const STATS_MAPS: &[&str] = &[
    "changed",
    "dark",
    "failures",
    "ignored",
    "ok",
    "processed",
    "rescued",
    "skipped",
];

/// One host's counts in a `playbook_on_stats` event: its PLAY RECAP line
/// (`unreachable` is Ansible's `dark`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCounts {
    pub ok: u64,
    pub changed: u64,
    pub unreachable: u64,
    pub failures: u64,
    pub skipped: u64,
    pub rescued: u64,
    pub ignored: u64,
}

/// What a `playbook_on_stats` event says of its run, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunOutcome {
    Ok = 0,
    Unreachable = 1,
    Failed = 2,
}

impl RunOutcome {
    /// The lowercase name: `ok`, `unreachable` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Unreachable => "unreachable",
            RunOutcome::Failed => "failed",
        }
    }

    /// The outcome a stats event's body reports: failed if a host has
    /// failures, else unreachable if one was unreachable, else ok.
    pub fn of_stats(body: &str) -> RunOutcome {
        let Ok(v) = serde_json::from_str::<Value>(body) else {
            return RunOutcome::Ok;
        };
        let Some(data) = v.get("event_data").and_then(Value::as_object) else {
            return RunOutcome::Ok;
        };
        let hosts = host_stats(data);
        if hosts.values().any(|h| h.failures > 0) {
            RunOutcome::Failed
        } else if hosts.values().any(|h| h.unreachable > 0) {
            RunOutcome::Unreachable
        } else {
            RunOutcome::Ok
        }
    }
}

/// Per-host counts of a `playbook_on_stats` event's `event_data`: every host
/// any of [`STATS_MAPS`] names, in host order, with 0 where a map does not
/// name it (or holds something other than a count).
pub fn host_stats(
    event_data: &Map<String, Value>,
) -> std::collections::BTreeMap<String, HostCounts> {
    // One pass over each map (not a lookup per host and map).
    let mut hosts: std::collections::BTreeMap<String, HostCounts> = Default::default();
    for map in STATS_MAPS {
        let Some(m) = event_data.get(*map).and_then(Value::as_object) else {
            continue;
        };
        for (h, v) in m {
            let counts = match hosts.get_mut(h.as_str()) {
                Some(c) => c,
                None => hosts.entry(h.clone()).or_default(),
            };
            let n = v.as_u64().unwrap_or(0);
            match *map {
                "ok" => counts.ok = n,
                "changed" => counts.changed = n,
                "dark" => counts.unreachable = n,
                "failures" => counts.failures = n,
                "skipped" => counts.skipped = n,
                "rescued" => counts.rescued = n,
                "ignored" => counts.ignored = n,
                _ => {}
            }
        }
    }
    hosts
}

/// The message of a number outside `0..=MAX_SAFE_INTEGER`.
fn count_message() -> String {
    format!("must be an integer from 0 to {MAX_SAFE_INTEGER}")
}

/// Typed expectations for `event_data` fields that have a meaning to Herald:
/// the keys whose value must be a string.
pub const EVENT_DATA_STRINGS: &[&str] = &[
    "playbook",
    "playbook_uuid",
    "play",
    "play_uuid",
    "play_pattern",
    "task",
    "task_uuid",
    "task_action",
    "task_path",
    "task_args",
    "host",
    "remote_addr",
    "start",
    "end",
];
/// The `event_data` keys whose value must be an object.
pub const EVENT_DATA_OBJECTS: &[&str] = &["res", "artifact_data", "custom_stats", "herald"];

/// Reads back an event the journal stored (its body, as [`WireEvent::body`]
/// gave it): the fast path, then the reference. `None` only for a body that
/// no longer validates (written by an older version with other rules).
pub fn parse_stored(body: &str) -> Option<WireEvent> {
    let text = std::sync::Arc::new(body.to_string());
    fast::parse_event(&text, 0, text.len())
        .or_else(|| validate(serde_json::from_str(body).ok()?).ok())
}

/// Validates one event of a batch given as a `Value`: the reference
/// implementation of the wire rules, which also names what is wrong.
/// [`parse_event`] is the fast path for event text; the journaled body is
/// this value serialised again.
pub fn validate(value: Value) -> Result<WireEvent, FieldError> {
    let Value::Object(mut body) = value else {
        return Err(FieldError::new("", "an event must be a JSON object"));
    };
    let uuid = id_field(&body, "uuid")?.ok_or_else(|| FieldError::new("uuid", "is required"))?;
    let kind_name = match body.get("event") {
        None => return Err(FieldError::new("event", "is required")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(FieldError::new("event", "must be a string")),
    };
    let kind = EventKind::parse(&kind_name).ok_or_else(|| {
        FieldError::new(
            "event",
            format!("unknown event name {kind_name:?} (see docs/wire-format.md)"),
        )
    })?;
    let counter = match body.get("counter") {
        None => return Err(FieldError::new("counter", "is required")),
        Some(v) => whole(v).ok_or_else(|| FieldError::new("counter", count_message()))?,
    };
    // `3.0` is stored as `3`: readers of the journal take integers only.
    body.insert("counter".into(), Value::from(counter));
    let created_ms = match body.get("created") {
        None => return Err(FieldError::new("created", "is required")),
        Some(Value::String(s)) => parse_time(s)
            .ok_or_else(|| FieldError::new("created", "must be an ISO 8601 timestamp"))?,
        Some(_) => return Err(FieldError::new("created", "must be a string")),
    };
    let run_id = match id_field(&body, "run_id")? {
        Some(id) => id,
        None => match id_field(&body, "runner_ident")? {
            Some(id) => {
                body.insert("run_id".into(), Value::String(id.clone()));
                id
            }
            None => return Err(FieldError::new("run_id", "is required")),
        },
    };
    match body.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            if let Some((k, _)) = labels.iter().find(|(_, v)| !v.is_string()) {
                return Err(FieldError::new(format!("labels.{k}"), "must be a string"));
            }
        }
        Some(_) => return Err(FieldError::new("labels", "must be an object of strings")),
    }
    for key in ["parent_uuid", "controller", "stdout"] {
        match body.get(key) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err(FieldError::new(key, "must be a string")),
        }
    }
    match body.get_mut("event_data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(data)) => validate_event_data(data)?,
        Some(_) => return Err(FieldError::new("event_data", "must be an object")),
    }
    let data = body.get("event_data").and_then(Value::as_object);
    let data_str = |key: &str| {
        data.and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let playbook = data_str("playbook");
    let host = data_str("host");
    let changed = data
        .and_then(|d| d.get("res"))
        .and_then(|r| r.get("changed"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let controller = body
        .get("controller")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let labels = body.get("labels").and_then(Value::as_object).map(|m| {
        m.iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect()
    });
    let text = Arc::new(Value::Object(body).to_string());
    Ok(WireEvent {
        uuid,
        kind,
        counter,
        created_ms,
        run_id,
        playbook,
        controller,
        host,
        labels,
        changed,
        start: 0,
        end: text.len(),
        text,
    })
}

/// Ids are limited in characters, as the OpenAPI `maxLength` counts them.
fn too_long(s: &str) -> bool {
    // Fewer bytes than the limit is fewer characters; only longer ones are counted.
    s.len() > MAX_ID_LEN && s.chars().count() > MAX_ID_LEN
}

fn id_field(body: &Map<String, Value>, key: &str) -> Result<Option<String>, FieldError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(FieldError::new(key, "must not be empty")),
        Some(Value::String(s)) if too_long(s) => Err(FieldError::new(
            key,
            format!("must be at most {MAX_ID_LEN} characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FieldError::new(key, "must be a string")),
    }
}

/// An integer from 0 to 2^53−1, also spelled as a float with no fraction
/// (`3.0`, what JSON Schema calls an integer too).
fn whole(v: &Value) -> Option<u64> {
    let n = match v.as_u64() {
        Some(n) => n,
        None => {
            let f = v.as_f64()?;
            if f.fract() != 0.0 || !(0.0..=MAX_SAFE_INTEGER as f64).contains(&f) {
                return None;
            }
            f as u64
        }
    };
    (n <= MAX_SAFE_INTEGER).then_some(n)
}

fn validate_event_data(data: &mut Map<String, Value>) -> Result<(), FieldError> {
    for key in EVENT_DATA_STRINGS {
        match data.get(*key) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => {
                return Err(FieldError::new(
                    format!("event_data.{key}"),
                    "must be a string",
                ))
            }
        }
    }
    for key in ["start", "end"] {
        if let Some(Value::String(s)) = data.get(key) {
            if parse_time(s).is_none() {
                return Err(FieldError::new(
                    format!("event_data.{key}"),
                    "must be an ISO 8601 timestamp",
                ));
            }
        }
    }
    for key in EVENT_DATA_OBJECTS {
        match data.get(*key) {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(_) => {
                return Err(FieldError::new(
                    format!("event_data.{key}"),
                    "must be an object",
                ))
            }
        }
    }
    // Per-host counts: a string, a negative or 1e300 would make a nonsense recap.
    for key in STATS_MAPS {
        match data.get_mut(*key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(hosts)) => {
                for (host, n) in hosts.iter_mut() {
                    let Some(count) = whole(n) else {
                        return Err(FieldError::new(
                            format!("event_data.{key}.{host}"),
                            count_message(),
                        ));
                    };
                    *n = Value::from(count);
                }
            }
            Some(_) => {
                return Err(FieldError::new(
                    format!("event_data.{key}"),
                    "must be an object of host names to counts",
                ))
            }
        }
    }
    match data.get("duration") {
        None | Some(Value::Null) | Some(Value::Number(_)) => {}
        Some(_) => {
            return Err(FieldError::new(
                "event_data.duration",
                "must be a number of seconds",
            ))
        }
    }
    match data.get("ignore_errors") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(_) => {
            return Err(FieldError::new(
                "event_data.ignore_errors",
                "must be a boolean",
            ))
        }
    }
    Ok(())
}

/// Parses an ISO 8601 timestamp into epoch milliseconds; a timestamp without
/// an offset is UTC, as ansible-runner writes it.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
    ] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, fmt) {
            return Some(t.timestamp_millis());
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_stats_names_every_host_of_any_map() {
        let data = serde_json::json!({
            "ok": {"a": 3, "b": 2}, "changed": {"a": 1}, "failures": {"b": 1}, "dark": {"c": 1},
            "skipped": {}, "rescued": {"b": 1}, "ignored": {"a": 1}, "processed": {"a": 1, "b": 1, "d": 1}
        });
        let hosts = super::host_stats(data.as_object().unwrap());
        assert_eq!(hosts.keys().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert_eq!(
            hosts["a"],
            super::HostCounts {
                ok: 3,
                changed: 1,
                ignored: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            hosts["b"],
            super::HostCounts {
                ok: 2,
                failures: 1,
                rescued: 1,
                ..Default::default()
            }
        );
        assert_eq!(hosts["c"].unreachable, 1);
        assert_eq!(hosts["d"], super::HostCounts::default());
    }

    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({"uuid": "u1", "event": "runner_on_ok", "counter": 3,
               "created": "2026-11-21T10:00:00.5+00:00", "run_id": "r1",
               "event_data": {"host": "h1", "res": {"changed": true}, "duration": 0.5}})
    }

    #[test]
    fn accepts_a_runner_event() {
        let e = validate(good()).unwrap();
        assert_eq!(e.kind, EventKind::RunnerOnOk);
        assert_eq!(e.counter, 3);
        assert_eq!(e.created_ms, 1_795_255_200_500);
        assert_eq!(e.run_id, "r1");
    }

    #[test]
    fn naive_times_are_utc() {
        assert_eq!(parse_time("2026-11-21T10:00:00.5"), Some(1_795_255_200_500));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn runner_ident_stands_in_for_run_id() {
        let mut v = good();
        v.as_object_mut().unwrap().remove("run_id");
        v["runner_ident"] = json!("ident-7");
        let e = validate(v).unwrap();
        assert_eq!(e.run_id, "ident-7");
        let body: Value = serde_json::from_str(e.body()).unwrap();
        assert_eq!(body["run_id"], json!("ident-7"));
    }

    #[test]
    fn names_the_offending_field() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"event": "runner_on_ok"}), "uuid"),
            (
                json!({"uuid": 5, "event": "runner_on_ok", "counter": 1, "created": "2026-01-01T00:00:00", "run_id": "r"}),
                "uuid",
            ),
            (
                json!({"uuid": "u", "event": "runner_on_nothing", "counter": 1, "created": "2026-01-01T00:00:00", "run_id": "r"}),
                "event",
            ),
            (
                json!({"uuid": "u", "event": "runner_on_ok", "counter": -1, "created": "2026-01-01T00:00:00", "run_id": "r"}),
                "counter",
            ),
            (
                json!({"uuid": "u", "event": "runner_on_ok", "counter": 1, "created": "soon", "run_id": "r"}),
                "created",
            ),
            (
                json!({"uuid": "u", "event": "runner_on_ok", "counter": 1, "created": "2026-01-01T00:00:00"}),
                "run_id",
            ),
            (
                json!({"uuid": "u", "event": "runner_on_ok", "counter": 1, "created": "2026-01-01T00:00:00", "run_id": "r", "event_data": {"host": 3}}),
                "event_data.host",
            ),
            (
                json!({"uuid": "u", "event": "runner_on_ok", "counter": 1, "created": "2026-01-01T00:00:00", "run_id": "r", "event_data": {"res": "x"}}),
                "event_data.res",
            ),
        ];
        for (v, field) in cases {
            let err = validate(v.clone()).unwrap_err();
            assert_eq!(err.field, field, "{v}");
        }
    }

    #[test]
    fn numbers_beyond_2_pow_53_and_bad_counts_are_refused() {
        let base = || {
            json!({"uuid": "u", "event": "playbook_on_stats", "counter": 1,
                   "created": "2026-01-01T00:00:00", "run_id": "r"})
        };
        for counter in [
            json!(9_007_199_254_740_992_u64),
            json!(9_223_372_036_854_775_808_u64),
            json!(u64::MAX),
        ] {
            let mut v = base();
            v["counter"] = counter.clone();
            let err = validate(v).unwrap_err();
            assert_eq!(err.field, "counter", "{counter}");
            assert_eq!(err.message, "must be an integer from 0 to 9007199254740991");
        }
        let mut v = base();
        v["counter"] = json!(MAX_SAFE_INTEGER);
        assert_eq!(validate(v).unwrap().counter, MAX_SAFE_INTEGER);
        for (key, bad) in [
            ("failures", json!("1")),
            ("ok", json!(-1)),
            ("dark", json!(1e300)),
            ("changed", json!(1.5)),
            ("skipped", json!(null)),
            ("rescued", json!(9_007_199_254_740_992_u64)),
            ("processed", json!([1])),
            ("ignored", json!(true)),
        ] {
            let mut v = base();
            v["event_data"] = json!({ key: {"host0": 1, "host1": bad} });
            let err = validate(v).unwrap_err();
            assert_eq!(err.field, format!("event_data.{key}.host1"), "{bad}");
        }
        let mut v = base();
        v["event_data"] = json!({"failures": [1]});
        assert_eq!(validate(v).unwrap_err().field, "event_data.failures");
        let mut v = base();
        v["event_data"] = json!({"ok": {"h": 3}, "failures": {"h": 0}, "dark": null});
        assert!(validate(v).is_ok());
        // A whole float is that integer (JSON Schema says so too), stored as an integer.
        let mut v = base();
        v["counter"] = json!(7.0);
        v["event_data"] = json!({"ok": {"h": 3.0}, "failures": {"h": 0}});
        let e = validate(v).unwrap();
        assert_eq!(e.counter, 7);
        let body: Value = serde_json::from_str(e.body()).unwrap();
        assert_eq!(
            (&body["counter"], &body["event_data"]["ok"]["h"]),
            (&json!(7), &json!(3))
        );
        assert!(body["counter"].is_u64() && body["event_data"]["ok"]["h"].is_u64());
    }

    #[test]
    fn every_kind_round_trips() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("Runner_On_Ok"), None);
        assert_eq!(EventKind::parse("runner_on_ok "), None);
        assert_eq!(EventKind::parse(""), None);
    }

    /// The names are the wire format (and the WIT enum's order): a renamed
    /// or reordered variant must fail here, not in a sink.
    #[test]
    fn the_names_are_ansible_runners_in_the_wit_order() {
        let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "playbook_on_start",
                "playbook_on_play_start",
                "playbook_on_task_start",
                "playbook_on_handler_task_start",
                "playbook_on_cleanup_task_start",
                "playbook_on_no_hosts_matched",
                "playbook_on_no_hosts_remaining",
                "playbook_on_include",
                "playbook_on_notify",
                "playbook_on_vars_prompt",
                "playbook_on_import_for_host",
                "playbook_on_not_import_for_host",
                "playbook_on_setup",
                "playbook_on_stats",
                "runner_on_start",
                "runner_on_ok",
                "runner_on_failed",
                "runner_on_skipped",
                "runner_on_unreachable",
                "runner_on_no_hosts",
                "runner_on_async_poll",
                "runner_on_async_ok",
                "runner_on_async_failed",
                "runner_item_on_ok",
                "runner_item_on_failed",
                "runner_item_on_skipped",
                "runner_retry",
                "runner_on_file_diff",
                "verbose",
                "debug",
                "warning",
                "deprecated",
                "error",
                "system_warning",
            ]
        );
    }
}
