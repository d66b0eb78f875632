//! Render cost of a typical Slack template, per event: `cargo bench -p herald-templates`.
//!
//! Prints a table: building the context of a host result event and rendering Slack's default
//! `failure_text` on it (what a failure message costs), and building the context of a stats
//! event of a run with 20 hosts and 10 failures (its summary included) and rendering Slack's
//! default `summary_text` (what a run summary costs). The goal (issue 21) is well under the
//! plugin call it precedes: a Slack or webhook call posting over HTTP, ~117 µs
//! (BENCHMARKS.md, "webhook: raw plugin calls/s" 8,548), or even a no-op call (~1 µs) for the
//! failure text. The texts are copies of plugins/slack's defaults; the blocks are its
//! `templates/` files, with the values the plugin sets before them.

use herald_templates::{Context, RenderLimits, RunFacts, TemplateSet};
use std::hint::black_box;
use std::time::Instant;

const FAILURE_TEXT: &str = ":x: {{ run.playbook or 'ad-hoc run' }}: task '{{ event.task or '?' }}' {{ event.status }} on {{ event.host or '?' }}: {{ event.message or '(no message)' }}";

const SUMMARY_TEXT: &str = "{{ ':red_circle:' if run.status == 'failed' else ':large_green_circle:' }} {{ run.playbook or 'ad-hoc run' }} {{ run.status }}{% if run.duration_ms is not none %} in {{ run.duration_ms | duration }}{% endif %}: {{ summary.hosts }} host(s), ok={{ summary.totals.ok }} changed={{ summary.totals.changed }} failed={{ summary.totals.failures }} unreachable={{ summary.totals.unreachable }} skipped={{ summary.totals.skipped }}
{% for h in summary.failed_hosts %}
• {{ h.host }} {{ 'unreachable' if h.unreachable else 'failed' }}{% for t in h.tasks %}{{ ':' if loop.first else ';' }} task '{{ t.task }}': {{ t.message | truncate(200) }}{% endfor %}

{% endfor %}
{% if summary.set_stats._run %}stats:{% for k, v in summary.set_stats._run | items %} {{ k }}={{ v | tojson }}{% endfor %}

{% endif %}
{% if run_url %}{{ run_url }}{% endif %}";

/// Slack's default blocks as the plugin gives them (`Slack::default_templates`), for an
/// instance with `mention = "<!here>"` and the default `max_hosts`.
fn blocks(body: &str) -> String {
    format!(
        "{{%- set cfg_mention = \"<!here>\" %}}{{%- set cfg_max_hosts = 20 %}}{{%- set cfg_run_url = none %}}\n{}{body}",
        include_str!("../../../plugins/slack/templates/common.j2")
    )
}

fn failed(i: usize) -> String {
    format!(
        r#"{{"uuid":"f{i}","event":"runner_on_failed","counter":{c},"run_id":"r1","created":"2026-01-01T00:00:{s:02}Z","controller":"ctl","event_data":{{"playbook":"deploy.yml","play":"Deploy","host":"web{i}","task":"Migrate the database","task_action":"ansible.builtin.command","res":{{"msg":"non-zero return code","stderr":"migration 42 failed: relation \"users\" already exists","rc":1,"changed":true}}}}}}"#,
        c = 10 + i,
        s = i % 60
    )
}

fn stats() -> String {
    let hosts: Vec<String> = (0..20).map(|i| format!("web{i}")).collect();
    let map = |v: &dyn Fn(usize) -> u32| {
        hosts
            .iter()
            .enumerate()
            .map(|(i, h)| format!("\"{h}\":{}", v(i)))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        r#"{{"uuid":"s","event":"playbook_on_stats","counter":99,"run_id":"r1","created":"2026-01-01T00:04:05Z","event_data":{{"playbook":"deploy.yml","ok":{{{}}},"changed":{{{}}},"failures":{{{}}},"dark":{{}},"skipped":{{{}}},"custom_stats":{{"_run":{{"release":"2.0.1","canary":true}}}}}}}}"#,
        map(&|_| 12),
        map(&|i| (i % 3 == 0) as u32),
        map(&|i| (i < 10) as u32),
        map(&|_| 2)
    )
}

/// Median nanoseconds per call of `f` over 7 rounds of `n` calls, `n` divided by
/// `RENDER_BENCH_DIVIDE` when set (for a quick run, or under callgrind).
fn time(n: u32, mut f: impl FnMut()) -> f64 {
    let divide: u32 = std::env::var("RENDER_BENCH_DIVIDE")
        .ok()
        .and_then(|d| d.parse().ok())
        .filter(|d| *d > 0)
        .unwrap_or(1);
    let n = (n / divide).max(1);
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[3]
}

fn main() {
    let set = TemplateSet::compile(
        [
            ("failure_text".to_string(), FAILURE_TEXT.to_string()),
            ("summary_text".to_string(), SUMMARY_TEXT.to_string()),
            (
                "failure_blocks".to_string(),
                blocks(include_str!(
                    "../../../plugins/slack/templates/failure_blocks.j2"
                )),
            ),
            (
                "summary_blocks".to_string(),
                blocks(include_str!(
                    "../../../plugins/slack/templates/summary_blocks.j2"
                )),
            ),
        ],
        RenderLimits::default(),
    )
    .expect("the templates compile");
    let event = failed(1);
    let facts = RunFacts {
        start_ms: Some(1_767_225_600_000),
        results: (0..10).map(failed).collect(),
        ..Default::default()
    };
    let stats = stats();

    let ctx_failure = time(20_000, || {
        black_box(Context::new("acme", "slack", black_box(&event), None).expect("context"));
    });
    let render_failure = time(20_000, || {
        let mut ctx = Context::new("acme", "slack", black_box(&event), None).expect("context");
        black_box(set.render("failure_text", &mut ctx).expect("render"));
    });
    let ctx_summary = time(2_000, || {
        black_box(Context::new("acme", "slack", black_box(&stats), Some(&facts)).expect("context"));
    });
    let render_summary = time(2_000, || {
        let mut ctx =
            Context::new("acme", "slack", black_box(&stats), Some(&facts)).expect("context");
        black_box(set.render("summary_text", &mut ctx).expect("render"));
    });
    let message_failure = time(20_000, || {
        let mut ctx = Context::new("acme", "slack", black_box(&event), None).expect("context");
        black_box(set.render("failure_text", &mut ctx).expect("render"));
        black_box(set.render("failure_blocks", &mut ctx).expect("render"));
    });
    let message_summary = time(2_000, || {
        let mut ctx =
            Context::new("acme", "slack", black_box(&stats), Some(&facts)).expect("context");
        black_box(set.render("summary_text", &mut ctx).expect("render"));
        black_box(set.render("summary_blocks", &mut ctx).expect("render"));
    });
    let mut ctx = Context::new("acme", "slack", &stats, Some(&facts)).expect("context");
    let text = set.render("summary_text", &mut ctx).expect("render");
    let summary_blocks = set.render("summary_blocks", &mut ctx).expect("render");

    println!("| what (Slack's default templates) | median µs per event | goal |");
    println!("|---|---|---|");
    println!(
        "| failure: context of a host result | {:.1} | |",
        ctx_failure / 1000.0
    );
    println!(
        "| failure: context + render `failure_text` | {:.1} | well under a plugin call posting over HTTP (~117 µs) |",
        render_failure / 1000.0
    );
    println!(
        "| end of run (20 hosts, 10 failures): context with summary | {:.1} | |",
        ctx_summary / 1000.0
    );
    println!(
        "| end of run: context + render `summary_text` ({} bytes) | {:.1} | well under a plugin call posting over HTTP (~117 µs) |",
        text.len(),
        render_summary / 1000.0
    );
    println!(
        "| failure: the whole default message, `failure_text` + `failure_blocks` | {:.1} | |",
        message_failure / 1000.0
    );
    println!(
        "| end of run: the whole default message, `summary_text` + `summary_blocks` ({} bytes of blocks) | {:.1} | |",
        summary_blocks.len(),
        message_summary / 1000.0
    );
}
