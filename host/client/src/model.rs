//! The JSON shapes of the HTTP API, shared by the server (which serializes
//! them) and the client (which reads them); their OpenAPI schemas are derived
//! from these types, so the document and the answers cannot drift apart.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use utoipa::openapi::schema::{
    ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// A run's status, derived from its events.
///
/// - `running`: no `playbook_on_stats` event yet, and an event arrived within
///   the interrupted threshold;
/// - `interrupted`: no `playbook_on_stats` event and no event for longer than
///   the threshold (`interrupted_after_s`, default 3600 s);
/// - `failed`: the stats report a failure on at least one host (ignored and
///   rescued failures are not failures, as in Ansible's PLAY RECAP);
/// - `unreachable`: no failure, but at least one host unreachable;
/// - `ok`: otherwise.
// serde and strum spell the names by the same rule: no table to keep in step.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum RunStatus {
    Running,
    Ok,
    Failed,
    Unreachable,
    Interrupted,
}

impl RunStatus {
    /// Every status, in declaration order.
    pub const ALL: &'static [RunStatus] = <Self as strum::VariantArray>::VARIANTS;
    /// The name in the API (`running`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
    /// Parses a name of the API.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `invalid_parameter`, `not_found`, `unauthorized`,
    /// `invalid_json`, `invalid_event`, `payload_too_large`, ...
    pub error: String,
    /// What is wrong, for a human.
    pub message: String,
    /// Ingest: the index of the offending event in the batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// The offending field: a query parameter's name for the query API, a
    /// dotted path in the event for ingest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// One host's line of the PLAY RECAP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostStats {
    pub ok: i64,
    pub changed: i64,
    pub unreachable: i64,
    pub failures: i64,
    pub skipped: i64,
    pub rescued: i64,
    pub ignored: i64,
}

/// Where a run's host stats come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatsSource {
    /// Ansible's own `playbook_on_stats` event: exactly the PLAY RECAP.
    Stats,
    /// No stats event (running or interrupted run): tallied from the host
    /// result events received so far (rescued failures count as failures).
    Events,
}

/// Whether a listed task result was a failure or an unreachable host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskOutcome {
    Failed,
    Unreachable,
}

/// A task that failed on a host (or could not reach it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FailedTask {
    pub host: Option<String>,
    pub task: Option<String>,
    pub task_action: Option<String>,
    pub task_path: Option<String>,
    pub play: Option<String>,
    pub outcome: TaskOutcome,
    /// `ignore_errors: true`: listed, but not a failure of the run.
    pub ignored: bool,
    /// A `rescue` section took over: listed, but not a failure of the run
    /// (Ansible's `rescued` count). Known once the run's `playbook_on_stats`
    /// arrived; `false` before.
    pub rescued: bool,
    /// The module's `msg` (or `stderr`/`reason` when there is no `msg`).
    pub message: Option<String>,
    /// The event's `counter` and `uuid`.
    pub counter: i64,
    pub event_uuid: String,
    #[schema(format = DateTime)]
    pub at: String,
}

/// A run, as `GET /v1/runs` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunSummary {
    /// The run id (`run_id` of its events).
    pub id: String,
    pub playbook: Option<String>,
    pub controller: Option<String>,
    /// From `playbook_on_start`'s `event_data.herald`.
    pub user: Option<String>,
    pub ansible_version: Option<String>,
    pub check_mode: Option<bool>,
    pub status: RunStatus,
    /// The run's labels (the envelope's `labels`, merged over its events).
    pub labels: BTreeMap<String, String>,
    /// The first event's `created`.
    #[schema(format = DateTime)]
    pub started_at: String,
    /// The `playbook_on_stats` event's `created`; null until the run ends.
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    /// The latest event's `created`.
    #[schema(format = DateTime)]
    pub last_event_at: String,
    /// `ended_at - started_at` in seconds; null until the run ends.
    pub duration_s: Option<f64>,
    /// Events stored for the run.
    pub events: i64,
}

/// A run with its per-host stats and failed tasks (`GET /v1/runs/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub summary: RunSummary,
    /// `limit` (`--limit`) of the run, if any.
    pub limit: Option<String>,
    /// `--tags` of the run.
    pub tags: Vec<String>,
    /// Everything the callback reported about the run (`event_data.herald` of
    /// `playbook_on_start`): user, versions, check/diff mode, forks, AWX ids...
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
    pub stats_source: StatsSource,
    /// Per host, the PLAY RECAP counts (`unreachable` is Ansible's `dark`).
    pub hosts: BTreeMap<String, HostStats>,
    /// Every `runner_on_failed` and `runner_on_unreachable` result, in order.
    pub failed_tasks: Vec<FailedTask>,
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    pub items: Vec<RunSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A page of a run's events, in order (`counter`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// The events as they were sent (ansible-runner job events plus Herald's envelope).
    #[schema(value_type = Vec<EventDoc>)]
    pub items: Vec<Value>,
    pub next_cursor: Option<String>,
}

/// `set_stats` data of a run, as Ansible aggregated it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Artifacts {
    /// Run-wide data (`_run`, the `artifact_data` of the stats event): the
    /// shape of an AWX job's `artifacts`.
    #[schema(value_type = Object)]
    pub run: Map<String, Value>,
    /// `per_host: true` data, by host.
    #[schema(value_type = BTreeMap<String, Object>)]
    pub hosts: BTreeMap<String, Value>,
}

/// A delivery's state.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Outcome {
    /// Not delivered yet (never tried, or waiting for a retry).
    Pending,
    /// Delivered.
    Done,
    /// Given up on (dead letter): attempts exhausted or a permanent failure.
    Dead,
}

impl Outcome {
    /// Every state, in declaration order.
    pub const ALL: &'static [Outcome] = <Self as strum::VariantArray>::VARIANTS;
    /// The name in the API (`pending`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
    /// Parses a name of the API.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// One event's delivery to one plugin instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// The plugin instance (`[plugins.<name>]`).
    pub plugin: String,
    pub run_id: String,
    pub event_uuid: String,
    pub event: String,
    pub counter: i64,
    pub outcome: Outcome,
    /// Attempts made so far.
    pub attempts: i64,
    /// The last failed attempt's error (null once delivered).
    pub last_error: Option<String>,
    /// When the event was journalled for this instance.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When the delivery last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The next attempt, for a pending delivery.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
}

/// One outbound request a plugin made in a delivery attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SentRequest {
    pub method: String,
    /// Without user info or query values; a path segment that looks like a
    /// credential is `***`.
    pub url: String,
    /// The sink's status; null when no answer came.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// The first bytes (at most 512) of the sink's answer; credential fields masked.
    pub body: String,
    /// Why no answer came (refused, timeout, not in allow_http).
    pub error: Option<String>,
}

/// One delivery attempt: the plugin's outcome and message, and what it sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// Counts from 1 (a replay or a retried dead letter starts again).
    pub attempt: u32,
    #[schema(format = DateTime)]
    pub at: String,
    pub duration_ms: u64,
    /// `ok`, `retry` or `dead`.
    pub outcome: String,
    /// The plugin's reason or the fault.
    pub message: Option<String>,
    pub requests: Vec<SentRequest>,
}

/// The recorded attempts of one delivery, oldest first. Attempts that
/// succeeded without an outbound request are not recorded.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAttempts {
    pub plugin: String,
    pub run_id: String,
    pub event_uuid: String,
    pub event: String,
    pub attempts: Vec<Attempt>,
}

/// A host's results in one run (`GET /v1/search`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostMatch {
    pub host: String,
    pub run_id: String,
    pub playbook: Option<String>,
    pub ok: u64,
    pub changed: u64,
    pub failed: u64,
    pub unreachable: u64,
    pub skipped: u64,
    /// The host's last result in the run.
    #[schema(format = DateTime)]
    pub last_at: String,
}

/// A task whose name matched, in one run (`GET /v1/search`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskMatch {
    pub task: String,
    pub play: Option<String>,
    pub run_id: String,
    pub playbook: Option<String>,
    /// The task's start event.
    pub event_uuid: String,
    #[schema(format = DateTime)]
    pub started_at: String,
}

/// Hosts and tasks whose name contains the search, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResult {
    pub hosts: Vec<HostMatch>,
    pub tasks: Vec<TaskMatch>,
}

/// A page of deliveries, in journal order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    pub next_cursor: Option<String>,
}

/// A delivery that was given up on, as `GET /v1/dead-letters` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// `<event id>:<plugin instance>`: the id `POST /v1/dead-letters/{id}/retry` takes.
    pub id: String,
    /// The plugin instance.
    pub plugin: String,
    /// The event's position in the journal.
    pub event_id: i64,
    pub uuid: String,
    pub run_id: String,
    /// The event name.
    pub kind: String,
    /// Attempts made before giving up.
    pub attempts: u32,
    /// Why the delivery was given up on.
    pub reason: String,
    /// When, in milliseconds since the epoch.
    pub dead_at_ms: i64,
}

/// A page of dead letters, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterPage {
    pub items: Vec<DeadLetter>,
    pub next_cursor: Option<String>,
}

/// The answer of a retry or a replay: how many deliveries were queued again.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct Requeued {
    pub requeued: u64,
}

/// `POST /v1/events`: the whole batch is committed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// Events stored.
    pub accepted: u64,
    /// Events already known (same tenant and `uuid`), not stored again.
    pub duplicates: u64,
}

/// One event: an ansible-runner job event plus Herald's envelope
/// (docs/wire-format.md). Unknown fields are kept.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventDoc {
    /// The event's id, the dedup key within a tenant.
    #[schema(min_length = 1, max_length = 128)]
    pub uuid: String,
    /// The ansible-runner event name.
    #[schema(value_type = EventKindName)]
    pub event: String,
    /// The event's position in its run.
    #[schema(minimum = 0, maximum = 9007199254740991_i64)]
    pub counter: i64,
    /// Creation time, RFC 3339; an ISO 8601 time without an offset (as
    /// ansible-runner writes it) is accepted too and taken as UTC.
    #[schema(format = DateTime)]
    pub created: String,
    /// Herald's run id. An imported ansible-runner event may give
    /// `runner_ident` instead; it is then stored as `run_id`.
    #[schema(min_length = 1, max_length = 128)]
    pub run_id: String,
    /// ansible-runner's run id, used as `run_id` when that is absent.
    #[schema(min_length = 1, max_length = 128)]
    pub runner_ident: Option<String>,
    pub parent_uuid: Option<String>,
    pub controller: Option<String>,
    pub stdout: Option<String>,
    /// The run's labels, string values only.
    pub labels: Option<BTreeMap<String, String>>,
    /// `playbook`, `play`, `task`, `host`, `res`, per-host stats... (see docs/wire-format.md).
    #[schema(value_type = Option<Object>)]
    pub event_data: Option<Map<String, Value>>,
}

/// A batch of events (`application/json`): a non-empty array.
pub struct EventBatch;

impl PartialSchema for EventBatch {
    fn schema() -> RefOr<Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name("EventDoc"))
            .min_items(Some(1))
            .description(Some("A non-empty array of events"))
            .into()
    }
}

impl ToSchema for EventBatch {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventBatch")
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("EventDoc".into(), EventDoc::schema()));
        <EventDoc as ToSchema>::schemas(schemas);
    }
}

/// The name of an event kind (ansible-runner's spelling).
pub struct EventKindName;

impl PartialSchema for EventKindName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(
                herald_event::EventKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>(),
            ))
            .into()
    }
}

impl ToSchema for EventKindName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventKindName")
    }
}

/// A point in time for `since`/`until`: RFC 3339, or epoch milliseconds.
pub struct TimeParam;

impl PartialSchema for TimeParam {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .minimum(Some(0))
                    .maximum(Some(253_402_300_799_999_i64)),
            )
            .into()
    }
}

impl ToSchema for TimeParam {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TimeParam")
    }
}

/// `GET /health`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// One check of `GET /ready`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadyCheck {
    pub ok: bool,
    /// Why the check failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Plugin instances running (the `plugins` check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<u64>,
    /// The `journal` check on PostgreSQL, while a transaction still running
    /// on the database has held committed events back from delivery for over
    /// a second (ingest goes on; this check stays ok).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_held_back: Option<HeldBack>,
}

/// Committed events held back from delivery (see [`ReadyCheck`]).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HeldBack {
    /// Tenants with events held back.
    pub tenants: u64,
    /// Since when the oldest has been (epoch ms).
    pub since_ms: i64,
    /// What holds them.
    pub reason: String,
}

/// The checks of `GET /ready`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadyChecks {
    pub journal: ReadyCheck,
    pub config: ReadyCheck,
    pub plugins: ReadyCheck,
}

/// A plugin instance's lease: which replica delivers for it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LeaseView {
    pub plugin: String,
    /// The replica holding it.
    pub holder: String,
    /// Grows with every new holder (it fences the previous holder's writes).
    pub token: i64,
    /// When it ends unless renewed (epoch ms, the database's clock).
    pub expires_ms: i64,
    /// Whether it has ended (its instance waits for a replica to take it).
    pub expired: bool,
}

/// This host among the replicas sharing the journal.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplicaView {
    /// This host's name (`storage.replica_id`).
    pub id: String,
    /// The instances this host delivers for now.
    pub holds: Vec<String>,
    /// Every instance's lease, whichever replica holds it (empty on SQLite:
    /// one host delivers for every instance).
    pub leases: Vec<LeaseView>,
}

/// `GET /ready`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unready`.
    pub status: String,
    pub checks: ReadyChecks,
    /// Which replica holds which instance (not a check: a replica that holds
    /// nothing is still ready to ingest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// strum's names (the query parameters) and serde's (the JSON) agree.
    #[test]
    fn status_and_outcome_names_agree_with_the_json() {
        for &s in RunStatus::ALL {
            assert_eq!(serde_json::json!(s), serde_json::json!(s.as_str()));
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
        }
        for &o in Outcome::ALL {
            assert_eq!(serde_json::json!(o), serde_json::json!(o.as_str()));
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(RunStatus::ALL.len(), 5);
        assert_eq!(Outcome::ALL.len(), 3);
        assert_eq!(RunStatus::parse("Failed"), None);
        assert_eq!(Outcome::parse("lost"), None);
    }
}
