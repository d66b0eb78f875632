//! Opening an instance's delivery streams (one per shard, see
//! `herald_event::shard`): what becomes of the cursors already there. Both
//! backends read the instance's cursor rows, take a [`Plan`] from here, and
//! write it in one transaction.

use herald_event::shard::{shard_in, stream_name};

/// A cursor row of one of the instance's streams, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamRow {
    pub stream: String,
    pub tenant: String,
    pub since: i64,
    pub position: i64,
    pub delivered: i64,
    pub routes: String,
    /// The shard count the row was opened with.
    pub shards: u32,
}

/// Where the instance's streams start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// Each stream where it stands (the shard count did not change).
    Kept,
    /// Every stream at `position` (the shard count changed): the slowest
    /// old stream's position, so no event is lost when runs move between
    /// shards; what the others had delivered past it is delivered again.
    Rewound {
        since: i64,
        position: i64,
        delivered: i64,
    },
    /// At the end of the log: a new instance, or one that served another
    /// tenant.
    End,
}

/// Where stream `k` of a new or rewound set starts: `since` (its cursor's
/// first position), `position`, and the done count it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub since: i64,
    pub position: i64,
    pub delivered: i64,
}

impl Start {
    /// Where stream `k` is (re)written from, with the log's end at `end`;
    /// `None`: kept where it stands. The old streams' done count goes to
    /// stream 0 only, so the instance's total stays.
    pub(crate) fn origin(&self, k: usize, end: i64) -> Option<Origin> {
        match *self {
            Start::Kept => None,
            Start::Rewound {
                since,
                position,
                delivered,
            } => Some(Origin {
                since,
                position,
                delivered: if k == 0 { delivered } else { 0 },
            }),
            Start::End => Some(Origin {
                since: end,
                position: end,
                delivered: 0,
            }),
        }
    }
}

/// What opening `shards` streams of an instance does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Streams of another tenant (the instance name was given to this
    /// tenant): what they had not read is queued (and dead-lettered).
    pub moved: Vec<StreamRow>,
    pub start: Start,
    /// Rows of streams the new shard count does not have.
    pub dropped: Vec<String>,
    /// The streams to open, shard 0 first.
    pub streams: Vec<String>,
}

impl Plan {
    /// Whether the instance's leases must change hands: the shard count
    /// changed, so a replica still running the old count must stop.
    pub fn reshards(&self) -> bool {
        matches!(self.start, Start::Rewound { .. }) || !self.dropped.is_empty()
    }
}

/// Whether `stream` is one of `instance`'s streams.
pub(crate) fn belongs(stream: &str, instance: &str) -> bool {
    herald_event::shard::instance_of(stream) == instance
}

/// The plan for opening `shards` streams of `instance` for `tenant`, given
/// the instance's cursor rows.
pub(crate) fn plan(instance: &str, tenant: &str, shards: u32, rows: Vec<StreamRow>) -> Plan {
    let shards = shards.max(1);
    let streams: Vec<String> = (0..shards).map(|k| stream_name(instance, k)).collect();
    let (mine, moved): (Vec<StreamRow>, Vec<StreamRow>) =
        rows.into_iter().partition(|r| r.tenant == tenant);
    let mut dropped: Vec<String> = moved.iter().map(|r| r.stream.clone()).collect();
    if mine.is_empty() {
        // Streams of another tenant are re-created at the end of the log.
        dropped.retain(|s| !streams.contains(s));
        return Plan {
            moved,
            start: Start::End,
            dropped,
            streams,
        };
    }
    let same = mine.len() == streams.len()
        && mine
            .iter()
            .all(|r| r.shards == shards && shard_in(&r.stream) < shards);
    let start = if same {
        Start::Kept
    } else {
        Start::Rewound {
            since: mine.iter().map(|r| r.since).min().unwrap_or(0),
            position: mine.iter().map(|r| r.position).min().unwrap_or(0),
            delivered: mine.iter().map(|r| r.delivered).sum(),
        }
    };
    dropped.extend(
        mine.iter()
            .filter(|r| !streams.contains(&r.stream))
            .map(|r| r.stream.clone()),
    );
    dropped.retain(|s| !streams.contains(s));
    Plan {
        moved,
        start,
        dropped,
        streams,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(stream: &str, tenant: &str, position: i64, shards: u32) -> StreamRow {
        StreamRow {
            stream: stream.into(),
            tenant: tenant.into(),
            since: 1,
            position,
            delivered: position,
            routes: "[]".into(),
            shards,
        }
    }

    #[test]
    fn a_new_instance_starts_at_the_end() {
        let p = plan("s", "t", 3, vec![]);
        assert_eq!(p.start, Start::End);
        assert_eq!(p.streams, ["s", "s#1", "s#2"]);
        assert!(!p.reshards());
    }

    #[test]
    fn the_same_count_keeps_each_position() {
        let p = plan(
            "s",
            "t",
            2,
            vec![row("s", "t", 10, 2), row("s#1", "t", 7, 2)],
        );
        assert_eq!(p.start, Start::Kept);
        assert!(p.dropped.is_empty());
    }

    #[test]
    fn a_new_count_rewinds_every_stream_to_the_slowest() {
        let rows = vec![
            row("s", "t", 10, 3),
            row("s#1", "t", 7, 3),
            row("s#2", "t", 12, 3),
        ];
        let p = plan("s", "t", 2, rows.clone());
        assert_eq!(
            p.start,
            Start::Rewound {
                since: 1,
                position: 7,
                delivered: 29
            }
        );
        assert_eq!(p.dropped, ["s#2"]);
        assert!(p.reshards());
        let p = plan("s", "t", 4, rows);
        assert!(matches!(p.start, Start::Rewound { position: 7, .. }));
        assert!(p.dropped.is_empty());
        // One shard from one: nothing moves.
        let p = plan("s", "t", 1, vec![row("s", "t", 5, 1)]);
        assert_eq!(p.start, Start::Kept);
    }

    #[test]
    fn streams_of_another_tenant_are_moved() {
        let p = plan(
            "s",
            "t",
            1,
            vec![row("s", "u", 10, 2), row("s#1", "u", 8, 2)],
        );
        assert_eq!(p.start, Start::End);
        assert_eq!(p.moved.len(), 2);
        assert_eq!(p.dropped, ["s#1"]);
    }

    #[test]
    fn belongs_matches_the_instance_only() {
        assert!(belongs("s#2", "s"));
        assert!(belongs("s", "s"));
        assert!(!belongs("sx", "s"));
        assert!(!belongs("s", "s#1"));
    }
}
