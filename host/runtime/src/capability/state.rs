//! The `state` capability: a small key/value store per plugin instance,
//! kept by the host in the journal across restarts. The runtime sees it only
//! through the journal's plugin-state trait, so any storage backend serves it.
//!
//! Writes are not committed one by one: they wait in the instance's
//! [`PendingState`] until its worker hands them to the journal's writer with
//! the outcomes of the deliveries that made them (one transaction for both).
//! A write per event (a run summary) would otherwise be a transaction per
//! event per instance, each taking the journal's write lock from ingest.

pub use herald_journal::{JournalError as StateError, PluginState, StateWrite};

use herald_journal::stored_text;

use crate::contract::{v0_1, v0_2, v0_3};
use crate::limits::lock;
use crate::HostState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wasmtime::component::{HasSelf, Linker};

/// Longest state key and value.
const MAX_STATE_KEY: usize = 512;
const MAX_STATE_VALUE: usize = 256 * 1024;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    v0_1::state::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_2::state::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_3::state::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

/// Bytes of keys and values an instance keeps of what the journal has
/// (beyond it, that copy starts again empty).
const CLEAN_MAX_BYTES: usize = 256 * 1024;

/// An instance's `state` writes that the journal may not have yet: the
/// newest per key, read before the journal (an instance reads its own
/// writes), until the commit that holds them is confirmed. Shared by the
/// instance's stores (a store replaced after a fault keeps them) and its
/// worker, which takes them for the writer.
///
/// An instance that is its state's only writer (one shard) also keeps a
/// copy of what it read from, or committed to, the journal, so that a
/// plugin reading the same keys on every event (a run summary, a list of
/// finished runs) does not ask the journal each time. Its worker drops that
/// copy whenever it (re)takes the instance's lease: another replica may
/// have written meanwhile.
#[derive(Clone, Default)]
pub struct PendingState(Arc<Mutex<Pending>>);

#[derive(Default)]
struct Pending {
    /// Per key: the value (`None`: removed) and the hand-over that took it
    /// to the writer (0: not handed over yet).
    writes: HashMap<String, (Option<String>, u64)>,
    /// Keys and value bytes not handed over yet.
    unsent: usize,
    unsent_bytes: usize,
    /// The last hand-over's number.
    taken: u64,
    /// What the journal has, as far as this instance knows (see above),
    /// and its bytes.
    clean: HashMap<String, Option<String>>,
    clean_bytes: usize,
    /// Other stores write the same state (shards): keep no copy.
    shared: bool,
}

impl Pending {
    fn keep_clean(&mut self, key: String, value: Option<String>) {
        if self.shared {
            return;
        }
        let bytes = key.len() + value.as_ref().map_or(0, String::len);
        if let Some(old) = self.clean.get(&key) {
            let old = key.len() + old.as_ref().map_or(0, String::len);
            self.clean_bytes = self.clean_bytes.saturating_sub(old);
        }
        if self.clean_bytes + bytes > CLEAN_MAX_BYTES {
            self.clean.clear();
            self.clean_bytes = 0;
            if bytes > CLEAN_MAX_BYTES {
                return;
            }
        }
        self.clean_bytes += bytes;
        self.clean.insert(key, value);
    }
}

impl PendingState {
    /// The instance's newest write of `key` the journal may not have, else
    /// the journal's value as this instance knows it (`Some(None)`:
    /// removed); `None`: ask the journal.
    pub fn read(&self, key: &str) -> Option<Option<String>> {
        let key = stored_text(key);
        let p = lock(&self.0);
        p.writes
            .get(key.as_ref())
            .map(|(v, _)| v.clone())
            .or_else(|| p.clean.get(key.as_ref()).cloned())
    }

    /// Keeps what the journal answered for `key` (see [`Self::read`]).
    pub fn remember(&self, key: &str, value: Option<String>) {
        lock(&self.0).keep_clean(stored_text(key).into_owned(), value);
    }

    /// Another store writes the same state (a shard of the same
    /// instance): keep no copy of the journal's values from now on.
    pub fn share(&self) {
        let mut p = lock(&self.0);
        p.shared = true;
        p.clean.clear();
        p.clean_bytes = 0;
    }

    /// Holds a write of `key` (`None` removes it) for the next hand-over,
    /// as the journal will store it (NUL becomes U+FFFD on every backend),
    /// so the instance reads back now what it will read after a restart.
    pub fn write(&self, key: String, value: Option<String>) {
        let (key, value) = (stored(key), value.map(stored));
        let mut p = lock(&self.0);
        match p.writes.get(&key) {
            // Written again before it was handed over: it replaces that write.
            Some((old, 0)) => {
                let old = key.len() + old.as_ref().map_or(0, String::len);
                p.unsent_bytes = p.unsent_bytes.saturating_sub(old);
            }
            _ => p.unsent += 1,
        }
        p.unsent_bytes += key.len() + value.as_ref().map_or(0, String::len);
        p.writes.insert(key, (value, 0));
    }

    /// Bytes of keys and values written since the last [`Self::take`].
    pub fn unsent_bytes(&self) -> usize {
        lock(&self.0).unsent_bytes
    }

    /// Keys whose writes are not known to be committed.
    pub fn held(&self) -> usize {
        lock(&self.0).writes.len()
    }

    /// Whether anything was written since the last [`Self::take`].
    pub fn has_unsent(&self) -> bool {
        lock(&self.0).unsent > 0
    }

    /// The writes made since the last take, and this hand-over's number for
    /// [`Self::committed`]; `None` if there are none.
    pub fn take(&self) -> Option<(u64, Vec<StateWrite>)> {
        let mut p = lock(&self.0);
        if p.unsent == 0 {
            return None;
        }
        p.taken += 1;
        let n = p.taken;
        let mut out = Vec::with_capacity(p.unsent);
        for (key, (value, taken)) in p.writes.iter_mut() {
            if *taken == 0 {
                *taken = n;
                out.push(StateWrite {
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        }
        p.unsent = 0;
        p.unsent_bytes = 0;
        Some((n, out))
    }

    /// The hand-overs up to `n` are committed: the journal answers for
    /// their keys (unless written again since).
    pub fn committed(&self, n: u64) {
        let mut p = lock(&self.0);
        let done: Vec<String> = p
            .writes
            .iter()
            .filter(|(_, (_, taken))| *taken != 0 && *taken <= n)
            .map(|(k, _)| k.clone())
            .collect();
        for key in done {
            if let Some((value, _)) = p.writes.remove(&key) {
                p.keep_clean(key, value);
            }
        }
    }

    /// Forgets every write not known to be committed (the worker goes back
    /// to the journal's cursor and makes those deliveries again) and the
    /// copy of the journal's values (it may have taken the instance's lease
    /// back from another replica).
    pub fn discard(&self) {
        let mut p = lock(&self.0);
        p.writes.clear();
        p.unsent = 0;
        p.unsent_bytes = 0;
        p.clean.clear();
        p.clean_bytes = 0;
    }
}

/// `s` as the journal stores it ([`stored_text`]), without a copy when it
/// holds no NUL.
fn stored(s: String) -> String {
    match stored_text(&s) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(o) => o,
    }
}

/// A store failure never reaches the plugin (the contract has no error for
/// it): it is logged, and a read answers "absent".
impl HostState {
    fn state_get(&mut self, key: String) -> Option<String> {
        if let Some(pending) = self.pending_state.read(&key) {
            return pending;
        }
        match self
            .state
            .state_get(&self.ident.tenant, &self.ident.plugin, &key)
        {
            Ok(v) => {
                self.pending_state.remember(&key, v.clone());
                v
            }
            Err(e) => {
                self.counters().in_delivery(|| tracing::error!(plugin = %self.ident.plugin, "plugin state read failed: {e}"));
                None
            }
        }
    }

    fn state_set(&mut self, key: String, value: String) {
        if key.len() > MAX_STATE_KEY || value.len() > MAX_STATE_VALUE {
            self.counters().in_delivery(|| tracing::warn!(plugin = %self.ident.plugin, "plugin state write refused: key over {MAX_STATE_KEY} or value over {MAX_STATE_VALUE} bytes"));
            return;
        }
        self.pending_state.write(key, Some(value));
    }

    fn state_delete(&mut self, key: String) {
        self.pending_state.write(key, None);
    }
}

impl v0_1::state::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.state_get(key)
    }
    fn set(&mut self, key: String, value: String) {
        self.state_set(key, value)
    }
    fn delete(&mut self, key: String) {
        self.state_delete(key)
    }
}

impl v0_2::state::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.state_get(key))
    }
    fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        self.state_set(key, value);
        Ok(())
    }
    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.state_delete(key);
        Ok(())
    }
}

impl v0_3::state::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.state_get(key))
    }
    fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        self.state_set(key, value);
        Ok(())
    }
    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.state_delete(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(p: &PendingState) -> (u64, Vec<(String, Option<String>)>) {
        let (n, mut writes) = p.take().expect("writes to take");
        writes.sort_by(|a, b| a.key.cmp(&b.key));
        (n, writes.into_iter().map(|w| (w.key, w.value)).collect())
    }

    #[test]
    fn a_nul_is_held_as_the_journal_stores_it() {
        let p = PendingState::default();
        p.write("nul\0key".into(), Some("v\0".into()));
        // Read back under either spelling of the key, as U+FFFD: what the
        // journal of either backend returns after the hand-over.
        assert_eq!(p.read("nul\0key"), Some(Some("v\u{FFFD}".into())));
        assert_eq!(p.read("nul\u{FFFD}key"), Some(Some("v\u{FFFD}".into())));
        assert_eq!(
            taken(&p).1,
            vec![("nul\u{FFFD}key".to_string(), Some("v\u{FFFD}".to_string()))]
        );
        p.remember("other\0", Some("x".into()));
        assert_eq!(p.read("other\u{FFFD}"), Some(Some("x".into())));
    }

    #[test]
    fn an_instance_reads_its_writes_until_the_journal_has_them() {
        let p = PendingState::default();
        assert_eq!(p.read("k"), None, "nothing held: the journal answers");
        p.write("k".into(), Some("1".into()));
        p.write("k".into(), Some("2".into()));
        p.write("gone".into(), None);
        assert_eq!(p.read("k"), Some(Some("2".into())));
        assert_eq!(
            p.read("gone"),
            Some(None),
            "a removal hides the journal's value"
        );
        assert_eq!(p.unsent_bytes(), "k".len() + 1 + "gone".len());
        // Only the newest value per key goes to the writer.
        assert_eq!(
            taken(&p),
            (
                1,
                vec![("gone".into(), None), ("k".into(), Some("2".into()))]
            )
        );
        assert!(!p.has_unsent() && p.take().is_none());
        // Handed over, not yet committed: still read from here.
        assert_eq!(p.read("k"), Some(Some("2".into())));
        p.write("k".into(), Some("3".into()));
        assert_eq!(taken(&p), (2, vec![("k".into(), Some("3".into()))]));
        p.write("k".into(), Some("4".into()));
        // The first hand-over commits: "gone" is the journal's now; "k" was
        // written again since, and stays.
        p.committed(1);
        assert_eq!(
            p.read("gone"),
            Some(None),
            "the journal's now, as this instance knows"
        );
        assert_eq!(p.read("k"), Some(Some("4".into())));
        p.committed(2);
        assert_eq!(p.read("k"), Some(Some("4".into())), "not handed over yet");
        assert_eq!(taken(&p), (3, vec![("k".into(), Some("4".into()))]));
        p.committed(3);
        assert_eq!(p.held(), 0);
    }

    #[test]
    fn an_only_writer_keeps_what_the_journal_has() {
        let p = PendingState::default();
        p.remember("done", Some("[r1]".into()));
        p.remember("absent", None);
        assert_eq!(p.read("done"), Some(Some("[r1]".into())));
        assert_eq!(
            p.read("absent"),
            Some(None),
            "a known absence is not asked again"
        );
        // A committed write is what the journal has.
        p.write("done".into(), Some("[r1,r2]".into()));
        let (n, _) = p.take().expect("a write");
        p.committed(n);
        assert_eq!(
            (p.held(), p.read("done")),
            (0, Some(Some("[r1,r2]".into())))
        );
        // Retaking the lease (another replica may have written): ask again.
        p.discard();
        assert_eq!(p.read("done"), None);
        // The copy is bounded: past CLEAN_MAX_BYTES it starts again.
        let big = "x".repeat(CLEAN_MAX_BYTES / 2);
        p.remember("a", Some(big.clone()));
        p.remember("b", Some(big.clone()));
        assert_eq!((p.read("a"), p.read("b")), (None, Some(Some(big.clone()))));
        p.remember("huge", Some("x".repeat(CLEAN_MAX_BYTES + 1)));
        assert_eq!(p.read("huge"), None);
    }

    #[test]
    fn shards_keep_no_copy_of_the_journal() {
        let p = PendingState::default();
        p.remember("k", Some("1".into()));
        p.share();
        assert_eq!(p.read("k"), None, "another shard may write it");
        p.remember("k", Some("1".into()));
        assert_eq!(p.read("k"), None);
        p.write("k".into(), Some("2".into()));
        let (n, _) = p.take().expect("a write");
        assert_eq!(
            p.read("k"),
            Some(Some("2".into())),
            "its own writes until committed"
        );
        p.committed(n);
        assert_eq!(p.read("k"), None);
    }

    #[test]
    fn a_discard_forgets_what_the_journal_does_not_have() {
        let p = PendingState::default();
        p.write("a".into(), Some("1".into()));
        assert!(p.take().is_some());
        p.write("b".into(), Some("2".into()));
        p.remember("c", Some("0".into()));
        p.discard();
        assert_eq!(
            (p.read("a"), p.read("b"), p.read("c"), p.held()),
            (None, None, None, 0)
        );
        assert!(!p.has_unsent() && p.unsent_bytes() == 0);
        // Numbers go on: a late answer for an old hand-over commits nothing new.
        p.write("c".into(), Some("3".into()));
        let (n, _) = p.take().expect("a write");
        assert_eq!(n, 2);
        p.committed(1);
        assert_eq!(p.read("c"), Some(Some("3".into())));
        assert_eq!(p.held(), 1);
    }
}
