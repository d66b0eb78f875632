//! The `templates` capability (contract 0.3.0): a plugin renders its
//! instance's message templates (`[plugins.<name>.templates]`, compiled by
//! herald-config when the configuration loads) or its own defaults (given
//! from `configure`) against the current event and its run.
//!
//! The run's part of the context comes from the journal through its
//! `RunQueries` trait: the run's labels and start for every event, and for
//! the end-of-run event (`playbook_on_stats`) its failed and unreachable
//! results. So a summary covers every event of the run, whatever the
//! instance's routes, and survives restarts and discarded instances, which
//! a summary kept inside the plugin does not (docs/architecture.md).
//!
//! A render that fails (a runtime error, or a limit: fuel, output size,
//! recursion) is returned to the plugin as `failed` and also kept: the
//! host then answers the call with a permanent failure carrying the
//! template's message, whatever `handle` returned.

use crate::contract::v0_3::{self, templates, LazyEvent};
use crate::HostState;
use herald_journal::RunQueries;
use herald_templates::{Context, RenderError, RenderLimits, RunFacts, TemplateSet};
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, Resource};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    v0_3::templates::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

/// The templates of one store: the user's (from the configuration), the
/// plugin's defaults, the context of the current call, and the first
/// failure of the call.
pub struct TemplatesState {
    user: Option<Arc<TemplateSet>>,
    /// The instance's render limits, for the plugin's defaults too.
    limits: RenderLimits,
    defaults: Option<Arc<TemplateSet>>,
    runs: Arc<dyn RunQueries>,
    context: Option<Context>,
    failure: Option<String>,
}

impl TemplatesState {
    pub(crate) fn new(
        user: Option<Arc<TemplateSet>>,
        limits: RenderLimits,
        runs: Arc<dyn RunQueries>,
    ) -> Self {
        TemplatesState {
            user,
            limits,
            defaults: None,
            runs,
            context: None,
            failure: None,
        }
    }

    /// The plugin's default templates (name, source), as it gave them.
    pub(crate) fn defaults(&self) -> Vec<(String, String)> {
        self.defaults
            .as_ref()
            .map(|set| {
                set.names()
                    .into_iter()
                    .filter_map(|n| Some((n.clone(), set.source(&n)?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends a call: forgets its context and returns the message of its
    /// first failed render, if any.
    pub(crate) fn take_failure(&mut self) -> Option<String> {
        self.context = None;
        self.failure.take()
    }

    /// What the journal knows of the event's run (`None` when it has
    /// nothing or cannot be read: the context then holds the event's own).
    fn facts(&self, tenant: &str, plugin: &str, run_id: &str, ends_run: bool) -> Option<RunFacts> {
        let run = match self.runs.run(tenant, run_id, 0) {
            Ok(Some(run)) => run,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(
                    plugin,
                    "templates: cannot read the run from the journal: {e}"
                );
                return None;
            }
        };
        let results = if ends_run {
            match self.runs.run_results(tenant, run_id) {
                Ok(results) => results
                    .into_iter()
                    .filter(|r| {
                        matches!(
                            r.kind.as_str(),
                            "runner_on_failed" | "runner_on_async_failed" | "runner_on_unreachable"
                        )
                    })
                    .map(|r| r.body)
                    .collect(),
                Err(e) => {
                    tracing::warn!(plugin, "templates: cannot read the run's results: {e}");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        Some(RunFacts {
            labels: run.labels,
            start_ms: run
                .start
                .as_ref()
                .map(|s| s.created_ms)
                .or(Some(run.first_ms)),
            playbook: run.playbook,
            controller: run.controller,
            results,
        })
    }
}

impl HostState {
    fn render_template(
        &mut self,
        name: String,
        event: Resource<LazyEvent>,
    ) -> wasmtime::Result<Result<String, templates::RenderError>> {
        let set = match (&self.templates.user, &self.templates.defaults) {
            (Some(user), _) if user.contains(&name) => user.clone(),
            (_, Some(defaults)) if defaults.contains(&name) => defaults.clone(),
            _ => return Ok(Err(templates::RenderError::NotConfigured)),
        };
        if self.templates.context.is_none() {
            let lazy = self.table.get(&event)?;
            let (tenant, body) = (lazy.tenant().clone(), lazy.body().to_string());
            let plugin = self.ident.plugin.clone();
            let facts = herald_templates::context::run_key(&body)
                .and_then(|(run, ends)| self.templates.facts(&tenant, &plugin, &run, ends));
            match Context::new(&tenant, &plugin, &body, facts.as_ref()) {
                Ok(ctx) => self.templates.context = Some(ctx),
                Err(e) => return Ok(Err(self.failed(format!("template `{name}`: {e}")))),
            }
        }
        let Some(ctx) = self.templates.context.as_mut() else {
            return Ok(Err(templates::RenderError::NotConfigured));
        };
        // The user's `run_url` serves the plugin's defaults too.
        let user_url = match &self.templates.user {
            Some(user) if name != herald_templates::RUN_URL => user.fill_run_url(ctx),
            _ => Ok(()),
        };
        let rendered = user_url.and_then(|()| set.render(&name, ctx));
        herald_telemetry::host()
            .template_renders
            .with_label_values(&[
                &*self.ident.tenant,
                &*self.ident.plugin,
                if rendered.is_ok() { "ok" } else { "failed" },
            ])
            .inc();
        Ok(match rendered {
            Ok(text) => Ok(text),
            Err(RenderError::NotConfigured(_)) => Err(templates::RenderError::NotConfigured),
            Err(RenderError::Failed(message)) => Err(self.failed(message)),
        })
    }

    /// Keeps the call's first failure and returns it as the plugin sees it.
    fn failed(&mut self, message: String) -> templates::RenderError {
        self.counters().in_delivery(|| tracing::warn!(plugin = %self.ident.plugin, tenant = %self.ident.tenant, "template render failed: {message}"));
        self.templates
            .failure
            .get_or_insert_with(|| format!("message template failed: {message}"));
        templates::RenderError::Failed(message)
    }
}

impl templates::Host for HostState {
    fn configured(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self
            .templates
            .user
            .as_ref()
            .map(|s| s.names())
            .unwrap_or_default())
    }

    fn set_defaults(
        &mut self,
        defaults: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(
            match TemplateSet::compile(defaults, self.templates.limits) {
                Ok(set) => {
                    self.templates.defaults = Some(Arc::new(set));
                    Ok(())
                }
                Err(errors) => Err(format!(
                    "the plugin's default templates do not compile: {}",
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                )),
            },
        )
    }

    fn render(
        &mut self,
        name: String,
        event: Resource<LazyEvent>,
    ) -> wasmtime::Result<Result<String, templates::RenderError>> {
        self.render_template(name, event)
    }
}
