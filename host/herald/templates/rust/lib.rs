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
    use herald_sdk::testing::{event, host_event, FakeHost};
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

    /// `handle` itself, against the SDK's fake host: HTTP answered by the script (and checked
    /// against allow_http), so a failing assertion is a test failure.
    #[test]
    fn a_failure_is_posted_and_a_busy_sink_retried_after_retry_after() {
        let host = FakeHost::new(&["http://127.0.0.1:9"]);
        host.set_now_ms(0);
        host.respond("http://127.0.0.1:9/hook", 429, &[("Retry-After", "5")], "slow down")
            .respond("http://127.0.0.1:9/hook", 200, &[], "");
        let mut sink = herald_sdk::build::<Sink>(r#"{"url":"http://127.0.0.1:9/hook"}"#).unwrap();
        let failed = EventRef::from(host_event(
            EventKind::RunnerOnUnreachable,
            Status::Unreachable,
            "r1",
            "site.yml",
            "db1",
            "ping",
            None,
        ));
        match sink.handle(&failed, 1) {
            Outcome::Retryable(r) => assert_eq!(r.retry_after_ms, Some(5000)),
            other => panic!("expected a retry, got {other:?}"),
        }
        assert!(matches!(sink.handle(&failed, 2), Outcome::Ok));
        let sent = host.requests();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].json()["text"], "site.yml: task 'ping' unreachable on db1: ");
    }

    #[test]
    fn the_config_names_a_bad_key() {
        let e = herald_sdk::build::<Sink>(r#"{"url":"http://127.0.0.1:9/hook","timeout":5}"#)
            .err()
            .unwrap_or_default();
        assert!(e.contains("timeout"), "{e}");
    }
}
