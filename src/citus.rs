//! Citus: which shard of a table distributed on the session id each id lands in, so a batch's
//! writes can go one shard at a time (one worker, one task, no two-phase commit), and a batch's
//! gets go as one router query per shard (`batch::gets_by_shard`).
//!
//! The map, and which worker node holds each shard, is read once, at the table lookup
//! (`Shards::query`); a rebalance or shard split after that makes the grouping and the routing
//! (`nodes`) less apt, never wrong: every node with Citus's metadata routes every row itself.

use std::collections::HashMap;

use tokio_postgres::types::Type;

use crate::sql::Stmt;

/// A worker node as Citus names it, and its group (what `pg_dist_local_group` says on it).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
  pub host: String,
  pub port: u16,
  pub group: i32,
}

/// The hash ranges of a hash-distributed table's shards, by their lower bounds, and the worker
/// node holding each.
#[derive(Debug, Clone)]
pub struct Shards {
  /// Each shard's `shardminvalue`, ascending; the first is `i32::MIN`.
  mins: Vec<i32>,
  /// Each shard's node (an index into `nodes`), when that node can run queries on the table
  /// itself (Citus's metadata synced to it); else None, and its statements go to the coordinator.
  node_of: Vec<Option<usize>>,
  /// The worker nodes holding shards.
  pub nodes: Vec<Node>,
}

impl Shards {
  /// The shards' lower bounds when the table is hash-distributed on the session id column
  /// ($2, its name as given), NULL otherwise ($1 is the qualified table name); and for each, the
  /// host, port and group of a worker node holding it that has Citus's metadata (NULL: none has).
  pub fn query() -> Stmt {
    Stmt::new(
      "SELECT array_agg(s.shardminvalue::int4 ORDER BY s.shardminvalue::int4), \
       array_agg(n.nodename ORDER BY s.shardminvalue::int4), \
       array_agg(n.nodeport ORDER BY s.shardminvalue::int4), \
       array_agg(n.groupid ORDER BY s.shardminvalue::int4) \
       FROM pg_dist_partition p JOIN pg_dist_shard s ON s.logicalrelid = p.logicalrelid \
       LEFT JOIN LATERAL (SELECT n.nodename, n.nodeport, n.groupid FROM pg_dist_placement pl \
       JOIN pg_dist_node n ON n.groupid = pl.groupid \
       WHERE pl.shardid = s.shardid AND n.groupid <> 0 AND n.isactive AND n.noderole = 'primary' \
       AND n.hasmetadata AND n.metadatasynced ORDER BY n.nodeid LIMIT 1) n ON true \
       WHERE p.logicalrelid = to_regclass($1::text) AND p.partmethod = 'h' \
       AND column_to_column_name(p.logicalrelid, p.partkey) = $2::text"
        .to_string(),
      &[Type::TEXT, Type::TEXT],
    )
  }

  /// From `query`'s row: None unless the bounds cover the whole hash space.
  pub fn new(
    mins: Vec<i32>,
    hosts: Vec<Option<String>>,
    ports: Vec<Option<i32>>,
    groups: Vec<Option<i32>>,
  ) -> Option<Self> {
    fn none<T: Clone>() -> std::iter::Repeat<Option<T>> {
      std::iter::repeat(None)
    }
    let mut shards: Vec<(i32, Option<Node>)> = mins
      .into_iter()
      .zip(hosts.into_iter().chain(none()))
      .zip(ports.into_iter().chain(none()))
      .zip(groups.into_iter().chain(none()))
      .map(|(((min, host), port), group)| {
        let port = port.and_then(|p| u16::try_from(p).ok());
        let node = match (host, port, group) {
          (Some(host), Some(port), Some(group)) => Some(Node { host, port, group }),
          _ => None,
        };
        (min, node)
      })
      .collect();
    shards.sort_unstable_by_key(|(min, _)| *min);
    if shards.first().map(|(min, _)| *min) != Some(i32::MIN) {
      return None;
    }
    let mut nodes: Vec<Node> = Vec::new();
    let mut node_of = Vec::with_capacity(shards.len());
    let mut mins = Vec::with_capacity(shards.len());
    for (min, node) in shards {
      mins.push(min);
      node_of.push(
        node.map(|node| match nodes.iter().position(|n| *n == node) {
          Some(i) => i,
          None => {
            nodes.push(node);
            nodes.len() - 1
          }
        }),
      );
    }
    Some(Shards {
      mins,
      node_of,
      nodes,
    })
  }

  /// The node (an index into `nodes`) holding the shard a session id lands in, if known.
  pub fn node_of(&self, sid: &str) -> Option<usize> {
    self.node_of[self.shard_of(sid)]
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
    let shards = Shards::new(
      vec![0, i32::MIN, 1 << 30, -(1 << 30)],
      vec![],
      vec![],
      vec![],
    )
    .unwrap();
    let expect = |hash: i32| match hash {
      h if h < -(1 << 30) => 0,
      h if h < 0 => 1,
      h if h < 1 << 30 => 2,
      _ => 3,
    };
    for (text, hash) in HASHTEXT {
      assert_eq!(shards.shard_of(text), expect(*hash));
    }
    assert!(Shards::new(vec![0, 5], vec![], vec![], vec![]).is_none());
  }

  #[test]
  fn knows_the_node_of_each_shard_as_sorted() {
    let host = |h: &str| Some(h.to_string());
    let shards = Shards::new(
      vec![0, i32::MIN, 1 << 30, -(1 << 30)],
      vec![host("b"), host("a"), None, host("a")],
      vec![Some(2), Some(1), Some(3), Some(1)],
      vec![Some(20), Some(10), Some(30), Some(10)],
    )
    .unwrap();
    let node = |host: &str, port, group| Node {
      host: host.to_string(),
      port,
      group,
    };
    assert_eq!(shards.nodes, vec![node("a", 1, 10), node("b", 2, 20)]);
    assert_eq!(shards.node_of, vec![Some(0), Some(0), Some(1), None]);
    // hashtext('a') = 1075015857 ≥ 1 << 30: the last shard, whose node is unknown.
    assert_eq!(shards.node_of("a"), None);
    // hashtext('abc') = -785388649: the second shard, on node a.
    assert_eq!(shards.node_of("abc"), Some(0));
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
