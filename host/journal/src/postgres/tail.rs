//! The recent tail of each tenant's event log, read once per replica and
//! shared by the delivery streams that read it.
//!
//! Every plugin instance (and shard) of a tenant reads the same events past
//! its cursor. Without sharing, N instances fetch every event body N times
//! from the primary, and that traffic, not the writes, is what made ingest
//! fall with the instance count. Workers woken by one commit sit at the same
//! position, so one of them reads and the others take its rows.
//!
//! A read of "the tenant's events after `from`, in id order" that returned
//! rows up to id `E` holds *every* event of the tenant in `(from, E]`, now
//! and later: reads stop below the log's bound, under which every
//! transaction has ended (see "Commit order" in `postgres`), events do not
//! change, and retention removes only what every cursor has passed. So a
//! segment can answer any later read starting inside it, up to `E`; the
//! caller then must not look past `E` in its other half (the queue).

use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// One event as a delivery stream reads it from the log.
#[derive(Debug)]
pub(super) struct LogRow {
    pub id: i64,
    pub run_id: String,
    pub received_ms: i64,
    pub body: String,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
}

impl LogRow {
    fn bytes(&self) -> usize {
        64 + self.run_id.len()
            + self.body.len()
            + [&self.request_id, &self.trace_id, &self.span_id]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum::<usize>()
    }
}

/// Every event of a tenant in `(from, last row's id]`.
#[derive(Debug)]
pub(super) struct Segment {
    from: i64,
    rows: Vec<LogRow>,
    bytes: usize,
    /// Order of arrival: the oldest go first past the budget.
    seq: u64,
}

impl Segment {
    /// A read's rows that are not shared.
    pub(super) fn alone(from: i64, rows: Vec<LogRow>) -> Segment {
        Segment {
            from,
            rows,
            bytes: 0,
            seq: 0,
        }
    }

    /// Its rows after `from`, if it holds `from`'s successor.
    pub(super) fn after(&self, from: i64) -> Option<&[LogRow]> {
        let last = self.rows.last()?.id;
        if self.from > from || last <= from {
            return None;
        }
        let start = self.rows.partition_point(|r| r.id <= from);
        Some(&self.rows[start..])
    }
}

/// A read under way: the streams reading from the same place wait for its
/// rows (`None`: it found nothing or failed).
#[derive(Default)]
pub(super) struct Landing {
    rows: OnceLock<Option<Arc<Segment>>>,
    landed: Notify,
}

impl Landing {
    fn set(&self, rows: Option<Arc<Segment>>) {
        let _ = self.rows.set(rows);
        self.landed.notify_waiters();
    }

    async fn wait(&self) -> Option<Arc<Segment>> {
        loop {
            let landed = self.landed.notified();
            tokio::pin!(landed);
            // Registered before the check, so a set in between still wakes it.
            landed.as_mut().enable();
            if let Some(rows) = self.rows.get() {
                return rows.clone();
            }
            landed.await;
        }
    }
}

pub(super) type Flight = Arc<Landing>;

#[derive(Default)]
struct Tenant {
    segments: VecDeque<Arc<Segment>>,
    /// Reads under way, by their `from`.
    flights: HashMap<i64, Flight>,
}

#[derive(Default)]
struct State {
    tenants: HashMap<String, Tenant>,
    bytes: usize,
    seq: u64,
}

/// The tails of every tenant, at most `budget` bytes of events.
pub(super) struct Tail {
    state: Mutex<State>,
    budget: usize,
}

/// What a stream gets for its log half.
pub(super) enum Found {
    /// Rows another read fetched (complete up to the last one's id only),
    /// or `None`: that read found nothing or failed; read for yourself.
    Shared(Option<Arc<Segment>>),
    /// Nothing to share: the caller reads (in its own snapshot) and hands
    /// the rows to [`Tail::fill`] (or gives up with [`Tail::abandon`]) for
    /// the streams waiting on the flight.
    Lead(Flight),
}

impl Tail {
    pub(super) fn new(budget: usize) -> Tail {
        Tail {
            state: Mutex::default(),
            budget,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A segment holding `from`'s successor, or the rows of the read under
    /// way from `from` (once it ends), or the lead of a new read.
    pub(super) async fn find(&self, tenant: &str, from: i64) -> Found {
        let flight = {
            let mut state = self.state();
            let t = state.tenants.entry(tenant.to_string()).or_default();
            if let Some(s) = t.segments.iter().rev().find(|s| s.after(from).is_some()) {
                return Found::Shared(Some(s.clone()));
            }
            match t.flights.get(&from) {
                Some(f) => f.clone(),
                None => {
                    let f = Flight::default();
                    t.flights.insert(from, f.clone());
                    return Found::Lead(f);
                }
            }
        };
        // Set by the lead's fill or abandon; the lead runs to its end (its
        // caller blocks on it), so this wait ends.
        Found::Shared(flight.wait().await)
    }

    /// Hands a lead's rows to the streams waiting for them and keeps them
    /// for later reads; past the budget the oldest segments go.
    pub(super) fn fill(
        &self,
        tenant: &str,
        from: i64,
        flight: &Flight,
        rows: Vec<LogRow>,
    ) -> Arc<Segment> {
        let mut state = self.state();
        state.seq += 1;
        let bytes = rows.iter().map(LogRow::bytes).sum::<usize>() + 64;
        let segment = Arc::new(Segment {
            from,
            rows,
            bytes,
            seq: state.seq,
        });
        let keep = !segment.rows.is_empty();
        flight.set(keep.then(|| segment.clone()));
        let t = state.tenants.entry(tenant.to_string()).or_default();
        t.flights.remove(&from);
        if !keep {
            return segment;
        }
        t.segments.push_back(segment.clone());
        state.bytes += bytes;
        while state.bytes > self.budget {
            let oldest = state
                .tenants
                .values_mut()
                .filter(|t| !t.segments.is_empty())
                .min_by_key(|t| t.segments.front().map_or(u64::MAX, |s| s.seq))
                .and_then(|t| t.segments.pop_front());
            match oldest {
                Some(s) => state.bytes = state.bytes.saturating_sub(s.bytes),
                None => break,
            }
        }
        segment
    }

    /// A lead that could not read: the streams waiting on it read for
    /// themselves.
    pub(super) fn abandon(&self, tenant: &str, from: i64, flight: &Flight) {
        flight.set(None);
        if let Some(t) = self.state().tenants.get_mut(tenant) {
            t.flights.remove(&from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64) -> LogRow {
        LogRow {
            id,
            run_id: "r".into(),
            received_ms: 0,
            body: "x".repeat(100),
            request_id: None,
            trace_id: None,
            span_id: None,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    }

    #[test]
    fn a_segment_answers_reads_that_start_inside_it() {
        rt().block_on(async {
            let tail = Tail::new(1 << 20);
            let Found::Lead(f) = tail.find("t", 10).await else {
                panic!("the first read leads")
            };
            tail.fill("t", 10, &f, vec![row(12), row(15), row(20)]);
            let Found::Shared(Some(s)) = tail.find("t", 15).await else {
                panic!("shared")
            };
            assert_eq!(
                s.after(15)
                    .map(|r| r.iter().map(|r| r.id).collect::<Vec<_>>()),
                Some(vec![20])
            );
            assert_eq!(s.after(11).map(|r| r[0].id), Some(12));
            // Not before its start, not past its end, not another tenant.
            assert!(matches!(tail.find("t", 9).await, Found::Lead(_)));
            assert!(matches!(tail.find("t", 20).await, Found::Lead(_)));
            assert!(matches!(tail.find("u", 10).await, Found::Lead(_)));
        });
    }

    #[test]
    fn readers_of_the_same_place_wait_for_the_lead() {
        rt().block_on(async {
            let tail = Arc::new(Tail::new(1 << 20));
            let Found::Lead(f) = tail.find("t", 0).await else {
                panic!("lead")
            };
            let waiter = {
                let tail = tail.clone();
                tokio::spawn(async move { tail.find("t", 0).await })
            };
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            tail.fill("t", 0, &f, vec![row(1)]);
            match waiter.await.expect("the waiter ends") {
                Found::Shared(Some(s)) => assert_eq!(s.after(0).map(|r| r.len()), Some(1)),
                _ => panic!("the lead's rows"),
            }
            // An abandoned read: the waiters read for themselves.
            let Found::Lead(f) = tail.find("t", 1).await else {
                panic!("lead")
            };
            tail.abandon("t", 1, &f);
            assert!(matches!(tail.find("t", 1).await, Found::Lead(_)));
        });
    }

    #[test]
    fn the_oldest_segments_go_past_the_budget() {
        rt().block_on(async {
            let tail = Tail::new(1000);
            for k in 0..10 {
                let Found::Lead(f) = tail.find("t", k * 10).await else {
                    panic!("lead")
                };
                tail.fill("t", k * 10, &f, vec![row(k * 10 + 1), row(k * 10 + 2)]);
            }
            assert!(tail.state().bytes <= 1000);
            assert!(
                matches!(tail.find("t", 0).await, Found::Lead(_)),
                "the oldest went"
            );
            assert!(
                matches!(tail.find("t", 90).await, Found::Shared(Some(_))),
                "the newest stays"
            );
        });
    }
}
