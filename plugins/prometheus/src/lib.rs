//! Herald `prometheus` sink, two modes at once:
//!
//! 1. **live series** on the host's `/metrics` through the `metrics` import (the host adds the
//!    `tenant` and `plugin` labels; this plugin adds `playbook`):
//!    - `<prefix>runs_started_total{playbook}` counter, at `playbook_on_start`
//!    - `<prefix>runs_total{playbook,status}` counter, status `successful`/`failed`, at the end
//!    - `<prefix>run_duration_seconds{playbook}` histogram, at the end
//!    - `<prefix>task_results_total{playbook,status}` counter per host result
//!      (`ok`, `changed`, `failed`, `unreachable`, `skipped`, `ignored`)
//!    - `<prefix>last_run_hosts{playbook,state}` gauge: hosts `total`, `changed`, `failed`,
//!      `unreachable` in the last run
//!    - `<prefix>last_run_timestamp_seconds{playbook}`, `<prefix>last_run_success{playbook}`,
//!      `<prefix>last_run_duration_seconds{playbook}` gauges
//!    - with `custom_stats_gauges`: `<prefix>custom_stat{playbook,stat}` gauge for each numeric
//!      top-level `set_stats` value of the run (`_run`)
//! 2. **Pushgateway**: at the end of each run, `PUT {pushgateway_url}/metrics/job/<job>/playbook/<name>`
//!    with the run's gauges in text format 0.0.4 (label values with `/` use `@base64`): the same
//!    `last_run_*` and `custom_stat` names as the live gauges, plus
//!    `<prefix>last_run_start_timestamp_seconds` and `<prefix>last_run_host_tasks{host,result}`.
//!
//! 3. **node_exporter textfile** (`textfile = true`, with a `textfile` grant on the instance):
//!    at the end of each run the same gauges as the push, with a `playbook` label, for the last
//!    run of every playbook the instance has seen, written to the instance's one `.prom` file
//!    through the host's `herald:textfile` capability (the host replaces the file atomically);
//!    node_exporter's textfile collector serves them. The last run of each playbook is kept in
//!    the instance's `state`, so a restart loses none.
//!
//! Counters count each event once: a retried or re-delivered event is recognised by its
//! sequence in the run summary kept in the instance's `state`.

use herald_sdk::config;
use herald_sdk::http::{Method, Request, Url};
use herald_sdk::summary::{Observed, RunStatus, RunSummary, RunTracker};
use herald_sdk::{
    failure_reason, is_host_result, log, metrics, status_name, Event, EventKind, EventRef, Outcome,
    Plugin, Status,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The instance's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of a Pushgateway (`http://pushgateway:9091`); no push when absent.
    #[serde(default)]
    pub pushgateway_url: Option<String>,
    /// The `job` of the pushed group.
    #[serde(default = "default_job")]
    pub job: String,
    /// Adds `/tenant/<tenant>` to the pushed group's key (tenants sharing a Pushgateway).
    #[serde(default)]
    pub group_by_tenant: bool,
    /// Prefix of every metric name (must not start with `herald_`).
    #[serde(default = "default_prefix")]
    pub metric_prefix: String,
    /// Export numeric `set_stats` run values as gauges.
    #[serde(default)]
    pub custom_stats_gauges: bool,
    /// Constant labels added to every series (live and pushed).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Sent as `Authorization: Bearer <token>` to the Pushgateway.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Pushgateway request timeout.
    #[serde(default = "config::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Write the run gauges to the instance's node_exporter textfile (the instance's
    /// `textfile` grant in herald.toml).
    #[serde(default)]
    pub textfile: bool,
}

fn default_job() -> String {
    "ansible".into()
}
fn default_prefix() -> String {
    "ansible_".into()
}

/// Labels this plugin or the host set.
const RESERVED_LABELS: &[&str] = &[
    "tenant", "plugin", "playbook", "status", "state", "stat", "job", "instance", "host", "le",
];

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// The configured plugin.
pub struct Prometheus {
    push_url: Option<Url>,
    job: String,
    group_by_tenant: bool,
    prefix: String,
    custom_stats_gauges: bool,
    labels: Vec<(String, String)>,
    bearer_token: Option<String>,
    timeout_ms: u64,
    textfile: bool,
    tracker: RunTracker,
}

/// The `state` key of the textfile's runs (playbook to its last run's gauges).
pub const TEXTFILE_STATE: &str = "prometheus:textfile";

impl Plugin for Prometheus {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        let push_url = match &c.pushgateway_url {
            Some(u) => Some(config::url("pushgateway_url", u)?),
            None => None,
        };
        if c.job.is_empty() {
            return Err("config key `job`: must not be empty".into());
        }
        if let Some(u) = &push_url {
            // Pushes go under `metrics/job/<job>/`; judge a URL of that path.
            let probe = u.join(&push_path(&c.job, None, "herald"));
            herald_sdk::grants::require_http("pushgateway_url", &probe.as_string())?;
        }
        if !valid_metric_name(&c.metric_prefix) && !c.metric_prefix.is_empty() {
            return Err(format!(
                "config key `metric_prefix`: `{}` is not a valid Prometheus metric name prefix",
                c.metric_prefix
            ));
        }
        if c.metric_prefix.starts_with("herald_") {
            return Err("config key `metric_prefix`: names starting with `herald_` are reserved for the host".into());
        }
        for name in c.labels.keys() {
            if !valid_label_name(name) {
                return Err(format!(
                    "config key `labels.{name}`: not a valid Prometheus label name"
                ));
            }
            if RESERVED_LABELS.contains(&name.as_str()) {
                return Err(format!(
                    "config key `labels.{name}`: `{name}` is set by the plugin or the host"
                ));
            }
        }
        config::check_timeout_ms(c.timeout_ms)?;
        config::header_secret("bearer_token", c.bearer_token.as_deref())?;
        if c.textfile && !herald_sdk::textfile::granted() {
            return Err("config key `textfile`: the instance has no textfile granted; set `textfile = \"/path/to/dir/name.prom\"` on the instance, in node_exporter's --collector.textfile.directory".into());
        }
        Ok(Prometheus {
            push_url,
            job: c.job,
            group_by_tenant: c.group_by_tenant,
            prefix: c.metric_prefix,
            custom_stats_gauges: c.custom_stats_gauges,
            labels: c.labels.into_iter().collect(),
            bearer_token: c.bearer_token,
            timeout_ms: c.timeout_ms,
            textfile: c.textfile,
            tracker: RunTracker::host("prometheus:"),
        })
    }

    fn handle(&mut self, event: &EventRef<'_>, _attempt: u32) -> Outcome {
        let (observed, fresh) = self.tracker.observe_fresh(event);
        let playbook = playbook_label(&event.run.playbook);
        if fresh {
            self.live_event_series(event, &playbook);
        }
        match observed {
            Observed::Finished(summary) => {
                if fresh {
                    for s in run_end_series(&self.prefix, &summary, self.custom_stats_gauges) {
                        self.emit(&s, &playbook);
                    }
                }
                let outcome = match &self.push_url {
                    Some(base) => {
                        let req = self.push_request(base, &summary);
                        let (outcome, _) = req.deliver();
                        if let Some(p) = failure_reason(&outcome) {
                            log::warn(&format!(
                                "run {}: Pushgateway push failed: {p}",
                                summary.run_id
                            ));
                        }
                        outcome
                    }
                    None => Outcome::Ok,
                };
                let outcome = match (outcome, self.textfile) {
                    (Outcome::Ok, true) => self.write_textfile(&summary),
                    (o, _) => o,
                };
                self.tracker.finish(&summary.run_id, outcome)
            }
            Observed::Progress(_) | Observed::AlreadyFinished => Outcome::Ok,
        }
    }
}

/// One series sample for the live metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub kind: SampleKind,
    pub name: String,
    pub help: &'static str,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    Counter,
    Gauge,
    Histogram,
}

fn sample(
    kind: SampleKind,
    prefix: &str,
    name: &str,
    help: &'static str,
    labels: &[(&str, &str)],
    value: f64,
) -> Sample {
    Sample {
        kind,
        name: format!("{prefix}{name}"),
        help,
        labels: labels
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        value,
    }
}

/// The label value for a playbook (`ad-hoc` for ad-hoc runs).
pub fn playbook_label(playbook: &str) -> String {
    if playbook.is_empty() {
        "ad-hoc".into()
    } else {
        playbook.to_string()
    }
}

/// Series for one event (not the end of run).
pub fn event_series(prefix: &str, event: &Event) -> Vec<Sample> {
    let mut out = Vec::new();
    if event.kind == EventKind::PlaybookOnStart {
        out.push(sample(
            SampleKind::Counter,
            prefix,
            "runs_started_total",
            "Ansible runs started.",
            &[],
            1.0,
        ));
    }
    if is_host_result(event.kind) {
        let status = match event.status {
            Some(Status::Failed) if event.ignore_errors => "ignored",
            Some(s) => status_name(s),
            None => return out,
        };
        out.push(sample(
            SampleKind::Counter,
            prefix,
            "task_results_total",
            "Host task results by status.",
            &[("status", status)],
            1.0,
        ));
    }
    out
}

/// Series at the end of a run.
pub fn run_end_series(prefix: &str, s: &RunSummary, custom: bool) -> Vec<Sample> {
    use SampleKind::*;
    let success = s.status() != RunStatus::Failed;
    let status = if success { "successful" } else { "failed" };
    let mut out = vec![sample(
        Counter,
        prefix,
        "runs_total",
        "Ansible runs finished, by status.",
        &[("status", status)],
        1.0,
    )];
    if let Some(d) = s.duration_ms() {
        let secs = d as f64 / 1000.0;
        out.push(sample(
            Histogram,
            prefix,
            "run_duration_seconds",
            "Duration of Ansible runs.",
            &[],
            secs,
        ));
        out.push(sample(
            Gauge,
            prefix,
            "last_run_duration_seconds",
            "Duration of the last run.",
            &[],
            secs,
        ));
    }
    if let Some(end) = s.ended_ms {
        out.push(sample(
            Gauge,
            prefix,
            "last_run_timestamp_seconds",
            "End time of the last run (Unix seconds).",
            &[],
            end as f64 / 1000.0,
        ));
    }
    out.push(sample(
        Gauge,
        prefix,
        "last_run_success",
        "1 if the last run had no failed or unreachable host.",
        &[],
        if success { 1.0 } else { 0.0 },
    ));
    let (total, changed, failed, unreachable) = host_counts(s);
    for (state, n) in [
        ("total", total),
        ("changed", changed),
        ("failed", failed),
        ("unreachable", unreachable),
    ] {
        out.push(sample(
            Gauge,
            prefix,
            "last_run_hosts",
            "Hosts of the last run by state.",
            &[("state", state)],
            n as f64,
        ));
    }
    if custom {
        for (name, v) in numeric_custom_stats(s) {
            out.push(sample(
                Gauge,
                prefix,
                "custom_stat",
                "Numeric set_stats values of the last run.",
                &[("stat", &name)],
                v,
            ));
        }
    }
    out
}

fn host_counts(s: &RunSummary) -> (usize, usize, usize, usize) {
    let h = &s.hosts;
    (
        h.len(),
        h.iter().filter(|h| h.changed > 0).count(),
        h.iter().filter(|h| h.failures > 0).count(),
        h.iter().filter(|h| h.unreachable > 0).count(),
    )
}

/// Numeric top-level `set_stats` run values (booleans as 0/1), sorted by name.
pub fn numeric_custom_stats(s: &RunSummary) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Some(run) = s.run_custom_stats() {
        for (k, v) in run {
            let n = match v {
                serde_json::Value::Number(n) => n.as_f64(),
                serde_json::Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
                _ => None,
            };
            if let Some(n) = n.filter(|n| n.is_finite()) {
                out.push((k.clone(), n));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

impl Prometheus {
    fn live_event_series(&self, event: &Event, playbook: &str) {
        for s in event_series(&self.prefix, event) {
            self.emit(&s, playbook);
        }
    }

    fn emit(&self, s: &Sample, playbook: &str) {
        let mut labels: Vec<(&str, &str)> = vec![("playbook", playbook)];
        labels.extend(s.labels.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        labels.extend(self.labels.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        match s.kind {
            SampleKind::Counter => metrics::counter_add(&s.name, s.help, &labels, s.value),
            SampleKind::Gauge => metrics::gauge_set(&s.name, s.help, &labels, s.value),
            SampleKind::Histogram => metrics::histogram_observe(&s.name, s.help, &labels, s.value),
        }
    }

    /// Records the finished run as its playbook's last and rewrites the textfile with the last
    /// run of every playbook. Writing is idempotent, so a re-delivered end of run is harmless.
    fn write_textfile(&self, s: &RunSummary) -> Outcome {
        let mut runs: BTreeMap<String, Vec<Family>> =
            herald_sdk::state::get_json(TEXTFILE_STATE).unwrap_or_default();
        let mut extra = vec![("tenant".to_string(), s.tenant.clone())];
        extra.extend(self.labels.iter().cloned());
        runs.insert(
            playbook_label(&s.playbook),
            run_families(&self.prefix, s, &extra, self.custom_stats_gauges),
        );
        herald_sdk::state::set_json(TEXTFILE_STATE, &runs);
        match herald_sdk::textfile::write(&textfile_body(&runs)) {
            Ok(()) => Outcome::Ok,
            Err(e) => {
                log::warn(&format!("run {}: {e}", s.run_id));
                herald_sdk::retryable(e, None)
            }
        }
    }

    /// The Pushgateway request for a finished run.
    pub fn push_request(&self, base: &Url, s: &RunSummary) -> Request {
        let tenant = if self.group_by_tenant {
            Some(s.tenant.as_str())
        } else {
            None
        };
        let url = base.join(&push_path(&self.job, tenant, &playbook_label(&s.playbook)));
        let mut req = Request::new(Method::Put, url)
            .timeout_ms(self.timeout_ms)
            .body(
                "text/plain; version=0.0.4; charset=utf-8",
                push_body(&self.prefix, s, &self.labels, self.custom_stats_gauges),
            );
        if let Some(t) = &self.bearer_token {
            req = req.bearer(t);
        }
        req
    }
}

/// `metrics/job/<job>[/tenant/<tenant>]/playbook/<playbook>` with Pushgateway's encoding.
pub fn push_path(job: &str, tenant: Option<&str>, playbook: &str) -> String {
    let mut p = format!("metrics/{}", path_label("job", job));
    if let Some(t) = tenant {
        p.push('/');
        p.push_str(&path_label("tenant", t));
    }
    p.push('/');
    p.push_str(&path_label("playbook", playbook));
    p
}

/// One `name/value` pair of a Pushgateway grouping key: percent-encoded, or
/// `name@base64/<base64url>` when the value contains `/` or is empty.
pub fn path_label(name: &str, value: &str) -> String {
    if value.is_empty() {
        return format!("{name}@base64/=");
    }
    if value.contains('/') {
        return format!("{name}@base64/{}", base64url(value.as_bytes()));
    }
    let mut enc = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            let _ = write!(enc, "%{b:02X}");
        }
    }
    format!("{name}/{enc}")
}

/// RFC 4648 §5 base64 (URL-safe alphabet, with padding), as the Pushgateway expects.
pub fn base64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// A label value escaped for the text format.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn write_family(out: &mut String, name: &str, help: &str, rows: &[(Vec<(String, String)>, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, v) in rows {
        let _ = write!(out, "{name}");
        if !labels.is_empty() {
            let parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let _ = write!(out, "{{{}}}", parts.join(","));
        }
        let _ = writeln!(out, " {}", fmt_value(*v));
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The pushed group in text format 0.0.4 (gauges only; the grouping labels are in the path).
pub fn push_body(prefix: &str, s: &RunSummary, extra: &[(String, String)], custom: bool) -> String {
    render_families(&run_families(prefix, s, extra, custom))
}

/// One gauge family of a run: its name, help and samples (labels, value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub rows: Vec<(Vec<(String, String)>, f64)>,
}

fn add_family(
    out: &mut Vec<Family>,
    name: &str,
    help: &str,
    rows: &[(Vec<(String, String)>, f64)],
) {
    out.push(Family {
        name: name.to_string(),
        help: help.to_string(),
        rows: rows.to_vec(),
    });
}

/// Families in text format 0.0.4, each once (`# HELP`, `# TYPE ... gauge`, its samples).
pub fn render_families(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        write_family(&mut out, &f.name, &f.help, &f.rows);
    }
    out
}

/// The gauges of a finished run: what is pushed to the Pushgateway and written to the textfile.
pub fn run_families(
    prefix: &str,
    s: &RunSummary,
    extra: &[(String, String)],
    custom: bool,
) -> Vec<Family> {
    let mut out = Vec::new();
    let with = |l: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = l
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.extend(extra.iter().cloned());
        v
    };
    let success = s.status() != RunStatus::Failed;
    add_family(
        &mut out,
        &format!("{prefix}last_run_success"),
        "1 if the run had no failed or unreachable host.",
        &[(with(&[]), if success { 1.0 } else { 0.0 })],
    );
    if let Some(d) = s.duration_ms() {
        add_family(
            &mut out,
            &format!("{prefix}last_run_duration_seconds"),
            "Duration of the run.",
            &[(with(&[]), d as f64 / 1000.0)],
        );
    }
    if let Some(st) = s.started_ms {
        add_family(
            &mut out,
            &format!("{prefix}last_run_start_timestamp_seconds"),
            "Start of the run (Unix seconds).",
            &[(with(&[]), st as f64 / 1000.0)],
        );
    }
    if let Some(end) = s.ended_ms {
        add_family(
            &mut out,
            &format!("{prefix}last_run_timestamp_seconds"),
            "End of the run (Unix seconds).",
            &[(with(&[]), end as f64 / 1000.0)],
        );
    }
    let (total, changed, failed, unreachable) = host_counts(s);
    let rows: Vec<_> = [
        ("total", total),
        ("changed", changed),
        ("failed", failed),
        ("unreachable", unreachable),
    ]
    .iter()
    .map(|(st, n)| (with(&[("state", st)]), *n as f64))
    .collect();
    add_family(
        &mut out,
        &format!("{prefix}last_run_hosts"),
        "Hosts of the run by state.",
        &rows,
    );
    let mut rows = Vec::new();
    for h in &s.hosts {
        for (res, n) in [
            ("ok", h.ok),
            ("changed", h.changed),
            ("failures", h.failures),
            ("unreachable", h.unreachable),
            ("skipped", h.skipped),
            ("rescued", h.rescued),
            ("ignored", h.ignored),
        ] {
            rows.push((with(&[("host", &h.host), ("result", res)]), n as f64));
        }
    }
    if !rows.is_empty() {
        add_family(
            &mut out,
            &format!("{prefix}last_run_host_tasks"),
            "Per-host task counts of the run (PLAY RECAP).",
            &rows,
        );
    }
    if custom {
        let rows: Vec<_> = numeric_custom_stats(s)
            .into_iter()
            .map(|(k, v)| (with(&[("stat", &k)]), v))
            .collect();
        if !rows.is_empty() {
            add_family(
                &mut out,
                &format!("{prefix}custom_stat"),
                "Numeric set_stats values of the run.",
                &rows,
            );
        }
    }
    out
}

herald_sdk::export_plugin!(Prometheus);

/// The textfile's content: the last run of each playbook (`runs`: playbook to its run's
/// families), every sample labelled with its `playbook`, each family written once with the
/// samples of every playbook (the text format wants a family's samples together).
pub fn textfile_body(runs: &BTreeMap<String, Vec<Family>>) -> String {
    let mut merged: BTreeMap<String, Family> = BTreeMap::new();
    for (playbook, families) in runs {
        for f in families {
            let m = merged.entry(f.name.clone()).or_insert_with(|| Family {
                name: f.name.clone(),
                help: f.help.clone(),
                rows: Vec::new(),
            });
            for (labels, v) in &f.rows {
                let mut l = vec![("playbook".to_string(), playbook.clone())];
                l.extend(labels.iter().cloned());
                m.rows.push((l, *v));
            }
        }
    }
    let families: Vec<Family> = merged.into_values().collect();
    render_families(&families)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::summary::MemoryStore;
    use herald_sdk::testing::{event, host_event, stats_event};

    fn summary(playbook: &str) -> RunSummary {
        let t = RunTracker::with_store("", MemoryStore::default());
        let mut start = event(EventKind::PlaybookOnStart, "r1", playbook);
        start.sequence = 1;
        t.observe(&start);
        let mut st = stats_event(
            "r1",
            playbook,
            &[("web1", 3, 1, 0, 0, 1), ("web2", 1, 0, 1, 0, 0)],
            Some(r#"{"_run":{"deployed":2,"ok":true,"name":"x"}}"#),
        );
        st.sequence = 9;
        match t.observe(&st) {
            Observed::Finished(s) => s,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn the_textfile_holds_each_playbook_once_per_family() {
        let mut runs = BTreeMap::new();
        let t = vec![("tenant".to_string(), "ops".to_string())];
        runs.insert(
            "site.yml".to_string(),
            run_families("ansible_", &summary("site.yml"), &t, true),
        );
        runs.insert(
            "db.yml".to_string(),
            run_families("ansible_", &summary("db.yml"), &t, false),
        );
        let body = textfile_body(&runs);
        // Each family's HELP and TYPE once, its samples together, every sample labelled.
        assert_eq!(
            body.matches("# TYPE ansible_last_run_success gauge")
                .count(),
            1,
            "{body}"
        );
        assert!(body.contains(
            "ansible_last_run_success{playbook=\"db.yml\",tenant=\"ops\"} 0\nansible_last_run_success{playbook=\"site.yml\",tenant=\"ops\"} 0\n"
        ), "{body}");
        assert!(
            body.contains(
                "ansible_last_run_hosts{playbook=\"site.yml\",state=\"failed\",tenant=\"ops\"} 1\n"
            ),
            "{body}"
        );
        assert!(
            body.contains(
                "ansible_custom_stat{playbook=\"site.yml\",stat=\"deployed\",tenant=\"ops\"} 2\n"
            ),
            "{body}"
        );
        assert!(!body.contains("custom_stat{playbook=\"db.yml\""), "{body}");
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.contains("playbook=\""), "{line}");
        }
        // Stored as JSON in `state` and read back, the same text.
        let back: BTreeMap<String, Vec<Family>> =
            serde_json::from_str(&serde_json::to_string(&runs).unwrap()).unwrap();
        assert_eq!(textfile_body(&back), body);
    }

    #[test]
    fn push_paths() {
        assert_eq!(
            push_path("ansible", None, "site.yml"),
            "metrics/job/ansible/playbook/site.yml"
        );
        assert_eq!(
            push_path("ansible", Some("acme"), "a b"),
            "metrics/job/ansible/tenant/acme/playbook/a%20b"
        );
        assert_eq!(
            push_path("ansible", None, "dir/site.yml"),
            "metrics/job/ansible/playbook@base64/ZGlyL3NpdGUueW1s"
        );
        assert_eq!(path_label("playbook", ""), "playbook@base64/=");
        assert_eq!(base64url(b"a"), "YQ==");
        assert_eq!(base64url(b"ab"), "YWI=");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8=");
        let base = Url::parse("http://127.0.0.1:9091/").unwrap();
        assert_eq!(
            base.join(&push_path("j", None, "p")).path_with_query,
            "/metrics/job/j/playbook/p"
        );
    }

    #[test]
    fn push_body_is_text_format() {
        let s = summary("site.yml");
        let body = push_body("ansible_", &s, &[("env".into(), "prod".into())], true);
        assert!(
            body.contains(
                "# TYPE ansible_last_run_success gauge\nansible_last_run_success{env=\"prod\"} 0\n"
            ),
            "{body}"
        );
        assert!(
            body.contains("ansible_last_run_duration_seconds{env=\"prod\"} 60\n"),
            "{body}"
        );
        assert!(body.contains("ansible_last_run_hosts{state=\"failed\",env=\"prod\"} 1\n"));
        assert!(body.contains("ansible_last_run_hosts{state=\"total\",env=\"prod\"} 2\n"));
        assert!(body
            .contains("ansible_last_run_host_tasks{host=\"web1\",result=\"ok\",env=\"prod\"} 3\n"));
        assert!(body.contains("ansible_custom_stat{stat=\"deployed\",env=\"prod\"} 2\n"));
        assert!(body.contains("ansible_custom_stat{stat=\"ok\",env=\"prod\"} 1\n"));
        assert!(!body.contains("stat=\"name\""));
        // Every sample line is `name{labels} value`, and every family has one TYPE line.
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            v.parse::<f64>().unwrap();
        }
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn live_series() {
        let s = summary("site.yml");
        let end = run_end_series("ansible_", &s, true);
        let find = |n: &str, l: (&str, &str)| {
            end.iter()
                .find(|x| x.name == n && x.labels.contains(&(l.0.into(), l.1.into())))
                .map(|x| x.value)
        };
        assert_eq!(find("ansible_runs_total", ("status", "failed")), Some(1.0));
        assert_eq!(
            find("ansible_last_run_hosts", ("state", "failed")),
            Some(1.0)
        );
        assert_eq!(find("ansible_custom_stat", ("stat", "deployed")), Some(2.0));
        assert!(end.iter().any(|x| x.name == "ansible_run_duration_seconds"
            && x.kind == SampleKind::Histogram
            && x.value == 60.0));
        let mut f = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r1",
            "p",
            "h",
            "t",
            None,
        );
        assert_eq!(
            event_series("x_", &f)[0].labels,
            vec![("status".to_string(), "failed".to_string())]
        );
        f.ignore_errors = true;
        assert_eq!(
            event_series("x_", &f)[0].labels,
            vec![("status".to_string(), "ignored".to_string())]
        );
        assert_eq!(
            event_series("x_", &event(EventKind::PlaybookOnStart, "r", "p"))[0].name,
            "x_runs_started_total"
        );
        assert!(event_series("x_", &event(EventKind::PlaybookOnTaskStart, "r", "p")).is_empty());
        assert_eq!(playbook_label(""), "ad-hoc");
    }

    #[test]
    fn config_errors() {
        let cases = [
            (r#"{"pushgateway_url":"nope"}"#, "`pushgateway_url`"),
            (r#"{"metric_prefix":"herald_"}"#, "`metric_prefix`"),
            (r#"{"metric_prefix":"9x"}"#, "`metric_prefix`"),
            (r#"{"labels":{"tenant":"x"}}"#, "`labels.tenant`"),
            (r#"{"labels":{"bad-name":"x"}}"#, "`labels.bad-name`"),
            (r#"{"job":""}"#, "`job`"),
            (r#"{"custom_stats_gauges":"yes"}"#, "`custom_stats_gauges`"),
            (r#"{"push_url":"x"}"#, "unknown field `push_url`"),
            (
                r#"{"pushgateway_url":"http://pg:9091","bearer_token":"t\n"}"#,
                "`bearer_token`: must be a single line",
            ),
            (
                r#"{"pushgateway_url":"http://pg:9091","bearer_token":""}"#,
                "`bearer_token`: must not be empty",
            ),
        ];
        for (json, want) in cases {
            let err = herald_sdk::build::<Prometheus>(json).err().unwrap();
            assert!(err.contains(want), "{json}: {err}");
        }
        let p = herald_sdk::build::<Prometheus>(
            r#"{"pushgateway_url":"http://pg:9091","group_by_tenant":true,"bearer_token":"t"}"#,
        )
        .unwrap();
        let s = summary("dir/site.yml");
        let r = p.push_request(p.push_url.as_ref().unwrap(), &s);
        assert_eq!(r.method, Method::Put);
        assert_eq!(
            r.url.path_with_query,
            "/metrics/job/ansible/tenant/acme/playbook@base64/ZGlyL3NpdGUueW1s"
        );
        assert!(r.headers.contains(&(
            "content-type".into(),
            "text/plain; version=0.0.4; charset=utf-8".into()
        )));
        assert!(r
            .headers
            .contains(&("authorization".into(), "Bearer t".into())));
    }
}
