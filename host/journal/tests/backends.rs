//! The journal's contract, run against every backend: the same scenarios on
//! SQLite and on a real PostgreSQL server (started here on 127.0.0.1), so
//! both give the same answers through the traits the host uses.

mod support;

use herald_event::WireEvent;
use herald_journal::prelude::*;
use herald_journal::{
    now_ms, Advance, AttemptRecord, CommitNotice, DeliveryFilter, DeliveryState, EventFilter, Mark,
    MarkBatch, MarkOutcome, MarksWritten, PendingDelivery, PgJournal, PgOptions, RequestRecord,
    RunFilter, RunRef, RunState, StateWrite, StateWrites, Store, MAX_ATTEMPTS_KEPT,
};
use serde_json::json;
use std::time::Duration;
use support::pg::PgServer;

fn ev(uuid: &str, run: &str) -> WireEvent {
    herald_event::validate(json!({"uuid": uuid, "event": "runner_on_ok", "counter": 1,
        "created": "2026-01-01T00:00:00", "run_id": run, "event_data": {"playbook": "p.yml", "host": "web1"}}))
    .expect("a valid event")
}

fn event(value: serde_json::Value) -> WireEvent {
    herald_event::validate(value).expect("a valid event")
}

fn done(d: &PendingDelivery) -> Mark {
    Mark {
        event_id: d.event_id,
        queued: d.queued,
        first_at_ms: d.first_at_ms,
        attempts: 1,
        outcome: MarkOutcome::Done,
        read: Some(d.read),
    }
}

/// Every scenario, by name, on one backend; `open` gives a fresh journal.
fn scenarios(open: &dyn Fn(&str) -> Box<dyn Store>) {
    type Scenario = (&'static str, fn(&dyn Store));
    let all: [Scenario; 15] = [
        ("settled_ahead", settled_ahead),
        ("queue_depths", queue_depths),
        ("grouped_marks", grouped_marks),
        ("many_queued_ahead", many_queued_ahead),
        ("dedupe_and_cursors", dedupe_and_cursors),
        ("exceptions_are_queued", exceptions_are_queued),
        ("replay_and_dead_letters", replay_and_dead_letters),
        ("runs_and_queries", runs_and_queries),
        ("plugin_state", plugin_state),
        ("retention", retention),
        ("moved_instance", moved_instance),
        ("shards", shards),
        ("shared_reads", shared_reads),
        ("explore", explore),
        ("calls_from_a_busy_tokio_task", calls_from_a_busy_tokio_task),
    ];
    for (name, f) in all {
        let j = open(name);
        f(j.as_ref());
        eprintln!("scenario {name}: ok");
    }
}

/// A plugin's `state` calls during one delivery are blocking calls made from
/// inside one poll of a tokio task, many in a row: they must all finish
/// however much of the task's cooperative budget they use (PostgreSQL's
/// pool once stopped at the 129th, its wake-up deferred to a yield that
/// never came).
fn calls_from_a_busy_tokio_task(j: &dyn Store) {
    // A hang is this test's failure: a watchdog ends the process instead of CI's clock.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        if !watched.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!(
                "calls_from_a_busy_tokio_task: blocking journal calls hung inside a tokio task"
            );
            std::process::exit(101);
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        for i in 0..400 {
            j.state_set("t", "p", "k", &i.to_string()).unwrap();
            assert_eq!(j.state_get("t", "p", "k").unwrap(), Some(i.to_string()));
        }
    });
    done.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The web UI's and the CLI's reads: a run's outline, hosts and tasks across
/// runs, run references, delivery counts and the record of attempts.
fn explore(j: &dyn Store) {
    let p = j.open_cursor("hook", "t", &[]).unwrap();
    let run = "4f2a0c1e-run";
    j.commit_batch(
        "t",
        &[
            event(json!({"uuid": "e1", "event": "playbook_on_start", "counter": 1,
                "created": "2026-01-01T00:00:00", "run_id": run,
                "event_data": {"playbook": "site.yml"}})),
            event(json!({"uuid": "e2", "event": "playbook_on_task_start", "counter": 2,
                "created": "2026-01-01T00:00:01", "run_id": run,
                "event_data": {"playbook": "site.yml", "play": "web", "task": "Restart NGINX"}})),
            event(json!({"uuid": "e3", "event": "runner_on_ok", "counter": 3,
                "created": "2026-01-01T00:00:02", "run_id": run,
                "event_data": {"playbook": "site.yml", "play": "web", "task": "Restart NGINX",
                    "task_action": "service", "host": "web1", "res": {"changed": true}}})),
            // A message only `\u0000` can spell, and an empty msg: stderr is shown.
            event(json!({"uuid": "e4", "event": "runner_on_failed", "counter": 4,
                "created": "2026-01-01T00:00:03", "run_id": run,
                "event_data": {"playbook": "site.yml", "play": "web", "task": "Restart NGINX",
                    "host": "web2", "ignore_errors": true, "res": {"msg": "", "stderr": "no\u{0}pe"}}})),
        ],
    )
    .unwrap();
    j.commit_batch(
        "t",
        &[event(
            json!({"uuid": "o1", "event": "runner_on_ok", "counter": 1,
            "created": "2026-01-02T00:00:00", "run_id": "9b-later",
            "event_data": {"playbook": "other.yml", "host": "web1"}}),
        )],
    )
    .unwrap();
    j.commit_batch("u", &[ev("x1", "4f-other-tenant")]).unwrap();

    let outline = j.run_outline("t", run).unwrap().expect("the run");
    assert_eq!(outline.len(), 4);
    assert_eq!(outline[2].host.as_deref(), Some("web1"));
    assert_eq!(outline[2].task_action.as_deref(), Some("service"));
    assert!(outline[2].changed && !outline[2].ignored);
    assert!(outline[3].ignored);
    // A NUL in a message shows as U+FFFD on both backends (SQLite's
    // json_extract alone would end the text there).
    assert_eq!(outline[3].message.as_deref(), Some("no\u{FFFD}pe"));
    assert_eq!(outline[1].task.as_deref(), Some("Restart NGINX"));
    assert!(j.run_outline("u", run).unwrap().is_none(), "tenancy");

    let hosts = j.host_runs("t", "WEB", false, 10).unwrap();
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    assert_eq!(
        (hosts[0].run_id.as_str(), hosts[0].playbook.as_deref()),
        ("9b-later", Some("other.yml")),
        "newest first"
    );
    let web1: Vec<_> = hosts.iter().filter(|h| h.host == "web1").collect();
    assert_eq!(web1.len(), 2);
    let web2 = hosts.iter().find(|h| h.host == "web2").expect("web2");
    assert_eq!((web2.failed, web2.ok), (1, 0));
    let exact = j.host_runs("t", "web1", true, 10).unwrap();
    assert_eq!(exact.len(), 2);
    assert!(exact.iter().all(|h| h.host == "web1"));
    assert_eq!(exact[1].changed, 1);
    assert!(
        j.host_runs("t", "%", false, 10).unwrap().is_empty(),
        "% is literal"
    );

    let tasks = j.search_tasks("t", "nginx", 10).unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        (tasks[0].uuid.as_str(), tasks[0].play.as_deref()),
        ("e2", Some("web"))
    );
    assert!(j.search_tasks("u", "nginx", 10).unwrap().is_empty());

    assert_eq!(
        j.resolve_run("t", "latest").unwrap(),
        RunRef::Found("9b-later".into())
    );
    assert_eq!(j.resolve_run("t", "4f").unwrap(), RunRef::Found(run.into()));
    assert_eq!(j.resolve_run("t", run).unwrap(), RunRef::Found(run.into()));
    assert_eq!(j.resolve_run("t", "zz").unwrap(), RunRef::NotFound);
    j.commit_batch("t", &[ev("y1", "4f2b")]).unwrap();
    match j.resolve_run("t", "4f").unwrap() {
        RunRef::Ambiguous(ids) => assert_eq!(ids.len(), 2),
        other => panic!("4f names two runs: {other:?}"),
    }

    // Deliveries: e1 at the first attempt, e2 failing for a while.
    let read = j.pending("hook", "t", 0, 2).unwrap();
    let e2 = read[1].event_id;
    let request = RequestRecord {
        method: "POST".into(),
        url: "https://hooks.example/x".into(),
        status: Some(503),
        latency_ms: 12,
        body: "busy\u{0}".into(),
        error: None,
    };
    let attempts: Vec<AttemptRecord> = (1..=MAX_ATTEMPTS_KEPT as u32 + 3)
        .map(|n| AttemptRecord {
            event_id: e2,
            attempt: n,
            at_ms: 1_000 + n as i64,
            duration_ms: 5,
            outcome: "retry".into(),
            message: Some(format!("attempt {n}: 503\u{0}")),
            requests: vec![request.clone()],
        })
        .collect();
    let retry = Mark {
        outcome: MarkOutcome::Retry {
            next_at_ms: now_ms() + 60_000,
            error: "503\u{0}".into(),
        },
        attempts: MAX_ATTEMPTS_KEPT as u32 + 3,
        ..done(&read[1])
    };
    let written = j
        .record(
            "hook",
            &MarkBatch {
                state: None,
                fence: None,
                marks: vec![done(&read[0]), retry],
                advance: Some(Advance {
                    from: p,
                    to: e2,
                    delivered: 1,
                    shards: 1,
                }),
                attempts,
            },
        )
        .unwrap();
    assert!(written.advanced && written.changed == 1, "{written:?}");
    let (ev2, kept) = j
        .delivery_attempts("t", "hook", "e2")
        .unwrap()
        .expect("the event");
    assert_eq!(ev2.id, e2);
    assert_eq!(kept.len(), MAX_ATTEMPTS_KEPT, "the newest are kept");
    assert_eq!(kept[0].attempt, 4);
    assert_eq!(
        kept.last().map(|a| a.attempt),
        Some(MAX_ATTEMPTS_KEPT as u32 + 3)
    );
    assert!(kept[0]
        .message
        .as_deref()
        .unwrap_or("")
        .starts_with("attempt 4: 503"));
    assert_eq!(kept[0].requests[0].status, Some(503));
    assert!(
        j.delivery_attempts("u", "hook", "e2").unwrap().is_none(),
        "tenancy"
    );
    assert!(j
        .delivery_attempts("t", "hook", "e1")
        .unwrap()
        .expect("e1")
        .1
        .is_empty());

    let counts = j.run_delivery_counts("t", run).unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(
        (
            counts[0].plugin.as_str(),
            counts[0].done,
            counts[0].pending,
            counts[0].dead
        ),
        ("hook", 1, 3, 0),
        "e1 delivered; e2 retrying; e3, e4 not read yet"
    );
    let event = j.event("t", "e3").unwrap().expect("e3");
    assert_eq!((event.counter, event.kind.as_str()), (3, "runner_on_ok"));
    assert!(j.event("u", "e3").unwrap().is_none());
}

fn dedupe_and_cursors(j: &dyn Store) {
    assert_eq!(j.open_cursor("a", "t1", &[]).unwrap(), 0);
    assert_eq!(j.open_cursor("b", "t1", &[]).unwrap(), 0);
    let c = j
        .commit_batch("t1", &[ev("u1", "r"), ev("u2", "r"), ev("u1", "r")])
        .unwrap();
    assert_eq!((c.accepted, c.duplicates), (2, 1));
    assert_eq!(c.inserted, vec![true, true, false]);
    let c = j.commit_batch("t1", &[ev("u2", "r")]).unwrap();
    assert_eq!(c.inserted, vec![false], "a uuid sent again is a duplicate");
    let c = j.commit_batch("t2", &[ev("u1", "r")]).unwrap();
    assert_eq!(c.accepted, 1, "another tenant may reuse a uuid");
    assert_eq!(j.event_count("t1").unwrap(), 2);
    assert_eq!(j.pending("a", "t1", 0, 10).unwrap().len(), 2);
    assert_eq!(j.pending("b", "t1", 0, 10).unwrap().len(), 2);
    let first = j.pending("a", "t1", 0, 10).unwrap()[0].clone();
    assert!(!first.queued);
    let moved = MarkBatch {
        state: None,
        fence: None,
        attempts: Vec::new(),
        marks: vec![done(&first)],
        advance: Some(Advance {
            from: 0,
            to: first.event_id,
            delivered: 1,
            shards: 1,
        }),
    };
    assert_eq!(
        j.record("a", &moved).unwrap(),
        MarksWritten {
            fenced: false,
            changed: 0,
            advanced: true
        }
    );
    assert_eq!(j.delivery_counts("a").unwrap(), (1, 1, 0));
    assert_eq!(j.delivery_counts("b").unwrap(), (2, 0, 0));
    assert!(
        !j.record("a", &moved).unwrap().advanced,
        "a stale move is refused"
    );
    assert_eq!(j.cursor("a").unwrap(), Some(first.event_id));
    let left = j.pending("a", "t1", 0, 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].event_id, first.event_id);
}

/// Moves `stream`'s cursor to `to` (all delivered at the first attempt) as
/// a worker of an instance of `shards` shards; whether it moved.
fn advance_as(j: &dyn Store, stream: &str, from: i64, to: i64, shards: u32) -> bool {
    j.record(stream, &moved(from, to, 0, shards))
        .unwrap()
        .advanced
}

/// A batch that only moves a cursor from `from` to `to`.
fn moved(from: i64, to: i64, delivered: u64, shards: u32) -> MarkBatch {
    MarkBatch {
        state: None,
        fence: None,
        attempts: Vec::new(),
        marks: Vec::new(),
        advance: Some(Advance {
            from,
            to,
            delivered,
            shards,
        }),
    }
}

fn advance(j: &dyn Store, stream: &str, from: i64, to: i64) {
    assert!(advance_as(j, stream, from, to, 3), "{stream}");
}

/// The database's shard of a run is the one the workers compute
/// ([`herald_event::shard::shard_of`]): an instance's counts take each
/// stream's share by it, so with every stream but shard `k` at the end,
/// what is pending is exactly shard `k`'s events. A new count rewinds every
/// stream to the slowest old one.
fn shards(j: &dyn Store) {
    use herald_event::shard::{shard_of, stream_name};
    let events: Vec<WireEvent> = (0..90)
        .map(|i| ev(&format!("u{i}"), &format!("run-{}", i % 45)))
        .collect();
    for k in 0..3u32 {
        let name = format!("s{k}");
        assert_eq!(j.open_streams(&name, "t", &[], 3).unwrap(), vec![0, 0, 0]);
    }
    j.commit_batch("t", &events).unwrap();
    let last = j
        .pending("s0", "t", 0, 100)
        .unwrap()
        .last()
        .unwrap()
        .event_id;
    for k in 0..3u32 {
        let name = format!("s{k}");
        assert_eq!(
            j.delivery_counts(&name).unwrap(),
            (90, 0, 0),
            "each event counted once"
        );
        for other in (0..3).filter(|o| *o != k) {
            advance(j, &stream_name(&name, other), 0, last);
        }
        let mine = events
            .iter()
            .filter(|e| shard_of(&e.run_id, 3) == k)
            .count() as u64;
        assert!(mine > 0 && mine < 90, "{mine}");
        assert_eq!(
            j.delivery_counts(&name).unwrap().0,
            mine,
            "shard {k}: the database hashes runs as the workers do"
        );
        let depth = j.queue_depths().unwrap();
        assert!(
            depth.iter().any(|(n, d, _)| *n == name && *d == mine),
            "{depth:?}"
        );
    }
    // s0 at 2 shards: its streams restart at the slowest (shard 0, at 0),
    // and stream #2 is gone.
    assert_eq!(j.open_streams("s0", "t", &[], 2).unwrap(), vec![0, 0]);
    assert!(j.cursor_at(&stream_name("s0", 2)).unwrap().is_none());
    assert_eq!(j.cursor_at("s0").unwrap().map(|c| c.shards), Some(2));
    assert_eq!(j.delivery_counts("s0").unwrap(), (90, 0, 0));
    // A worker still delivering for 3 shards cannot move a stream that now
    // covers other runs (no loss in a reload's handover).
    assert!(!advance_as(j, &stream_name("s0", 1), 0, last, 3));
    assert_eq!(j.delivery_counts("s0").unwrap(), (90, 0, 0));
    // The same count again keeps each stream where it is.
    assert!(advance_as(j, &stream_name("s0", 1), 0, last, 2));
    assert_eq!(j.open_streams("s0", "t", &[], 2).unwrap(), vec![0, last]);
}

/// Outcome batches sent together (the writer commits what is waiting as one
/// group; PostgreSQL moves every cursor of a group in one statement): a
/// stream's second batch applies after its first, a batch whose `from` is
/// not where the cursor is does not move it, and the others are unaffected.
fn grouped_marks(j: &dyn Store) {
    let streams: Vec<String> = (0..12).map(|k| format!("g{k}")).collect();
    for s in &streams {
        assert_eq!(j.open_cursor(s, "t", &[]).unwrap(), 0);
    }
    let events: Vec<WireEvent> = (0..30).map(|i| ev(&format!("u{i}"), "r")).collect();
    j.commit_batch("t", &events).unwrap();
    let read = j.pending("g0", "t", 0, 100).unwrap();
    assert_eq!(read.len(), 30);
    let (mid, last) = (read[9].event_id, read[29].event_id);
    let batch = |from, to, delivered| moved(from, to, delivered, 1);
    // Every stream: 0 -> mid, then mid -> last; g0 also a stale third one.
    let mut receipts = Vec::new();
    for s in &streams {
        receipts.push((s.clone(), true, j.send_marks(s, batch(0, mid, 10)).unwrap()));
    }
    for s in &streams {
        receipts.push((
            s.clone(),
            true,
            j.send_marks(s, batch(mid, last, 20)).unwrap(),
        ));
    }
    receipts.push((
        "g0".to_string(),
        false,
        j.send_marks("g0", batch(0, mid, 10)).unwrap(),
    ));
    for (s, moves, r) in receipts {
        let written = r.blocking_recv().expect("answered").expect("written");
        assert_eq!(written.advanced, moves, "{s}");
        assert!(!written.fenced);
    }
    for s in &streams {
        assert_eq!(
            j.cursor_at(s).unwrap().map(|c| c.position),
            Some(last),
            "{s}"
        );
        assert_eq!(j.delivery_counts(s).unwrap(), (0, 30, 0), "{s}");
        assert!(j.pending(s, "t", 0, 100).unwrap().is_empty(), "{s}");
    }
}

/// More queue rows ahead of the cursor than PostgreSQL's read lists (a
/// replay of a long run the instance has not reached yet; the first reads
/// stop at the last row listed): each event is read once, as the queue's,
/// never again from the log.
fn many_queued_ahead(j: &dyn Store) {
    assert_eq!(j.open_cursor("p", "t", &[]).unwrap(), 0);
    let events: Vec<WireEvent> = (0..1300).map(|i| ev(&format!("u{i}"), "r")).collect();
    j.commit_batch("t", &events).unwrap();
    j.commit_batch("t", &[ev("later", "q")]).unwrap();
    assert_eq!(j.replay_run("t", "r", "p").unwrap(), 1300);
    let mut seen = std::collections::HashMap::new();
    let mut after = 0;
    loop {
        let read = j.pending("p", "t", after, 512).unwrap();
        let Some(last) = read.last() else { break };
        after = last.event_id;
        for d in read.iter().filter(|d| !d.passed_over) {
            *seen.entry(d.event_id).or_insert(0) += 1;
            assert_eq!(d.queued, d.run_id == "r", "event {}", d.event_id);
        }
    }
    assert_eq!(seen.len(), 1301);
    assert!(seen.values().all(|n| *n == 1), "each event read once");
}

/// A long run replayed to an instance that had not reached it yet, and
/// delivered from the queue: more settled queue rows right past the cursor
/// than a read holds. Reads as a worker makes them (each after the last
/// row of the one before) still reach the events past them, and hand out
/// none of the run's events again.
fn settled_ahead(j: &dyn Store) {
    assert_eq!(j.open_cursor("p", "t", &[]).unwrap(), 0);
    let events: Vec<WireEvent> = (0..700).map(|i| ev(&format!("u{i}"), "r")).collect();
    j.commit_batch("t", &events).unwrap();
    j.commit_batch("t", &[ev("v1", "q"), ev("v2", "q")])
        .unwrap();
    assert_eq!(j.replay_run("t", "r", "p").unwrap(), 700);
    let queued: Vec<Mark> = j
        .pending("p", "t", 0, 2000)
        .unwrap()
        .iter()
        .filter(|d| d.queued)
        .map(done)
        .collect();
    assert_eq!(queued.len(), 700);
    let batch = MarkBatch {
        state: None,
        fence: None,
        attempts: Vec::new(),
        marks: queued,
        advance: None,
    };
    assert_eq!(j.record("p", &batch).unwrap().changed, 700);
    assert_eq!(j.cursor("p").unwrap(), Some(0), "the cursor did not move");
    let mut handed_out = Vec::new();
    let mut after = 0;
    for _ in 0..10 {
        let read = j.pending("p", "t", after, 256).unwrap();
        let Some(last) = read.last() else { break };
        after = last.event_id;
        handed_out.extend(read.into_iter().filter(|d| !d.passed_over));
    }
    let runs: Vec<(&str, bool)> = handed_out
        .iter()
        .map(|d| (d.run_id.as_str(), d.queued))
        .collect();
    assert_eq!(runs, [("q", false), ("q", false)]);
}

/// The gauges' depths (every event counted once between neighbouring
/// cursors) agree with each instance's own count: cursors of two tenants at
/// different places, the events interleaved, a queue row ahead of a cursor.
fn queue_depths(j: &dyn Store) {
    for (p, t) in [("a", "t"), ("b", "t"), ("c", "t"), ("d", "u")] {
        assert_eq!(j.open_cursor(p, t, &[]).unwrap(), 0);
    }
    for k in 0..5 {
        j.commit_batch(
            "t",
            &[ev(&format!("t{k}a"), "r"), ev(&format!("t{k}b"), "r")],
        )
        .unwrap();
        if k % 2 == 0 {
            j.commit_batch("u", &[ev(&format!("u{k}"), "q")]).unwrap();
        }
    }
    let t = j.pending("a", "t", 0, 100).unwrap();
    assert_eq!(t.len(), 10);
    assert!(advance_as(j, "b", 0, t[2].event_id, 1));
    assert!(advance_as(j, "c", 0, t[6].event_id, 1));
    // `a` holds its fifth event back: a queue row ahead of its cursor.
    assert_eq!(j.record("a", &held_back(&t[4])).unwrap().changed, 1);
    let depths = j.queue_depths().unwrap();
    let depth = |p: &str| depths.iter().find(|(n, _, _)| n == p).map(|(_, d, _)| *d);
    assert_eq!(
        [depth("a"), depth("b"), depth("c"), depth("d")],
        [Some(10), Some(7), Some(3), Some(3)],
        "{depths:?}"
    );
    for p in ["a", "b", "c", "d"] {
        assert_eq!(Some(j.delivery_counts(p).unwrap().0), depth(p), "{p}");
    }
    assert!(
        depths.iter().all(|(_, _, oldest)| *oldest > 0),
        "{depths:?}"
    );
}

/// Holds `d` back behind its run (a queue row), the cursor unmoved.
fn held_back(d: &PendingDelivery) -> MarkBatch {
    MarkBatch {
        state: None,
        fence: None,
        attempts: Vec::new(),
        marks: vec![Mark {
            outcome: MarkOutcome::Hold,
            attempts: 0,
            ..done(d)
        }],
        advance: None,
    }
}

/// Instances reading the same events (PostgreSQL shares one read among
/// them): each still sees its own queue rows in place of the log's, and a
/// read that starts inside another's rows goes no further than they do.
fn shared_reads(j: &dyn Store) {
    // What a worker delivers (PostgreSQL also returns the log's place of a queued event).
    let ids = |v: &[PendingDelivery]| {
        v.iter()
            .filter(|d| !d.passed_over)
            .map(|d| (d.event_id, d.queued))
            .collect::<Vec<_>>()
    };
    assert_eq!(j.open_cursor("a", "t", &[]).unwrap(), 0);
    assert_eq!(j.open_cursor("b", "t", &[]).unwrap(), 0);
    j.commit_batch("t", &[ev("u1", "r"), ev("u2", "r"), ev("u3", "q")])
        .unwrap();
    let b = j.pending("b", "t", 0, 10).unwrap();
    assert_eq!(b.len(), 3);
    let (u1, u2, u3) = (b[0].event_id, b[1].event_id, b[2].event_id);
    // `a` holds u2 back (a queue row of its own); b's read is shared.
    assert_eq!(j.record("a", &held_back(&b[1])).unwrap().changed, 1);
    let a = j.pending("a", "t", 0, 10).unwrap();
    assert_eq!(ids(&a), [(u1, false), (u2, true), (u3, false)]);
    assert_eq!(
        ids(&j.pending("b", "t", 0, 10).unwrap()),
        [(u1, false), (u2, false), (u3, false)]
    );
    // A later event: a read that starts in another's rows goes on past
    // them (a short read means "caught up": it must not stop early).
    j.commit_batch("t", &[ev("u4", "r")]).unwrap();
    let a = ids(&j.pending("a", "t", 0, 10).unwrap());
    assert_eq!(a.len(), 4, "{a:?}");
    assert_eq!(a[..3], [(u1, false), (u2, true), (u3, false)]);
    let b4 = j.pending("b", "t", u3, 10).unwrap();
    assert_eq!(b4.len(), 1);
    let u4 = b4[0].event_id;
    let a = j.pending("a", "t", 0, 10).unwrap();
    assert!(
        ids(&a).starts_with(&[(u1, false), (u2, true), (u3, false)]),
        "{:?}",
        ids(&a)
    );
    assert_eq!(ids(&j.pending("a", "t", u3, 10).unwrap()), [(u4, false)]);
    assert_eq!(
        j.pending("a", "t", 1, 2).unwrap().len(),
        2,
        "the limit holds"
    );
    assert_eq!(j.pending("a", "t", 0, 10).unwrap()[0].body, b[0].body);
    // A queue row past a shared read's end: the log events before it are
    // read before it (never skipped).
    j.commit_batch("t", &[ev("u5", "r")]).unwrap();
    let b5 = j.pending("b", "t", u4, 10).unwrap();
    assert_eq!(j.record("a", &held_back(&b5[0])).unwrap().changed, 1);
    let a = ids(&j.pending("a", "t", 0, 10).unwrap());
    let at = |id| a.iter().position(|(i, _)| *i == id);
    if let Some(u5) = at(b5[0].event_id) {
        assert!(at(u4).is_some_and(|u4| u4 < u5), "{a:?}");
    }
}

fn exceptions_are_queued(j: &dyn Store) {
    j.commit_batch("t", &[ev("old", "r0")]).unwrap();
    let start = j.open_cursor("p", "t", &[]).unwrap();
    assert!(j.pending("p", "t", 0, 10).unwrap().is_empty());
    j.commit_batch("t", &[ev("u1", "r"), ev("u2", "r"), ev("u3", "q")])
        .unwrap();
    let read = j.pending("p", "t", 0, 10).unwrap();
    assert_eq!(read.len(), 3);
    let retry = Mark {
        outcome: MarkOutcome::Retry {
            next_at_ms: now_ms() + 60_000,
            error: "busy".into(),
        },
        ..done(&read[0])
    };
    let hold = Mark {
        outcome: MarkOutcome::Hold,
        attempts: 0,
        ..done(&read[1])
    };
    let batch = MarkBatch {
        state: None,
        fence: None,
        attempts: Vec::new(),
        marks: vec![retry, hold, done(&read[2])],
        advance: Some(Advance {
            from: start,
            to: read[2].event_id,
            delivered: 1,
            shards: 1,
        }),
    };
    assert_eq!(
        j.record("p", &batch).unwrap(),
        MarksWritten {
            fenced: false,
            changed: 2,
            advanced: true
        }
    );
    let again = j.pending("p", "t", 0, 10).unwrap();
    assert_eq!(
        again
            .iter()
            .map(|d| (d.event_id, d.queued, d.attempts))
            .collect::<Vec<_>>(),
        [(read[0].event_id, true, 1), (read[1].event_id, true, 0)]
    );
    assert_eq!(j.delivery_counts("p").unwrap(), (2, 1, 0));
    assert_eq!(j.queue_depths().unwrap().len(), 1);
    let (list, next) = j
        .deliveries(
            "t",
            &DeliveryFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(next, None);
    assert_eq!(
        list.iter()
            .map(|d| (d.event_uuid.as_str(), d.state, d.attempts))
            .collect::<Vec<_>>(),
        [
            ("u1", DeliveryState::Pending, 1),
            ("u2", DeliveryState::Pending, 0),
            ("u3", DeliveryState::Done, 1)
        ]
    );
    // The retried row succeeds on its second attempt: done, out of the queue.
    let queued = j.pending("p", "t", 0, 10).unwrap();
    let ok = Mark {
        attempts: 2,
        ..done(&queued[0])
    };
    assert_eq!(
        j.record(
            "p",
            &MarkBatch {
                state: None,
                fence: None,
                attempts: Vec::new(),
                marks: vec![ok],
                advance: None
            }
        )
        .unwrap()
        .changed,
        1
    );
    assert_eq!(j.delivery_counts("p").unwrap(), (1, 2, 0));
}

fn replay_and_dead_letters(j: &dyn Store) {
    let start = j.open_cursor("p", "t", &[]).unwrap();
    j.commit_batch("t", &[ev("a", "r"), ev("b", "r")]).unwrap();
    let read = j.pending("p", "t", 0, 10).unwrap();
    let dead = Mark {
        outcome: MarkOutcome::Dead {
            // A sink's answer may hold a NUL: both backends keep U+FFFD.
            error: "HTTP 400: bad\0payload".into(),
        },
        ..done(&read[0])
    };
    j.record(
        "p",
        &MarkBatch {
            state: None,
            fence: None,
            attempts: Vec::new(),
            marks: vec![dead, done(&read[1])],
            advance: Some(Advance {
                from: start,
                to: read[1].event_id,
                delivered: 1,
                shards: 1,
            }),
        },
    )
    .unwrap();
    let letters = j.dead_letters("t", Some("p"), 10, None).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].uuid, "a");
    assert_eq!(letters[0].reason, "HTTP 400: bad\u{FFFD}payload");
    assert_eq!(
        j.dead_counts().unwrap(),
        vec![("p".to_string(), "t".to_string(), 1)]
    );
    assert!(j.dead_letters("other", None, 10, None).unwrap().is_empty());
    assert_eq!(j.requeue_dead("other", "p", None).unwrap(), 0, "tenancy");
    assert_eq!(j.requeue_dead("t", "p", None).unwrap(), 1);
    let again = j.pending("p", "t", 0, 10).unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].queued && again[0].attempts == 0);
    // A replay while that attempt runs: the attempt's outcome does not
    // swallow the replayed delivery.
    assert_eq!(j.replay_run("t", "r", "p").unwrap(), 2);
    let written = j
        .record(
            "p",
            &MarkBatch {
                state: None,
                fence: None,
                attempts: Vec::new(),
                marks: vec![done(&again[0])],
                advance: None,
            },
        )
        .unwrap();
    assert_eq!(written.changed, 0, "the replay made it a new delivery");
    assert_eq!(j.pending("p", "t", 0, 10).unwrap().len(), 2);
}

fn runs_and_queries(j: &dyn Store) {
    let start = event(
        json!({"uuid": "s", "event": "playbook_on_start", "counter": 1,
        "created": "2026-01-01T00:00:00", "run_id": "r1",
        "labels": {"env": "prod", "team": "ops"},
        "event_data": {"playbook": "deploy/site.yml"}}),
    );
    let changed = event(json!({"uuid": "c", "event": "runner_on_ok", "counter": 2,
        "created": "2026-01-01T00:00:01", "run_id": "r1",
        "event_data": {"playbook": "deploy/site.yml", "host": "web1", "res": {"changed": true}}}));
    let failed = event(
        json!({"uuid": "f", "event": "runner_on_failed", "counter": 3,
        "created": "2026-01-01T00:00:02", "run_id": "r1",
        "event_data": {"playbook": "deploy/site.yml", "host": "db1", "res": {"msg": "boom"}}}),
    );
    let stats = event(
        json!({"uuid": "st", "event": "playbook_on_stats", "counter": 4,
        "created": "2026-01-01T00:00:03", "run_id": "r1",
        "labels": {"env": "staging"},
        "event_data": {"playbook": "deploy/site.yml", "failures": {"db1": 1}, "ok": {"web1": 1}}}),
    );
    j.commit_batch("t", &[start, changed]).unwrap();
    j.commit_batch("t", &[failed, stats]).unwrap();
    j.commit_batch(
        "t",
        &[event(
            json!({"uuid": "x", "event": "playbook_on_start", "counter": 1,
        "created": "2026-01-02T00:00:00", "run_id": "r2", "event_data": {"playbook": "other.yml"}}),
        )],
    )
    .unwrap();
    let stale = now_ms() - 3_600_000;
    let run = j.run("t", "r1", stale).unwrap().expect("the run");
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(run.events, 4);
    assert_eq!(run.playbook.as_deref(), Some("deploy/site.yml"));
    assert_eq!(
        run.labels.get("env").map(String::as_str),
        Some("prod"),
        "first value wins"
    );
    assert!(run.start.is_some() && run.stats.is_some());
    assert!(j.run("other", "r1", stale).unwrap().is_none(), "tenancy");
    let list = |f: RunFilter| {
        j.list_runs(
            "t",
            &RunFilter {
                limit: 10,
                stale_before_ms: stale,
                ..f
            },
        )
        .unwrap()
        .0
        .into_iter()
        .map(|r| r.id)
        .collect::<Vec<_>>()
    };
    assert_eq!(list(RunFilter::default()), ["r2", "r1"], "newest first");
    assert_eq!(
        list(RunFilter {
            playbook: Some("site.*".into()),
            ..Default::default()
        }),
        ["r1"],
        "a glob matches the file name"
    );
    assert_eq!(
        list(RunFilter {
            state: Some(RunState::Failed),
            ..Default::default()
        }),
        ["r1"]
    );
    assert_eq!(
        list(RunFilter {
            labels: vec![("team".into(), None)],
            ..Default::default()
        }),
        ["r1"]
    );
    assert_eq!(
        list(RunFilter {
            labels: vec![("env".into(), Some("staging".into()))],
            ..Default::default()
        }),
        Vec::<String>::new()
    );
    // Keyset pages.
    let (page, next) = j
        .list_runs(
            "t",
            &RunFilter {
                limit: 1,
                stale_before_ms: stale,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page[0].id, "r2");
    let (page, next2) = j
        .list_runs(
            "t",
            &RunFilter {
                limit: 1,
                after: next,
                stale_before_ms: stale,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((page[0].id.as_str(), next2), ("r1", None));
    let results = j.run_results("t", "r1").unwrap();
    assert_eq!(
        results.iter().map(|r| r.uuid.as_str()).collect::<Vec<_>>(),
        ["c", "f"]
    );
    let events = |f: EventFilter| {
        j.run_events("t", "r1", &EventFilter { limit: 10, ..f })
            .unwrap()
            .expect("the run")
            .0
            .len()
    };
    assert_eq!(events(EventFilter::default()), 4);
    assert_eq!(
        events(EventFilter {
            host: Some("db1".into()),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        events(EventFilter {
            status: Some(herald_event::Status::Changed),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        events(EventFilter {
            status: Some(herald_event::Status::Failed),
            ..Default::default()
        }),
        1
    );
    assert!(j
        .run_events(
            "other",
            "r1",
            &EventFilter {
                limit: 10,
                ..Default::default()
            }
        )
        .unwrap()
        .is_none());
    assert!(j.run_stats("t", "r1").unwrap().expect("the run").is_some());
    assert_eq!(j.run_stats("t", "r2").unwrap(), Some(None));
}

fn plugin_state(j: &dyn Store) {
    assert_eq!(j.state_get("t", "p", "k").unwrap(), None);
    j.state_set("t", "p", "k", "v1").unwrap();
    j.state_set("t", "p", "k", "v2").unwrap();
    assert_eq!(j.state_get("t", "p", "k").unwrap().as_deref(), Some("v2"));
    assert_eq!(j.state_get("u", "p", "k").unwrap(), None, "per tenant");
    j.state_delete("t", "p", "k").unwrap();
    assert_eq!(j.state_get("t", "p", "k").unwrap(), None);

    // Writes handed to the writer with outcomes commit with them, in the
    // order the batches were sent; a removal removes.
    let writes = |w: &[(&str, Option<&str>)]| StateWrites {
        tenant: "t".into(),
        plugin: "p".into(),
        writes: w
            .iter()
            .map(|(k, v)| StateWrite {
                key: k.to_string(),
                value: v.map(str::to_string),
            })
            .collect(),
    };
    j.state_set("t", "p", "old", "x").unwrap();
    let first = MarkBatch {
        state: Some(writes(&[
            ("a", Some("1")),
            ("old", None),
            ("nul\0key", Some("v\0")),
        ])),
        ..MarkBatch::default()
    };
    let second = MarkBatch {
        state: Some(writes(&[("a", Some("2")), ("b", Some("3"))])),
        ..MarkBatch::default()
    };
    let r1 = j.send_marks("p#1", first).unwrap();
    let r2 = j.send_marks("p#1", second).unwrap();
    for r in [r1, r2] {
        assert!(
            !r.blocking_recv()
                .expect("answered")
                .expect("written")
                .fenced
        );
    }
    let got = |k: &str| j.state_get("t", "p", k).unwrap();
    assert_eq!(
        (got("a"), got("b"), got("old")),
        (Some("2".into()), Some("3".into()), None)
    );
    // Both backends keep U+FFFD for a NUL (PostgreSQL's text cannot hold
    // one), and find the value under either spelling of the key.
    assert_eq!(got("nul\u{FFFD}key"), Some("v\u{FFFD}".into()));
    assert_eq!(got("nul\0key"), Some("v\u{FFFD}".into()));
    assert_eq!(j.state_get("u", "p", "a").unwrap(), None, "per tenant");

    // A batch refused by its fence (a lost lease) writes none of its state.
    if let Some(lease) = j.claim_lease("p", "replica-a", 60_000).unwrap() {
        let stale = MarkBatch {
            fence: Some(lease.token + 1),
            state: Some(writes(&[("a", Some("stale"))])),
            ..MarkBatch::default()
        };
        let written = j.send_marks("p", stale).unwrap().blocking_recv();
        // SQLite has one host and no fence; PostgreSQL refuses the batch.
        let fenced = written.expect("answered").expect("answered").fenced;
        let want = if fenced { "2" } else { "stale" };
        assert_eq!(got("a"), Some(want.into()), "fenced: {fenced}");
    }
}

fn retention(j: &dyn Store) {
    j.open_cursor("p", "t", &[]).unwrap();
    j.commit_batch("t", &[ev("a", "r"), ev("b", "r")]).unwrap();
    let future = now_ms() + 60_000;
    assert!(
        j.prune(future, 100).unwrap().is_empty(),
        "an active cursor holds what it has not read"
    );
    j.retire_cursor("p").unwrap();
    let removed = j.prune(future, 100).unwrap();
    assert_eq!(removed.get("t"), Some(&2));
    assert!(
        j.run("t", "r", 0).unwrap().is_none(),
        "the run went with its events"
    );
    j.probe_writable().unwrap();
    assert!(j.size_bytes() > 0);
}

fn moved_instance(j: &dyn Store) {
    j.open_cursor("p", "a", &[]).unwrap();
    j.commit_batch("a", &[ev("x", "r")]).unwrap();
    j.open_cursor("p", "b", &[]).unwrap();
    let read = j.pending("p", "b", 0, 10).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].foreign_tenant.as_deref(), Some("a"));
    j.commit_batch("b", &[ev("y", "r")]).unwrap();
    assert_eq!(j.pending("p", "b", 0, 10).unwrap().len(), 2);
}

#[test]
fn sqlite_backend() {
    let root = std::env::temp_dir().join(format!("herald-backends-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    scenarios(&|name| {
        Box::new(herald_journal::Journal::open(&root.join(name).join("j.db")).expect("sqlite"))
    });
    let _ = std::fs::remove_dir_all(&root);
}

fn pg_options(url: String) -> PgOptions {
    PgOptions {
        url,
        pool_size: 8,
        statement_timeout: Duration::from_secs(30),
        tls_ca_certs: Vec::new(),
    }
}

#[test]
fn postgres_backend() {
    let server = PgServer::start("backends");
    scenarios(&|name| {
        let url = server.database(name);
        Box::new(PgJournal::open(&pg_options(url)).expect("postgres"))
    });

    // Replicas opening one database together apply each migration once.
    let url = server.database("migrations");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let o = pg_options(url.clone());
            std::thread::spawn(move || PgJournal::open(&o).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().expect("thread").expect("open");
    }

    // Ingest on several connections at once, a cursor moving all the while:
    // the cursor never passes an event committed after it moved (the
    // tenant's commit order is its id order).
    let url = server.database("order");
    let reader = PgJournal::open(&pg_options(url.clone())).expect("open");
    let start = reader.open_cursor("p", "t", &[]).expect("cursor");
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let j = PgJournal::open(&pg_options(url.clone())).expect("open");
            std::thread::spawn(move || {
                for b in 0..25 {
                    let batch: Vec<WireEvent> = (0..20)
                        .map(|i| ev(&format!("w{w}-b{b}-{i}"), &format!("run{w}")))
                        .collect();
                    j.commit_batch("t", &batch).expect("commit");
                }
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut position = start;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < 4 * 25 * 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} events read",
            seen.len()
        );
        let read = reader.pending("p", "t", 0, 500).expect("read");
        let Some(last) = read.last() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let to = last.event_id;
        for d in &read {
            assert!(seen.insert(d.event_id), "event {} read twice", d.event_id);
        }
        let written = reader
            .record(
                "p",
                &MarkBatch {
                    marks: read.iter().map(done).collect(),
                    ..moved(position, to, read.len() as u64, 1)
                },
            )
            .expect("record");
        assert!(written.advanced);
        position = to;
    }
    for w in writers {
        w.join().expect("writer");
    }
    assert!(reader.pending("p", "t", 0, 10).expect("read").is_empty());
    assert_eq!(reader.event_count("t").expect("count"), 2000);
}

/// Instance `p` of tenant `t` with run `r`'s two events delivered: the
/// stream has caught up, and a read from the cursor finds nothing (from
/// what the replica knows of it).
fn caught_up(journal: &PgJournal) {
    let start = journal.open_cursor("p", "t", &[]).expect("cursor");
    journal
        .commit_batch("t", &[ev("a", "r"), ev("b", "r")])
        .expect("commit");
    let read = journal.pending("p", "t", 0, 10).expect("read");
    assert_eq!(read.len(), 2);
    let written = journal
        .record(
            "p",
            &MarkBatch {
                marks: read.iter().map(done).collect(),
                ..moved(start, read[1].event_id, 2, 1)
            },
        )
        .expect("record");
    assert!(written.advanced);
    assert!(journal.pending("p", "t", 0, 10).expect("read").is_empty());
}

/// A replica that has caught up reads only the log (it knows its streams'
/// queues are empty); a replay through another replica must still reach it
/// at once, by that replica's NOTIFY, not after its next full read (a
/// second later).
#[test]
fn postgres_a_replay_through_another_replica_is_read_at_once() {
    let server = PgServer::start("known");
    let url = server.database("known");
    let here = PgJournal::open(&pg_options(url.clone())).expect("open");
    let there = PgJournal::open(&pg_options(url)).expect("open");
    caught_up(&here);
    let asked = std::time::Instant::now();
    assert_eq!(there.replay_run("t", "r", "p").expect("replay"), 2);
    loop {
        let again = here.pending("p", "t", 0, 10).expect("read");
        if again.len() == 2 {
            assert!(again.iter().all(|d| d.queued));
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_millis(700),
            "the replay was not read within 0.7 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The same through the replica that has caught up: its own replay is read
/// by the very next read. The replay's commit forgets the instance's known
/// streams before it returns (the NOTIFY that this replica also receives
/// comes later, so without that a caught-up worker woken by the replay
/// would read only the log and find nothing).
#[test]
fn postgres_a_replay_here_is_read_by_the_next_read() {
    let server = PgServer::start("known-here");
    let journal = PgJournal::open(&pg_options(server.database("known_here"))).expect("open");
    caught_up(&journal);
    // Each round a replay followed at once by a read, which must see the
    // queued events every time. Without the commit's own forget, the
    // NOTIFY wins that race in about half the rounds, so 50 rounds catch it.
    for round in 0..50 {
        assert!(
            journal.pending("p", "t", 0, 10).expect("read").is_empty(),
            "round {round}: caught up"
        );
        assert_eq!(journal.replay_run("t", "r", "p").expect("replay"), 2);
        let again = journal.pending("p", "t", 0, 10).expect("read");
        assert_eq!(
            again.len(),
            2,
            "round {round}: the replay was not read at once"
        );
        assert!(again.iter().all(|d| d.queued));
        let marked = journal
            .record(
                "p",
                &MarkBatch {
                    marks: again.iter().map(done).collect(),
                    ..MarkBatch::default()
                },
            )
            .expect("record");
        assert!(!marked.fenced, "round {round}");
    }
}

/// An ingest transaction in flight on a connection of the test's own,
/// written as the journal's writer writes (its id from its transaction's),
/// so that it holds a smaller id than anything the journal commits meanwhile.
struct InFlight {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl InFlight {
    fn begin(url: &str, event: &WireEvent) -> InFlight {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (client, conn) = rt
            .block_on(tokio_postgres::connect(url, tokio_postgres::NoTls))
            .expect("connect");
        rt.spawn(conn);
        rt.block_on(async {
            client.batch_execute("BEGIN").await?;
            client
                .execute(
                    "INSERT INTO events (id, tenant, uuid, run_id, counter, kind, created_ms, received_ms, body)
                     VALUES ((pg_current_xact_id()::text::bigint << 20) + 1, 't', $1, $2, 1, 'runner_on_ok', 0, 0, $3)",
                    &[&event.uuid, &event.run_id, &event.body()],
                )
                .await
        })
        .expect("the first transaction writes");
        InFlight { rt, client }
    }

    fn commit(self) {
        self.rt
            .block_on(self.client.batch_execute("COMMIT"))
            .expect("commit");
    }
}

/// A transaction that took its id first and commits last: a read in
/// between returns nothing of either (the later one's event lies above the
/// log's bound; returned, a cursor moved past it would skip the first), and
/// wakes the tenant's workers again shortly, since what held it back may end
/// without a notice; once the first commits, both are read, in id order.
#[test]
fn postgres_a_transaction_that_commits_late_is_not_skipped() {
    let server = PgServer::start("late");
    let url = server.database("late");
    let journal = PgJournal::open(&pg_options(url.clone())).expect("open");
    journal.open_cursor("p", "t", &[]).expect("cursor");
    let first = InFlight::begin(&url, &ev("first", "r1"));
    let mut notices = journal.commits();
    journal
        .commit_batch("t", &[ev("second", "r2")])
        .expect("commit");
    // The commit's own notices (its NOTIFY comes back through the listener).
    std::thread::sleep(Duration::from_millis(300));
    while notices.try_recv().is_ok() {}
    assert!(
        journal.pending("p", "t", 0, 10).expect("read").is_empty(),
        "an event above the log's bound was read"
    );
    let woken = first
        .rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(1), notices.recv()).await });
    assert!(
        matches!(woken, Ok(Ok(CommitNotice::Events { ref tenant })) if &**tenant == "t"),
        "the held-back read woke no worker: {woken:?}"
    );
    // `/ready` reports it once it has lasted a second, not before.
    assert_eq!(journal.held_back(), None, "reported at once");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(journal.held_back().map(|(tenants, _)| tenants), Some(1));
    first.commit();
    let read = journal.pending("p", "t", 0, 10).expect("read");
    let runs: Vec<&str> = read.iter().map(|d| d.run_id.as_str()).collect();
    assert_eq!(runs, ["r1", "r2"], "both, in id order");
    assert!(read[0].event_id < read[1].event_id);
    assert_eq!(journal.held_back(), None, "still reported once read");
}

/// A new cursor starts past every event committed before it, including
/// those of a transaction that commits while it is opened: it waits until
/// no transaction that could still commit below the log's end is running.
#[test]
fn postgres_a_new_cursor_waits_for_transactions_below_the_end() {
    let server = PgServer::start("new-cursor");
    let url = server.database("new_cursor");
    let journal = PgJournal::open(&pg_options(url.clone())).expect("open");
    let first = InFlight::begin(&url, &ev("first", "r1"));
    journal
        .commit_batch("t", &[ev("second", "r2")])
        .expect("commit");
    let committer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        first.commit();
    });
    let opened = std::time::Instant::now();
    journal.open_cursor("q", "t", &[]).expect("cursor");
    assert!(
        opened.elapsed() >= Duration::from_millis(200),
        "the cursor did not wait for the transaction in flight"
    );
    committer.join().expect("the committer");
    assert!(
        journal.pending("q", "t", 0, 10).expect("read").is_empty(),
        "events committed before the cursor were read past it"
    );
    journal
        .commit_batch("t", &[ev("third", "r3")])
        .expect("commit");
    let read = journal.pending("q", "t", 0, 10).expect("read");
    assert_eq!(
        read.iter().map(|d| d.run_id.as_str()).collect::<Vec<_>>(),
        ["r3"]
    );
}
