//! The journal on PostgreSQL: what a team runs when one host is not enough
//! or must survive the loss of a machine. The same traits, the same delivery
//! model (a cursor per plugin instance over the event log, a queue of the
//! exceptions) and the same answers as the SQLite backend.
//!
//! - [`schema`]: the versioned migrations, run under an advisory lock so
//!   replicas starting together do not race;
//! - `write`: the group-commit writer (ingest batches and delivery outcomes
//!   in one transaction per group) and its SQL;
//! - `delivery`: cursors, pending reads, replays, dead letters;
//! - `tail`, `streams`: what a replica keeps so that its workers' reads
//!   cost the database little (the recent log, shared; which streams'
//!   queues are empty);
//! - `query`: the reads behind the query API;
//! - `admin`: plugin state, retention, size and the readiness probe.
//!
//! The traits are synchronous (SQLite blocks): each call runs its future on
//! the backend's own small tokio runtime, where the pool's connections live,
//! and blocks the calling thread until it is done. Callers reach the journal
//! from tokio's blocking pool ([`crate::blocking`]), as with SQLite.
//!
//! **Commit order.** A worker reads its tenant's events past its cursor by
//! id, so no event may commit below an id a cursor has passed. Ids from a
//! sequence are handed out when transactions *start*, not when they commit;
//! instead an event's id is its transaction's id shifted left 20 bits plus
//! its place in the transaction (`write::IdPlaces`), and every read of the
//! log stops below `herald_log_bound()`: its snapshot's oldest running
//! transaction, shifted alike. Below it every transaction has committed or
//! rolled back, so what a read returns is final, and anything committed
//! later has a larger id. Ingest transactions need no lock, and a replica
//! runs [`INGEST_WRITERS`] of them side by side (one commits while another
//! writes). The cost: a write transaction left open anywhere in the
//! database cluster holds delivery back until it ends (a read that finds
//! committed events above its bound tries again shortly, `delivery`).

use crate::{CommitNotice, JournalError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

mod admin;
mod delivery;
mod explore;
mod lease;
mod notify;
mod query;
pub mod schema;
mod streams;
mod tail;
pub mod tls;
mod write;

/// How to reach the database.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/db` or libpq's `key=value` form.
    pub url: String,
    /// Most connections this replica opens.
    pub pool_size: usize,
    /// Longest a statement may run before PostgreSQL cancels it.
    pub statement_timeout: Duration,
    /// CA certificates (DER) trusted for the server's TLS certificate besides
    /// the public web roots (`[storage] tls_ca_file`); see [`tls`].
    pub tls_ca_certs: Vec<Vec<u8>>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .field("tls_ca_certs", &self.tls_ca_certs.len())
            .finish()
    }
}

/// The URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    // postgres://user:secret@host/db → postgres://user:***@host/db
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((auth, tail)) = rest.rsplit_once('@') {
            let user = auth.split(':').next().unwrap_or("");
            let masked = if auth.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            return format!("{scheme}://{masked}@{tail}");
        }
        return url.to_string();
    }
    // key=value form: mask password=...
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***".to_string()
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A failure of the PostgreSQL backend, kept as a [`JournalError`]'s source.
#[derive(Debug, Error)]
pub enum PgError {
    /// With its causes in the message (tokio-postgres's own says only
    /// "db error" or "error performing TLS handshake").
    #[error("PostgreSQL: {}", with_causes(.0))]
    Db(tokio_postgres::Error),
    #[error("PostgreSQL connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{0}")]
    Other(String),
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgError::Db(e)
    }
}

/// `e` and each of its sources, joined by `: `.
fn with_causes(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl From<PgError> for JournalError {
    fn from(e: PgError) -> Self {
        JournalError::Backend(Box::new(e))
    }
}

impl From<serde_json::Error> for PgError {
    fn from(e: serde_json::Error) -> Self {
        PgError::Other(format!("JSON: {e}"))
    }
}

/// How many commit notices a slow subscriber may fall behind before it is
/// told it lagged.
const COMMIT_NOTICES: usize = 1024;

/// Bytes of recent events a replica keeps for its delivery streams to share
/// (`tail`): a few full reads of every instance's batch.
const TAIL_BYTES: usize = 32 << 20;

/// Ingest writers a replica runs, each with its own connection: while one
/// transaction waits for its WAL flush, the next groups are written by the
/// others (see "Commit order" for why they need no lock). Four took 1 to 1.3
/// times what two did with one instance (bench/analysis.md, issue 25).
pub const INGEST_WRITERS: usize = 4;

/// Handle to a PostgreSQL journal; cheap to clone.
#[derive(Clone)]
pub struct PgJournal {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Where the pool's connections and the writer live; `None` only while
    /// dropping.
    rt: Option<tokio::runtime::Runtime>,
    writer: tokio::sync::mpsc::UnboundedSender<write::Write>,
    /// The writer of delivery outcomes (see [`write::run_writer`]).
    outcomes: tokio::sync::mpsc::UnboundedSender<write::Write>,
    commits: tokio::sync::broadcast::Sender<CommitNotice>,
    /// The writer's last failed commit, until a commit of events succeeds:
    /// `/ready` answers what ingest answers.
    write_failure: Arc<Mutex<Option<String>>>,
    /// Numbers the reads of pending deliveries.
    reads: std::sync::atomic::AtomicU64,
    /// Recent events per tenant, read once for all the streams reading them.
    tail: tail::Tail,
    /// The streams whose queue is known to be empty: their reads skip it.
    streams: Arc<streams::Streams>,
    /// The URL without its password.
    label: String,
    /// Tenants whose last read found events held back above the log's
    /// bound, with their streak (see `PgJournal::note_held_back`).
    held: Arc<Mutex<std::collections::HashMap<String, Held>>>,
}

/// A tenant whose reads find events held back.
struct Held {
    /// Reads in a row that found them.
    streak: u32,
    /// A wake-up is on its way.
    waking: bool,
    /// When the first of those reads was (epoch ms).
    since_ms: i64,
}

/// How long events must stay held back before `/ready` reports it: a
/// commit is held for a moment whenever one with a smaller id is still
/// writing.
const HELD_REPORTED_MS: i64 = 1000;

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends the listener (it checks) and every pooled connection.
        self.pool.close();
        // Dropping a runtime blocks; in an async context that panics.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PgJournal {
    /// Connects to the database, brings its schema up to date (see
    /// [`schema::migrate`]) and starts the writer.
    pub fn open(options: &PgOptions) -> Result<PgJournal, JournalError> {
        let label = redact_url(&options.url);
        let open_error = |e: String| JournalError::Open {
            path: label.clone().into(),
            source: e.into(),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("herald-pg")
            .enable_all()
            .build()
            .map_err(|e| open_error(e.to_string()))?;
        let pool = pool(options, role::SHARED, None).map_err(|e| open_error(e.to_string()))?;
        {
            let _entered = rt.enter();
            futures_executor::block_on(async {
                let mut c = pool.get().await?;
                schema::migrate(&mut c).await
            })
            .map_err(|e| open_error(e.to_string()))?;
        }
        let (writer, rx) = tokio::sync::mpsc::unbounded_channel();
        let commits = tokio::sync::broadcast::channel(COMMIT_NOTICES).0;
        let write_failure = Arc::new(Mutex::new(None));
        // The writers' own connections: ingest never waits for a connection
        // behind the workers' reads (60 instances read after each commit).
        let mut write_options = options.clone();
        write_options.pool_size = 1;
        let streams = Arc::new(streams::Streams::default());
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..INGEST_WRITERS {
            let write_pool = self::pool(&write_options, role::INGEST, None)
                .map_err(|e| open_error(e.to_string()))?;
            rt.spawn(write::run_writer(
                write_pool,
                rx.clone(),
                commits.clone(),
                Some(write_failure.clone()),
                streams.clone(),
                Duration::ZERO,
            ));
        }
        // Outcomes on a writer (and connection) of their own: 60 workers'
        // batches commit one after another, and ingest must not queue
        // behind them. Its commits do not wait for the WAL flush (see
        // `write::run_writer`).
        let (outcomes, rx) = tokio::sync::mpsc::unbounded_channel();
        let outcome_pool = self::pool(
            &write_options,
            role::OUTCOMES,
            Some("-c synchronous_commit=off"),
        )
        .map_err(|e| open_error(e.to_string()))?;
        rt.spawn(write::run_writer(
            outcome_pool,
            Arc::new(tokio::sync::Mutex::new(rx)),
            commits.clone(),
            None,
            streams.clone(),
            OUTCOME_GATHER,
        ));
        let (listen_config, listen_tls) =
            pg_config(options, role::LISTEN).map_err(|e| open_error(e.to_string()))?;
        rt.spawn(notify::listen(
            listen_config,
            listen_tls,
            commits.clone(),
            pool.clone(),
            streams.clone(),
        ));
        Ok(PgJournal {
            inner: Arc::new(Inner {
                pool,
                rt: Some(rt),
                writer,
                outcomes,
                commits,
                write_failure,
                reads: Default::default(),
                tail: tail::Tail::new(TAIL_BYTES),
                held: Arc::default(),
                streams,
                label,
            }),
        })
    }

    /// The database, as messages name it (no password).
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Runs `f` to completion on the backend's runtime, blocking the caller.
    fn block<F: Future>(&self, f: F) -> F::Output {
        let rt = self
            .inner
            .rt
            .as_ref()
            .expect("the runtime lives as long as the journal");
        // Entered so that connections the pool opens meanwhile spawn there.
        let _entered = rt.enter();
        // Unconstrained: called from a tokio worker (a plugin's `state` call
        // on the delivery runtime) whose task has used up its cooperative
        // budget, tokio's pool semaphore would defer its wake-up to the
        // worker's next yield, which this blocked thread never reaches.
        futures_executor::block_on(tokio::task::unconstrained(f))
    }

    /// A pooled connection.
    async fn conn(&self) -> Result<deadpool_postgres::Object, PgError> {
        Ok(self.inner.pool.get().await?)
    }

    /// After a read of `tenant`'s log: if it found committed events held
    /// back above its bound (`held`), wakes the tenant's workers here again
    /// after 2 ms, doubling while it lasts up to half a second. What held
    /// them is a transaction with a smaller id, which may be no ingest (an
    /// outcome write, a lease, another application's) and so end without a
    /// notice; the reads that follow see its events once it ends.
    fn note_held_back(&self, tenant: &str, held: bool) {
        let mut tenants = self.inner.held.lock().unwrap_or_else(|p| p.into_inner());
        if !held {
            if tenants.get(tenant).is_some_and(|h| !h.waking) {
                tenants.remove(tenant);
            }
            return;
        }
        let h = tenants.entry(tenant.to_string()).or_insert_with(|| Held {
            streak: 0,
            waking: false,
            since_ms: crate::now_ms(),
        });
        if h.waking {
            return;
        }
        h.waking = true;
        let delay = Duration::from_millis(2 << h.streak.min(8));
        h.streak += 1;
        if h.streak == 100 {
            tracing::warn!(
                tenant,
                "journal: a transaction left open holds this tenant's new events back from delivery"
            );
        }
        drop(tenants);
        let (held, commits, tenant) = (
            self.inner.held.clone(),
            self.inner.commits.clone(),
            Arc::<str>::from(tenant),
        );
        let Some(rt) = self.inner.rt.as_ref() else {
            return;
        };
        rt.spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(h) = held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&*tenant)
            {
                h.waking = false;
            }
            let _ = commits.send(CommitNotice::Events { tenant });
        });
    }

    /// See [`crate::Maintenance::held_back`].
    fn tenants_held_back(&self) -> Option<(usize, i64)> {
        let cutoff = crate::now_ms() - HELD_REPORTED_MS;
        let tenants = self.inner.held.lock().unwrap_or_else(|p| p.into_inner());
        let long: Vec<i64> = tenants
            .values()
            .map(|h| h.since_ms)
            .filter(|&since| since <= cutoff)
            .collect();
        long.iter().min().map(|&oldest| (long.len(), oldest))
    }

    /// Tells this replica's workers, and (by NOTIFY) every other replica's,
    /// what a commit made pending.
    fn notice(&self, notice: CommitNotice) {
        if let CommitNotice::Requeued { plugin } = &notice {
            // Before the wake-up: the woken workers read the queue.
            self.inner.streams.forget_instance(plugin);
        }
        let notices = [notice.clone()];
        let sent = self.block(async {
            let c = self.conn().await?;
            notify::send(&c, &notices).await
        });
        if let Err(e) = sent {
            tracing::debug!("journal: NOTIFY failed ({e}); replicas poll");
        }
        let _ = self.inner.commits.send(notice);
    }
}

/// How long the outcome writer waits for more workers' batches before it
/// commits a group. Outcomes are not on any request's path (a worker waits
/// for them only when it has nothing else to do), and with 60 instances one
/// transaction per batch was most of the writer's statements.
const OUTCOME_GATHER: Duration = Duration::from_millis(10);

/// The application names Herald's connections carry in `pg_stat_activity`
/// (and so in the server's logs with `%a`), one per role, so that an
/// operator can tell the ingest commits from the workers' reads.
pub mod role {
    /// The shared pool: the workers' reads, leases, the query API, retention.
    pub const SHARED: &str = "herald";
    /// The writer that commits ingested batches.
    pub const INGEST: &str = "herald-ingest";
    /// The writer that commits delivery outcomes and cursor moves.
    pub const OUTCOMES: &str = "herald-outcomes";
    /// The connection that LISTENs for other replicas' commits.
    pub const LISTEN: &str = "herald-listen";
}

/// A pool of `options`' connections: each sets the statement timeout and
/// names itself `role` in `pg_stat_activity`; `settings` (`-c name=value`)
/// are added to the session settings of each.
fn pool(options: &PgOptions, role: &str, settings: Option<&str>) -> Result<Pool, PgError> {
    let (mut config, tls) = pg_config(options, role)?;
    if let Some(settings) = settings {
        let base = config.get_options().unwrap_or_default().to_string();
        config.options(format!("{base} {settings}"));
    }
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()
        .map_err(|e| PgError::Other(e.to_string()))
}

/// The connection settings of `options` (the statement timeout, `role` as
/// the application name) and its TLS connector (`sslmode`, [`tls`]).
fn pg_config(
    options: &PgOptions,
    role: &str,
) -> Result<(tokio_postgres::Config, tls::MakeRustls), PgError> {
    let (mut config, tls) = base_config(options)?;
    config.application_name(role);
    config.options(format!(
        "-c statement_timeout={}",
        options.statement_timeout.as_millis().max(1)
    ));
    Ok((config, tls))
}

/// The URL's settings with `sslmode` applied, the application name and a
/// connect timeout (5 s unless the URL sets one).
fn base_config(options: &PgOptions) -> Result<(tokio_postgres::Config, tls::MakeRustls), PgError> {
    let (url, mode) = tls::split_sslmode(&options.url).map_err(PgError::Other)?;
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| PgError::Other(format!("invalid url: {e}")))?;
    let (ssl_mode, connector) = tls::connector(mode, &options.tls_ca_certs)?;
    config.ssl_mode(ssl_mode);
    config.application_name("herald");
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    Ok((config, connector))
}

/// Runs `f` with one connection of its own on a runtime of its own (the
/// administrative commands: `herald migrate`, `herald check`).
fn with_connection<T>(
    options: &PgOptions,
    f: impl for<'c> FnOnce(
        &'c mut tokio_postgres::Client,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<T, PgError>> + 'c>>,
) -> Result<T, JournalError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| JournalError::Task(e.to_string()))?;
    let result = rt.block_on(async {
        let (config, tls) = base_config(options)?;
        let (mut client, connection) = config.connect(tls).await?;
        let driver = tokio::spawn(connection);
        let out = f(&mut client).await;
        drop(client);
        let _ = driver.await;
        out
    });
    result.map_err(|e| JournalError::Open {
        path: redact_url(&options.url).into(),
        source: Box::new(e),
    })
}

/// Applies the migrations the database has not had yet (`herald migrate`).
pub fn migrate(options: &PgOptions) -> Result<schema::Migrated, JournalError> {
    with_connection(options, |c| Box::pin(schema::migrate(c)))
}

/// Reaches the database and reads its schema version (0: none yet); a
/// schema newer than this build is an error (`herald check`).
pub fn probe(options: &PgOptions) -> Result<i32, JournalError> {
    with_connection(options, |c| {
        Box::pin(async move {
            let exists: bool = c
                .query_one("SELECT to_regclass('herald_migrations') IS NOT NULL", &[])
                .await?
                .get(0);
            let version: i32 = if exists {
                c.query_one(
                    "SELECT coalesce(max(version), 0) FROM herald_migrations",
                    &[],
                )
                .await?
                .get(0)
            } else {
                0
            };
            if version > schema::latest() {
                return Err(PgError::Other(format!(
                    "the database's schema is version {version}, newer than this herald knows ({}); upgrade herald",
                    schema::latest()
                )));
            }
            Ok(version)
        })
    })
}
