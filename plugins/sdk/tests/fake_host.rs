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

#[test]
fn sockets_reach_only_granted_scripted_peers() {
    use herald_sdk::net::{NetError, Stream, TcpSender, UdpSender};
    let host = FakeHost::new(&[]);
    host.allow_sockets(&["127.0.0.1:514", "127.0.0.1:6514", "127.0.0.1:25"])
        .peer("127.0.0.1:514", None, &[])
        .peer("127.0.0.1:6514", None, &[])
        .peer(
            "127.0.0.1:25",
            Some("220 hi"),
            &[("HELO", "250 hello\n250 again")],
        )
        .refuse("127.0.0.1:6514");
    let udp: std::net::SocketAddr = "127.0.0.1:514".parse().unwrap();
    UdpSender::new(udp).send(b"<14>1 one").unwrap();
    UdpSender::new(udp).send(b"<14>1 two").unwrap();
    assert_eq!(
        host.datagrams("127.0.0.1:514"),
        vec![b"<14>1 one".to_vec(), b"<14>1 two".to_vec()]
    );
    let refused = TcpSender::new("127.0.0.1:6514".parse().unwrap(), 100).send(b"x");
    assert!(matches!(&refused, Err(e) if e.retryable()), "{refused:?}");
    let denied = TcpSender::new("127.0.0.1:515".parse().unwrap(), 100).send(b"x");
    assert!(matches!(denied, Err(NetError::Denied(_))));
    let mut s = Stream::connect("127.0.0.1:25".parse().unwrap(), 100).unwrap();
    assert_eq!(s.read_line().unwrap(), "220 hi");
    s.write_all(b"HELO me\r\nNOOP\r\n").unwrap();
    assert_eq!(s.read_line().unwrap(), "250 hello");
    assert_eq!(s.read_line().unwrap(), "250 again");
    // Nothing more scripted: a read fails as a timeout would.
    assert!(s
        .read_line()
        .unwrap_err()
        .to_string()
        .contains("no answer within 100 ms"));
    assert_eq!(
        host.received("127.0.0.1:25"),
        b"HELO me\r\nNOOP\r\n".to_vec()
    );
}

#[test]
#[should_panic(expected = "the plugin reached 127.0.0.1:514, which no peer is scripted for")]
fn an_unscripted_peer_fails_the_test() {
    let host = FakeHost::new(&[]);
    host.allow_sockets(&["127.0.0.1:514"]);
    let _ = herald_sdk::net::UdpSender::new("127.0.0.1:514".parse().unwrap()).send(b"x");
}
