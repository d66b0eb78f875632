//! `herald-hostbench`: the Rust half of Herald's benchmark suite (bench/README.md).
//!
//! Every subcommand prints one JSON object on stdout; bench/run.py interleaves
//! the runs and writes BENCHMARKS.md.
//!
//! ```text
//! herald-hostbench ingest   --url U --tokens T1,T2 --events N --batch B --concurrency C
//!                           [--gzip 1] [--event-bytes 1024] [--rate EVENTS_PER_S] [--max-seconds S]
//! herald-hostbench sqlite   --dir D --events N --batch B [--group G] [--event-bytes 1024]
//! herald-hostbench e2e      --url U --tokens T --events N --batch B --instances K --prefix noop
//!                           [--sink-port P] [--gzip 1] [--event-bytes 1024] [--rate R]
//! herald-hostbench load     --url U --tokens T --tag Q --runs R --events-per-run E
//! herald-hostbench query    --url U --tokens T --tag Q --runs R --requests N
//! herald-hostbench dispatch --plugin noop.wasm --events N --rounds R --dir D
//! herald-hostbench webhook  --plugin webhook.wasm --events N --rounds R --dir D
//! herald-hostbench latency  --url U --tokens T --sink-port P --rate 1000 --seconds S --batch 1
//! herald-hostbench sink     --port P [--udp-port Q]
//! herald-hostbench post     --url U --tag T --events N [--event-bytes 1024] [--batch B] [--connections C]
//! ```

mod e2e;
mod gen;
mod queries;
mod send;

use bytes::Bytes;
use gen::{event_sized, event_value};
use herald::config::{token_hash, Config};
use herald::dispatch::{Dispatcher, WorkerSpec};
use herald::event::{validate, WireEvent};
use herald::journal::{DeliveryQueue, EventLog, Journal};
use herald::runtime::{InstanceSpec, LoadedComponent, Outcome, PluginInstance, Runtime};
use herald::telemetry::Metrics;
use http_body_util::{BodyExt, Full};
use send::client;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The command line: `--name value` pairs after the subcommand.
pub struct Args(Vec<String>);

impl Args {
    pub fn get(&self, name: &str, default: &str) -> String {
        let flag = format!("--{name}");
        self.0
            .iter()
            .position(|a| *a == flag)
            .and_then(|i| self.0.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_string())
    }
    pub fn num(&self, name: &str, default: u64) -> u64 {
        self.get(name, &default.to_string())
            .parse()
            .unwrap_or_else(|_| panic!("--{name} must be a number"))
    }
    pub fn float(&self, name: &str, default: f64) -> f64 {
        self.get(name, &default.to_string())
            .parse()
            .unwrap_or_else(|_| panic!("--{name} must be a number"))
    }
}

fn main() {
    let args = Args(std::env::args().skip(1).collect());
    let cmd = args.0.first().cloned().unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The command runs as a spawned task, on a worker thread, as the host's
    // own workers do. `block_on`'s future runs on the main thread instead, and
    // every response's wake-up then crosses threads: a sequential client
    // there sustained half the requests per second, which made the "sink
    // alone" and "native client" baselines look slower than they are.
    let task_cmd = cmd.clone();
    let out = rt.block_on(async move {
        match tokio::spawn(async move { run_command(&args, &task_cmd).await }).await {
            Ok(r) => r,
            Err(e) => Err(format!("the command panicked: {e}").into()),
        }
    });
    match out {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("herald-hostbench {cmd}: {e}");
            std::process::exit(1);
        }
    }
}

async fn run_command(args: &Args, cmd: &str) -> Res<Value> {
    match cmd {
        "ingest" => ingest(args).await,
        "sqlite" => sqlite_bare(args),
        "pg-bare" => pg_bare(args).await,
        "dispatch" => dispatch(args).await,
        "webhook" => webhook(args).await,
        "latency" => latency(args).await,
        "e2e" => e2e::e2e(args).await,
        "post" => e2e::post(args).await,
        "load" => queries::load(args).await,
        "query" => queries::query(args).await,
        "sink" => sink_forever(args).await,
        "event" => Ok(event_value("run", 0, "sample")),
        _ => Err(format!("unknown command {cmd:?}; see the source's header").into()),
    }
}

// ---------------------------------------------------------------- events --

/// A tag that makes this process's event uuids new to the host.
pub fn unique_tag() -> String {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", ns, std::process::id())
}

fn wire_events(n: u64, tag: &str, runs: u64) -> Res<Vec<WireEvent>> {
    (0..n)
        .map(|i| {
            validate(event_value(
                &format!("{tag}-run{}", i % runs.max(1)),
                i,
                tag,
            ))
            .map_err(|e| format!("{e:?}").into())
        })
        .collect()
}

// ----------------------------------------------------------------- stats --

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Percentiles of a sample (p50, p90, p95, p99, min, max).
pub fn summary(mut xs: Vec<f64>) -> Value {
    xs.sort_by(|a, b| a.total_cmp(b));
    json!({
        "n": xs.len(),
        "p50": percentile(&xs, 0.5),
        "p90": percentile(&xs, 0.9),
        "p95": percentile(&xs, 0.95),
        "p99": percentile(&xs, 0.99),
        "max": xs.last().copied().unwrap_or(f64::NAN),
        "min": xs.first().copied().unwrap_or(f64::NAN),
    })
}

// ---------------------------------------------------------------- ingest --

/// The callback's largest body before compression (`batch_max_bytes`): a
/// batch of large events holds fewer of them.
const BATCH_MAX_BYTES: usize = 1 << 20;

/// Pre-built NDJSON lines of `n` events of about `size` bytes, in batches of
/// at most `batch` events and [`BATCH_MAX_BYTES`], each batch one run
/// (`run{k % 16}`), as the callback sends them.
fn batch_lines(n: u64, batch: usize, size: usize, tag: &str) -> Res<Vec<(String, Vec<Vec<u8>>)>> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while i < n {
        let run = format!("{tag}-run{}", out.len() % 16);
        let (mut lines, mut bytes) = (Vec::new(), 0usize);
        while lines.len() < batch && i < n && (lines.is_empty() || bytes + size <= BATCH_MAX_BYTES)
        {
            let line = serde_json::to_vec(&event_sized(&run, i, tag, size))?;
            bytes += line.len() + 1;
            lines.push(line);
            i += 1;
        }
        out.push((run, lines));
    }
    Ok(out)
}

/// Sustained ingest: `concurrency` connections post pre-built NDJSON batches
/// (gzipped by the callback's rule with `--gzip 1`) as fast as the host
/// answers, or at `--rate` events/s, for all `--events` or until
/// `--max-seconds`; only 202s count.
async fn ingest(a: &Args) -> Res<Value> {
    let n = a.num("events", 50_000);
    let batch = a.num("batch", 500).max(1) as usize;
    let size = a.num("event-bytes", 0) as usize;
    let gzip = a.num("gzip", 0) == 1;
    let plan = send::Plan {
        url: a.get("url", "http://127.0.0.1:8765"),
        tokens: a
            .get("tokens", "bench")
            .split(',')
            .map(String::from)
            .collect(),
        concurrency: a.num("concurrency", 4) as usize,
        rate: a.float("rate", 0.0),
        max_seconds: a.float("max-seconds", 0.0),
    };
    let tag = unique_tag();
    let lines = batch_lines(n, batch, size, &tag)?;
    let raw_total: usize = lines
        .iter()
        .flat_map(|(_, l)| l.iter().map(|x| x.len() + 1))
        .sum();
    let batches = lines
        .iter()
        .map(|(_, l)| send::Batch::new(l, gzip))
        .collect::<Res<Vec<_>>>()?;
    drop(lines);
    let wire_total: usize = batches.iter().map(|b| b.body.len()).sum();
    let batches = Arc::new(batches);
    let nb = batches.len();
    let b2 = batches.clone();
    let sent = send::send_all(&plan, nb, move |k| Ok(Some(b2[k].clone()))).await?;
    Ok(json!({
        "events": sent.accepted,
        "failed": sent.failed,
        "seconds": sent.seconds,
        "events_per_s": sent.accepted as f64 / sent.seconds,
        "batch": batch,
        "batches": nb,
        "concurrency": plan.concurrency,
        "gzip": gzip,
        "offered_rate": plan.rate,
        "avg_event_bytes": raw_total as f64 / n as f64,
        "wire_bytes_per_event": wire_total as f64 / n as f64,
        "request_ms": summary(sent.request_ms),
    }))
}

/// The storage floor, like for like with the journal's ingest commit: the
/// journal's own schema, WAL + `synchronous=FULL` + `wal_autocheckpoint` as
/// the journal's writer sets it; per batch, the events inserted one by one
/// and one upsert of the batch's run with the batch's totals (as
/// `apply_batch` does); `--group G` batches per transaction (the grouping
/// the host's group commit made, measured by the caller from its /metrics);
/// and the journal's background checkpointer: a passive checkpoint on a
/// second connection every 2 MiB committed, so the WAL is rewound and
/// rewritten in place as the host's is (without it, every commit grows the
/// WAL file and its fsync costs about twice as much).
/// The same batches of the same events as `ingest` (`--event-bytes`, the
/// callback's 1 MiB batch cap), bodies pre-serialised: no HTTP, gzip, JSON
/// parsing, validation, delivery rows or commit notices.
fn sqlite_bare(a: &Args) -> Res<Value> {
    let dir = PathBuf::from(a.get("dir", "/tmp/herald-bench-sqlite"));
    let n = a.num("events", 50_000);
    let batch = a.num("batch", 500).max(1) as usize;
    let group = a.num("group", 1).max(1) as usize;
    let size = a.num("event-bytes", 0) as usize;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("bare-{}.db", unique_tag()));
    let tag = unique_tag();
    let batches: Vec<(String, Vec<(String, i64, String)>)> = batch_lines(n, batch, size, &tag)?
        .into_iter()
        .map(|(run, lines)| {
            let rows = lines
                .into_iter()
                .enumerate()
                .map(|(j, l)| {
                    let text = String::from_utf8(l).unwrap_or_default();
                    (String::new(), j as i64, text)
                })
                .collect();
            (run, rows)
        })
        .collect();
    let mut conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", a.get("synchronous", "FULL"))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "wal_autocheckpoint", 8000)?;
    conn.execute_batch(herald::journal::sqlite::SCHEMA)?;
    let (kick, kicked) = std::sync::mpsc::sync_channel::<()>(1);
    let checkpointer = {
        let c = rusqlite::Connection::open(&path)?;
        c.pragma_update(None, "synchronous", "NORMAL")?;
        std::thread::spawn(move || {
            while kicked.recv().is_ok() {
                let _ = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
        })
    };
    let mut since_checkpoint = 0usize;
    let started = Instant::now();
    let mut uniq = 0u64;
    for chunk in batches.chunks(group) {
        let tx = conn.transaction()?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO events (tenant, uuid, run_id, counter, kind, created_ms, received_ms, body, request_id, trace_id, span_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (tenant, uuid) DO NOTHING",
            )?;
            let mut run = tx.prepare_cached(
                "INSERT INTO runs (tenant, run_id, playbook, controller, first_ms, last_ms, events, finished)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (tenant, run_id) DO UPDATE SET
                    playbook = coalesce(runs.playbook, excluded.playbook),
                    controller = coalesce(runs.controller, excluded.controller),
                    first_ms = min(runs.first_ms, excluded.first_ms),
                    last_ms = max(runs.last_ms, excluded.last_ms),
                    events = runs.events + excluded.events,
                    finished = max(runs.finished, excluded.finished)",
            )?;
            let now = herald::journal::now_ms();
            for (run_id, rows) in chunk {
                for (_, counter, body) in rows {
                    uniq += 1;
                    ins.execute(rusqlite::params![
                        "bench",
                        format!("{tag}-{uniq:010}"),
                        run_id,
                        counter,
                        "runner_on_ok",
                        1_763_726_400_123i64,
                        now,
                        body,
                        Option::<&str>::None,
                        Option::<&str>::None,
                        Option::<&str>::None
                    ])?;
                }
                run.execute(rusqlite::params![
                    "bench",
                    run_id,
                    "site.yml",
                    "ctl01.example.com",
                    1_763_726_400_123i64,
                    1_763_726_400_123i64,
                    rows.len() as i64,
                    false
                ])?;
            }
        }
        tx.commit()?;
        since_checkpoint += chunk
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|r| r.2.len()))
            .sum::<usize>();
        if since_checkpoint >= 2 << 20 {
            since_checkpoint = 0;
            let _ = kick.try_send(());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    drop(kick);
    let _ = checkpointer.join();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(
        json!({"events": n, "seconds": secs, "events_per_s": n as f64 / secs, "batch": batch, "group": group}),
    )
}

/// The bare PostgreSQL loop Herald's PostgreSQL ingest is compared with: the
/// same batches into the journal's own tables (created by the journal's
/// migrations in a fresh database `--url`), the same statements (events in
/// one `unnest` insert per batch, one run upsert), one transaction per batch,
/// default durability (`synchronous_commit = on`), `--concurrency` clients.
async fn pg_bare(a: &Args) -> Res<Value> {
    let url = a.get("url", "postgres://herald@127.0.0.1:5432/bench");
    let n = a.num("events", 50_000);
    let batch = a.num("batch", 500).max(1) as usize;
    let clients = a.num("concurrency", 4).max(1) as usize;
    let size = a.num("event-bytes", 0) as usize;
    // `--tenant-lock 1`: take a per-tenant advisory lock first in each
    // transaction, as Herald's writer did while event ids came from a
    // sequence (a tenant's events then committed in id order); ids from
    // transaction ids made it unnecessary. Kept to show what it cost.
    let tenant_lock = a.num("tenant-lock", 0) == 1;
    let tag = unique_tag();
    // The journal's schema, as herald migrate makes it.
    let options = herald::journal::PgOptions {
        url: url.clone(),
        pool_size: 2,
        statement_timeout: Duration::from_secs(60),
        tls_ca_certs: Vec::new(),
    };
    let o = options.clone();
    tokio::task::spawn_blocking(move || herald::journal::postgres::migrate(&o)).await??;
    let batches = batch_lines(n, batch, size, &tag)?;
    let queue = std::sync::Arc::new(std::sync::Mutex::new(batches));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..clients {
        let (url, queue, tag) = (url.clone(), queue.clone(), tag.clone());
        tasks.push(tokio::spawn(async move {
            let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let ins = client
                .prepare(
                    "INSERT INTO events (id, tenant, uuid, run_id, counter, kind, created_ms, received_ms, body)
                     SELECT (pg_current_xact_id()::text::bigint << 20) + u.ord,
                            'bench', u.uuid, u.run_id, u.counter, 'runner_on_ok', 1763726400123, $1, u.body
                     FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[]) WITH ORDINALITY
                          AS u (uuid, run_id, counter, body, ord)
                     ORDER BY u.ord ON CONFLICT (tenant, uuid) DO NOTHING",
                )
                .await?;
            let run = client
                .prepare(
                    "INSERT INTO runs (tenant, run_id, playbook, controller, first_ms, last_ms, events, finished)
                     VALUES ('bench', $1, 'site.yml', 'ctl01.example.com', 1763726400123, 1763726400123, $2, false)
                     ON CONFLICT (tenant, run_id) DO UPDATE SET events = runs.events + excluded.events,
                        last_ms = greatest(runs.last_ms, excluded.last_ms)",
                )
                .await?;
            let (mut i, mut inserted) = (0u64, 0u64);
            loop {
                let next = queue.lock().map_err(|_| "poisoned")?.pop();
                let Some((run_id, lines)) = next else { break };
                let uuids: Vec<String> = (0..lines.len())
                    .map(|_| {
                        i += 1;
                        // Unique per client: two clients on one thread once
                        // made the same uuids, and ON CONFLICT skipped half.
                        format!("{tag}-{k}-{i:010}")
                    })
                    .collect();
                let runs: Vec<&str> = lines.iter().map(|_| run_id.as_str()).collect();
                let counters: Vec<i64> = (0..lines.len() as i64).collect();
                let bodies: Vec<String> = lines
                    .into_iter()
                    .map(|l| String::from_utf8(l).unwrap_or_default())
                    .collect();
                let tx = client.transaction().await?;
                if tenant_lock {
                    tx.execute("SELECT pg_advisory_xact_lock(18501, hashtext('bench'))", &[])
                    .await?;
                }
                inserted += tx
                    .execute(&ins, &[&herald::journal::now_ms(), &uuids, &runs, &counters, &bodies])
                    .await?;
                tx.execute(&run, &[&run_id, &(runs.len() as i64)]).await?;
                tx.commit().await?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(inserted)
        }));
    }
    let mut inserted = 0;
    for t in tasks {
        inserted += t.await??;
    }
    // A loop that skipped rows would measure less work than Herald does.
    if inserted != n {
        return Err(format!("pg-bare inserted {inserted} of {n} events").into());
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(
        json!({"events": n, "seconds": secs, "events_per_s": n as f64 / secs, "batch": batch,
              "concurrency": clients}),
    )
}

// -------------------------------------------------------------- dispatch --

struct Loaded {
    runtime: Runtime,
    config: Config,
    component: LoadedComponent,
    name: String,
}

fn load_plugin(dir: &Path, name: &str, plugin_toml: &str) -> Res<Loaded> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("herald.toml");
    let text = format!(
        "[storage]\ndata_dir = {dir:?}\n[tenants.bench]\ntokens = [{:?}]\n{plugin_toml}",
        token_hash("bench"),
        dir = dir.display().to_string()
    );
    std::fs::write(&path, &text)?;
    let config = Config::parse(&path, &text).map_err(|e| e.to_string())?;
    let runtime = Runtime::new(Some(dir.join("cache")))?;
    let component = runtime.load(&config.plugins[name].component)?;
    Ok(Loaded {
        runtime,
        config,
        component,
        name: name.to_string(),
    })
}

impl Loaded {
    fn instance(&self, journal: &Journal) -> Res<PluginInstance> {
        let spec = InstanceSpec::from_config(&self.name, &self.config.plugins[&self.name])?;
        Ok(PluginInstance::new(
            &self.runtime,
            self.component.clone(),
            Arc::new(spec),
            herald::plugin_services::services(
                &(Arc::new(journal.clone()) as herald::journal::SharedStore),
                &Metrics::new(),
            ),
        ))
    }

    /// Raw calls: `handle` on one live instance with one event prepared for
    /// its contract version (0.1.0's record, 0.2.0's text), and `deliver` per journaled event
    /// (what a worker does per event: the 0.1.0 adapter converts the whole
    /// record, a 0.2.0 plugin reads what it needs).
    async fn raw(&self, journal: &Journal, bodies: &[String]) -> Res<(f64, f64)> {
        let mut inst = self.instance(journal)?;
        inst.ensure_live().await.map_err(|(e, _)| e.to_string())?;
        let ev = inst.prepare(&bodies[0])?;
        let t0 = Instant::now();
        for _ in 0..bodies.len() {
            match inst.handle(&ev, 1).await.result {
                Ok(Outcome::Ok) => {}
                other => return Err(format!("raw call: {other:?}").into()),
            }
        }
        let raw = bodies.len() as f64 / t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        for b in bodies {
            match inst.deliver(b, 1).await.result {
                Ok(Outcome::Ok) => {}
                other => return Err(format!("raw call: {other:?}").into()),
            }
        }
        let converted = bodies.len() as f64 / t0.elapsed().as_secs_f64();
        Ok((raw, converted))
    }

    /// The dispatcher draining a backlog: the instance's cursor opened, N
    /// events committed, then the worker started; time until the journal
    /// shows every delivery done (the cursor at the last event, nothing queued).
    async fn drain(&self, dir: &Path, events: &[WireEvent]) -> Res<f64> {
        let db = dir.join(format!("drain-{}.db", unique_tag()));
        let journal = Journal::open(&db)?;
        let cfg = &self.config.plugins[&self.name];
        journal.open_cursor(&self.name, "bench", &cfg.routes)?;
        for chunk in events.chunks(500) {
            journal.commit_batch("bench", chunk)?;
        }
        let spec = WorkerSpec {
            instance: self.instance(&journal)?,
            config: cfg.clone(),
            component_sha256: self.component.sha256.clone(),
        };
        let n = events.len() as u64;
        let t0 = Instant::now();
        let dispatcher = Dispatcher::start(vec![spec], Arc::new(journal.clone()));
        let deadline = t0 + Duration::from_secs(600);
        // Watch through a connection of our own (a WAL reader never blocks the
        // worker's writes, and the journal's own connections stay uncontended),
        // asking only whether one delivery is still pending: a count would
        // walk the whole backlog 50 times a second, on the cores being measured.
        let watch =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let left: bool = watch.query_row(
                "SELECT (SELECT position FROM cursors WHERE plugin = ?1) < (SELECT max(id) FROM events)
                     OR EXISTS (SELECT 1 FROM deliveries INDEXED BY deliveries_pending
                                WHERE plugin = ?1 AND state = 'pending')",
                [&self.name],
                |r| r.get(0),
            )?;
            if !left {
                break;
            }
            if Instant::now() > deadline {
                let (pending, _, _) = journal.delivery_counts(&self.name)?;
                return Err(format!("{pending} of {n} still pending after 600 s").into());
            }
        }
        let rate = n as f64 / t0.elapsed().as_secs_f64();
        let (_, done, dead) = journal.delivery_counts(&self.name)?;
        if dead > 0 || done < n {
            return Err(format!("{done} done and {dead} dead-lettered of {n}").into());
        }
        drop(watch);
        drop(dispatcher);
        drop(journal);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        Ok(rate)
    }
}

fn bodies_of(events: &[WireEvent]) -> Vec<String> {
    events.iter().map(|e| e.body().to_string()).collect()
}

async fn dispatch(a: &Args) -> Res<Value> {
    let dir = PathBuf::from(a.get("dir", "/tmp/herald-bench-dispatch"));
    let plugin = a.get(
        "plugin",
        "bench/target/wasm32-wasip2/release/herald_noop.wasm",
    );
    let n = a.num("events", 20_000);
    let rounds = a.num("rounds", 3);
    let loaded = load_plugin(
        &dir,
        "noop",
        &format!(
            "[plugins.noop]\ntenant = \"bench\"\ncomponent = {:?}\n",
            std::fs::canonicalize(&plugin)?.display().to_string()
        ),
    )?;
    let events = wire_events(n, &unique_tag(), 16)?;
    let bodies = bodies_of(&events);
    let scratch = Journal::open(&dir.join("scratch.db"))?;
    let (mut raw, mut conv, mut disp) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (r, c) = loaded.raw(&scratch, &bodies).await?;
        raw.push(r);
        conv.push(c);
        disp.push(loaded.drain(&dir, &events).await?);
    }
    Ok(
        json!({"events": n, "raw_calls_per_s": raw, "convert_and_call_per_s": conv, "dispatcher_per_s": disp}),
    )
}

// --------------------------------------------------------------- webhook --

#[derive(Default)]
pub struct SinkState {
    pub count: AtomicU64,
    record: bool,
    /// How long each request takes to answer (a receiver's own work or its
    /// network distance); none by default.
    delay: Duration,
    pub seen: Mutex<HashMap<String, Instant>>,
}

async fn sink_handler(
    axum::extract::State(s): axum::extract::State<Arc<SinkState>>,
    headers: http::HeaderMap,
    _body: Bytes,
) -> &'static str {
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    let now = Instant::now();
    s.count.fetch_add(1, Ordering::Relaxed);
    if s.record {
        if let Some(id) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
            s.seen.lock().unwrap().entry(id.to_string()).or_insert(now);
        }
    }
    "ok"
}

/// An HTTP sink on 127.0.0.1 counting requests (and, with `record`, the
/// first receipt of each `Idempotency-Key`).
pub async fn start_sink(port: u16, record: bool) -> Res<(Arc<SinkState>, u16)> {
    start_sink_delayed(port, record, Duration::ZERO).await
}

/// [`start_sink`] whose every answer waits `delay` first.
pub async fn start_sink_delayed(
    port: u16,
    record: bool,
    delay: Duration,
) -> Res<(Arc<SinkState>, u16)> {
    let state = Arc::new(SinkState {
        record,
        delay,
        ..Default::default()
    });
    let app = axum::Router::new()
        .fallback(sink_handler)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((state, port))
}

async fn sink_forever(a: &Args) -> Res<Value> {
    let (state, port) = start_sink(a.num("port", 0) as u16, false).await?;
    let udp = a.num("udp-port", 0) as u16;
    if udp != 0 {
        let sock = tokio::net::UdpSocket::bind(("127.0.0.1", udp)).await?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while sock.recv_from(&mut buf).await.is_ok() {}
        });
    }
    eprintln!("sink listening on 127.0.0.1:{port}");
    let seconds = a.num("seconds", 3600);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    Ok(json!({"received": state.count.load(Ordering::Relaxed)}))
}

/// Webhook deliveries through wasi:http to a local sink (raw calls and the
/// dispatcher) beside a native hyper client (keep-alive) posting the same
/// body and headers, all sequential (one worker per instance is sequential).
async fn webhook(a: &Args) -> Res<Value> {
    let dir = PathBuf::from(a.get("dir", "/tmp/herald-bench-webhook"));
    let plugin = a.get("plugin", "build/plugins/webhook.wasm");
    let n = a.num("events", 2_000);
    let rounds = a.num("rounds", 3);
    let (sink, port) = start_sink(0, false).await?;
    let url = format!("http://127.0.0.1:{port}/events");
    let loaded = load_plugin(
        &dir,
        "hook",
        &format!(
            "[plugins.hook]\ntenant = \"bench\"\ncomponent = {:?}\nallow_http = [\"http://127.0.0.1:{port}\"]\n[plugins.hook.config]\nurl = {url:?}\n",
            std::fs::canonicalize(&plugin)?.display().to_string()
        ),
    )?;
    let events = wire_events(n, &unique_tag(), 16)?;
    let bodies = bodies_of(&events);
    let scratch = Journal::open(&dir.join("scratch.db"))?;
    let c = client();
    let (mut raw, mut disp, mut native) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let before = sink.count.load(Ordering::Relaxed);
        let (r, _) = loaded.raw(&scratch, &bodies).await?;
        raw.push(r);
        disp.push(loaded.drain(&dir, &events).await?);
        let t0 = Instant::now();
        for (e, b) in events.iter().zip(&bodies) {
            let req = http::Request::post(&url)
                .header("content-type", "application/json")
                .header("user-agent", "herald-webhook/0.1")
                .header("x-herald-event-id", &e.uuid)
                .header("idempotency-key", &e.uuid)
                .header("x-herald-event-kind", e.kind.as_str())
                .header("x-herald-attempt", "1")
                .body(Full::new(Bytes::from(b.clone())))?;
            let resp = c.request(req).await?;
            if !resp.status().is_success() {
                return Err(format!("native post: HTTP {}", resp.status()).into());
            }
            let _ = resp.into_body().collect().await?;
        }
        native.push(n as f64 / t0.elapsed().as_secs_f64());
        let got = sink.count.load(Ordering::Relaxed) - before;
        // raw calls (n) + dispatcher (n) + native (n)
        if got < 3 * n {
            return Err(format!("the sink got {got} requests, expected {}", 3 * n).into());
        }
    }
    Ok(
        json!({"events": n, "raw_calls_per_s": raw, "dispatcher_per_s": disp, "native_per_s": native}),
    )
}

// --------------------------------------------------------------- latency --

/// A steady event rate into a running host whose webhook instance posts to
/// this process's sink; latency = sink receipt - the ingest answer (202) of
/// the request that carried the event (and - the request's start).
async fn latency(a: &Args) -> Res<Value> {
    let url = a.get("url", "http://127.0.0.1:8765");
    let token = a.get("tokens", "bench");
    let rate = a.float("rate", 1000.0);
    let seconds = a.float("seconds", 10.0);
    let batch = a.num("batch", 1).max(1);
    let gzip = a.num("gzip", 0) == 1;
    let (sink, _) = start_sink(a.num("sink-port", 0) as u16, true).await?;
    let tag = unique_tag();
    let total = (rate * seconds) as u64;
    let requests = total.div_ceil(batch);
    let mut bodies = Vec::new();
    let mut ids = Vec::new();
    for k in 0..requests {
        let mut lines = Vec::new();
        let mut these = Vec::new();
        for j in 0..batch {
            let i = k * batch + j;
            let v = event_value(&format!("{tag}-run{}", i / 1000), i, &tag);
            these.push(v["uuid"].as_str().unwrap_or_default().to_string());
            lines.push(serde_json::to_vec(&v)?);
        }
        bodies.push(send::Batch::new(&lines, gzip)?);
        ids.push(these);
    }
    let acks: Arc<Mutex<HashMap<String, (Instant, Instant)>>> = Default::default();
    let c = client();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(batch as f64 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let t_start = Instant::now();
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (body, these) in bodies.into_iter().zip(ids) {
        tick.tick().await;
        let (c, url, token, acks, failures) = (
            c.clone(),
            url.clone(),
            token.clone(),
            acks.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            match send::post(&c, &url, &token, &body).await {
                Ok(202) => {
                    let at = Instant::now();
                    let mut m = acks.lock().unwrap();
                    for id in these {
                        m.insert(id, (sent, at));
                    }
                }
                _ => {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let send_secs = t_start.elapsed().as_secs_f64();
    for t in tasks {
        t.await?;
    }
    let wait_until = Instant::now() + Duration::from_secs(30);
    while (sink.seen.lock().unwrap().len() as u64) < total && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = sink.seen.lock().unwrap();
    let acks = acks.lock().unwrap();
    let (mut from_ack, mut from_send) = (Vec::new(), Vec::new());
    for (id, got) in seen.iter() {
        if let Some((sent, ack)) = acks.get(id) {
            let signed = if *got >= *ack {
                got.duration_since(*ack).as_secs_f64()
            } else {
                -(ack.duration_since(*got).as_secs_f64())
            };
            from_ack.push(signed * 1e3);
            from_send.push(got.duration_since(*sent).as_secs_f64() * 1e3);
        }
    }
    Ok(json!({
        "events": total,
        "acked": acks.len(),
        "received": seen.len(),
        "failed_requests": failures.load(Ordering::Relaxed),
        "offered_rate": rate,
        "achieved_rate": total as f64 / send_secs,
        "batch": batch,
        "gzip": gzip,
        "ack_to_sink_ms": summary(from_ack),
        "send_to_sink_ms": summary(from_send),
    }))
}
