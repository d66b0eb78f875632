//! What this replica knows of each delivery stream's cursor and queue, so
//! that a worker that has caught up reads only the log.
//!
//! A read of pending deliveries has two halves: the instance's queue rows
//! (retries, replays, held runs) with the stream's cursor, and the log past
//! the cursor. The log half is shared by the streams of a tenant (see
//! `super::tail`); the queue half is one statement per stream per read, and
//! with 60 instances woken by every ingest commit those statements were most
//! of the database's work for deliveries, on the cores ingest needs.
//!
//! Most of the time a stream's queue is empty and its cursor moves only by
//! its own worker's batches, which this replica's writer commits. So after a
//! read that found the queue empty, the stream is *known*: its position is
//! what that read saw, moved on by the writer's commits, and the next reads
//! skip the queue half. Everything that can put a row in the queue or move
//! the cursor otherwise makes the stream unknown again:
//! - the writer's commit of a retry or a hold (the worker's own);
//! - a replay or requeue, here (its commit notice) or on another replica
//!   (its NOTIFY); the listener's (re)connection, after which notifications
//!   may have been lost;
//! - opening or retiring the instance's streams, claiming a stream's lease
//!   (another replica may have moved its cursor), re-reading its cursor, a
//!   batch that was fenced, failed, or did not find the cursor where its
//!   worker thought.
//!
//! A stream is also read in full at least every [`RECHECK`] once its worker
//! has caught up, which bounds what anything missed above could cost (a
//! delay or a delivery made twice, never a loss: the rows stay in the
//! queue). A stale position can only be behind the cursor: the
//! worker then delivers again what it had delivered (at least once), and its
//! next batch, which expects the cursor where it read it, is refused and
//! makes the stream unknown.
//!
//! Reads race with commits: a read records the generation it started in, and
//! what it found is kept only if nothing was forgotten since.

use crate::{MarkBatch, MarkOutcome, MarksWritten};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest a stream is known without a full read.
pub(super) const RECHECK: Duration = Duration::from_secs(1);

/// A stream whose queue was empty at its last full read.
struct Known {
    /// The cursor's position, as read or as this replica's writer moved it.
    position: i64,
    /// When the full read was.
    read_at: Instant,
}

#[derive(Default)]
struct State {
    known: HashMap<String, Known>,
    /// Bumped by every forget: a read that started in an older generation
    /// keeps nothing.
    generation: u64,
}

/// The known streams of this replica.
#[derive(Default)]
pub(super) struct Streams {
    state: Mutex<State>,
}

impl Streams {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The position of `stream` if its queue is known to be empty, for a
    /// read after event `after` (0: from the cursor).
    ///
    /// [`RECHECK`] applies to reads from the cursor only: a read further on
    /// (a backlog streaming) would see only the queue past `after`, and
    /// anything missed there is in the full read that follows the backlog.
    pub(super) fn position(&self, stream: &str, after: i64) -> Option<i64> {
        let state = self.state();
        let k = state.known.get(stream)?;
        (after > 0 || k.read_at.elapsed() < RECHECK).then_some(k.position)
    }

    /// The generation a full read starts in (taken before its statement).
    pub(super) fn generation(&self) -> u64 {
        self.state().generation
    }

    /// What a full read that started in `generation` found: the cursor at
    /// `position`, and whether the queue was empty.
    pub(super) fn read(&self, stream: &str, generation: u64, position: i64, queue_empty: bool) {
        let mut state = self.state();
        if state.generation != generation {
            return;
        }
        if queue_empty {
            state.known.insert(
                stream.to_string(),
                Known {
                    position,
                    read_at: Instant::now(),
                },
            );
        } else {
            state.known.remove(stream);
        }
    }

    /// After this replica's writer committed `batch` for `stream` (or failed
    /// to: `written` is `None`).
    pub(super) fn committed(
        &self,
        stream: &str,
        batch: &MarkBatch,
        written: Option<&MarksWritten>,
    ) {
        let queues = batch
            .marks
            .iter()
            .any(|m| matches!(m.outcome, MarkOutcome::Retry { .. } | MarkOutcome::Hold));
        match written {
            Some(w) if !w.fenced && w.advanced && !queues => {
                if let (Some(a), Some(k)) = (&batch.advance, self.state().known.get_mut(stream)) {
                    k.position = k.position.max(a.to);
                }
            }
            // A queue row for the instance's shards, or a cursor that may
            // not be where it was thought.
            _ if queues => self.forget_instance(herald_event::shard::instance_of(stream)),
            _ => self.forget_stream(stream),
        }
    }

    /// Forgets one stream.
    pub(super) fn forget_stream(&self, stream: &str) {
        let mut state = self.state();
        state.generation += 1;
        state.known.remove(stream);
    }

    /// Forgets every stream of `instance` (its shards share its queue).
    pub(super) fn forget_instance(&self, instance: &str) {
        let mut state = self.state();
        state.generation += 1;
        state
            .known
            .retain(|s, _| herald_event::shard::instance_of(s) != instance);
    }

    /// Forgets every stream.
    pub(super) fn forget_all(&self) {
        let mut state = self.state();
        state.generation += 1;
        state.known.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Advance, Mark};

    fn batch(outcomes: Vec<MarkOutcome>, to: Option<i64>) -> MarkBatch {
        MarkBatch {
            fence: Some(1),
            marks: outcomes
                .into_iter()
                .enumerate()
                .map(|(k, outcome)| Mark {
                    queued: false,
                    event_id: k as i64 + 1,
                    first_at_ms: 0,
                    attempts: 1,
                    outcome,
                    read: None,
                })
                .collect(),
            advance: to.map(|to| Advance {
                from: 0,
                to,
                delivered: 1,
                shards: 1,
            }),
            attempts: Vec::new(),
            state: None,
        }
    }

    fn ok() -> MarksWritten {
        MarksWritten {
            changed: 0,
            advanced: true,
            fenced: false,
        }
    }

    #[test]
    fn a_read_that_found_the_queue_empty_makes_the_stream_known() {
        let s = Streams::default();
        let g = s.generation();
        s.read("hook", g, 7, false);
        assert_eq!(s.position("hook", 0), None, "rows queued: not known");
        s.read("hook", g, 7, true);
        assert_eq!(s.position("hook", 0), Some(7));
        // The writer's commits move it on, never back.
        s.committed(
            "hook",
            &batch(vec![MarkOutcome::Done], Some(9)),
            Some(&ok()),
        );
        assert_eq!(s.position("hook", 0), Some(9));
        s.committed("hook", &batch(vec![], Some(8)), Some(&ok()));
        assert_eq!(s.position("hook", 0), Some(9));
    }

    #[test]
    fn what_may_queue_rows_or_move_the_cursor_forgets() {
        let s = Streams::default();
        let known = |s: &Streams, stream: &str| {
            let g = s.generation();
            s.read(stream, g, 1, true);
        };
        // A retry or a hold of one shard: every shard of the instance.
        for outcome in [
            MarkOutcome::Retry {
                next_at_ms: 5,
                error: "503".into(),
            },
            MarkOutcome::Hold,
        ] {
            known(&s, "hook#0");
            known(&s, "hook#1");
            known(&s, "other");
            s.committed("hook#1", &batch(vec![outcome], Some(3)), Some(&ok()));
            assert_eq!(s.position("hook#0", 0), None);
            assert_eq!(s.position("hook#1", 0), None);
            assert_eq!(s.position("other", 0), Some(1));
        }
        // Fenced, not advanced, or failed: the stream.
        for written in [
            Some(MarksWritten {
                fenced: true,
                advanced: false,
                changed: 0,
            }),
            Some(MarksWritten {
                fenced: false,
                advanced: false,
                changed: 0,
            }),
            None,
        ] {
            known(&s, "hook");
            s.committed(
                "hook",
                &batch(vec![MarkOutcome::Done], Some(3)),
                written.as_ref(),
            );
            assert_eq!(s.position("hook", 0), None);
        }
        known(&s, "hook");
        s.forget_all();
        assert_eq!(s.position("hook", 0), None);
    }

    #[test]
    fn a_read_that_raced_a_forget_keeps_nothing() {
        let s = Streams::default();
        let g = s.generation();
        // A replay committed while the read's statement ran.
        s.forget_instance("hook");
        s.read("hook", g, 4, true);
        assert_eq!(s.position("hook", 0), None);
    }

    #[test]
    fn a_known_stream_is_read_in_full_again_after_a_while() {
        let s = Streams::default();
        let g = s.generation();
        s.read("hook", g, 4, true);
        s.state().known.get_mut("hook").expect("known").read_at -= RECHECK;
        assert_eq!(s.position("hook", 0), None);
        // A backlog streams on without the queue until its end.
        assert_eq!(s.position("hook", 9), Some(4));
    }
}
