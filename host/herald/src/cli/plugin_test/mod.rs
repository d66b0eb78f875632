//! `herald plugin test COMPONENT --config FILE --events FILE`: runs a built component against a
//! recorded run offline, in the host's own runtime (same contract, limits and allow-lists),
//! with outbound HTTP answered by a scripted fake and sockets by scripted peers ([`sockets`])
//! instead of the network. Prints each call's outcome, every request the plugin would have
//! sent and a transcript of its socket conversations; exits 1 when a call trapped or
//! answered anything but ok.

mod sockets;

use anyhow::{bail, Context as _};
use clap::Args;
use herald::config::PluginConfig;
use herald::journal::{Journal, SharedStore};
use herald::runtime::capability::http::scripted::{
    Responder, ScriptedFailure, ScriptedRequest, ScriptedResponse,
};
use herald::runtime::{InstanceSpec, Outcome, PluginInstance, Runtime};
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// `herald plugin test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The component to run (.wasm).
    pub component: PathBuf,
    /// A herald.toml, or a fragment with a `[plugins.<name>]` table (the one `herald plugin
    /// new` writes): the instance's tenant, config, allow_http, allow_sockets and limits.
    /// Its `component` is replaced by COMPONENT.
    #[arg(long)]
    pub config: PathBuf,
    /// The instance of --config to use, when it has several.
    #[arg(long)]
    pub plugin: Option<String>,
    /// The recorded run: `herald runs export` lines, a JSON array of events, or an
    /// ansible-runner artifacts directory (or its job_events/).
    #[arg(long)]
    pub events: PathBuf,
    /// The fake's script, JSON: `[{"url": PREFIX, "method": M, "status": N, "headers": {..},
    /// "body": "..." or JSON, "times": N, "fail": "timeout"|"refused"}]`; the first rule whose
    /// URL prefix (and method) matches and is not used up answers. Without a match: 200, empty.
    #[arg(long, conflicts_with = "record_http")]
    pub http: Option<PathBuf>,
    /// Sends the plugin's HTTP requests to the real services (the instance's allow_http still
    /// applies) and writes what came back to FILE as an `--http` script (one rule per
    /// request, in order: status, the first bytes of the body the plugin read, or the
    /// failure), to replay the run offline later.
    #[arg(long, value_name = "FILE")]
    pub record_http: Option<PathBuf>,
    /// The socket peers' script, JSON: `[{"address": "IP:PORT", "protocol": "smtp"|"lines",
    /// "greeting": "...", "replies": [{"match": PREFIX, "send": "...", "times": N}], "fail":
    /// "refused"|"timeout"}]`. Every address of the instance's allow_sockets gets a local
    /// peer (TCP and UDP); one without a rule records what arrives and answers nothing.
    #[arg(long)]
    pub sockets: Option<PathBuf>,
    /// Characters of each request body to print (0: none).
    #[arg(long, default_value_t = 2000)]
    pub body_chars: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default = "ok_status")]
    status: u16,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    times: Option<u32>,
    #[serde(default)]
    fail: Option<String>,
}

fn ok_status() -> u16 {
    200
}

/// The scripted fake: answers by the rules, records every request.
struct Fake {
    rules: Mutex<Vec<(Rule, u32)>>,
    sent: Mutex<Vec<(ScriptedRequest, String)>>,
}

impl Responder for Fake {
    fn answer(&self, req: &ScriptedRequest) -> Result<ScriptedResponse, ScriptedFailure> {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let hit = rules.iter_mut().find(|(r, used)| {
            req.url.starts_with(&r.url)
                && r.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
                && r.times.is_none_or(|t| *used < t)
        });
        let (answer, note) = match hit {
            None => (
                Ok(ScriptedResponse {
                    status: 200,
                    headers: Vec::new(),
                    body: Default::default(),
                }),
                "200 (no rule matched)".to_string(),
            ),
            Some((rule, used)) => {
                *used += 1;
                match rule.fail.as_deref() {
                    Some("timeout") => (Err(ScriptedFailure::Timeout), "timeout".to_string()),
                    Some(_) => (
                        Err(ScriptedFailure::ConnectionRefused),
                        "connection refused".to_string(),
                    ),
                    None => {
                        let body = match &rule.body {
                            None => String::new(),
                            Some(Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                        };
                        (
                            Ok(ScriptedResponse {
                                status: rule.status,
                                headers: rule.headers.clone().into_iter().collect(),
                                body: body.into(),
                            }),
                            rule.status.to_string(),
                        )
                    }
                }
            }
        };
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((req.clone(), note));
        answer
    }
}

/// Header values that are credentials, by name: printed as `***`.
fn secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "token",
        "secret",
        "key",
        "signature",
        "password",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// The instance to test: `[plugins.<name>]` of the file.
fn instance(
    path: &Path,
    name: Option<&str>,
    component: &Path,
) -> anyhow::Result<(String, PluginConfig)> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not TOML", path.display()))?;
    let Some(toml::Value::Table(plugins)) = doc.get("plugins") else {
        bail!("{}: no [plugins.<name>] table", path.display());
    };
    let name = match name {
        Some(n) => n.to_string(),
        None if plugins.len() == 1 => plugins.keys().next().cloned().unwrap_or_default(),
        None => bail!(
            "{}: several instances ({}); choose one with --plugin",
            path.display(),
            plugins.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    let Some(toml::Value::Table(table)) = plugins.get(&name) else {
        bail!("{}: no [plugins.{name}] table", path.display());
    };
    let mut table = table.clone();
    table.insert("component".into(), component.display().to_string().into());
    table.entry("tenant").or_insert_with(|| "default".into());
    if let Some(toml::Value::Table(c)) = table.get_mut("config") {
        resolve_env(c)?;
    }
    let cfg: PluginConfig = toml::Value::Table(table)
        .try_into()
        .with_context(|| format!("{}: plugins.{name}", path.display()))?;
    Ok((name, cfg))
}

/// `${env:NAME}` strings of the config, as the host resolves them.
fn resolve_env(t: &mut toml::Table) -> anyhow::Result<()> {
    for (key, v) in t.iter_mut() {
        match v {
            toml::Value::String(s) if s.starts_with("${env:") && s.ends_with('}') => {
                let var = &s[6..s.len() - 1];
                *s = std::env::var(var)
                    .with_context(|| format!("config key `{key}`: ${{env:{var}}} is not set"))?;
            }
            toml::Value::Table(inner) => resolve_env(inner)?,
            _ => {}
        }
    }
    Ok(())
}

/// The recorded events, as the host journals them, in order.
fn events(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut values: Vec<Value> = Vec::new();
    let dir = if path.join("job_events").is_dir() {
        Some(path.join("job_events"))
    } else if path.is_dir() {
        Some(path.to_path_buf())
    } else {
        None
    };
    if let Some(dir) = dir {
        let ident = dir
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let p = entry?.path();
            if p.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&p).with_context(|| p.display().to_string())?;
                let mut v: Value = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a JSON event", p.display()))?;
                if v.get("run_id").is_none() && v.get("runner_ident").is_none() {
                    v["runner_ident"] = Value::String(ident.clone());
                }
                values.push(v);
            }
        }
        values.sort_by_key(|v| v.get("counter").and_then(Value::as_u64).unwrap_or(0));
    } else {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        if text.trim_start().starts_with('[') {
            values = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a JSON array of events", path.display()))?;
        } else {
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                values.push(
                    serde_json::from_str(line).with_context(|| {
                        format!("{}:{}: not a JSON event", path.display(), i + 1)
                    })?,
                );
            }
        }
    }
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            herald::event::validate(v)
                .map(|w| w.body().to_string())
                .map_err(|e| anyhow::anyhow!("{}: event {}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn outcome_text(o: &Outcome) -> (bool, String) {
    match o {
        Outcome::Ok => (true, "ok".into()),
        Outcome::Retryable(r) => (
            false,
            match r.retry_after_ms {
                Some(ms) => format!("retryable after {ms} ms: {}", r.reason),
                None => format!("retryable: {}", r.reason),
            },
        ),
        Outcome::Permanent(reason) => (false, format!("permanent: {reason}")),
    }
}

async fn run(args: TestArgs) -> anyhow::Result<(bool, String)> {
    let (name, cfg) = instance(&args.config, args.plugin.as_deref(), &args.component)?;
    let bodies = events(&args.events)?;
    let rules: Vec<Rule> = match &args.http {
        None => Vec::new(),
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| p.display().to_string())?,
        )
        .with_context(|| format!("{}: not a list of rules", p.display()))?,
    };
    let socket_rules: Vec<sockets::Rule> = match &args.sockets {
        None => Vec::new(),
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| p.display().to_string())?,
        )
        .with_context(|| format!("{}: not a list of socket rules", p.display()))?,
    };
    let fake = Arc::new(Fake {
        rules: Mutex::new(rules.into_iter().map(|r| (r, 0)).collect()),
        sent: Mutex::new(Vec::new()),
    });
    let spec =
        InstanceSpec::from_config(&name, &cfg).map_err(|e| anyhow::anyhow!("allow_http: {e}"))?;
    let peers = Arc::new(
        sockets::Peers::start(&spec.allow_sockets, socket_rules)
            .await
            .with_context(|| {
                args.sockets
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            })?,
    );
    let work = std::env::temp_dir().join(format!("herald-plugin-test-{}", std::process::id()));
    // Compiled components are kept between runs (a Python component takes seconds to compile).
    let cache = std::env::temp_dir().join("herald-plugin-test-cache");
    let mut runtime = Runtime::new(Some(cache))?;
    if args.record_http.is_none() {
        runtime = runtime.with_outbound(fake.clone());
    }
    let runtime = runtime.with_scripted_sockets(peers.clone())?;
    let mut recorded: Vec<Value> = Vec::new();
    let component = {
        let rt = runtime.clone();
        let path = args.component.clone();
        tokio::task::spawn_blocking(move || rt.load(&path)).await??
    };
    let journal: SharedStore = Arc::new(Journal::open(&work.join("state.db"))?);
    let services =
        herald::plugin_services::services(&journal, &herald::telemetry::Metrics::default());
    let mut instance = PluginInstance::new(&runtime, component, Arc::new(spec), services);
    let mut out = String::new();
    let mut all_ok = true;
    if let Err((e, _)) = instance.ensure_live().await {
        let _ = std::fs::remove_dir_all(&work);
        bail!("plugins.{name}: {e}");
    }
    for (i, body) in bodies.iter().enumerate() {
        let v: Value = serde_json::from_str(body).unwrap_or_default();
        let kind = v.get("event").and_then(Value::as_str).unwrap_or("?");
        let host = v
            .pointer("/event_data/host")
            .and_then(Value::as_str)
            .map(|h| format!(" {h}"))
            .unwrap_or_default();
        let report = instance.deliver(body, 1).await;
        peers.settle().await;
        if args.record_http.is_some() {
            for r in &report.requests {
                let _ = writeln!(
                    out,
                    "    {} {} -> {}",
                    r.method,
                    r.url,
                    match (r.status, &r.error) {
                        (Some(s), _) => s.to_string(),
                        (None, Some(e)) => e.clone(),
                        (None, None) => "no answer".into(),
                    }
                );
                recorded.push(recorded_rule(r));
            }
        }
        let line = match &report.result {
            Ok(o) => {
                let (ok, text) = outcome_text(o);
                all_ok &= ok;
                text
            }
            Err(e) => {
                all_ok = false;
                format!("FAULT {e}")
            }
        };
        let _ = writeln!(out, "#{} {kind}{host}: {line}", i + 1);
        for f in &report.faults {
            let _ = writeln!(out, "    fault {}: {}", f.reason, f.message);
        }
        for (req, answered) in fake
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = writeln!(out, "    {} {} -> {answered}", req.method, req.url);
            for (n, v) in &req.headers {
                let value = if secret_header(n) {
                    "***".to_string()
                } else {
                    String::from_utf8_lossy(v).into_owned()
                };
                let _ = writeln!(out, "      {n}: {value}");
            }
            if args.body_chars > 0 && !req.body.is_empty() {
                let text = String::from_utf8_lossy(&req.body);
                let shown: String = text.chars().take(args.body_chars).collect();
                let more = if text.chars().count() > args.body_chars {
                    " …"
                } else {
                    ""
                };
                let _ = writeln!(out, "      {shown}{more}");
            }
        }
        print_transcript(&mut out, peers.drain(), args.body_chars);
    }
    let _ = writeln!(
        out,
        "{} events, {}",
        bodies.len(),
        if all_ok {
            "every call answered ok"
        } else {
            "NOT every call answered ok"
        }
    );
    let _ = std::fs::remove_dir_all(&work);
    if let Some(file) = &args.record_http {
        let text = serde_json::to_string_pretty(&recorded)?;
        std::fs::write(file, text + "\n").with_context(|| file.display().to_string())?;
        let _ = writeln!(
            out,
            "recorded {} requests to {} (replay: --http {})",
            recorded.len(),
            file.display(),
            file.display()
        );
    }
    Ok((all_ok, out))
}

/// The `--http` rule that replays one recorded request: its method and URL, used once,
/// answering what came back. The host records URLs with credential-like path segments and
/// query values masked (`***`): the rule's prefix stops before the first of them, so no
/// secret reaches the file and the prefix still matches the request.
fn recorded_rule(r: &herald::runtime::OutboundRequest) -> Value {
    let cut = [r.url.find("***"), r.url.find('?')]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(r.url.len());
    let mut rule = serde_json::json!({"url": &r.url[..cut], "method": r.method, "times": 1});
    match r.status {
        Some(status) => {
            rule["status"] = status.into();
            if !r.body.is_empty() {
                rule["body"] = String::from_utf8_lossy(&r.body).into_owned().into();
            }
        }
        None => {
            let timeout = r.error.as_deref().is_some_and(|e| {
                e.to_ascii_lowercase().contains("timeout") || e.contains("timed out")
            });
            rule["fail"] = if timeout { "timeout" } else { "refused" }.into();
        }
    }
    rule
}

/// The socket peers' transcript of one call, grouped by peer: `>` what the plugin sent, `<`
/// what the peer answered, `*` what happened; each line cut at `body_chars`.
fn print_transcript(out: &mut String, lines: Vec<(String, String)>, body_chars: usize) {
    let mut last: Option<String> = None;
    for (peer, line) in lines {
        if last.as_deref() != Some(peer.as_str()) {
            let _ = writeln!(out, "    {peer}");
            last = Some(peer);
        }
        let shown: String = line.chars().take(body_chars.max(60)).collect();
        let more = if shown.len() < line.len() { " …" } else { "" };
        let _ = writeln!(out, "      {shown}{more}");
    }
}

/// `herald plugin test …`
pub fn main_test(args: TestArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok((ok, out)) => {
            print!("{out}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("herald plugin test: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_by_header_name() {
        for n in [
            "Authorization",
            "x-api-key",
            "X-Herald-Signature",
            "cookie",
            "x-auth-token",
        ] {
            assert!(secret_header(n), "{n}");
        }
        assert!(!secret_header("content-type") && !secret_header("user-agent"));
    }
}
