//! This host among the replicas that share one journal: its name, its lease
//! TTL, and its share of the plugin instances. The registry hands it to each
//! worker; the workers claim, renew and give up their instance's lease by it.

use std::sync::Arc;
use std::time::Duration;

/// This host among the replicas sharing one journal: the name its leases
/// are held under, and how long a lease lasts unless renewed.
#[derive(Debug, Clone)]
pub struct Replica {
    pub holder: Arc<str>,
    pub lease_ttl: Duration,
    /// What this replica's workers share to divide the instances among the
    /// live replicas.
    pub share: Arc<Share>,
}

/// This replica's part of the instances: it holds about
/// `ceil(instances / live replicas)` leases, and a worker over that share
/// gives its lease up at its next renewal (a replica that joined takes it).
#[derive(Debug, Default)]
pub struct Share {
    /// Leases this replica holds.
    pub held: std::sync::atomic::AtomicUsize,
    /// Replicas alive (from the heartbeats; at least 1).
    pub live: std::sync::atomic::AtomicUsize,
    /// Plugin instances configured (the same on every replica).
    pub instances: std::sync::atomic::AtomicUsize,
}

impl Share {
    /// How many leases this replica should hold at most.
    pub fn fair(&self) -> usize {
        use std::sync::atomic::Ordering::Relaxed;
        let live = self.live.load(Relaxed).max(1);
        self.instances.load(Relaxed).div_ceil(live).max(1)
    }

    /// Takes one held lease off this replica's count if it holds more than
    /// its share; `true`: the caller gives its lease up.
    pub fn shed_one(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let fair = self.fair();
        self.held
            .fetch_update(SeqCst, SeqCst, |h| (h > fair).then(|| h - 1))
            .is_ok()
    }
}

impl Default for Replica {
    /// `<hostname>:<pid>`, 15 s.
    fn default() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "herald".into());
        Replica {
            holder: Arc::from(format!("{host}:{}", std::process::id())),
            lease_ttl: Duration::from_secs(15),
            share: Arc::default(),
        }
    }
}
