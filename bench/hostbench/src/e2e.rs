//! Delivery end to end inside a running `herald serve`, with ingest running:
//! events are sent as the callback sends them while a watcher observes the
//! deliveries from outside the host (its `/metrics`, or a webhook's sink in
//! this process), until every event has reached every instance. Times count
//! from the moment the first request is sent, not from its 202.

use crate::gen::event_sized;
use crate::send::{client, send_all, Batch, HttpClient, Plan, Res};
use crate::{start_sink_delayed, summary, unique_tag, Args};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sum of `herald_deliveries_total{plugin=~"<prefix>.*",outcome="ok"}` on the host's /metrics.
async fn delivered_ok(c: &HttpClient, url: &str, prefix: &str) -> Res<f64> {
    let req = http::Request::get(format!("{url}/metrics")).body(Full::new(Bytes::new()))?;
    let resp = c.request(req).await?;
    if !resp.status().is_success() {
        return Err(format!("GET /metrics: HTTP {}", resp.status()).into());
    }
    let text = resp.into_body().collect().await?.to_bytes();
    let text = std::str::from_utf8(&text)?;
    let plugin = format!("plugin=\"{prefix}");
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("herald_deliveries_total{")
                && l.contains("outcome=\"ok\"")
                && l.contains(&plugin)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// `e2e`: see the module's doc. With `--sink-port` the host's instance is a
/// webhook posting to a sink this process serves (delivered = distinct
/// idempotency keys received), and afterwards the same sink is measured
/// alone: one keep-alive connection posting the same requests in sequence,
/// from another process (`post`, the baseline), then from this one.
/// `--sink-delay-us` makes the sink wait that long before each answer (a
/// receiver doing its own work, or one across a network).
pub async fn e2e(a: &Args) -> Res<Value> {
    let url = a.get("url", "http://127.0.0.1:8765");
    let tokens: Vec<String> = a
        .get("tokens", "bench")
        .split(',')
        .map(String::from)
        .collect();
    let n = a.num("events", 20_000);
    let batch = a.num("batch", 20).max(1) as usize;
    let conc = a.num("concurrency", 4) as usize;
    let gzip = a.num("gzip", 1) == 1;
    let size = a.num("event-bytes", 1024) as usize;
    let instances = a.num("instances", 1);
    let prefix = a.get("prefix", "noop");
    let sink_port = a.num("sink-port", 0) as u16;
    let timeout = Duration::from_secs(a.num("timeout", 600));
    let tag = unique_tag();
    // The events as (uuid, JSON line); a webhook's sink alone is sent the same.
    let bodies = e2e_events(&tag, n, size, batch)?;
    let batches = bodies
        .chunks(batch)
        .map(|chunk| {
            let lines: Vec<Vec<u8>> = chunk.iter().map(|(_, line)| line.clone()).collect();
            Batch::new(&lines, gzip)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Kept only for the sink alone; the batches hold the rest.
    let bodies = if sink_port != 0 { bodies } else { Vec::new() };
    let expected = if sink_port != 0 { n } else { n * instances };
    let sink = if sink_port != 0 {
        let delay = Duration::from_micros(a.num("sink-delay-us", 0));
        Some(start_sink_delayed(sink_port, true, delay).await?.0)
    } else {
        None
    };
    let c = client();
    let baseline = if sink.is_some() {
        0.0
    } else {
        delivered_ok(&c, &url, &prefix).await?
    };
    let count = {
        let (c, url, prefix, sink) = (c.clone(), url.clone(), prefix.clone(), sink.clone());
        move || {
            let (c, url, prefix, sink) = (c.clone(), url.clone(), prefix.clone(), sink.clone());
            async move {
                match &sink {
                    Some(s) => Ok::<f64, Box<dyn std::error::Error + Send + Sync>>(
                        s.seen.lock().unwrap_or_else(|p| p.into_inner()).len() as f64,
                    ),
                    None => Ok(delivered_ok(&c, &url, &prefix).await? - baseline),
                }
            }
        }
    };
    let plan = Plan {
        url: url.clone(),
        tokens,
        concurrency: conc,
        rate: a.float("rate", 0.0),
        max_seconds: 0.0,
    };
    let batches = Arc::new(batches);
    let nb = batches.len();
    let t0 = Instant::now();
    let sender = {
        let batches = batches.clone();
        tokio::spawn(
            async move { send_all(&plan, nb, move |k| Ok(Some(batches[k].clone()))).await },
        )
    };
    // The watcher: every 20 ms until all are delivered (bounded by --timeout).
    let mut ingest_done: Option<(f64, f64)> = None;
    let mut last: f64;
    let mut samples = Vec::new();
    let all_at = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        last = count().await?;
        let t = t0.elapsed().as_secs_f64();
        samples.push((t, last));
        if ingest_done.is_none() && sender.is_finished() {
            ingest_done = Some((t, last));
        }
        if last >= expected as f64 {
            break Some(t);
        }
        if t0.elapsed() > timeout {
            break None;
        }
    };
    let sent = sender.await??;
    if sent.failed > 0 {
        return Err(format!("{} events were not accepted", sent.failed).into());
    }
    let (ingest_end_t, ingest_end_delivered) = ingest_done.unwrap_or((sent.seconds, last));
    let mut out = json!({
        "events": n,
        "instances": instances,
        "batch": batch,
        "gzip": gzip,
        "event_bytes": size,
        "concurrency": conc,
        "expected_deliveries": expected,
        "delivered": last,
        "complete": all_at.is_some(),
        "ingest_seconds": sent.seconds,
        "ingest_events_per_s": sent.accepted as f64 / sent.seconds,
        "request_ms": summary(sent.request_ms),
        "delivered_when_ingest_ended": ingest_end_delivered / expected as f64,
    });
    if let Some(t) = all_at {
        out["all_delivered_s"] = json!(t);
        out["deliveries_per_s"] = json!(expected as f64 / t);
        out["events_fully_delivered_per_s"] = json!(n as f64 / t);
        if t > ingest_end_t {
            out["drain_after_ingest_per_s"] =
                json!((expected as f64 - ingest_end_delivered) / (t - ingest_end_t));
        }
    }
    if let Some(s) = sink {
        // What the sink takes alone: the same requests from `--sink-connections`
        // keep-alive connections, each posting its share in sequence (1 is
        // what a webhook instance with `shards = 1` does; compare an
        // instance with N shards, N requests in flight, against N). First
        // from another process, as the host reaches the sink (the goal's
        // baseline), then from a task in the sink's own process, whose
        // requests and answers often stay on one thread and so wake nothing:
        // no sender in another process sees that rate.
        let conns = (a.num("sink-connections", 1) as usize).max(1);
        let target = format!("http://127.0.0.1:{sink_port}/events");
        let counted = |before: u64| {
            let got = s.count.load(std::sync::atomic::Ordering::Relaxed) - before;
            if got < n {
                return Err::<(), Box<dyn std::error::Error + Send + Sync>>(
                    format!("sink alone: the sink counted {got} of {n}").into(),
                );
            }
            Ok(())
        };
        let before = s.count.load(std::sync::atomic::Ordering::Relaxed);
        let rate = post_from_child(&target, &tag, n, size, batch, conns).await?;
        counted(before)?;
        out["sink_alone_per_s"] = json!(rate);
        let before = s.count.load(std::sync::atomic::Ordering::Relaxed);
        let t1 = Instant::now();
        post_in_sequence(&target, Arc::new(bodies), conns).await?;
        let secs = t1.elapsed().as_secs_f64();
        counted(before)?;
        out["sink_alone_in_process_per_s"] = json!(n as f64 / secs);
        out["sink_connections"] = json!(conns);
    }
    Ok(out)
}

/// Posts `bodies` to `target` over `conns` keep-alive connections, each
/// posting its share in sequence with the webhook's headers.
async fn post_in_sequence(
    target: &str,
    bodies: Arc<Vec<(String, Vec<u8>)>>,
    conns: usize,
) -> Res<()> {
    let mut tasks = Vec::new();
    for k in 0..conns {
        let (c, target, bodies) = (client(), target.to_string(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            for (uuid, body) in bodies.iter().skip(k).step_by(conns) {
                let req = http::Request::post(&target)
                    .header("content-type", "application/json")
                    .header("user-agent", "herald-webhook/0.1")
                    .header("x-herald-event-id", uuid.as_str())
                    .header("idempotency-key", format!("alone-{uuid}"))
                    .header("x-herald-event-kind", "runner_on_ok")
                    .header("x-herald-attempt", "1")
                    .body(Full::new(Bytes::from(body.clone())))?;
                let resp = c.request(req).await?;
                if !resp.status().is_success() {
                    return Err::<(), Box<dyn std::error::Error + Send + Sync>>(
                        format!("sink alone: HTTP {}", resp.status()).into(),
                    );
                }
                let _ = resp.into_body().collect().await?;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// The events `e2e` sends, as (uuid, JSON line), in order: a batch of
/// `batch` events per run in turn, over 16 runs.
fn e2e_events(tag: &str, n: u64, size: usize, batch: usize) -> Res<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for i in 0..n {
        let run = format!("{tag}-run{}", (i as usize / batch) % 16);
        let v = event_sized(&run, i, tag, size);
        out.push((
            v["uuid"].as_str().unwrap_or_default().to_string(),
            serde_json::to_vec(&v)?,
        ));
    }
    Ok(out)
}

/// Runs `herald-hostbench post` as a child process and returns the rate it
/// measured itself (its start and its bodies' encoding are not counted).
async fn post_from_child(
    target: &str,
    tag: &str,
    n: u64,
    size: usize,
    batch: usize,
    conns: usize,
) -> Res<f64> {
    let exe = std::env::current_exe()?;
    let out = tokio::process::Command::new(exe)
        .args(["post", "--url", target, "--tag", tag])
        .args([
            "--events",
            &n.to_string(),
            "--event-bytes",
            &size.to_string(),
        ])
        .args([
            "--batch",
            &batch.to_string(),
            "--connections",
            &conns.to_string(),
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!("herald-hostbench post: {}", out.status).into());
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    v["requests_per_s"]
        .as_f64()
        .ok_or_else(|| "herald-hostbench post printed no requests_per_s".into())
}

/// `post`: the events of `e2e` (same tag, same bodies), posted to `--url`
/// over `--connections` keep-alive connections in sequence.
pub async fn post(a: &Args) -> Res<Value> {
    let target = a.get("url", "http://127.0.0.1:8765/events");
    let tag = a.get("tag", "post");
    let n = a.num("events", 10_000);
    let size = a.num("event-bytes", 1024) as usize;
    let conns = (a.num("connections", 1) as usize).max(1);
    let bodies = Arc::new(e2e_events(
        &tag,
        n,
        size,
        a.num("batch", 20).max(1) as usize,
    )?);
    let t0 = Instant::now();
    post_in_sequence(&target, bodies, conns).await?;
    Ok(json!({"events": n, "requests_per_s": n as f64 / t0.elapsed().as_secs_f64()}))
}
