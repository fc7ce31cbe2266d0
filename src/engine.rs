//! The store's shared state: its table, its servers, its counters, and the calls that need no
//! ordering (all, ids, length, prune, ping). The ordered calls travel through `calls`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use crate::config::ConnectionOptions;
use crate::error::{StoreError, StoreResult};
use crate::nodes::{never_ran, Nodes};
use crate::pool::{Params, Target};
use crate::protect::Protect;
use crate::sql::{QuotedTable, Statements, Stmt, TableSpec};
use crate::store::TOMBSTONE_GUARD_SECONDS;
use crate::table::{Table, Wants};

const DEFAULT_MAX: u32 = 10;
const DEFAULT_TIMEOUT_MS: u32 = 5_000;
const DEFAULT_QUERY_TIMEOUT_MS: u32 = 10_000;
const DEFAULT_PRUNE_BATCH: u32 = 20_000;
/// After each prune batch, rest this many times as long as the batch took.
const PRUNE_REST_FACTOR: u32 = 6;

/// Makes a pool for another server (host, port) with the primary's settings.
type MakeTarget = dyn Fn(&str, u16) -> StoreResult<Target> + Send + Sync;

/// What the engine is built from; `store.rs` fills it from the JS options.
pub struct EngineOptions {
  pub connection: ConnectionOptions,
  pub replicas: Vec<ConnectionOptions>,
  pub table: TableSpec,
  pub wants: Wants,
  /// `secret`: the first seals session data, every one opens it.
  pub secrets: Vec<String>,
  pub prepared: bool,
  /// Citus: each shard's statements to the worker node holding it (`nodes`).
  pub route_to_nodes: bool,
  pub max: Option<u32>,
  pub connection_timeout_ms: Option<u32>,
  pub query_timeout_ms: Option<u32>,
  pub idle_timeout_ms: Option<u32>,
  pub prune_batch: Option<u32>,
}

#[derive(Clone, Copy)]
pub enum Op {
  Get,
  Set,
  Touch,
  Destroy,
  All,
  Ids,
  Length,
  Clear,
  Prune,
  Ping,
  UserSessions,
  DestroyUserSessions,
}

pub const OPS: [&str; 12] = [
  "get",
  "set",
  "touch",
  "destroy",
  "all",
  "ids",
  "length",
  "clear",
  "prune",
  "ping",
  "listUserSessions",
  "destroyUserSessions",
];

pub struct Engine {
  table: Table,
  /// Sealing of data and hashing of ids (`secret`, `hashSessionIds`).
  pub protect: Protect,
  pub primary: Arc<Target>,
  pub replicas: Vec<Arc<Target>>,
  next_replica: AtomicUsize,
  /// Citus: a pool per worker node holding the table's shards, made at the table lookup (None:
  /// not Citus, or `routeToNodes: false`).
  nodes: OnceLock<Option<Nodes>>,
  /// Makes a node's pool: the primary's settings, another host and port; None with
  /// `routeToNodes: false`.
  node_target: Option<Box<MakeTarget>>,
  prune_batch: i64,
  /// connectionTimeoutMillis: the longest wait for a connection.
  pub timeout: Duration,
  /// queryTimeout: the longest wait for a statement's answer.
  pub query_timeout: Duration,
  idle_timeout: Option<Duration>,
  closed: AtomicBool,
  reaper_started: AtomicBool,
  /// Unordered calls running (`call`), so `close()` can wait for them.
  in_flight: AtomicUsize,
  /// Woken by `close()`: a prune resting between batches stops.
  closing: Notify,
  /// Sessions sent on their own after a lock wait, each holding a connection while it waits:
  /// at most half the pool, so the other sessions always have connections left.
  lock_waiters: Semaphore,
  lock_waiters_max: usize,
  operations: [AtomicU64; OPS.len()],
  errors: Mutex<HashMap<String, i64>>,
}

/// Counts an unordered call in flight so `close()` can wait for it.
struct InFlight<'a>(&'a Engine);

impl Drop for InFlight<'_> {
  fn drop(&mut self) {
    self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
  }
}

impl Engine {
  pub fn new(options: EngineOptions) -> StoreResult<Self> {
    let table = QuotedTable::new(options.table)?;
    let protect = Protect::new(&options.secrets, options.wants.hashed_ids)?;
    let max = options.max.filter(|m| *m > 0).unwrap_or(DEFAULT_MAX) as usize;
    // pg reads 0 as "wait forever"; a session store must never hang, so 0 means the default.
    let millis = |v: Option<u32>, default: u32| {
      Duration::from_millis(v.filter(|t| *t > 0).unwrap_or(default) as u64)
    };
    let timeout = millis(options.connection_timeout_ms, DEFAULT_TIMEOUT_MS);
    let query_timeout = millis(options.query_timeout_ms, DEFAULT_QUERY_TIMEOUT_MS);
    let prepared = options.prepared;
    let target =
      |c: &ConnectionOptions| Target::new(c, None, max, timeout, query_timeout, prepared);
    let primary = Arc::new(target(&options.connection)?);
    let connection = options.connection.clone();
    let node_target = options.route_to_nodes.then(|| -> Box<MakeTarget> {
      Box::new(move |host: &str, port: u16| {
        let at = Some((host, port));
        Target::new(&connection, at, max, timeout, query_timeout, prepared)
      })
    });
    let replicas = options
      .replicas
      .iter()
      .map(|c| target(c).map(Arc::new))
      .collect::<StoreResult<Vec<_>>>()?;
    Ok(Engine {
      table: Table::new(table, options.wants),
      protect,
      primary,
      replicas,
      next_replica: AtomicUsize::new(0),
      nodes: OnceLock::new(),
      node_target,
      prune_batch: options
        .prune_batch
        .filter(|b| *b > 0)
        .unwrap_or(DEFAULT_PRUNE_BATCH) as i64,
      timeout,
      query_timeout,
      idle_timeout: match options.idle_timeout_ms {
        Some(0) => None,
        Some(ms) => Some(Duration::from_millis(ms as u64)),
        None => Some(Duration::from_secs(10)),
      },
      closed: AtomicBool::new(false),
      reaper_started: AtomicBool::new(false),
      in_flight: AtomicUsize::new(0),
      closing: Notify::new(),
      lock_waiters: Semaphore::new((max / 2).max(1)),
      lock_waiters_max: (max / 2).max(1),
      operations: Default::default(),
      errors: Mutex::new(HashMap::new()),
    })
  }

  pub fn is_closed(&self) -> bool {
    self.closed.load(Ordering::SeqCst)
  }

  /// Marks the store closed; true the first time.
  pub fn mark_closed(&self) -> bool {
    let first = !self.closed.swap(true, Ordering::SeqCst);
    self.closing.notify_waiters();
    first
  }

  /// A place among the sessions that may wait on a row lock, within connectionTimeoutMillis.
  pub async fn lock_waiter(&self) -> StoreResult<SemaphorePermit<'_>> {
    match tokio::time::timeout(self.timeout, self.lock_waiters.acquire()).await {
      Ok(Ok(permit)) => Ok(permit),
      _ => Err(StoreError::Timeout(format!(
        "{} sessions are already waiting on rows locked by other transactions (half the pool); \
         this one waited connectionTimeoutMillis for its turn and was not sent",
        self.lock_waiters_max
      ))),
    }
  }

  pub fn unordered_in_flight(&self) -> usize {
    self.in_flight.load(Ordering::SeqCst)
  }

  /// The longest a call may take from the moment it was made: a connection, then a statement.
  pub fn call_bound(&self) -> Duration {
    self.timeout + self.query_timeout
  }

  pub async fn statements(&self) -> StoreResult<&Statements> {
    let st = self.table.statements(&self.primary).await?;
    if self.nodes.get().is_none() {
      self
        .nodes
        .get_or_init(|| match (&st.shards, &self.node_target) {
          (Some(shards), Some(make)) if !self.is_closed() => {
            Some(Nodes::start(&shards.nodes, make, self.table.qualified()))
          }
          _ => None,
        });
    }
    Ok(st)
  }

  fn started_nodes(&self) -> Option<&Nodes> {
    self.nodes.get().and_then(Option::as_ref)
  }

  /// Where a session's statements go: on Citus, the worker node holding its shard once a
  /// connection there has worked (`nodes`); else the primary.
  pub fn target_of(&self, st: &Statements, sid: &str) -> &Arc<Target> {
    st.shards
      .as_ref()
      .and_then(|shards| shards.node_of(sid))
      .and_then(|node| self.started_nodes()?.ready(node))
      .unwrap_or(&self.primary)
  }

  /// Runs `stmt` on `target` (from `target_of`), inside a transaction that `begin` opens if
  /// given. A node whose statement fails as a node going away would stops being used; when the
  /// node refused the statement before running it, it goes to the primary instead.
  pub async fn run_on(
    &self,
    target: &Arc<Target>,
    begin: Option<&str>,
    stmt: &Stmt,
    params: Params<'_>,
  ) -> StoreResult<(Vec<tokio_postgres::Row>, u64)> {
    match (
      target.run_in(begin, stmt, params).await,
      self.started_nodes(),
    ) {
      (Err(err), Some(nodes))
        if nodes.failed(target, &err) && never_ran(&err) && !self.is_closed() =>
      {
        self.primary.run_in(begin, stmt, params).await
      }
      (result, _) => result,
    }
  }

  /// Citus: each node's pool, and whether it is in use.
  pub fn nodes(&self) -> impl Iterator<Item = (&Arc<Target>, bool)> {
    self.started_nodes().into_iter().flat_map(Nodes::each)
  }

  /// Every server the store writes to: the primary and the Citus nodes.
  fn writers(&self) -> impl Iterator<Item = &Arc<Target>> {
    let nodes = self.nodes().map(|(target, _)| target);
    std::iter::once(&self.primary).chain(nodes)
  }

  /// Resolves once no write given up on, on any server, can still land (`Target::settled`).
  pub async fn settled(&self) {
    for target in self.writers() {
      target.settled().await;
    }
  }

  /// Close: gives up every write in flight on every server (`Target::abandon_writes`).
  pub fn abandon_writes(&self) {
    for target in self.writers() {
      target.abandon_writes();
    }
  }

  /// Wraps every unordered call: refuses after close, counts, and turns errors into coded JS errors.
  pub async fn call<T>(
    self: &Arc<Self>,
    op: Op,
    work: impl Future<Output = StoreResult<T>>,
  ) -> napi::Result<T> {
    self.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight(self);
    if self.is_closed() {
      return Err(self.failed(StoreError::Closed));
    }
    self.start_reaper();
    match work.await {
      Ok(value) => {
        self.succeeded(op);
        Ok(value)
      }
      Err(err) => Err(self.failed(err)),
    }
  }

  pub fn succeeded(&self, op: Op) {
    self.operations[op as usize].fetch_add(1, Ordering::Relaxed);
  }

  /// Counts a failure by its code and makes the JS error.
  pub fn failed(&self, err: StoreError) -> napi::Error {
    if let Ok(mut errors) = self.errors.lock() {
      *errors.entry(err.code().to_string()).or_default() += 1;
    }
    err.into()
  }

  pub fn operations(&self) -> HashMap<String, i64> {
    OPS
      .iter()
      .zip(&self.operations)
      .map(|(name, n)| (name.to_string(), n.load(Ordering::Relaxed) as i64))
      .collect()
  }

  pub fn errors(&self) -> HashMap<String, i64> {
    self.errors.lock().map(|e| e.clone()).unwrap_or_default()
  }

  /// One get, from a replica when there is one (a miss there is asked of the primary).
  pub async fn get_one(&self, st: &Statements, sid: &str, now: f64) -> StoreResult<Option<String>> {
    match self.get_from(st, sid, now).await {
      // An id the sid column's type cannot hold (a uuid column, a forged cookie) is no session.
      Err(e) if st.typed_sid && e.is_bad_input() => Ok(None),
      other => other,
    }
  }

  async fn get_from(&self, st: &Statements, sid: &str, now: f64) -> StoreResult<Option<String>> {
    let params: Params = &[&sid, &now];
    if let Some(replica) = self.replica() {
      match replica.run(&st.get, params).await {
        Ok((rows, _)) if !rows.is_empty() => return Ok(rows[0].get(0)),
        // A miss may be a session the replica has not received yet: ask the primary.
        Ok(_) => {}
        Err(e) if e.is_connection_fault() => {}
        Err(e) => return Err(e),
      }
    }
    let target = self.target_of(st, sid);
    let (rows, _) = self.run_on(target, None, &st.get, params).await?;
    // A NULL in the data column (a row written by hand) is no session.
    Ok(rows.first().and_then(|r| r.get(0)))
  }

  /// A read that a replica may answer; falls back to the primary when the replica is away.
  pub async fn read(
    &self,
    pick: fn(&Statements) -> &Stmt,
    params: Params<'_>,
  ) -> StoreResult<Vec<tokio_postgres::Row>> {
    let st = self.statements().await?;
    if let Some(replica) = self.replica() {
      match replica.run(pick(st), params).await {
        Ok((rows, _)) => return Ok(rows),
        Err(e) if e.is_connection_fault() => {}
        Err(e) => return Err(e),
      }
    }
    Ok(self.primary.run(pick(st), params).await?.0)
  }

  pub async fn prune(&self, now: f64) -> StoreResult<i64> {
    let st = self.statements().await?;
    // Sessions past `maxLifetime` first: they become tombstones the second statement ends later.
    // Its failure does not keep expired rows from being deleted; it is reported after.
    let aged = match &st.prune_aged {
      Some(aged) if !self.is_closed() => {
        let until = now + TOMBSTONE_GUARD_SECONDS;
        self
          .prune_with(aged, &[&now, &self.prune_batch, &until])
          .await
      }
      _ => Ok(0),
    };
    let deleted = self
      .prune_with(&st.prune_batch, &[&now, &self.prune_batch])
      .await?;
    Ok(deleted + aged?)
  }

  /// Runs one prune statement until it ends fewer rows than a batch.
  async fn prune_with(&self, stmt: &Stmt, params: Params<'_>) -> StoreResult<i64> {
    let mut deleted = 0;
    // Bounded batches keep each statement short, so concurrent calls are not held up.
    loop {
      let started = tokio::time::Instant::now();
      let (_, n) = self.primary.run(stmt, params).await?;
      deleted += n as i64;
      if (n as i64) < self.prune_batch || self.is_closed() {
        return Ok(deleted);
      }
      // Rest six times as long as the batch ran: pruning a large backlog takes at most a seventh
      // of the database's time, so live requests keep their latency. Fewer, larger batches kept
      // get p99 lower than many small ones (measured in bench/table-size.js). `close()` ends it.
      let closing = self.closing.notified();
      if self.is_closed() {
        return Ok(deleted);
      }
      tokio::select! {
        _ = tokio::time::sleep(started.elapsed() * PRUNE_REST_FACTOR) => {}
        _ = closing => return Ok(deleted),
      }
    }
  }

  pub fn has_replicas(&self) -> bool {
    !self.replicas.is_empty()
  }

  fn replica(&self) -> Option<&Arc<Target>> {
    if self.replicas.is_empty() {
      return None;
    }
    let i = self.next_replica.fetch_add(1, Ordering::Relaxed) % self.replicas.len();
    Some(&self.replicas[i])
  }

  /// Closes every connection of every server.
  pub fn close_pools(&self) {
    for target in self.writers() {
      target.close();
    }
    for replica in &self.replicas {
      replica.close();
    }
  }

  /// Starts, once, the task that closes idle connections; it holds the engine weakly.
  /// Runs on the tokio runtime.
  pub fn start_reaper(self: &Arc<Self>) {
    let Some(idle) = self.idle_timeout else {
      return;
    };
    if self.reaper_started.swap(true, Ordering::Relaxed) {
      return;
    }
    let me: Weak<Engine> = Arc::downgrade(self);
    tokio::spawn(async move {
      let mut tick = tokio::time::interval((idle / 2).max(Duration::from_millis(500)));
      loop {
        tick.tick().await;
        let Some(engine) = me.upgrade() else { return };
        if engine.is_closed() {
          return;
        }
        for target in engine.writers() {
          target.reap_idle(idle);
        }
        for replica in &engine.replicas {
          replica.reap_idle(idle);
        }
      }
    });
  }
}
