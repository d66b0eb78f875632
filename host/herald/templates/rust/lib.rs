//! {{name}}: a Herald sink plugin. It posts a line to `url` for each host whose task failed or
//! was unreachable. Edit `handle` (and `Config`) to make it yours; plugins/README.md in Herald
//! lists what the SDK offers.

use herald_sdk::http::{Method, Request, Url};
use herald_sdk::{config, playbook_name, result_message, Event, EventRef, HostFailure, Outcome, Plugin};
use serde::Deserialize;

/// The instance's `[plugins.<name>.config]` table. Unknown keys are refused, naming the key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to post; must be in the instance's `allow_http`.
    url: String,
    #[serde(default = "herald_sdk::config::default_timeout_ms")]
    timeout_ms: u64,
}

/// One instance of the plugin.
pub struct Sink {
    url: Url,
    timeout_ms: u64,
}

/// The line posted for a failed host's result, `None` for every other event.
pub fn message(e: &Event) -> Option<String> {
    let what = HostFailure::of(e)?;
    Some(format!(
        "{}: task '{}' {} on {}: {}",
        playbook_name(&e.run.playbook),
        e.task.as_ref().map(|t| t.name.as_str()).unwrap_or("?"),
        what.as_str(),
        e.host.as_deref().unwrap_or("?"),
        result_message(e.res.as_deref(), 500).unwrap_or_default(),
    ))
}

impl Plugin for Sink {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        // Refuses, at `herald check`, a URL the instance's allow_http would refuse.
        let url = config::granted_url("url", &c.url)?;
        config::check_timeout_ms(c.timeout_ms)?;
        Ok(Sink { url, timeout_ms: c.timeout_ms })
    }

    fn handle(&mut self, e: &EventRef<'_>, _attempt: u32) -> Outcome {
        let Some(text) = message(e) else {
            return Outcome::Ok;
        };
        Request::new(Method::Post, self.url.clone())
            .timeout_ms(self.timeout_ms)
            .header("idempotency-key", e.id.clone())
            .json(&serde_json::json!({ "text": text }))
            .deliver()
            .0
    }
}

herald_sdk::export_plugin!(Sink);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing::{event, host_event};
    use herald_sdk::{EventKind, Status};

    #[test]
    fn a_failed_host_gets_a_line_and_other_events_none() {
        let failed = host_event(
            EventKind::RunnerOnFailed,
            Status::Failed,
            "r1",
            "site.yml",
            "web2",
            "install",
            Some(r#"{"msg":"no package"}"#),
        );
        assert_eq!(
            message(&failed).as_deref(),
            Some("site.yml: task 'install' failed on web2: no package")
        );
        assert_eq!(message(&event(EventKind::PlaybookOnStart, "r1", "site.yml")), None);
    }

    #[test]
    fn the_config_names_a_bad_key() {
        let e = herald_sdk::build::<Sink>(r#"{"url":"http://127.0.0.1:9/hook","timeout":5}"#)
            .err()
            .unwrap_or_default();
        assert!(e.contains("timeout"), "{e}");
    }
}
