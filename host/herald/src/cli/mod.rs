//! `herald runs|deliveries|dlq|replay|import`: the command-line side of the
//! API client. The clap types live here, in the binary; the HTTP client, the
//! models and the tables are the herald-client library's.
//!
//! The URL and token come from `--url`/`--token` or `HERALD_URL`/`HERALD_TOKEN`,
//! the same variables the callback reads; `--ca-cert`/`HERALD_CA_CERT` names a
//! private CA for an https:// URL.

mod import;
pub mod plugin_test;
pub mod scaffold;
mod template;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use herald_client::model::{
    Artifacts, DeadLetterPage, DeliveryPage, EventPage, Requeued, RunDetail, RunPage,
};
use herald_client::{table, ApiClient, JsonPage};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

pub use import::ImportArgs;
pub use template::RenderArgs;

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
    /// Herald's base URL, http:// or https://.
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8765")]
    pub url: String,
    /// A tenant token; answers are scoped to its tenant. Prefer the
    /// HERALD_TOKEN environment variable: a --token value is visible to
    /// other users in the process list.
    // Empty when missing, so the error names both --token and HERALD_TOKEN
    // (herald_client::ClientError::NoToken) instead of clap's "required argument" alone.
    #[arg(
        long,
        env = "HERALD_TOKEN",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub token: String,
    /// A PEM file of CA certificates trusted for an https:// URL, besides the
    /// system's: a private CA, or a self-signed server certificate that is
    /// not itself a CA (`basicConstraints=CA:FALSE`; `openssl req -x509`
    /// makes CA certificates by default, which TLS refuses as a server's).
    #[arg(long, env = "HERALD_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
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
        /// Runs started at or after this time: RFC 3339, epoch ms, or a
        /// duration before now (`90s`, `30m`, `1h`, `2d`, `1w`).
        #[arg(long)]
        since: Option<String>,
        /// Runs started before this time (as --since).
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
        /// The run: its id, a unique prefix of it, or `latest`.
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
        /// The run: its id, a unique prefix of it, or `latest`.
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
    /// A run's events as journaled, in order, one JSON object per line
    /// (Herald's wire format): a recorded run to test a plugin against, or to
    /// send to another Herald (`POST /v1/events` takes the lines as an array).
    Export {
        #[command(flatten)]
        api: ApiArgs,
        /// The run: its id, a unique prefix of it, or `latest`.
        #[arg(value_name = "RUN")]
        id: String,
        /// Write to this file (replaced) instead of standard output.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// A run's set_stats data (GET /v1/runs/{id}/artifacts): one row per
    /// scope (`run` or a host) and key.
    Artifacts {
        #[command(flatten)]
        api: ApiArgs,
        /// The run: its id, a unique prefix of it, or `latest`.
        #[arg(value_name = "RUN")]
        id: String,
    },
}

/// `herald deliveries …`
#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries to plugin instances (GET /v1/deliveries): the table
    /// newest first, grouped per run; `--output json` in journal order.
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
    /// What each attempt of one delivery sent and what the sink answered
    /// (GET /v1/deliveries/{plugin}/{event_uuid}/attempts).
    Attempts {
        #[command(flatten)]
        api: ApiArgs,
        /// The plugin instance.
        plugin: String,
        /// The event's uuid (`herald deliveries list --output json`, `herald dlq list`).
        event_uuid: String,
    },
}

/// `herald search`: hosts and tasks by name across runs.
#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Part of a host or task name (case-insensitive).
    pub query: String,
    /// At most this many hosts and this many tasks.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

/// `herald search …`
pub fn main_search(args: SearchArgs) -> ExitCode {
    finish(search(args))
}

async fn search(args: SearchArgs) -> anyhow::Result<String> {
    let client = args.api.client()?;
    let pairs = vec![("q", args.query.clone()), ("limit", args.limit.to_string())];
    match args.api.output {
        Output::Json => pretty(&client.get::<Value>("/v1/search", &pairs).await?),
        Output::Table => Ok(table::search(
            &client
                .get::<herald_client::model::SearchResult>("/v1/search", &pairs)
                .await?,
        )),
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

/// `herald plugin …`: tools for plugin authors.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Create a standalone plugin project: source, build command (`make`), a test, a README
    /// and a herald.toml fragment whose component is where the build writes.
    New(scaffold::NewArgs),
    /// Run a component against a recorded run offline (scripted HTTP instead of the network):
    /// prints each call's outcome and the requests it would have sent; exit 1 on a fault or an
    /// outcome that is not ok, 2 on bad input.
    Test(plugin_test::TestArgs),
}

/// `herald plugin …`
pub fn main_plugin(cmd: PluginCommand) -> ExitCode {
    match cmd {
        PluginCommand::New(args) => scaffold::main_new(args),
        PluginCommand::Test(args) => plugin_test::main_test(args),
    }
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

impl ApiArgs {
    fn client(&self) -> anyhow::Result<ApiClient> {
        Ok(ApiClient::new(
            &self.url,
            &self.token,
            self.ca_cert.as_deref(),
        )?)
    }
}

/// A path segment, percent-encoded.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Adds `key=v` to a query when `v` is given.
fn push(pairs: &mut Vec<(&'static str, String)>, key: &'static str, v: Option<impl ToString>) {
    if let Some(v) = v {
        pairs.push((key, v.to_string()));
    }
}

/// The API's answer, pretty-printed.
fn pretty(v: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

/// Runs one command on a small runtime and prints its output, or the error
/// (with its causes) on stderr with status 1.
fn finish(cmd: impl std::future::Future<Output = anyhow::Result<String>>) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
        .and_then(|rt| rt.block_on(cmd));
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `herald runs …`
pub fn main_runs(cmd: RunsCommand) -> ExitCode {
    finish(runs(cmd))
}

/// `herald deliveries …`
pub fn main_deliveries(cmd: DeliveriesCommand) -> ExitCode {
    finish(deliveries(cmd))
}

/// `herald dlq …`
pub fn main_dlq(cmd: DlqCommand) -> ExitCode {
    finish(dlq(cmd))
}

/// `herald replay …`
pub fn main_replay(args: ReplayArgs) -> ExitCode {
    finish(replay(args))
}

/// `herald template render …`
pub fn main_template_render(args: RenderArgs) -> ExitCode {
    finish(template::render(args))
}

/// `herald import …`
pub fn main_import(args: ImportArgs) -> ExitCode {
    finish(import::import(args))
}

async fn runs(cmd: RunsCommand) -> anyhow::Result<String> {
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
            let client = api.client()?;
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
            match api.output {
                Output::Json => pretty(&client.runs::<JsonPage>(pairs, all).await?),
                Output::Table => Ok(table::runs(&client.runs::<RunPage>(pairs, all).await?)),
            }
        }
        RunsCommand::Show {
            api,
            id,
            interrupted_after_s,
        } => {
            let client = api.client()?;
            let mut pairs = Vec::new();
            push(&mut pairs, "interrupted_after_s", interrupted_after_s);
            match api.output {
                Output::Json => pretty(&client.run::<Value>(&id, &pairs).await?),
                Output::Table => Ok(table::run(&client.run::<RunDetail>(&id, &pairs).await?)),
            }
        }
        RunsCommand::Events {
            api,
            id,
            kind,
            host,
            status,
        } => {
            let client = api.client()?;
            let mut pairs = vec![("limit", "500".to_string())];
            push(&mut pairs, "kind", kind);
            push(&mut pairs, "host", host);
            push(&mut pairs, "status", status);
            match api.output {
                Output::Json => pretty(&client.run_events::<JsonPage>(&id, pairs).await?),
                Output::Table => Ok(table::events(
                    &client.run_events::<EventPage>(&id, pairs).await?,
                )),
            }
        }
        RunsCommand::Export { api, id, file } => {
            let client = api.client()?;
            let page = client
                .run_events::<JsonPage>(&id, vec![("limit", "500".to_string())])
                .await?;
            let mut lines = String::new();
            for item in &page.items {
                lines.push_str(&serde_json::to_string(item)?);
                lines.push('\n');
            }
            match file {
                None => Ok(lines),
                Some(path) => {
                    // Written beside and renamed: a reader never sees half a run.
                    let part = path.with_extension("part");
                    std::fs::write(&part, &lines)
                        .and_then(|()| std::fs::rename(&part, &path))
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    Ok(format!(
                        "{}: {} events of run {id}\n",
                        path.display(),
                        page.items.len()
                    ))
                }
            }
        }
        RunsCommand::Artifacts { api, id } => {
            let client = api.client()?;
            match api.output {
                Output::Json => pretty(&client.artifacts::<Value>(&id).await?),
                Output::Table => Ok(table::artifacts(&client.artifacts::<Artifacts>(&id).await?)),
            }
        }
    }
}

async fn deliveries(cmd: DeliveriesCommand) -> anyhow::Result<String> {
    let (api, run, plugin, outcome, limit, cursor, all) = match cmd {
        DeliveriesCommand::List {
            api,
            run,
            plugin,
            outcome,
            limit,
            cursor,
            all,
        } => (api, run, plugin, outcome, limit, cursor, all),
        DeliveriesCommand::Attempts {
            api,
            plugin,
            event_uuid,
        } => {
            let client = api.client()?;
            let path = format!(
                "/v1/deliveries/{}/{}/attempts",
                encode(&plugin),
                encode(&event_uuid)
            );
            return match api.output {
                Output::Json => pretty(&client.get::<Value>(&path, &[]).await?),
                Output::Table => Ok(table::attempts(
                    &client
                        .get::<herald_client::model::DeliveryAttempts>(&path, &[])
                        .await?,
                )),
            };
        }
    };
    let client = api.client()?;
    let mut pairs = Vec::new();
    push(&mut pairs, "run", run);
    push(&mut pairs, "plugin", plugin);
    push(&mut pairs, "outcome", outcome);
    pairs.push(("limit", limit.to_string()));
    push(&mut pairs, "cursor", cursor);
    match api.output {
        Output::Json => pretty(&client.deliveries::<JsonPage>(pairs, all).await?),
        Output::Table => Ok(table::deliveries(
            &client.deliveries::<DeliveryPage>(pairs, all).await?,
        )),
    }
}

async fn dlq(cmd: DlqCommand) -> anyhow::Result<String> {
    match cmd {
        DlqCommand::List { api, plugin, all } => {
            let client = api.client()?;
            let mut pairs = Vec::new();
            push(&mut pairs, "plugin", plugin);
            match api.output {
                Output::Json => pretty(&client.dead_letters::<JsonPage>(pairs, all).await?),
                Output::Table => Ok(table::dead_letters(
                    &client.dead_letters::<DeadLetterPage>(pairs, all).await?,
                )),
            }
        }
        DlqCommand::Retry { api, id, plugin } => {
            let client = api.client()?;
            let answer: Value = match (id, plugin) {
                (Some(id), _) => client.retry_dead_letter(&id).await?,
                (None, Some(p)) => client.retry_plugin(&p).await?,
                (None, None) => anyhow::bail!("give --id or --plugin"),
            };
            match api.output {
                Output::Json => pretty(&answer),
                Output::Table => {
                    let r: Requeued = serde_json::from_value(answer)
                        .context("herald's answer is not {\"requeued\": N}")?;
                    Ok(format!("{} dead letter(s) queued again\n", r.requeued))
                }
            }
        }
    }
}

async fn replay(args: ReplayArgs) -> anyhow::Result<String> {
    let client = args.api.client()?;
    let answer: Value = client.replay(&args.run, &args.plugin).await?;
    match args.api.output {
        Output::Json => pretty(&answer),
        Output::Table => {
            let r: Requeued = serde_json::from_value(answer)
                .context("herald's answer is not {\"requeued\": N}")?;
            Ok(format!(
                "{} events of run {} queued for {}\n",
                r.requeued, args.run, args.plugin
            ))
        }
    }
}
