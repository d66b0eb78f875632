//! The query API with a realistic history: `load` sends whole runs through
//! the real ingest API (as many callbacks or `herald import` would), `query`
//! times the requests a user (or a UI) makes, one at a time on one
//! keep-alive connection.

use crate::gen::{mix, run_events, run_id};
use crate::send::{client, send_all, Batch, Plan, Res};
use crate::{summary, Args};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::time::Instant;

/// `load`: `--runs R` runs of `--events-per-run E` events, tagged `--tag T`
/// (run ids `T-run000000`...), in batches of up to `--batch` events of one run.
pub async fn load(a: &Args) -> Res<Value> {
    let runs = a.num("runs", 1000);
    let per_run = a.num("events-per-run", 100).max(4);
    let batch = a.num("batch", 500).max(1) as usize;
    let gzip = a.num("gzip", 1) == 1;
    let tag = a.get("tag", "q");
    let plan = Plan {
        url: a.get("url", "http://127.0.0.1:8765"),
        tokens: a
            .get("tokens", "bench")
            .split(',')
            .map(String::from)
            .collect(),
        concurrency: a.num("concurrency", 4) as usize,
        rate: 0.0,
        max_seconds: 0.0,
    };
    let per_batch_run = (per_run as usize).div_ceil(batch);
    let n = runs as usize * per_batch_run;
    let t = tag.clone();
    let sent = send_all(&plan, n, move |k| {
        let (run, part) = ((k / per_batch_run) as u64, k % per_batch_run);
        let evs = run_events(&t, run, per_run);
        let chunk: Vec<Vec<u8>> = evs
            .iter()
            .skip(part * batch)
            .take(batch)
            .map(serde_json::to_vec)
            .collect::<Result<_, _>>()?;
        if chunk.is_empty() {
            return Ok(None);
        }
        Ok(Some(Batch::new(&chunk, gzip)?))
    })
    .await?;
    if sent.failed > 0 {
        return Err(format!("{} events were not accepted", sent.failed).into());
    }
    Ok(json!({
        "runs": runs,
        "events": sent.accepted,
        "seconds": sent.seconds,
        "events_per_s": sent.accepted as f64 / sent.seconds,
    }))
}

/// `query`: `--requests N` of each endpoint, interleaved, against runs picked
/// at random among the `--runs R` of `--tag T`. Every answer must be a 200
/// with a non-empty body of the expected shape, or the benchmark fails.
pub async fn query(a: &Args) -> Res<Value> {
    let url = a.get("url", "http://127.0.0.1:8765");
    let token = a.get("tokens", "bench");
    let tag = a.get("tag", "q");
    let runs = a.num("runs", 1000).max(1);
    let requests = a.num("requests", 200);
    let c = client();
    let endpoints: [(&str, &(dyn Fn(&str) -> String + Sync), &str); 5] = [
        ("runs list", &|_| "/v1/runs".to_string(), "items"),
        (
            "runs list, status=failed",
            &|_| "/v1/runs?status=failed".to_string(),
            "items",
        ),
        ("a run", &|id| format!("/v1/runs/{id}"), "status"),
        (
            "a run's events (first page)",
            &|id| format!("/v1/runs/{id}/events"),
            "items",
        ),
        (
            "a run's deliveries",
            &|id| format!("/v1/deliveries?run={id}"),
            "items",
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); endpoints.len()];
    let mut seed = 42u64;
    for r in 0..requests {
        seed = mix(seed);
        let id = run_id(&tag, seed % runs);
        for (e, (name, path, key)) in endpoints.iter().enumerate() {
            let req = http::Request::get(format!("{url}{}", path(&id)))
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(Bytes::new()))?;
            let t0 = Instant::now();
            let resp = c.request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if !status.is_success() {
                return Err(format!(
                    "{name} ({}): HTTP {status}: {}",
                    path(&id),
                    String::from_utf8_lossy(&body)
                )
                .into());
            }
            let v: Value = serde_json::from_slice(&body)?;
            // A run's deliveries may be empty when a delivery model keeps rows only for
            // exceptions, and few runs fail: only the lists that cannot be empty must not be.
            let ok = match &v[*key] {
                Value::Array(items) => !items.is_empty() || e == 1 || e == 4,
                Value::Null => false,
                _ => true,
            };
            if !ok {
                return Err(
                    format!("{name} ({}): no {key:?} in the answer: {v}", path(&id)).into(),
                );
            }
            // The first request of each endpoint warms the page cache and statement caches.
            if r > 0 || requests == 1 {
                times[e].push(ms);
            }
        }
    }
    let mut out = serde_json::Map::new();
    for (e, (name, _, _)) in endpoints.iter().enumerate() {
        let mut s = summary(std::mem::take(&mut times[e]));
        s["endpoint"] = json!(name);
        out.insert(name.to_string(), s);
    }
    Ok(json!({"runs": runs, "requests": requests, "endpoints": out}))
}
