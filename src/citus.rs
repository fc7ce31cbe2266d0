//! Citus: which shard of a table distributed on the session id each id lands in, so a batch's
//! writes can go one shard at a time (one worker, one task, no two-phase commit), and a batch's
//! gets go as one router query per shard (`batch::gets_by_shard`).
//!
//! The map is read once, at the table lookup (`Shards::query`); a rebalance or shard split after
//! that makes the grouping less apt, never wrong: Citus routes every row itself.

use std::collections::HashMap;

use tokio_postgres::types::Type;

use crate::sql::Stmt;

/// The hash ranges of a hash-distributed table's shards, by their lower bounds.
#[derive(Debug, Clone)]
pub struct Shards {
  /// Each shard's `shardminvalue`, ascending; the first is `i32::MIN`.
  mins: Vec<i32>,
}

impl Shards {
  /// The shards' lower bounds when the table is hash-distributed on the session id column
  /// ($2, its name as given); NULL otherwise. ($1 is the qualified table name.)
  pub fn query() -> Stmt {
    Stmt::new(
      "SELECT (SELECT array_agg(s.shardminvalue::int4 ORDER BY s.shardminvalue::int4) \
       FROM pg_dist_partition p JOIN pg_dist_shard s ON s.logicalrelid = p.logicalrelid \
       WHERE p.logicalrelid = to_regclass($1::text) AND p.partmethod = 'h' \
       AND column_to_column_name(p.logicalrelid, p.partkey) = $2::text)"
        .to_string(),
      &[Type::TEXT, Type::TEXT],
    )
  }

  /// None unless the bounds cover the whole hash space.
  pub fn new(mut mins: Vec<i32>) -> Option<Self> {
    mins.sort_unstable();
    (mins.first() == Some(&i32::MIN)).then_some(Shards { mins })
  }

  /// `items` by the shard their id (`sid_of`) lands in, each group in the order given.
  pub fn group<T>(
    &self,
    items: impl IntoIterator<Item = T>,
    sid_of: impl Fn(&T) -> &str,
  ) -> Vec<Vec<T>> {
    let mut groups: HashMap<usize, Vec<T>> = HashMap::new();
    for item in items {
      groups
        .entry(self.shard_of(sid_of(&item)))
        .or_default()
        .push(item);
    }
    groups.into_values().collect()
  }

  /// The shard (its index among the bounds) that Citus puts a text id in: PostgreSQL's
  /// `hashtext` of its bytes (a deterministic collation), as a signed 32-bit value.
  pub fn shard_of(&self, sid: &str) -> usize {
    let hash = hash_bytes(sid.as_bytes()) as i32;
    self.mins.partition_point(|&min| min <= hash) - 1
  }
}

/// PostgreSQL's `hash_bytes` (src/common/hashfn.c, Bob Jenkins' lookup3), which `hashtext` and so
/// Citus's hash distribution of text and varchar use; byte order as on little-endian servers.
fn hash_bytes(k: &[u8]) -> u32 {
  fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
  }
  fn last(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
  }
  let word = |bytes: &[u8]| {
    bytes.iter().enumerate().fold(0u32, |w, (i, &byte)| {
      w.wrapping_add((byte as u32) << (8 * i))
    })
  };
  let init = 0x9e37_79b9_u32
    .wrapping_add(k.len() as u32)
    .wrapping_add(3_923_095);
  let (mut a, mut b, mut c) = (init, init, init);
  let mut rest = k;
  while rest.len() >= 12 {
    a = a.wrapping_add(word(&rest[0..4]));
    b = b.wrapping_add(word(&rest[4..8]));
    c = c.wrapping_add(word(&rest[8..12]));
    mix(&mut a, &mut b, &mut c);
    rest = &rest[12..];
  }
  // The last 0–11 bytes; the lowest byte of c is left for the length.
  a = a.wrapping_add(word(&rest[..rest.len().min(4)]));
  if rest.len() > 4 {
    b = b.wrapping_add(word(&rest[4..rest.len().min(8)]));
  }
  if rest.len() > 8 {
    c = c.wrapping_add(word(&rest[8..]) << 8);
  }
  last(&mut a, &mut b, &mut c);
  c
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn hashes_as_postgres_hashtext() {
    // SELECT s, hashtext(s) FROM unnest(ARRAY[…]) s; on PostgreSQL 15.
    for (text, expected) in HASHTEXT {
      assert_eq!(hash_bytes(text.as_bytes()) as i32, *expected, "{text:?}");
    }
  }

  #[test]
  fn finds_the_shard_whose_range_holds_the_hash() {
    let shards = Shards::new(vec![0, i32::MIN, 1 << 30, -(1 << 30)]).unwrap();
    let expect = |hash: i32| match hash {
      h if h < -(1 << 30) => 0,
      h if h < 0 => 1,
      h if h < 1 << 30 => 2,
      _ => 3,
    };
    for (text, hash) in HASHTEXT {
      assert_eq!(shards.shard_of(text), expect(*hash));
    }
    assert!(Shards::new(vec![0, 5]).is_none());
  }

  const HASHTEXT: &[(&str, i32)] = &[
    ("", -1477818771),
    ("a", 1075015857),
    ("ab", 1718550461),
    ("abc", -785388649),
    ("abcd", -393934804),
    ("abcde", -445659580),
    ("abcdefg", 501636814),
    ("abcdefgh", -1960928205),
    ("abcdefghi", -92131489),
    ("abcdefghijk", -1483803693),
    ("abcdefghijkl", -1586087212),
    ("abcdefghijklm", 405849808),
    ("bench-session-42", -972792594),
    ("yZ3k9_Qw-7pLmN2xR4sT8vUa1bCdEfGh", 1761366713),
    ("é漢字😀", -681976535),
    (
      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      -1830752374,
    ),
  ];
}
