//! Events as users' playbooks make them: sized `runner_on_ok` results, and
//! whole runs (start, play, task starts, host results, failures, stats) for
//! the query benchmark. Everything is deterministic from its arguments, so
//! two sides of an A/B run send the same bytes.

use serde_json::{json, Value};

/// splitmix64: a small, fast, deterministic generator for filler text.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const WORDS: &[&str] = &[
    "active",
    "running",
    "loaded",
    "enabled",
    "service",
    "nginx",
    "worker",
    "process",
    "started",
    "listening",
    "on",
    "port",
    "pid",
    "memory",
    "tasks",
    "cgroup",
    "system",
    "unit",
    "ok",
    "changed",
    "package",
    "installed",
    "version",
    "already",
    "the",
    "latest",
    "config",
    "file",
    "updated",
    "/etc/nginx/nginx.conf",
    "/var/log/syslog",
    "connection",
    "accepted",
    "from",
    "user",
    "root",
];

/// Log-like text of about `len` bytes: lines of words, numbers and hex ids,
/// compressing about as well as real module output (3-5x with gzip), not the
/// 100x of a repeated string.
pub fn filler(seed: u64, len: usize) -> String {
    let mut out = String::with_capacity(len + 64);
    let mut s = seed;
    while out.len() < len {
        s = mix(s);
        match s % 7 {
            0 => out.push_str(&format!("{:08x}", (s >> 16) as u32)),
            1 => out.push_str(&format!("{}", (s >> 20) % 100_000)),
            _ => out.push_str(WORDS[((s >> 8) as usize) % WORDS.len()]),
        }
        out.push(if (s >> 40) % 9 == 0 { '\n' } else { ' ' });
    }
    out.truncate(len);
    out
}

/// A `runner_on_ok` of a `command` task in ansible-runner's shape, about 1 KiB as JSON.
pub fn event_value(run_id: &str, i: u64, tag: &str) -> Value {
    let host = format!("web{:02}", i % 20);
    let stdout: Vec<String> = (0..2)
        .map(|n| format!("line {n} of the service status output, active (running)"))
        .collect();
    json!({
        "uuid": format!("{tag}-{i:010}"),
        "event": "runner_on_ok",
        "counter": i,
        "created": "2026-11-21T12:00:00.123456+00:00",
        "run_id": run_id,
        "parent_uuid": format!("{tag}-task-{:06}", i / 20),
        "controller": "ctl01.example.com",
        "stdout": format!("changed: [{host}]"),
        "event_data": {
            "playbook": "site.yml",
            "playbook_uuid": "6f1b2c1e-0c0a-4a58-9b7e-6d1b0f7e9a01",
            "play": "web servers",
            "play_uuid": "0242ac12-0002-b3f1-5d2c-000000000006",
            "play_pattern": "web",
            "task": format!("check service {}", i / 20),
            "task_uuid": format!("0242ac12-0002-b3f1-5d2c-{:012}", i / 20),
            "task_action": "ansible.builtin.command",
            "task_path": "/srv/playbooks/site.yml:42",
            "host": host,
            "remote_addr": host,
            "res": {
                "changed": true,
                "stdout": stdout.join("\n"),
                "stderr": "",
                "rc": 0,
                "cmd": ["systemctl", "status", "nginx", "--no-pager"],
                "start": "2026-11-21 12:00:00.000001",
                "end": "2026-11-21 12:00:00.120001",
                "delta": "0:00:00.120000",
                "msg": "",
                "stdout_lines": stdout,
                "stderr_lines": [],
            },
            "start": "2026-11-21T12:00:00.000001+00:00",
            "end": "2026-11-21T12:00:00.120001+00:00",
            "duration": 0.12,
        }
    })
}

/// [`event_value`] of about `bytes` of JSON, whose module output
/// (`res.stdout`, and `stdout_lines` as Ansible repeats it) is log-like text
/// that differs from event to event (at least 128 bytes of it), so that gzip
/// compresses a batch about as much as real results, not 25x as it does
/// identical events. `bytes` = 0: the fixed ~1.1 KiB [`event_value`].
pub fn event_sized(run_id: &str, i: u64, tag: &str, bytes: usize) -> Value {
    let mut v = event_value(run_id, i, tag);
    if bytes == 0 {
        return v;
    }
    let res = &mut v["event_data"]["res"];
    res["stdout"] = Value::String(String::new());
    res["stdout_lines"] = Value::Array(Vec::new());
    let bare = v.to_string().len();
    // The text appears twice (stdout and its lines); newlines cost 2 bytes as JSON.
    let text = filler(
        mix(i ^ 0x5eed),
        (bytes.saturating_sub(bare) * 9 / 20).max(128),
    );
    let lines: Vec<Value> = text.lines().map(|l| Value::String(l.to_string())).collect();
    let res = &mut v["event_data"]["res"];
    res["stdout"] = Value::String(text);
    res["stdout_lines"] = Value::Array(lines);
    v
}

/// One run as the callback sends it: `playbook_on_start`, a play, then tasks
/// (`playbook_on_task_start`, and per host `runner_on_start` + a result),
/// and `playbook_on_stats` last; `events` in total (at least 4). Every
/// tenth run has a failed host (a `runner_on_failed` and `failures` in the
/// stats), every 50th is left unfinished (no stats: "running" or
/// "interrupted"), so the runs list has a realistic mix of statuses.
/// `k` numbers the run; its start time is `k` minutes after a fixed epoch.
pub fn run_events(tag: &str, k: u64, events: u64) -> Vec<Value> {
    let run_id = run_id(tag, k);
    let hosts: Vec<String> = (0..5)
        .map(|h| format!("node{:02}.example.com", h))
        .collect();
    let playbook = [
        "site.yml",
        "deploy-web.yml",
        "deploy-db.yml",
        "patch.yml",
        "backup.yml",
    ][(k % 5) as usize];
    let controller = format!("ctl{:02}.example.com", k % 3);
    let t0_ms: i64 = 1_763_726_400_000 + (k as i64) * 60_000;
    let iso = rfc3339;
    let failed_run = k % 10 == 3;
    let unfinished = k % 50 == 7;
    let mut out = Vec::new();
    let mut counter = 0u64;
    let mut push = |kind: &str, data: Value, t: i64, out: &mut Vec<Value>| {
        counter += 1;
        out.push(json!({
            "uuid": format!("{run_id}-{counter:06}"),
            "event": kind,
            "counter": counter,
            "created": iso(t),
            "run_id": run_id,
            "controller": controller,
            "event_data": data,
        }));
    };
    let base = json!({"playbook": playbook, "playbook_uuid": format!("{run_id}-pb")});
    let with = |extra: Value| {
        let mut v = base.clone();
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (key, val) in e {
                o.insert(key.clone(), val.clone());
            }
        }
        v
    };
    push(
        "playbook_on_start",
        with(
            json!({"herald": {"user": "deploy", "ansible_version": "2.19.4", "check_mode": false}}),
        ),
        t0_ms,
        &mut out,
    );
    let play =
        json!({"play": "servers", "play_uuid": format!("{run_id}-play"), "play_pattern": "all"});
    push(
        "playbook_on_play_start",
        with(play.clone()),
        t0_ms + 5,
        &mut out,
    );
    let body_events = events.saturating_sub(3).max(1);
    let per_task = 1 + 2 * hosts.len() as u64;
    let tasks = body_events.div_ceil(per_task);
    let mut failures_at: Option<(usize, u64)> = None;
    let mut left = body_events;
    'tasks: for t in 0..tasks {
        let at = t0_ms + 10 + (t as i64) * 500;
        let task = with(json!({
            "play": "servers", "play_uuid": format!("{run_id}-play"),
            "task": format!("task {t}"), "task_uuid": format!("{run_id}-task-{t}"),
            "task_action": "ansible.builtin.command", "task_path": format!("/srv/{playbook}:{}", 10 + t),
        }));
        if left == 0 {
            break;
        }
        push("playbook_on_task_start", task.clone(), at, &mut out);
        left -= 1;
        for (h, host) in hosts.iter().enumerate() {
            if left == 0 {
                break 'tasks;
            }
            let mut start = task.clone();
            start["host"] = json!(host);
            push("runner_on_start", start, at + 1, &mut out);
            left -= 1;
            if left == 0 {
                break 'tasks;
            }
            let fail = failed_run && failures_at.is_none() && t == tasks / 2 && h == 1;
            let mut res = task.clone();
            res["host"] = json!(host);
            res["res"] = json!({"changed": false, "rc": if fail { 1 } else { 0 },
                                 "stdout": format!("ok from {host}"), "stderr": "", "msg": if fail { "non-zero return code" } else { "" }});
            res["start"] = json!(iso(at + 1));
            res["end"] = json!(iso(at + 120));
            res["duration"] = json!(0.119);
            if fail {
                failures_at = Some((h, t));
            }
            push(
                if fail {
                    "runner_on_failed"
                } else {
                    "runner_on_ok"
                },
                res,
                at + 120,
                &mut out,
            );
            left -= 1;
        }
    }
    if !unfinished {
        let per_host = |f: &dyn Fn(usize) -> u64| {
            let mut m = serde_json::Map::new();
            for (h, host) in hosts.iter().enumerate() {
                m.insert(host.clone(), json!(f(h)));
            }
            Value::Object(m)
        };
        let failed_host = failures_at.map(|(h, _)| h);
        let stats = with(json!({
            "ok": per_host(&|h| if Some(h) == failed_host { tasks / 2 } else { tasks }),
            "changed": per_host(&|_| 0),
            "dark": per_host(&|_| 0),
            "failures": per_host(&|h| u64::from(Some(h) == failed_host)),
            "ignored": per_host(&|_| 0),
            "processed": per_host(&|_| 1),
            "rescued": per_host(&|_| 0),
            "skipped": per_host(&|_| 0),
        }));
        push(
            "playbook_on_stats",
            stats,
            t0_ms + 10 + (tasks as i64) * 500,
            &mut out,
        );
    }
    out
}

/// Milliseconds since the Unix epoch as RFC 3339 with microseconds, UTC
/// (the civil-from-days algorithm of Howard Hinnant's date library).
pub fn rfc3339(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let secs = rem / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}000+00:00",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60,
        rem % 1000
    )
}

/// The run id of run `k` of a load tagged `tag`.
pub fn run_id(tag: &str, k: u64) -> String {
    format!("{tag}-run{k:06}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_events_reach_their_size_and_stay_valid() {
        for bytes in [1024usize, 4096, 16384, 65536] {
            let v = event_sized("r", 7, "t", bytes);
            let n = v.to_string().len();
            // The ~1 KiB base plus its minimum of 128 bytes of output (twice) is ~1.3 KiB.
            assert!(
                n >= bytes * 8 / 10 && n <= (bytes * 11 / 10).max(1400),
                "{bytes}: {n}"
            );
            herald::event::validate(v).expect("valid");
        }
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            rfc3339(1_763_726_400_123),
            "2025-11-21T12:00:00.123000+00:00"
        );
        assert_eq!(
            rfc3339(1_709_208_000_000),
            "2024-02-29T12:00:00.000000+00:00"
        );
    }

    #[test]
    fn sized_events_differ_so_gzip_sees_real_output() {
        let a = event_sized("r", 1, "t", 4096);
        let b = event_sized("r", 2, "t", 4096);
        assert_ne!(
            a["event_data"]["res"]["stdout"],
            b["event_data"]["res"]["stdout"]
        );
        assert_eq!(event_sized("r", 1, "t", 0), event_value("r", 1, "t"));
    }

    #[test]
    fn a_run_has_the_asked_number_of_events_and_validates() {
        for k in [0u64, 3, 7] {
            let evs = run_events("t", k, 100);
            assert_eq!(evs.len(), if k == 7 { 99 } else { 100 }, "run {k}");
            for e in &evs {
                herald::event::validate(e.clone()).expect("valid");
            }
            let failed = evs.iter().any(|e| e["event"] == "runner_on_failed");
            assert_eq!(failed, k == 3);
        }
    }
}
