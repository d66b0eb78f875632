//! Sending NDJSON batches to `POST /v1/events` the way the callback does:
//! gzip (level 5, bodies over 2 KiB) when asked, several keep-alive
//! connections, closed loop (as fast as the host answers) or open loop at a
//! given event rate. Only 202s count as accepted.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// A keep-alive HTTP/1 client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The callback's rule (callback/herald_ansible/shipper.py): gzip level 5
/// when the NDJSON body is over 2 KiB.
pub const GZIP_OVER: usize = 2048;

/// One request body, ready to send.
#[derive(Clone)]
pub struct Batch {
    pub body: Bytes,
    pub gzip: bool,
    pub events: u64,
}

impl Batch {
    /// NDJSON of `lines` (already serialised, without newlines), gzipped by the callback's rule.
    pub fn new(lines: &[Vec<u8>], gzip: bool) -> Res<Batch> {
        let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            body.extend_from_slice(l);
            body.push(b'\n');
        }
        let raw_bytes = body.len();
        let compress = gzip && raw_bytes > GZIP_OVER;
        let body = if compress {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(raw_bytes / 3),
                flate2::Compression::new(5),
            );
            enc.write_all(&body)?;
            enc.finish()?
        } else {
            body
        };
        Ok(Batch {
            body: Bytes::from(body),
            gzip: compress,
            events: lines.len() as u64,
        })
    }
}

/// Posts one batch; returns the status.
pub async fn post(c: &HttpClient, url: &str, token: &str, b: &Batch) -> Res<u16> {
    let mut req = http::Request::post(format!("{url}/v1/events"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/x-ndjson")
        .header("user-agent", "herald-ansible/bench");
    if b.gzip {
        req = req.header("content-encoding", "gzip");
    }
    let resp = c.request(req.body(Full::new(b.body.clone()))?).await?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await?;
    Ok(status)
}

/// What a [`send_all`] did.
pub struct Sent {
    pub accepted: u64,
    pub failed: u64,
    pub seconds: f64,
    /// Request times (ms), from the moment each request was sent to its answer.
    pub request_ms: Vec<f64>,
}

/// How to send.
#[derive(Clone)]
pub struct Plan {
    pub url: String,
    pub tokens: Vec<String>,
    pub concurrency: usize,
    /// Events per second, open loop (a batch is sent at its scheduled time, or
    /// at once when the sender is behind); 0 = closed loop.
    pub rate: f64,
    /// No batch is started after this many seconds (0 = no limit): a slow
    /// configuration is measured over a bounded time instead of all `n`.
    pub max_seconds: f64,
}

/// Sends batches made by `make(k)` for k in 0..n (`None`: nothing to send
/// for that k), `plan.concurrency` at a time, each with `tokens[k % len]`.
/// `make` runs in the sending tasks, so a load larger than memory can be
/// streamed.
pub async fn send_all<F>(plan: &Plan, n: usize, make: F) -> Res<Sent>
where
    F: Fn(usize) -> Res<Option<Batch>> + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let sent_events = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let c = client();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..plan.concurrency.max(1) {
        let (make, next, accepted, failed, sent_events, lat, c, plan) = (
            make.clone(),
            next.clone(),
            accepted.clone(),
            failed.clone(),
            sent_events.clone(),
            lat.clone(),
            c.clone(),
            plan.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                if plan.max_seconds > 0.0 && started.elapsed().as_secs_f64() >= plan.max_seconds {
                    break;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    break;
                }
                let batch = match make(k) {
                    Ok(Some(b)) => b,
                    Ok(None) => continue,
                    Err(e) => {
                        eprintln!("batch {k}: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                if plan.rate > 0.0 {
                    // Scheduled by the events sent before this batch.
                    let before = sent_events.fetch_add(batch.events, Ordering::Relaxed);
                    let at = started + Duration::from_secs_f64(before as f64 / plan.rate);
                    tokio::time::sleep_until(at.into()).await;
                }
                let t0 = Instant::now();
                let token = &plan.tokens[k % plan.tokens.len()];
                match post(&c, &plan.url, token, &batch).await {
                    Ok(202) => {
                        accepted.fetch_add(batch.events, Ordering::Relaxed);
                    }
                    Ok(s) => {
                        if failed.fetch_add(batch.events, Ordering::Relaxed) == 0 {
                            eprintln!("ingest: HTTP {s}");
                        }
                    }
                    Err(e) => {
                        if failed.fetch_add(batch.events, Ordering::Relaxed) == 0 {
                            eprintln!("ingest: {e}");
                        }
                    }
                }
                lat.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let request_ms = std::mem::take(&mut *lat.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Sent {
        accepted: accepted.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        seconds,
        request_ms,
    })
}
