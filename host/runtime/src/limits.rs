//! The limits of one call and of all instances together: the per-call
//! counters the capabilities and output streams charge (log bytes, HTTP
//! requests, CPU ticks, soft faults), the memory limiter of a store and the
//! host-wide memory budget, and the marker of a CPU deadline.

use crate::output;
use crate::Ident;
use herald_config::Limits;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Epoch tick: the granularity of CPU deadlines.
pub(crate) const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// What one host log record adds around a plugin's line (time, level,
/// target, the instance, tenant and delivery ids of a JSON log line),
/// charged to `limits.max_log_bytes` with every line.
pub const LOG_RECORD_OVERHEAD: u64 = 512;

/// Longest fault message kept (logs, delivery records, `/v1/plugins`).
pub const MAX_FAULT_MESSAGE: usize = 1024;

/// Cuts `s` to at most `max` bytes on a character boundary, saying how much was cut.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} …[{} more bytes]", &s[..cut], s.len() - cut)
}

/// One fault of one call: a rule the plugin broke. Hard faults (trap, panic,
/// timeouts, memory) end the call; soft faults (`denied_http`,
/// `denied_socket`, `http_limit`, `log_limit`) refuse the one operation and
/// let the call finish. Either way the instance is discarded after the call.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub reason: &'static str,
    /// What happened, bounded to [`MAX_FAULT_MESSAGE`].
    pub message: String,
    /// How many times it happened in the call.
    pub times: u32,
}

/// Per-call bookkeeping shared with the capability hooks and output streams.
pub struct CallCounters {
    /// Epoch ticks (10 ms) in which the guest ran during this call.
    pub(crate) cpu_ticks: AtomicU64,
    pub(crate) cpu_limit_ticks: AtomicU64,
    /// Why a memory grow was refused during this call, if one was.
    pub(crate) memory_exceeded: Mutex<Option<String>>,
    pub(crate) log_bytes: AtomicU64,
    pub(crate) max_log_bytes: u64,
    pub(crate) http_requests: AtomicU32,
    pub(crate) max_http_requests: u32,
    pub(crate) faults: Mutex<Vec<Fault>>,
    pub(crate) stdout_line: Mutex<Vec<u8>>,
    pub(crate) stderr_line: Mutex<Vec<u8>>,
    /// A panic message seen on stderr during this call.
    pub(crate) panic: Mutex<Option<String>>,
    pub(crate) panic_lines_left: AtomicU32,
    /// The call's outbound requests as they are recorded.
    pub(crate) requests: Mutex<Vec<crate::capability::http::record::Slot>>,
    /// The delivery the call is for: what the instance logs meanwhile is in
    /// its span.
    delivery: Mutex<Option<Arc<herald_telemetry::DeliveryLog>>>,
}

impl CallCounters {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            cpu_ticks: AtomicU64::new(0),
            cpu_limit_ticks: AtomicU64::new((limits.cpu_ms / EPOCH_TICK.as_millis() as u64).max(1)),
            memory_exceeded: Mutex::new(None),
            log_bytes: AtomicU64::new(0),
            max_log_bytes: limits.max_log_bytes,
            http_requests: AtomicU32::new(0),
            max_http_requests: limits.max_http_requests,
            faults: Mutex::new(Vec::new()),
            stdout_line: Mutex::new(Vec::new()),
            stderr_line: Mutex::new(Vec::new()),
            panic: Mutex::new(None),
            panic_lines_left: AtomicU32::new(0),
            requests: Mutex::new(Vec::new()),
            delivery: Mutex::new(None),
        }
    }

    /// Names the delivery the call is for (`None`: not a delivery).
    pub(crate) fn set_delivery(&self, delivery: Option<Arc<herald_telemetry::DeliveryLog>>) {
        *lock(&self.delivery) = delivery;
    }

    /// Runs `log` (a line or a few) in the span of the delivery the call is
    /// for, if it is for one.
    pub(crate) fn in_delivery<R>(&self, log: impl FnOnce() -> R) -> R {
        let delivery = lock(&self.delivery).clone();
        herald_telemetry::in_delivery(delivery.as_deref(), log)
    }

    pub(crate) fn reset(&self) {
        self.cpu_ticks.store(0, Ordering::Relaxed);
        *lock(&self.memory_exceeded) = None;
        self.log_bytes.store(0, Ordering::Relaxed);
        self.http_requests.store(0, Ordering::Relaxed);
        lock(&self.faults).clear();
        lock(&self.stdout_line).clear();
        lock(&self.stderr_line).clear();
        *lock(&self.panic) = None;
        self.panic_lines_left.store(0, Ordering::Relaxed);
        lock(&self.requests).clear();
    }

    /// Keeps the record of an outbound request (the first
    /// [`MAX_RECORDED`](crate::capability::http::record::MAX_RECORDED) of a call).
    pub(crate) fn record_request(&self, slot: &crate::capability::http::record::Slot) {
        let mut r = lock(&self.requests);
        if r.len() < crate::capability::http::record::MAX_RECORDED {
            r.push(slot.clone());
        }
    }

    /// The call's outbound requests, taken (the next call starts empty).
    pub(crate) fn take_requests(&self) -> Vec<crate::OutboundRequest> {
        std::mem::take(&mut *lock(&self.requests))
            .iter()
            .map(crate::capability::http::record::finish)
            .collect()
    }

    /// Records a soft fault; one entry per reason per call.
    pub(crate) fn soft_fault(&self, reason: &'static str, message: impl FnOnce() -> String) {
        let mut faults = lock(&self.faults);
        if let Some(f) = faults.iter_mut().find(|f| f.reason == reason) {
            f.times += 1;
        } else {
            faults.push(Fault {
                reason,
                message: bounded(&message(), MAX_FAULT_MESSAGE),
                times: 1,
            });
        }
    }

    /// Takes one host log record with `n` bytes of the plugin's text out of
    /// the call's log budget: the text plus [`LOG_RECORD_OVERHEAD`], so that
    /// the budget bounds the host log the output becomes, also for a flood
    /// of tiny lines. False (and a `log_limit` fault) when the budget is spent.
    pub(crate) fn take_log_budget(&self, n: usize) -> bool {
        let cost = n as u64 + LOG_RECORD_OVERHEAD;
        let used = self.log_bytes.fetch_add(cost, Ordering::Relaxed) + cost;
        if used > self.max_log_bytes {
            let max = self.max_log_bytes;
            self.soft_fault("log_limit", || {
                format!("the plugin wrote more than {max} bytes of log in one call (limits.max_log_bytes, each line counting {LOG_RECORD_OVERHEAD} bytes more for its host log record); the rest was dropped")
            });
            return false;
        }
        true
    }

    /// Counts one outbound HTTP request; false (and an `http_limit` fault) beyond the limit.
    pub(crate) fn take_http_request(&self, destination: &str) -> bool {
        let n = self.http_requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.max_http_requests {
            let max = self.max_http_requests;
            self.soft_fault("http_limit", || {
                format!("more than {max} outbound HTTP requests in one call (limits.max_http_requests); refused the request to {destination} and the ones after it")
            });
            return false;
        }
        true
    }

    pub(crate) fn line_buffer(&self, stream: output::Stream) -> std::sync::MutexGuard<'_, Vec<u8>> {
        match stream {
            output::Stream::Stdout => lock(&self.stdout_line),
            output::Stream::Stderr => lock(&self.stderr_line),
        }
    }

    /// Keeps Rust's panic report (`... panicked at file:line:col:` and the
    /// message lines after it) for the fault message.
    pub(crate) fn note_stderr(&self, line: &str) {
        if line.contains(" panicked at ") {
            *lock(&self.panic) = Some(bounded(line, MAX_FAULT_MESSAGE));
            self.panic_lines_left.store(3, Ordering::Relaxed);
        } else if self.panic_lines_left.load(Ordering::Relaxed) > 0 {
            self.panic_lines_left.fetch_sub(1, Ordering::Relaxed);
            if line.starts_with("note: run with `RUST_BACKTRACE") {
                self.panic_lines_left.store(0, Ordering::Relaxed);
                return;
            }
            if let Some(p) = lock(&self.panic).as_mut() {
                if p.len() < MAX_FAULT_MESSAGE {
                    p.push(' ');
                    p.push_str(line);
                    *p = bounded(p, MAX_FAULT_MESSAGE);
                }
            }
        }
    }

    /// Writes out partial output lines at the end of a call.
    pub(crate) fn flush_output(&self, ident: &Ident) {
        for stream in [output::Stream::Stdout, output::Stream::Stderr] {
            let line = std::mem::take(&mut *self.line_buffer(stream));
            if !line.is_empty() {
                output::emit_line(self, ident, stream, &line);
            }
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The linear memory of every plugin instance of the host together, held
/// under `runtime.max_plugin_memory_mib`: each store's limiter takes what a
/// memory grows by and gives it all back when the store is dropped.
#[derive(Debug)]
pub struct MemoryBudget {
    pub(crate) used: AtomicU64,
    pub(crate) ceiling: AtomicU64,
}

impl MemoryBudget {
    pub(crate) fn new(ceiling_mib: u64) -> Self {
        Self {
            used: AtomicU64::new(0),
            ceiling: AtomicU64::new(ceiling_mib << 20),
        }
    }

    /// Takes `n` bytes; on refusal, the bytes in use and the ceiling.
    pub(crate) fn take(&self, n: u64) -> Result<(), (u64, u64)> {
        let ceiling = self.ceiling.load(Ordering::Relaxed);
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= ceiling)
            });
        match taken {
            Ok(used) => {
                herald_telemetry::host()
                    .plugin_memory_bytes
                    .set(i64::try_from(used + n).unwrap_or(i64::MAX));
                Ok(())
            }
            Err(used) => Err((used, ceiling)),
        }
    }

    pub(crate) fn give_back(&self, n: u64) {
        let before = self.used.fetch_sub(n, Ordering::AcqRel);
        herald_telemetry::host()
            .plugin_memory_bytes
            .set(i64::try_from(before.saturating_sub(n)).unwrap_or(i64::MAX));
    }

    /// Bytes of linear memory the live instances hold.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// Caps linear memory (the instance's own limit and the host-wide budget)
/// and remembers that it did, so the fault is named.
pub(crate) struct MemoryLimiter {
    pub(crate) max_bytes: usize,
    pub(crate) counters: Arc<CallCounters>,
    pub(crate) budget: Arc<MemoryBudget>,
    /// What this store took from the budget.
    pub(crate) held: u64,
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            let message = format!(
                "plugin exceeded its memory limit ({} MiB, limits.memory_mib): growing to {desired} bytes was refused",
                self.max_bytes >> 20
            );
            *lock(&self.counters.memory_exceeded) = Some(message.clone());
            return Err(wasmtime::format_err!("{message}"));
        }
        let grow = desired.saturating_sub(current) as u64;
        if let Err((used, ceiling)) = self.budget.take(grow) {
            let message = format!(
                "the host-wide plugin memory ceiling is reached (runtime.max_plugin_memory_mib = {} MiB; plugin instances hold {} MiB): growing this instance by {} KiB was refused",
                ceiling >> 20,
                used >> 20,
                grow >> 10
            );
            *lock(&self.counters.memory_exceeded) = Some(message.clone());
            return Err(wasmtime::format_err!("{message}"));
        }
        self.held += grow;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Marker error for a CPU deadline, so it can be told apart from other traps.
#[derive(Debug)]
pub(crate) struct CpuDeadline;
impl std::fmt::Display for CpuDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CPU time limit reached")
    }
}
impl std::error::Error for CpuDeadline {}
