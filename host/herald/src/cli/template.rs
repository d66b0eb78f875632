//! `herald template render`: what an instance's message templates render
//! for a recorded run, without sending anything. The templates are the
//! config's, compiled as `herald check` compiles them, over the plugin's
//! defaults (the plugin is loaded and configured to give them); the events come from
//! the query API (`--run`) or a file (`--events`), and the context is built
//! as the host builds it for a plugin (herald-templates), the run's facts
//! taken from the run's own events.

use super::ApiArgs;
use anyhow::{bail, Context as _};
use clap::Args;
use herald_client::model::EventPage;
use herald_templates::{Context, RunFacts};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `herald template render …`
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The configuration file that names the instance's templates.
    #[arg(short, long, env = "HERALD_CONFIG")]
    pub config: PathBuf,
    /// The plugin instance (`[plugins.<NAME>]`).
    #[arg(long)]
    pub plugin: String,
    /// Render only this template (default: every configured one but `run_url`).
    #[arg(long)]
    pub template: Option<String>,
    /// Only events of these kinds (comma-separated wire names, such as
    /// `runner_on_failed,playbook_on_stats`).
    #[arg(long)]
    pub kind: Option<String>,
    /// A recorded run, read over the query API (HERALD_URL, HERALD_TOKEN).
    #[arg(long, conflicts_with = "events", required_unless_present = "events")]
    pub run: Option<String>,
    /// A file of wire events: a JSON array, or one event per line (NDJSON).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Reads a file of wire events (JSON array or NDJSON) and validates each as
/// ingest does, into the bodies the journal would hold.
fn events_from_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let values: Vec<(usize, Value)> = if text.trim_start().starts_with('[') {
        let all: Vec<Value> = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a JSON array of events", path.display()))?;
        all.into_iter()
            .enumerate()
            .map(|(i, v)| (i + 1, v))
            .collect()
    } else {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a JSON event", path.display(), i + 1))?;
            out.push((i + 1, v));
        }
        out
    };
    values
        .into_iter()
        .map(|(n, v)| match herald_event::validate(v) {
            Ok(e) => Ok(e.body().to_string()),
            Err(e) => bail!("{}: event {n}: {}: {}", path.display(), e.field, e.message),
        })
        .collect()
}

/// The render of every chosen template for every chosen event, as text.
pub async fn render(args: RenderArgs) -> anyhow::Result<String> {
    let config = herald_config::Config::load(&args.config).map_err(anyhow::Error::new)?;
    let Some(plugin) = config.plugins.get(&args.plugin) else {
        bail!(
            "{}: no plugin instance `{}` (it has: {})",
            args.config.display(),
            args.plugin,
            config
                .plugins
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    // The plugin's defaults (it is loaded and configured, nothing is sent),
    // each replaced by the user's template of the same name.
    let defaults = herald::app::plugin_default_templates(&config, &args.plugin)
        .await
        .map_err(anyhow::Error::new)?;
    let user = plugin.compiled_templates.as_ref();
    let is_user = |n: &str| user.is_some_and(|u| u.contains(n));
    let mut sources: std::collections::BTreeMap<String, String> = defaults.into_iter().collect();
    if let Some(u) = user {
        for n in u.names() {
            if let Some(src) = u.source(&n) {
                sources.insert(n.clone(), src.to_string());
            }
        }
    }
    if sources.is_empty() {
        bail!(
            "plugin instance `{}` has no templates: none in [plugins.{}.templates], and its \
             plugin gives no defaults (a plugin built against contract 0.3.0 may)",
            args.plugin,
            args.plugin
        );
    }
    let limits = plugin.limits.render_limits();
    let set = herald_templates::TemplateSet::compile(sources, limits).map_err(|errors| {
        anyhow::anyhow!(
            "the plugin's default templates do not compile: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let names: Vec<String> = match &args.template {
        Some(t) if set.contains(t) => vec![t.clone()],
        Some(t) => bail!(
            "plugin instance `{}` has no template `{t}` (it has: {})",
            args.plugin,
            set.names().join(", ")
        ),
        None => set
            .names()
            .into_iter()
            .filter(|n| n != herald_templates::RUN_URL || set.names().len() == 1)
            .collect(),
    };
    let bodies = match (&args.run, &args.events) {
        (_, Some(path)) => events_from_file(path)?,
        (Some(run), None) => {
            let client = args.api.client()?;
            let page: EventPage = client.run_events(run, Vec::new()).await?;
            page.items.iter().map(Value::to_string).collect()
        }
        (None, None) => bail!("give --run RUN or --events FILE"),
    };
    let kinds: Option<Vec<&str>> = args
        .kind
        .as_deref()
        .map(|k| k.split(',').map(str::trim).collect());
    let facts = RunFacts::from_events(&bodies);
    let mut out = String::new();
    let mut failures = Vec::new();
    for body in &bodies {
        let base = Context::new(&plugin.tenant, &args.plugin, body, Some(&facts))
            .map_err(|e| anyhow::anyhow!("cannot read an event: {e}"))?;
        if kinds
            .as_ref()
            .is_some_and(|k| !k.contains(&base.event.kind.as_str()))
        {
            continue;
        }
        let mut ctx = base;
        for name in &names {
            let host = ctx.event.host.clone().unwrap_or_default();
            let _ = writeln!(
                out,
                "--- event {} {}{}{} · template {name}{}",
                ctx.event.sequence,
                ctx.event.kind,
                if host.is_empty() { "" } else { " " },
                host,
                if is_user(name) { "" } else { " (default)" }
            );
            match set.render(name, &mut ctx) {
                Ok(text) => {
                    out.push_str(&text);
                    if !text.ends_with('\n') {
                        out.push('\n');
                    }
                }
                // A template that reads `summary` fails on other events by
                // design: plugins render such templates for end-of-run
                // events only, so this is no failure a delivery would meet.
                Err(_) if ctx.summary.is_none() && set.uses(name, "summary") => {
                    let _ = writeln!(
                        out,
                        "(not rendered: it reads `summary`, which only the end-of-run event has)"
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "!! {e}");
                    failures.push(format!("event {}: {e}", ctx.event.sequence));
                }
            }
        }
    }
    if !failures.is_empty() {
        print!("{out}");
        bail!(
            "{} render(s) failed; the plugin would dead-letter these events: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(out)
}
