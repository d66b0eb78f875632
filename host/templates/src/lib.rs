//! `herald-templates`: the message templates of plugin instances.
//!
//! A plugin instance's `[plugins.<name>.templates]` (herald.toml) names
//! templates in Jinja2 syntax, the syntax Ansible users already write. They
//! are compiled with `minijinja` when the configuration loads
//! ([`TemplateSet::compile`]), so `herald check` reports a template error at
//! its line and column, and rendered for a plugin against the current event
//! and its run ([`context`]) under [`RenderLimits`]: fuel (instructions), the
//! output size and the recursion depth. A failed render is an error value,
//! never a panic.
//!
//! This crate knows nothing of plugins or storage: the runtime gives it the
//! journaled event and what the journal knows of the run ([`context::RunFacts`]).

pub mod context;
mod filters;

use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use thiserror::Error;

pub use context::{Context, RunFacts};

/// The template whose output, when configured, is the context's `run_url`
/// (a link to the run in a UI or AWX), rendered before the others.
pub const RUN_URL: &str = "run_url";

/// Bounds of one render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderLimits {
    /// minijinja fuel: roughly one unit per instruction of the template's
    /// bytecode. A typical Slack message uses a few hundred.
    pub fuel: u64,
    /// Most bytes a render may write; past it the render stops.
    pub max_output: usize,
    /// Deepest nesting of macro calls, includes and recursive loops.
    pub recursion: usize,
}

impl Default for RenderLimits {
    fn default() -> Self {
        RenderLimits {
            fuel: 100_000,
            max_output: 64 * 1024,
            recursion: 32,
        }
    }
}

/// A template that does not compile, located in its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// The template's name (its key in `[plugins.<name>.templates]`).
    pub name: String,
    /// 1-based line in the template's source.
    pub line: usize,
    /// 1-based column (in characters) in that line.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "template `{}` line {} column {}: {}",
            self.name, self.line, self.column, self.message
        )
    }
}

/// Why a render gave no text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RenderError {
    /// The instance configures no template of that name.
    #[error("no template `{0}` is configured for this plugin instance")]
    NotConfigured(String),
    /// The template failed: a runtime error, or a limit (fuel, output size,
    /// recursion) stopped it. The message names the template and its line.
    #[error("{0}")]
    Failed(String),
}

/// The compiled templates of one plugin instance.
pub struct TemplateSet {
    env: Environment<'static>,
    sources: BTreeMap<String, String>,
    limits: RenderLimits,
}

impl fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateSet")
            .field("names", &self.sources.keys().collect::<Vec<_>>())
            .field("limits", &self.limits)
            .finish()
    }
}

/// Two sets are equal when they hold the same sources under the same limits
/// (a reload that changes no template keeps the instance).
impl PartialEq for TemplateSet {
    fn eq(&self, other: &Self) -> bool {
        self.sources == other.sources && self.limits == other.limits
    }
}

/// The environment every instance's templates are compiled in: no HTML
/// escaping (the sinks are chat, JSON and syslog, not HTML), Herald's
/// filters, the limits.
fn environment(limits: RenderLimits) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(limits.fuel));
    env.set_recursion_limit(limits.recursion);
    env.set_debug(true);
    // Jinja2 keeps the newline after a block tag; Ansible's templates trim
    // it, and so do these (a `{% for %}` line adds no blank line).
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    filters::register(&mut env);
    env
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map(|i| i + 1).unwrap_or(0)..]
        .chars()
        .count()
        + 1;
    (line, column)
}

/// The message of a minijinja error without its location (given apart).
fn message_of(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

impl TemplateSet {
    /// Compiles an instance's templates; every template that does not
    /// compile is reported, located in its own source.
    pub fn compile<I>(templates: I, limits: RenderLimits) -> Result<TemplateSet, Vec<CompileError>>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut env = environment(limits);
        let mut sources = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, source) in templates {
            if let Err(e) = env.add_template_owned(name.clone(), source.clone()) {
                let (line, column) = match e.range() {
                    Some(r) => line_col(&source, r.start),
                    None => (e.line().unwrap_or(1), 1),
                };
                errors.push(CompileError {
                    name,
                    line,
                    column,
                    message: message_of(&e),
                });
            } else {
                sources.insert(name, source);
            }
        }
        if errors.is_empty() {
            Ok(TemplateSet {
                env,
                sources,
                limits,
            })
        } else {
            Err(errors)
        }
    }

    /// The names of the configured templates, in name order.
    pub fn names(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
    }

    /// Whether a template of that name is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    /// The source of a configured template.
    pub fn source(&self, name: &str) -> Option<&str> {
        self.sources.get(name).map(String::as_str)
    }

    /// Whether template `name` reads the top-level variable `var` (such as
    /// `summary`, which only an end-of-run event's context holds).
    pub fn uses(&self, name: &str, var: &str) -> bool {
        self.env
            .get_template(name)
            .map(|t| t.undeclared_variables(false).contains(var))
            .unwrap_or(false)
    }

    /// The limits every render of this set runs under.
    pub fn limits(&self) -> RenderLimits {
        self.limits
    }

    /// Renders template `name` against `ctx`. When the set has a
    /// [`RUN_URL`] template it is rendered first (once per context) and its
    /// output is the context's `run_url`.
    pub fn render(&self, name: &str, ctx: &mut Context) -> Result<String, RenderError> {
        if !self.contains(name) {
            return Err(RenderError::NotConfigured(name.to_string()));
        }
        if name != RUN_URL {
            self.fill_run_url(ctx)?;
        }
        self.render_one(name, ctx)
    }

    /// Sets the context's `run_url` from this set's [`RUN_URL`] template,
    /// when it has one and the context has none yet. The host calls it
    /// with the user's set before a plugin's default template renders, so
    /// a user's `run_url` reaches the defaults too.
    pub fn fill_run_url(&self, ctx: &mut Context) -> Result<(), RenderError> {
        if self.contains(RUN_URL) && ctx.run_url.is_none() {
            let url = self.render_one(RUN_URL, ctx)?;
            ctx.run_url = Some(url.trim().to_string());
        }
        Ok(())
    }

    fn render_one(&self, name: &str, ctx: &Context) -> Result<String, RenderError> {
        let failed = |m: String| RenderError::Failed(format!("template `{name}`: {m}"));
        let template = self
            .env
            .get_template(name)
            .map_err(|e| failed(message_of(&e)))?;
        let mut out = Bounded {
            buf: Vec::new(),
            max: self.limits.max_output,
            over: false,
        };
        match template.render_captured_to(ctx.value(), &mut out) {
            Ok(_) => String::from_utf8(out.buf).map_err(|e| failed(e.to_string())),
            Err(_) if out.over => Err(failed(format!(
                "output over {} bytes (the render was stopped)",
                self.limits.max_output
            ))),
            Err(e) => {
                let at = match e.line() {
                    Some(l) => format!("line {l}: "),
                    None => String::new(),
                };
                let what = match e.kind() {
                    ErrorKind::OutOfFuel => format!(
                        "stopped after {} units of fuel (an endless or very long loop?)",
                        self.limits.fuel
                    ),
                    _ => message_of(&e),
                };
                Err(failed(format!("{at}{what}")))
            }
        }
    }
}

/// A writer that refuses to grow past `max` bytes, so a template that
/// writes megabytes is stopped at the limit rather than after.
struct Bounded {
    buf: Vec<u8>,
    max: usize,
    over: bool,
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            self.over = true;
            return Err(std::io::Error::other("template output limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(list: &[(&str, &str)]) -> Result<TemplateSet, Vec<CompileError>> {
        TemplateSet::compile(
            list.iter().map(|(n, s)| (n.to_string(), s.to_string())),
            RenderLimits::default(),
        )
    }

    fn ctx() -> Context {
        Context::new(
            "acme",
            "slack",
            r#"{"uuid":"e1","event":"runner_on_failed","counter":3,"run_id":"r1","created":"2026-01-01T00:00:00Z","event_data":{"host":"web1","task":"restart","res":{"msg":"boom"}}}"#,
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_syntax_error_is_located_in_its_template() {
        let errors = set(&[("ok", "fine"), ("text", "line one\n  {{ event.host }\n")]).unwrap_err();
        assert_eq!(errors.len(), 1);
        let e = &errors[0];
        assert_eq!((e.name.as_str(), e.line), ("text", 2), "{e}");
        assert!(e.column >= 3, "{e}");
        assert!(e.message.contains("syntax error"), "{e}");
    }

    #[test]
    fn renders_the_event() {
        let s = set(&[(
            "text",
            "{{ event.host }} failed {{ event.task }}: {{ event.message }}",
        )])
        .unwrap();
        assert_eq!(
            s.render("text", &mut ctx()).unwrap(),
            "web1 failed restart: boom"
        );
        assert_eq!(
            s.render("nope", &mut ctx()),
            Err(RenderError::NotConfigured("nope".into()))
        );
    }

    #[test]
    fn an_endless_loop_runs_out_of_fuel() {
        let s = set(&[(
            "text",
            "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
        )])
        .unwrap();
        let e = s.render("text", &mut ctx()).unwrap_err().to_string();
        assert!(e.contains("fuel"), "{e}");
    }

    #[test]
    fn megabytes_of_output_are_stopped() {
        let s = set(&[(
            "text",
            "{% for a in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
        )])
        .unwrap();
        let e = s.render("text", &mut ctx()).unwrap_err().to_string();
        assert!(e.contains("output over 65536 bytes"), "{e}");
    }

    #[test]
    fn deep_recursion_is_stopped() {
        let s = set(&[(
            "text",
            "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
        )])
        .unwrap();
        let e = s.render("text", &mut ctx()).unwrap_err().to_string();
        assert!(e.contains("recursion"), "{e}");
    }

    #[test]
    fn a_users_run_url_reaches_another_sets_template() {
        // The host's order for a plugin's default: the user's set fills
        // `run_url`, then the default renders with it.
        let user = set(&[(RUN_URL, "https://awx.example/#/jobs/{{ run.id }}")]).unwrap();
        let defaults = set(&[(
            "summary_text",
            "done{% if run_url %}: {{ run_url }}{% endif %}",
        )])
        .unwrap();
        let mut c = ctx();
        assert_eq!(
            defaults.render("summary_text", &mut c.clone()).unwrap(),
            "done"
        );
        user.fill_run_url(&mut c).unwrap();
        assert_eq!(
            defaults.render("summary_text", &mut c).unwrap(),
            "done: https://awx.example/#/jobs/r1"
        );
    }

    #[test]
    fn a_template_says_which_variables_it_reads() {
        let s = set(&[
            (
                "recap",
                "{% for h in summary.failed_hosts %}{{ h.host }}{% endfor %}",
            ),
            (
                "text",
                "{% set summary = 1 %}{{ event.host }} {{ summary }}",
            ),
        ])
        .unwrap();
        assert!(s.uses("recap", "summary"));
        assert!(
            !s.uses("text", "summary"),
            "a variable it sets itself is not read"
        );
        assert!(s.uses("text", "event"));
        assert!(!s.uses("missing", "event"));
    }

    #[test]
    fn run_url_is_rendered_first() {
        let s = set(&[
            (RUN_URL, "https://awx.example/#/jobs/{{ run.id }}"),
            ("text", "see {{ run_url }}"),
        ])
        .unwrap();
        assert_eq!(
            s.render("text", &mut ctx()).unwrap(),
            "see https://awx.example/#/jobs/r1"
        );
    }
}
