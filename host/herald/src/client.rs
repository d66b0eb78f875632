//! `herald runs …` and `herald deliveries …`: a small client of the query
//! API (docs/api.md), printing JSON (the API's own answer) or tables.
//!
//! The URL and token come from `--url`/`--token` or `HERALD_URL`/`HERALD_TOKEN`,
//! the same variables the callback reads.

use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

/// How to print answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON answer, pretty-printed.
    Json,
}

/// Where the API is and who is asking.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Herald's base URL (http only; put a TLS proxy in front for https).
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8765")]
    pub url: String,
    /// A tenant token; answers are scoped to its tenant. Prefer the
    /// HERALD_TOKEN environment variable: a --token value is visible to
    /// other users in the process list.
    // Empty when missing, so the error names both --token and HERALD_TOKEN
    // (ApiClient::new) instead of clap's "required argument" alone.
    #[arg(
        long,
        env = "HERALD_TOKEN",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub token: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
}

/// `herald runs …`
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first (GET /v1/runs).
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Glob over the playbook file name (`deploy*.yml`).
        #[arg(long)]
        playbook: Option<String>,
        /// running, ok, failed, unreachable or interrupted.
        #[arg(long)]
        status: Option<String>,
        /// Controller host name.
        #[arg(long)]
        controller: Option<String>,
        /// Runs started at or after this time (RFC 3339 or epoch ms).
        #[arg(long)]
        since: Option<String>,
        /// Runs started before this time (RFC 3339 or epoch ms).
        #[arg(long)]
        until: Option<String>,
        /// `key=value` (or `key`): runs with this label; repeat for several.
        #[arg(long)]
        label: Vec<String>,
        /// Seconds without events after which an unfinished run is interrupted.
        #[arg(long)]
        interrupted_after_s: Option<u64>,
        /// Runs per page.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue from a `next_cursor`.
        #[arg(long)]
        cursor: Option<String>,
        /// Follow `next_cursor` to the end and print every run.
        #[arg(long)]
        all: bool,
    },
    /// Show a run: status, timing, the PLAY RECAP per host, failed tasks (GET /v1/runs/{id}).
    Show {
        #[command(flatten)]
        api: ApiArgs,
        /// The run id.
        #[arg(value_name = "RUN")]
        id: String,
        /// Seconds without events after which an unfinished run is interrupted.
        #[arg(long)]
        interrupted_after_s: Option<u64>,
    },
    /// A run's events in order (GET /v1/runs/{id}/events), every page.
    Events {
        #[command(flatten)]
        api: ApiArgs,
        /// The run id.
        #[arg(value_name = "RUN")]
        id: String,
        /// Event names, comma-separated.
        #[arg(long)]
        kind: Option<String>,
        /// Only this host's events.
        #[arg(long)]
        host: Option<String>,
        /// ok, changed, failed, unreachable or skipped.
        #[arg(long)]
        status: Option<String>,
    },
    /// A run's set_stats data (GET /v1/runs/{id}/artifacts): one row per
    /// scope (`run` or a host) and key.
    Artifacts {
        #[command(flatten)]
        api: ApiArgs,
        /// The run id.
        #[arg(value_name = "RUN")]
        id: String,
    },
}

/// `herald deliveries …`
#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries to plugin instances, in journal order (GET /v1/deliveries).
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Only this run's events (its id).
        run: Option<String>,
        /// Only this plugin instance.
        #[arg(long)]
        plugin: Option<String>,
        /// pending, done or dead.
        #[arg(long)]
        outcome: Option<String>,
        /// Deliveries per page.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue from a `next_cursor`.
        #[arg(long)]
        cursor: Option<String>,
        /// Follow `next_cursor` to the end.
        #[arg(long)]
        all: bool,
    },
}

/// A failed call, worded for the terminal.
#[derive(Debug)]
pub struct ClientError(pub String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A blocking-style client of the query API.
pub struct ApiClient {
    base: String,
    token: String,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl ApiClient {
    pub fn new(url: &str, token: &str) -> Result<Self, ClientError> {
        let base = url.trim_end_matches('/').to_string();
        if base.starts_with("https://") {
            return Err(ClientError(format!(
                "{base}: the herald CLI speaks plain http; use the http:// address of herald (or of a TLS-terminating proxy's backend)"
            )));
        }
        if !base.starts_with("http://") {
            return Err(ClientError(format!(
                "{url:?} is not an http:// URL (give --url or HERALD_URL)"
            )));
        }
        if token.trim().is_empty() {
            return Err(ClientError(
                "no token: give --token or HERALD_TOKEN".to_string(),
            ));
        }
        Ok(ApiClient {
            base,
            token: token.trim().to_string(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// GETs `path` with the query `pairs` and returns the JSON answer.
    pub async fn get(&self, path: &str, pairs: &[(&str, String)]) -> Result<Value, ClientError> {
        self.call(hyper::Method::GET, path, pairs, None).await
    }

    /// POSTs a JSON body to `path` and returns the JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.call(hyper::Method::POST, path, &[], Some(body)).await
    }

    async fn call(
        &self,
        method: hyper::Method,
        path: &str,
        pairs: &[(&str, String)],
        json_body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let mut url = format!("{}{}", self.base, path);
        if !pairs.is_empty() {
            let q = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
                .finish();
            url.push('?');
            url.push_str(&q);
        }
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| ClientError(format!("{url}: not a valid URL: {e}")))?;
        let body = json_body
            .map(|b| Bytes::from(b.to_string()))
            .unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(hyper::header::ACCEPT, "application/json")
            .body(Full::new(body))
            .map_err(|e| ClientError(format!("cannot build the request: {e}")))?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.http.request(req))
            .await
            .map_err(|_| {
                ClientError(format!(
                    "herald at {} did not answer within 30 s",
                    self.base
                ))
            })?
            .map_err(|e| {
                let mut msg = format!("cannot reach herald at {}: {e}", self.base);
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    let _ = write!(msg, ": {s}");
                    src = s.source();
                }
                ClientError(msg)
            })?;
        let status = resp.status();
        let body = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
            .await
            .map_err(|_| ClientError("herald's answer did not complete within 30 s".into()))?
            .map_err(|e| ClientError(format!("cannot read herald's answer: {e}")))?
            .to_bytes();
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            let detail = match &json {
                Some(v) if v.get("message").is_some() => {
                    let mut d = v["message"].as_str().unwrap_or("").to_string();
                    if let Some(e) = v.get("error").and_then(Value::as_str) {
                        let _ = write!(d, " ({e})");
                    }
                    d
                }
                _ => String::from_utf8_lossy(&body).trim().to_string(),
            };
            return Err(ClientError(format!("herald answered {status}: {detail}")));
        }
        json.ok_or_else(|| ClientError(format!("herald's answer to {path} is not JSON")))
    }

    /// GETs every page of a list, following `next_cursor`.
    async fn get_all(
        &self,
        path: &str,
        mut pairs: Vec<(&str, String)>,
        all: bool,
    ) -> Result<Value, ClientError> {
        let mut page = self.get(path, &pairs).await?;
        if !all {
            return Ok(page);
        }
        let mut items = page["items"].as_array().cloned().unwrap_or_default();
        while let Some(next) = page["next_cursor"].as_str().map(str::to_string) {
            pairs.retain(|(k, _)| *k != "cursor");
            pairs.push(("cursor", next));
            page = self.get(path, &pairs).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
        }
        Ok(serde_json::json!({"items": items, "next_cursor": null}))
    }
}

fn seg(id: &str) -> String {
    utf8_percent_encode(id, NON_ALPHANUMERIC).to_string()
}

fn push(pairs: &mut Vec<(&'static str, String)>, key: &'static str, v: Option<impl ToString>) {
    if let Some(v) = v {
        pairs.push((key, v.to_string()));
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ClientError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError(format!("cannot start the runtime: {e}")))
}

fn finish(result: Result<String, ClientError>) -> ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::FAILURE
        }
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// `herald runs …`
pub fn main_runs(cmd: RunsCommand) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(runs(cmd))))
}

/// `herald deliveries …`
pub fn main_deliveries(cmd: DeliveriesCommand) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(deliveries(cmd))))
}

async fn runs(cmd: RunsCommand) -> Result<String, ClientError> {
    match cmd {
        RunsCommand::List {
            api,
            playbook,
            status,
            controller,
            since,
            until,
            label,
            interrupted_after_s,
            limit,
            cursor,
            all,
        } => {
            let client = ApiClient::new(&api.url, &api.token)?;
            let mut pairs = Vec::new();
            push(&mut pairs, "playbook", playbook);
            push(&mut pairs, "status", status);
            push(&mut pairs, "controller", controller);
            push(&mut pairs, "since", since);
            push(&mut pairs, "until", until);
            for l in label {
                pairs.push(("label", l));
            }
            push(&mut pairs, "interrupted_after_s", interrupted_after_s);
            pairs.push(("limit", limit.to_string()));
            push(&mut pairs, "cursor", cursor);
            let page = client.get_all("/v1/runs", pairs, all).await?;
            Ok(match api.output {
                Output::Json => pretty(&page),
                Output::Table => runs_table(&page),
            })
        }
        RunsCommand::Show {
            api,
            id,
            interrupted_after_s,
        } => {
            let client = ApiClient::new(&api.url, &api.token)?;
            let mut pairs = Vec::new();
            push(&mut pairs, "interrupted_after_s", interrupted_after_s);
            let run = client
                .get(&format!("/v1/runs/{}", seg(&id)), &pairs)
                .await?;
            Ok(match api.output {
                Output::Json => pretty(&run),
                Output::Table => run_table(&run),
            })
        }
        RunsCommand::Events {
            api,
            id,
            kind,
            host,
            status,
        } => {
            let client = ApiClient::new(&api.url, &api.token)?;
            let mut pairs = vec![("limit", "500".to_string())];
            push(&mut pairs, "kind", kind);
            push(&mut pairs, "host", host);
            push(&mut pairs, "status", status);
            let page = client
                .get_all(&format!("/v1/runs/{}/events", seg(&id)), pairs, true)
                .await?;
            Ok(match api.output {
                Output::Json => pretty(&page),
                Output::Table => events_table(&page),
            })
        }
        RunsCommand::Artifacts { api, id } => {
            let client = ApiClient::new(&api.url, &api.token)?;
            let a = client
                .get(&format!("/v1/runs/{}/artifacts", seg(&id)), &[])
                .await?;
            Ok(match api.output {
                Output::Json => pretty(&a),
                Output::Table => artifacts_table(&a),
            })
        }
    }
}

async fn deliveries(cmd: DeliveriesCommand) -> Result<String, ClientError> {
    let DeliveriesCommand::List {
        api,
        run,
        plugin,
        outcome,
        limit,
        cursor,
        all,
    } = cmd;
    let client = ApiClient::new(&api.url, &api.token)?;
    let mut pairs = Vec::new();
    push(&mut pairs, "run", run);
    push(&mut pairs, "plugin", plugin);
    push(&mut pairs, "outcome", outcome);
    pairs.push(("limit", limit.to_string()));
    push(&mut pairs, "cursor", cursor);
    let page = client.get_all("/v1/deliveries", pairs, all).await?;
    Ok(match api.output {
        Output::Json => pretty(&page),
        Output::Table => deliveries_table(&page),
    })
}

/// A JSON value as a table cell.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.replace(['\n', '\t'], " "),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
}

/// Left-aligned columns separated by two spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(&mut out, headers.to_vec());
    for r in rows {
        line(&mut out, r.iter().map(String::as_str).collect());
    }
    out
}

fn duration(v: &Value) -> String {
    v.as_f64()
        .map(|s| format!("{s:.1}s"))
        .unwrap_or_else(|| "-".into())
}

fn items(page: &Value) -> &[Value] {
    page["items"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn more(page: &Value, out: &mut String) {
    if let Some(c) = page["next_cursor"].as_str() {
        let _ = writeln!(out, "(more: --cursor {c}, or --all)");
    }
}

fn runs_table(page: &Value) -> String {
    let rows: Vec<Vec<String>> = items(page)
        .iter()
        .map(|r| {
            vec![
                cell(&r["id"]),
                cell(&r["status"]),
                cell(&r["playbook"]),
                cell(&r["controller"]),
                cell(&r["user"]),
                cell(&r["started_at"]),
                duration(&r["duration_s"]),
                cell(&r["events"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "STATUS",
            "PLAYBOOK",
            "CONTROLLER",
            "USER",
            "STARTED",
            "DURATION",
            "EVENTS",
        ],
        &rows,
    );
    more(page, &mut out);
    out
}

fn run_table(run: &Value) -> String {
    let labels = run["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", cell(v)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let tags = run["tags"]
        .as_array()
        .map(|a| a.iter().map(cell).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    let fields: Vec<(&str, String)> = vec![
        ("Run", cell(&run["id"])),
        ("Playbook", cell(&run["playbook"])),
        ("Status", cell(&run["status"])),
        ("Controller", cell(&run["controller"])),
        ("User", cell(&run["user"])),
        ("Ansible", cell(&run["ansible_version"])),
        ("Check mode", cell(&run["check_mode"])),
        ("Limit", cell(&run["limit"])),
        ("Tags", if tags.is_empty() { "-".into() } else { tags }),
        (
            "Labels",
            if labels.is_empty() {
                "-".into()
            } else {
                labels
            },
        ),
        ("Started", cell(&run["started_at"])),
        ("Ended", cell(&run["ended_at"])),
        ("Duration", duration(&run["duration_s"])),
        ("Events", cell(&run["events"])),
    ];
    let mut out = String::new();
    for (k, v) in fields {
        let _ = writeln!(out, "{k:<11} {v}");
    }
    let source = if run["stats_source"] == "events" {
        " (no stats event yet: tallied from the events received)"
    } else {
        ""
    };
    let _ = writeln!(out, "\nPLAY RECAP{source}");
    let hosts: Vec<Vec<String>> = run["hosts"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(h, s)| {
                    let mut row = vec![h.clone()];
                    for k in [
                        "ok",
                        "changed",
                        "unreachable",
                        "failures",
                        "skipped",
                        "rescued",
                        "ignored",
                    ] {
                        row.push(cell(&s[k]));
                    }
                    row
                })
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&table(
        &[
            "HOST",
            "OK",
            "CHANGED",
            "UNREACHABLE",
            "FAILED",
            "SKIPPED",
            "RESCUED",
            "IGNORED",
        ],
        &hosts,
    ));
    let failed: Vec<Vec<String>> = run["failed_tasks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    vec![
                        cell(&t["host"]),
                        cell(&t["task"]),
                        cell(&t["outcome"]),
                        cell(&t["ignored"]),
                        cell(&t["rescued"]),
                        cell(&t["message"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if !failed.is_empty() {
        out.push_str("\nFAILED TASKS\n");
        out.push_str(&table(
            &["HOST", "TASK", "OUTCOME", "IGNORED", "RESCUED", "MESSAGE"],
            &failed,
        ));
    }
    out
}

fn events_table(page: &Value) -> String {
    let rows: Vec<Vec<String>> = items(page)
        .iter()
        .map(|e| {
            let d = &e["event_data"];
            vec![
                cell(&e["counter"]),
                cell(&e["event"]),
                cell(&d["host"]),
                cell(&d["task"]),
                cell(&e["created"]),
            ]
        })
        .collect();
    table(&["COUNTER", "EVENT", "HOST", "TASK", "CREATED"], &rows)
}

/// `{"run": {k: v}, "hosts": {host: {k: v}}}` as SCOPE KEY VALUE rows,
/// the run's own data first; values other than strings as compact JSON.
fn artifacts_table(a: &Value) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut scope = |name: &str, data: &Value| {
        if let Some(m) = data.as_object() {
            for (k, v) in m {
                rows.push(vec![name.to_string(), k.clone(), cell(v)]);
            }
        }
    };
    scope("run", &a["run"]);
    if let Some(hosts) = a["hosts"].as_object() {
        for (host, data) in hosts {
            scope(host, data);
        }
    }
    if rows.is_empty() {
        return "no set_stats data in this run\n".to_string();
    }
    table(&["SCOPE", "KEY", "VALUE"], &rows)
}

fn deliveries_table(page: &Value) -> String {
    columns(
        page,
        &[
            ("PLUGIN", "plugin"),
            ("RUN", "run_id"),
            ("COUNTER", "counter"),
            ("EVENT", "event"),
            ("OUTCOME", "outcome"),
            ("ATTEMPTS", "attempts"),
            ("NEXT ATTEMPT", "next_attempt_at"),
            ("LAST ERROR", "last_error"),
        ],
    )
}

/// A table of one column per `(header, field)` of each item, plus the
/// "more" hint when the page has a next cursor.
fn columns(page: &Value, cols: &[(&str, &str)]) -> String {
    let headers: Vec<&str> = cols.iter().map(|(h, _)| *h).collect();
    let rows: Vec<Vec<String>> = items(page)
        .iter()
        .map(|item| cols.iter().map(|(_, k)| cell(&item[*k])).collect())
        .collect();
    let mut out = table(&headers, &rows);
    more(page, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["xxx".into(), "1".into()],
                vec!["y".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    BB\nxxx  1\ny    22\n");
    }

    #[test]
    fn artifacts_table_lists_run_then_host_values() {
        let a = serde_json::json!({
            "run": {"version": "1.2", "count": 3},
            "hosts": {"web1": {"ok": true, "list": [1, 2]}}
        });
        assert_eq!(
            artifacts_table(&a),
            "SCOPE  KEY      VALUE\n\
             run    count    3\n\
             run    version  1.2\n\
             web1   list     [1,2]\n\
             web1   ok       yes\n"
        );
        let empty = serde_json::json!({"run": {}, "hosts": {}});
        assert_eq!(artifacts_table(&empty), "no set_stats data in this run\n");
    }

    #[test]
    fn refuses_https_and_missing_tokens() {
        assert!(ApiClient::new("https://h:1", "t").is_err());
        assert!(ApiClient::new("h:1", "t").is_err());
        assert!(ApiClient::new("http://h:1", " ").is_err());
        assert!(ApiClient::new("http://h:1/", "t").is_ok());
    }
}

/// `herald dlq …`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, newest first (GET /v1/dead-letters).
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Only this plugin instance's.
        #[arg(long)]
        plugin: Option<String>,
        /// Follow `next_cursor` and print every page.
        #[arg(long)]
        all: bool,
    },
    /// Queue dead letters again: one by id, or all of an instance's.
    Retry {
        #[command(flatten)]
        api: ApiArgs,
        /// A dead letter's id (`<event id>:<plugin>`, from `herald dlq list`).
        #[arg(long, conflicts_with = "plugin", required_unless_present = "plugin")]
        id: Option<String>,
        /// Every dead letter of this plugin instance.
        #[arg(long)]
        plugin: Option<String>,
    },
}

/// `herald replay`: re-deliver a recorded run to one plugin instance.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The run id.
    pub run: String,
    /// The plugin instance that receives the run again.
    #[arg(long)]
    pub plugin: String,
}

/// `herald dlq …`
pub fn main_dlq(cmd: DlqCommand) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(dlq(cmd))))
}

/// `herald replay …`
pub fn main_replay(args: ReplayArgs) -> ExitCode {
    finish(runtime().and_then(|rt| {
        rt.block_on(async {
            let c = ApiClient::new(&args.api.url, &args.api.token)?;
            let path = format!("/v1/runs/{}/replay", seg(&args.run));
            let v = c
                .post(&path, &serde_json::json!({"plugin": args.plugin}))
                .await?;
            Ok(match args.api.output {
                Output::Json => pretty(&v),
                Output::Table => format!(
                    "{} events of run {} queued for {}\n",
                    v["requeued"], args.run, args.plugin
                ),
            })
        })
    }))
}

async fn dlq(cmd: DlqCommand) -> Result<String, ClientError> {
    match cmd {
        DlqCommand::List { api, plugin, all } => {
            let c = ApiClient::new(&api.url, &api.token)?;
            let mut pairs = Vec::new();
            push(&mut pairs, "plugin", plugin);
            let v = c.get_all("/v1/dead-letters", pairs, all).await?;
            Ok(match api.output {
                Output::Json => pretty(&v),
                Output::Table => columns(
                    &v,
                    &[
                        ("ID", "id"),
                        ("PLUGIN", "plugin"),
                        ("RUN", "run_id"),
                        ("KIND", "kind"),
                        ("ATTEMPTS", "attempts"),
                        ("REASON", "reason"),
                    ],
                ),
            })
        }
        DlqCommand::Retry { api, id, plugin } => {
            let c = ApiClient::new(&api.url, &api.token)?;
            let v = match (id, plugin) {
                (Some(id), _) => {
                    c.post(
                        &format!("/v1/dead-letters/{}/retry", seg(&id)),
                        &serde_json::json!({}),
                    )
                    .await?
                }
                (None, Some(p)) => {
                    c.post("/v1/dead-letters/retry", &serde_json::json!({"plugin": p}))
                        .await?
                }
                (None, None) => return Err(ClientError("give --id or --plugin".into())),
            };
            Ok(match api.output {
                Output::Json => pretty(&v),
                Output::Table => format!("{} dead letter(s) queued again\n", v["requeued"]),
            })
        }
    }
}

/// `herald import`: send recorded ansible-runner job events to Herald.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// An ansible-runner artifacts directory (`artifacts/<ident>/`), its
    /// `job_events/` folder, or a private data directory holding `artifacts/`.
    pub dir: std::path::PathBuf,
    /// Events per request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

/// `herald import …`
pub fn main_import(args: ImportArgs) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(import(args))))
}

/// Every `job_events/` folder under `dir` (the folder itself, an artifacts
/// ident folder, or a private data dir with several runs), each with the run
/// ident it belongs to.
fn job_event_dirs(dir: &std::path::Path) -> Result<Vec<(std::path::PathBuf, String)>, ClientError> {
    let ident_of = |p: &std::path::Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    if dir.file_name().is_some_and(|n| n == "job_events") {
        let ident = dir.parent().map(ident_of).unwrap_or_default();
        return Ok(vec![(dir.to_path_buf(), ident)]);
    }
    if dir.join("job_events").is_dir() {
        return Ok(vec![(dir.join("job_events"), ident_of(dir))]);
    }
    let artifacts = if dir.join("artifacts").is_dir() {
        dir.join("artifacts")
    } else {
        dir.to_path_buf()
    };
    let mut found = Vec::new();
    let entries = std::fs::read_dir(&artifacts)
        .map_err(|e| ClientError(format!("{}: {e}", artifacts.display())))?;
    for entry in entries.flatten() {
        let p = entry.path();
        if p.join("job_events").is_dir() {
            found.push((p.join("job_events"), ident_of(&p)));
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(ClientError(format!(
            "{}: no job_events/ folder found (give an ansible-runner artifacts directory)",
            dir.display()
        )));
    }
    Ok(found)
}

async fn import(args: ImportArgs) -> Result<String, ClientError> {
    let c = ApiClient::new(&args.api.url, &args.api.token)?;
    let mut out = String::new();
    let (mut total, mut dups) = (0u64, 0u64);
    for (dir, ident) in job_event_dirs(&args.dir)? {
        let mut events: Vec<(u64, std::path::PathBuf, Value)> = Vec::new();
        let entries =
            std::fs::read_dir(&dir).map_err(|e| ClientError(format!("{}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ClientError(format!("{}: {e}", path.display())))?;
            let mut v: Value = serde_json::from_str(&text)
                .map_err(|e| ClientError(format!("{}: not a JSON event: {e}", path.display())))?;
            // A run recorded by ansible-runner has no Herald run id: its ident is one.
            if v.get("run_id").is_none() && v.get("runner_ident").is_none() {
                v["runner_ident"] = Value::String(ident.clone());
            }
            let counter = v.get("counter").and_then(Value::as_u64).unwrap_or(0);
            events.push((counter, path, v));
        }
        events.sort_by_key(|(c, _, _)| *c);
        distinct_uuids(events.iter_mut().map(|(c, _, v)| (*c, v)));
        for chunk in events.chunks(args.batch.max(1)) {
            let body = Value::Array(chunk.iter().map(|(_, _, v)| v.clone()).collect());
            let answer = c.post("/v1/events", &body).await.map_err(|e| {
                // Name the file behind a refused event.
                let file =
                    e.0.split("event ")
                        .nth(1)
                        .and_then(|r| r.split(':').next())
                        .and_then(|i| i.trim().parse::<usize>().ok())
                        .and_then(|i| chunk.get(i))
                        .map(|(_, p, _)| format!(" ({})", p.display()))
                        .unwrap_or_default();
                ClientError(format!("{}{file}", e.0))
            })?;
            total += answer["accepted"].as_u64().unwrap_or(0);
            dups += answer["duplicates"].as_u64().unwrap_or(0);
        }
        let _ = writeln!(out, "{}: {} events", dir.display(), events.len());
    }
    let _ = writeln!(out, "imported {total} events ({dups} already known)");
    Ok(out)
}

/// Gives every event of one recorded run its own uuid, so the host (which
/// deduplicates by uuid) stores them all. ansible-runner reuses a task's uuid
/// for its start event, so a handler that runs twice has two events with one
/// uuid. The first keeps it; each repeat gets `<uuid>-<counter>` (stable:
/// importing again derives the same ids, and nothing is stored twice), and
/// the later events whose `parent_uuid` is the repeated uuid point at the
/// repeat instead, until the next repeat. `events` must be in counter order.
fn distinct_uuids<'a>(events: impl Iterator<Item = (u64, &'a mut Value)>) {
    use std::collections::{HashMap, HashSet};
    let mut seen: HashSet<String> = HashSet::new();
    // Original uuid -> the uuid its latest occurrence was given.
    let mut latest: HashMap<String, String> = HashMap::new();
    for (counter, v) in events {
        let parent = v.get("parent_uuid").and_then(Value::as_str);
        if let Some(new_parent) = parent.and_then(|p| latest.get(p)) {
            v["parent_uuid"] = Value::String(new_parent.clone());
        }
        let Some(uuid) = v.get("uuid").and_then(Value::as_str).map(str::to_owned) else {
            continue; // the host refuses it, naming the file
        };
        if seen.insert(uuid.clone()) {
            continue;
        }
        let mut derived = format!("{uuid}-{counter}");
        let mut n = 1u32;
        while seen.contains(&derived) {
            n += 1;
            derived = format!("{uuid}-{counter}-{n}");
        }
        seen.insert(derived.clone());
        v["uuid"] = Value::String(derived.clone());
        if let Some(data) = v.get_mut("event_data").and_then(Value::as_object_mut) {
            // ansible-runner repeats the event's uuid in event_data
            if data.get("uuid").and_then(Value::as_str) == Some(uuid.as_str()) {
                data.insert("uuid".into(), Value::String(derived.clone()));
            }
        }
        latest.insert(uuid, derived);
    }
}

#[cfg(test)]
mod import_tests {
    use super::distinct_uuids;
    use serde_json::{json, Value};

    #[test]
    fn a_repeated_uuid_gets_a_stable_distinct_one_and_its_children_follow() {
        let mut events: Vec<(u64, Value)> = vec![
            (
                8,
                json!({"uuid": "h", "event": "playbook_on_task_start", "event_data": {"uuid": "h"}}),
            ),
            (9, json!({"uuid": "a", "parent_uuid": "h"})),
            (
                25,
                json!({"uuid": "h", "event": "playbook_on_task_start", "event_data": {"uuid": "h"}}),
            ),
            (26, json!({"uuid": "b", "parent_uuid": "h"})),
            (27, json!({"uuid": "h-27"})),
            (30, json!({"uuid": "h"})),
        ];
        distinct_uuids(events.iter_mut().map(|(c, v)| (*c, v)));
        let ids: Vec<&str> = events
            .iter()
            .map(|(_, v)| v["uuid"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(ids, ["h", "a", "h-25", "b", "h-27", "h-30"]);
        assert_eq!(events[1].1["parent_uuid"], "h");
        assert_eq!(events[3].1["parent_uuid"], "h-25");
        assert_eq!(events[2].1["event_data"]["uuid"], "h-25");
        // A uuid already taken by a later event's own id is not given twice.
        let mut clash: Vec<(u64, Value)> = vec![
            (1, json!({"uuid": "x"})),
            (2, json!({"uuid": "x-3"})),
            (3, json!({"uuid": "x"})),
        ];
        distinct_uuids(clash.iter_mut().map(|(c, v)| (*c, v)));
        assert_eq!(clash[2].1["uuid"], "x-3-2");
    }
}
