//! The newest committed events of each tenant, in memory: what the delivery
//! workers read while they keep up with ingest (issue 24). Without it every
//! instance read each commit's events from SQLite again, one read at a time
//! on the delivery connection: the cost of ingest and delivery grew with the
//! number of instances. Now a commit is copied here once and each instance's
//! read of it is a slice of memory; a worker that fell behind what the tail
//! still holds, or whose queue has rows, reads SQLite as before.
//!
//! Updated under the ingest connection's lock right after each commit (the
//! journal has one writer), so per tenant it holds events in id order, and
//! every event of the tenant past `covered_from` is in it.

use crate::{PendingDelivery, ReadPos};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Most bytes of events the tail keeps for one tenant.
const TENANT_BYTES: usize = 4 << 20;
/// Most bytes it keeps for all tenants together.
const TOTAL_BYTES: usize = 16 << 20;

/// One committed event, as a read from the log returns it.
#[derive(Debug, Clone)]
pub(crate) struct TailEvent {
    pub id: i64,
    pub run_id: String,
    pub received_ms: i64,
    pub body: String,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
}

impl TailEvent {
    fn bytes(&self) -> usize {
        64 + self.run_id.len()
            + self.body.len()
            + [&self.request_id, &self.trace_id, &self.span_id]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum::<usize>()
    }
}

#[derive(Default)]
struct TenantTail {
    /// Every event of the tenant with an id above this is in `events`.
    covered_from: i64,
    events: VecDeque<TailEvent>,
    bytes: usize,
}

impl TenantTail {
    fn evict_one(&mut self) -> usize {
        match self.events.pop_front() {
            Some(e) => {
                self.covered_from = e.id;
                let n = e.bytes();
                self.bytes -= n;
                n
            }
            None => 0,
        }
    }
}

/// See the module.
#[derive(Default)]
pub(crate) struct Tail {
    tenants: Mutex<HashMap<String, TenantTail>>,
}

impl Tail {
    /// Takes the events a commit added for `tenant`, in id order. Called
    /// with the ingest connection's lock held, right after the commit.
    pub(crate) fn committed(&self, tenant: &str, events: Vec<TailEvent>) {
        let Some(first) = events.first() else {
            return;
        };
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let first_id = first.id;
        let t = tenants
            .entry(tenant.to_string())
            // One writer: every earlier event of the tenant has a smaller id.
            .or_insert_with(|| TenantTail {
                covered_from: first_id - 1,
                ..Default::default()
            });
        for e in events {
            t.bytes += e.bytes();
            t.events.push_back(e);
        }
        while t.bytes > TENANT_BYTES {
            t.evict_one();
        }
        let mut total: usize = tenants.values().map(|t| t.bytes).sum();
        while total > TOTAL_BYTES {
            let Some(biggest) = tenants.values_mut().max_by_key(|t| t.bytes) else {
                break;
            };
            let freed = biggest.evict_one();
            if freed == 0 {
                break;
            }
            total -= freed;
        }
    }

    /// The tenant's events with an id above `start`, at most `limit`, as
    /// reads from the log; `None` when the tail may not hold all of them.
    pub(crate) fn after(
        &self,
        tenant: &str,
        start: i64,
        limit: usize,
        read: ReadPos,
    ) -> Option<Vec<PendingDelivery>> {
        let tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let t = tenants.get(tenant)?;
        if start < t.covered_from {
            return None;
        }
        let from = t.events.partition_point(|e| e.id <= start);
        Some(
            t.events
                .range(from..)
                .take(limit)
                .map(|e| PendingDelivery {
                    queued: false,
                    read,
                    event_id: e.id,
                    run_id: e.run_id.clone(),
                    attempts: 0,
                    next_at_ms: e.received_ms,
                    first_at_ms: e.received_ms,
                    body: e.body.clone(),
                    request_id: e.request_id.clone(),
                    trace_id: e.trace_id.clone(),
                    span_id: e.span_id.clone(),
                    foreign_tenant: None,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: i64, bytes: usize) -> TailEvent {
        TailEvent {
            id,
            run_id: "r".into(),
            received_ms: id,
            body: "x".repeat(bytes),
            request_id: None,
            trace_id: None,
            span_id: None,
        }
    }

    const READ: ReadPos = ReadPos {
        seq: 0,
        generation: 0,
        row: 0,
    };

    fn ids(v: Option<Vec<PendingDelivery>>) -> Option<Vec<i64>> {
        v.map(|v| v.iter().map(|d| d.event_id).collect())
    }

    #[test]
    fn a_tail_answers_only_what_it_holds_whole() {
        let t = Tail::default();
        assert_eq!(
            ids(t.after("a", 0, 10, READ)),
            None,
            "nothing committed since open"
        );
        t.committed("a", vec![ev(5, 10), ev(7, 10)]);
        t.committed("b", vec![ev(8, 10)]);
        t.committed("a", vec![ev(9, 10)]);
        // Tenant a's events since 4 (the one before its first commit here).
        assert_eq!(ids(t.after("a", 4, 10, READ)), Some(vec![5, 7, 9]));
        assert_eq!(ids(t.after("a", 7, 10, READ)), Some(vec![9]));
        assert_eq!(ids(t.after("a", 5, 1, READ)), Some(vec![7]));
        assert_eq!(ids(t.after("a", 9, 10, READ)), Some(vec![]));
        // Before its first commit here: older events may exist, only SQLite knows.
        assert_eq!(ids(t.after("a", 3, 10, READ)), None);
        assert_eq!(ids(t.after("b", 7, 10, READ)), Some(vec![8]));
    }

    #[test]
    fn eviction_moves_what_the_tail_covers() {
        let t = Tail::default();
        let big = TENANT_BYTES / 3;
        t.committed("a", vec![ev(1, big), ev(2, big), ev(3, big)]);
        t.committed("a", vec![ev(4, big)]);
        // Over the tenant's budget: the oldest went, and reads before it go to SQLite.
        assert_eq!(ids(t.after("a", 0, 10, READ)), None);
        let held = ids(t.after("a", 2, 10, READ)).expect("covered from 2 on");
        assert_eq!(held, vec![3, 4]);
    }
}
