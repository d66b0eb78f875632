//! Shards of a plugin instance's deliveries. An instance with `shards = N`
//! delivers through N streams, each with its own cursor and lease: stream 0
//! is named like the instance (`slack`), stream k `slack#k`. A run belongs
//! to one stream, chosen by a hash of its id, so its events stay in order
//! while other runs go on in the other streams (on this replica or others).
//!
//! The hash is the first four bytes of the run id's MD5, big-endian, modulo
//! N: PostgreSQL computes the same with its built-in `md5()` (the journal's
//! `herald_shard` SQL function), and it never changes between releases.

use md5::{Digest, Md5};

/// Most shards an instance may have.
pub const MAX_SHARDS: u32 = 64;

/// Separates an instance's name from its shard in a stream's name; not
/// allowed in instance names.
pub const SEPARATOR: char = '#';

/// The shard of `run_id` among `shards` (0 when `shards` is 0 or 1).
pub fn shard_of(run_id: &str, shards: u32) -> u32 {
    if shards <= 1 {
        return 0;
    }
    let digest = Md5::digest(run_id.as_bytes());
    let head = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    head % shards
}

/// The name of shard `shard`'s delivery stream of `instance`.
pub fn stream_name(instance: &str, shard: u32) -> String {
    if shard == 0 {
        instance.to_string()
    } else {
        format!("{instance}{SEPARATOR}{shard}")
    }
}

/// The instance a delivery stream belongs to.
pub fn instance_of(stream: &str) -> &str {
    stream.split_once(SEPARATOR).map_or(stream, |(i, _)| i)
}

/// The shard a stream's name says (0 for the instance's own name).
pub fn shard_in(stream: &str) -> u32 {
    stream
        .split_once(SEPARATOR)
        .and_then(|(_, k)| k.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_md5s_first_four_bytes() {
        // md5("run-1") = 5b746968…: 0x5b746968 = 1534355816.
        assert_eq!(Md5::digest(b"run-1")[..4], [0x5b, 0x74, 0x69, 0x68]);
        assert_eq!(shard_of("run-1", 1000), 1_534_355_816 % 1000);
        assert_eq!(shard_of("run-1", 1), 0);
        assert_eq!(shard_of("run-1", 0), 0);
    }

    #[test]
    fn runs_spread_over_the_shards() {
        let mut seen = [0u32; 4];
        for i in 0..4000 {
            seen[shard_of(&format!("a0b1c2d3-{i:04}"), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
    }

    #[test]
    fn stream_names_round_trip() {
        assert_eq!(stream_name("slack", 0), "slack");
        assert_eq!(stream_name("slack", 3), "slack#3");
        assert_eq!(instance_of("slack#3"), "slack");
        assert_eq!(instance_of("slack"), "slack");
        assert_eq!(shard_in("slack#3"), 3);
        assert_eq!(shard_in("slack"), 0);
    }
}
