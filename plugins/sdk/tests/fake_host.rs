//! A plugin's `handle` called natively against `testing::FakeHost`: HTTP answered by the
//! script and checked against `allow_http`, logs, metrics and state recorded, and a failing
//! assertion (or an unscripted request) is a test failure, not an abort.

use herald_sdk::http::{Method, Request, Url};
use herald_sdk::testing::{host_event, FakeHost};
use herald_sdk::{config, state, EventKind, EventRef, HostFailure, Outcome, Plugin, Status};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
}

struct Sink {
    url: Url,
}

impl Plugin for Sink {
    type Config = Config;
    fn new(c: Config) -> Result<Self, String> {
        Ok(Sink {
            url: config::granted_url("url", &c.url)?,
        })
    }
    fn handle(&mut self, e: &EventRef<'_>, _attempt: u32) -> Outcome {
        let Some(what) = HostFailure::of(e) else {
            return Outcome::Ok;
        };
        herald_sdk::log::info("posting a failure");
        herald_sdk::metrics::counter_add(
            "sink_posts_total",
            "Posts.",
            &[("what", what.as_str())],
            1.0,
        );
        state::set("last", e.host.as_deref().unwrap_or(""));
        Request::new(Method::Post, self.url.clone())
            .json(&serde_json::json!({"host": e.host, "what": what.as_str()}))
            .deliver()
            .0
    }
}

fn failed() -> EventRef<'static> {
    EventRef::from(host_event(
        EventKind::RunnerOnFailed,
        Status::Failed,
        "r1",
        "site.yml",
        "web2",
        "install",
        None,
    ))
}

#[test]
fn handle_runs_natively_against_the_fake_host() {
    let host = FakeHost::new(&["https://chat.example.com/hooks"]);
    host.set_now_ms(0);
    host.respond(
        "https://chat.example.com/hooks/",
        429,
        &[("Retry-After", "2")],
        "busy",
    )
    .respond("https://chat.example.com/hooks/", 204, &[], "");
    let mut sink =
        herald_sdk::build::<Sink>(r#"{"url":"https://chat.example.com/hooks/x"}"#).unwrap();
    match sink.handle(&failed(), 1) {
        Outcome::Retryable(r) => {
            assert_eq!(r.retry_after_ms, Some(2000));
            assert_eq!(r.reason, "HTTP 429 from https://chat.example.com: busy");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(sink.handle(&failed(), 2), Outcome::Ok));
    let sent = host.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(
        sent[0].json(),
        serde_json::json!({"host": "web2", "what": "failed"})
    );
    assert_eq!(sent[0].header("content-type"), Some("application/json"));
    assert_eq!(
        host.logs()[0],
        ("info".to_string(), "posting a failure".to_string())
    );
    assert_eq!(host.metrics().len(), 2);
    assert_eq!(host.state().get("last").map(String::as_str), Some("web2"));
}

#[test]
fn a_destination_outside_allow_http_is_refused_as_by_the_host() {
    let host = FakeHost::new(&["https://chat.example.com/hooks"]);
    let mut sink =
        herald_sdk::build::<Sink>(r#"{"url":"https://chat.example.com/other"}"#).unwrap();
    match sink.handle(&failed(), 1) {
        Outcome::Permanent(reason) => assert!(
            reason.contains("not allowed by the instance's allow_http"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(host.requests().is_empty());
}

#[test]
#[should_panic(expected = "nothing is scripted to answer")]
fn an_unscripted_request_fails_the_test() {
    let _host = FakeHost::new(&["https://chat.example.com"]);
    let mut sink = herald_sdk::build::<Sink>(r#"{"url":"https://chat.example.com/x"}"#).unwrap();
    let _ = sink.handle(&failed(), 1);
}

#[test]
#[should_panic(expected = "no host outside a component")]
fn without_a_fake_host_the_calls_fail_clearly() {
    state::get("x");
}
