//! Citus: a pool per worker node, so a shard's statements go to the node that holds it, which
//! runs them on its own shard (Citus's local execution) instead of the coordinator planning them
//! and sending them on. With every shard's statements on its own node, the get+set loop ran
//! 18.9k ops/s against 10.3k through the coordinator on 4 shards (bench/citus.js,
//! docs/distributed.md).
//!
//! A node is used only while a connection to it reads the table and finds itself the node the
//! coordinator named (`probe`: its Citus group): a node the app cannot reach, or whose login
//! fails, or another server answering at that address, leaves its shards' statements on the
//! coordinator; so does a node whose statement fails as a node going away would (`failed`), until
//! a probe works again.
//! Every node with Citus's metadata routes any row itself, so a stale map only costs a hop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::Type;

use crate::citus::Node;
use crate::error::{StoreError, StoreResult};
use crate::pool::Target;
use crate::sql::Stmt;

/// How long a node not in use waits before it is probed again.
const RETRY: Duration = Duration::from_secs(30);

pub struct Nodes {
  /// As `Shards::nodes`; None where the pool could not be built (an unusable address).
  nodes: Vec<Option<NodePool>>,
  probe: Arc<Probe>,
}

struct NodePool {
  target: Arc<Target>,
  /// Its group in Citus's metadata: the probe finds it on the node.
  group: i32,
  /// The last probe worked and no statement since failed as a node going away would.
  ready: Arc<AtomicBool>,
}

/// What a node must answer to be used: its group, that the table is Citus's there, and that the
/// role may read and write it there. A read: a probe given up ends no backend.
struct Probe {
  stmt: Stmt,
  table: String,
}

impl Probe {
  async fn answers(&self, target: &Arc<Target>, group: i32) -> bool {
    match target.run(&self.stmt, &[&self.table]).await {
      Ok((rows, _)) => rows.first().is_some_and(|row| {
        let granted = row.get::<_, Option<bool>>(2) == Some(true);
        row.get::<_, Option<i32>>(0) == Some(group) && row.get::<_, bool>(1) && granted
      }),
      Err(_) => false,
    }
  }
}

impl Nodes {
  /// A pool per node, each probed in the background. `table`: the qualified, quoted name.
  /// Runs on the tokio runtime.
  pub fn start(
    nodes: &[Node],
    make: impl Fn(&str, u16) -> StoreResult<Target>,
    table: &str,
  ) -> Self {
    let probe = Arc::new(Probe {
      stmt: Stmt::new(
        "SELECT (SELECT groupid FROM pg_dist_local_group), EXISTS (SELECT 1 FROM \
           pg_dist_partition WHERE logicalrelid = to_regclass($1::text)), \
           has_table_privilege(to_regclass($1::text), 'SELECT, INSERT, UPDATE, DELETE')"
          .to_string(),
        &[Type::TEXT],
      ),
      table: table.to_string(),
    });
    let nodes = nodes
      .iter()
      .map(|node| {
        let pool = NodePool {
          target: Arc::new(make(&node.host, node.port).ok()?),
          group: node.group,
          ready: Arc::new(AtomicBool::new(false)),
        };
        pool.probe(probe.clone(), Duration::ZERO);
        Some(pool)
      })
      .collect();
    Nodes { nodes, probe }
  }

  /// The node's pool, while it is in use.
  pub fn ready(&self, node: usize) -> Option<&Arc<Target>> {
    self
      .nodes
      .get(node)
      .and_then(Option::as_ref)
      .filter(|n| n.ready.load(Ordering::Acquire))
      .map(|n| &n.target)
  }

  /// A statement on `target` failed: if it is a node's and the error says the node is away (no
  /// connection) or cannot serve the table (removed from the cluster, a grant missing there), its
  /// shards go to the coordinator until a probe works again. True when so.
  pub fn failed(&self, target: &Arc<Target>, err: &StoreError) -> bool {
    // A wait that ran out (every connection busy, a long lock wait) says nothing of the node.
    let waited = matches!(err, StoreError::Timeout(_) | StoreError::GivenUp(_));
    if waited || !(err.is_connection_fault() || not_served(err)) {
      return false;
    }
    let node = self
      .nodes
      .iter()
      .flatten()
      .find(|n| Arc::ptr_eq(&n.target, target));
    let Some(node) = node else {
      return false;
    };
    if node.ready.swap(false, Ordering::AcqRel) {
      node.probe(self.probe.clone(), RETRY);
    }
    true
  }

  /// Each node's pool and whether its shards' statements go to it now.
  pub fn each(&self) -> impl Iterator<Item = (&Arc<Target>, bool)> {
    let ready = |n: &NodePool| n.ready.load(Ordering::Acquire);
    self
      .nodes
      .iter()
      .flatten()
      .map(move |n| (&n.target, ready(n)))
  }
}

/// The node refused the statement before running it: it has no such table (42P01) or the role
/// may not use it there (42501); or no connection could be made. Safe to send elsewhere.
pub fn never_ran(err: &StoreError) -> bool {
  matches!(err, StoreError::Connect(_)) || not_served(err)
}

fn not_served(err: &StoreError) -> bool {
  matches!(err, StoreError::Db { sqlstate, .. } if sqlstate == "42P01" || sqlstate == "42501")
}

impl NodePool {
  /// Probes after `first`, then every `RETRY` until a probe works or the store closes.
  fn probe(&self, probe: Arc<Probe>, first: Duration) {
    let (target, ready, group) = (Arc::downgrade(&self.target), self.ready.clone(), self.group);
    tokio::spawn(async move {
      let mut wait = first;
      loop {
        tokio::time::sleep(wait).await;
        let Some(target) = target.upgrade().filter(|t| !t.is_closing()) else {
          return;
        };
        if probe.answers(&target, group).await {
          ready.store(true, Ordering::Release);
          return;
        }
        wait = RETRY;
      }
    });
  }
}
