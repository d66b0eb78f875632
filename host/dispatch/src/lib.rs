//! Delivery (the herald-dispatch crate): one worker per plugin instance takes the instance's pending
//! deliveries from the journal, in journal order, and calls the plugin.
//!
//! A worker reads pending deliveries in batches (reading the next batch
//! ahead while a backlog streams), and hands each attempt's outcome to the
//! journal's writer without waiting for it: outcomes are committed in groups,
//! and until one is, the worker skips that delivery when it reads again.
//!
//! Within a run, events are delivered in order: once an event of a run waits
//! for a retry, the run's later events wait behind it. Other runs go on.
//! Retries use the instance's policy (exponential backoff with full jitter),
//! or exactly the delay the plugin asked for (`Retry-After`); after
//! `max_attempts`, or on a permanent failure, the delivery is dead-lettered.
//!
//! A delivery belongs to its event's tenant: a worker only ever hands its
//! plugin events of the tenant the instance serves. When a reload gave the
//! instance name to another tenant, the earlier tenant's pending deliveries
//! are dead-lettered with a reason saying so (visible to that tenant only).
//!
//! Each worker has a circuit breaker (the instance's `failure_policy`): after
//! `open_after` consecutive failed calls the instance is paused for a while
//! (its deliveries wait in the journal and use no attempts), then one delivery
//! probes it; success closes the breaker, failure pauses it again for twice as
//! long. The state is the `herald_plugin_state` gauge, log lines, and the
//! `state`/`breaker` of `GET /v1/plugins`.
//!
//! When several hosts (replicas) share one journal, a worker delivers only
//! while its replica holds the instance's lease: claimed when free or
//! expired, renewed every third of its TTL, and given up (the worker stops
//! delivering) when it cannot be renewed before the TTL ends on the
//! replica's own clock. Every batch of outcomes carries the lease's token,
//! so a replica that lost its lease (paused, partitioned) cannot write.

//!
//! The crate's modules: [`registry`] (the [`Dispatcher`]: workers by
//! instance, woken by the journal's commit notices), [`worker`] (the
//! delivery loop, retries and dead letters), [`replica`] (this host among
//! the replicas: its lease holder name, TTL and share), [`breaker`] (the circuit
//! breaker), [`plugin`] (what a worker needs of a plugin instance) and
//! [`pacing`] (token buckets: a sink's `rate_limit`, and the quota the
//! server's tenant limit is built from).

pub mod breaker;
pub mod pacing;
pub mod plugin;
pub mod registry;
pub mod replica;
pub mod worker;

pub use breaker::{BreakerStatus, InstanceState, LastFault};
pub use plugin::Plugin;
pub use registry::{Dispatcher, WorkerSpec};
pub use replica::{Replica, Share};
