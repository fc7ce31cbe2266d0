//! Connection pools and running one statement on them, retried (up to 3 attempts) over a lost connection.
//!
//! Calls share connections ("lanes") instead of checking one out each: a call takes an idle
//! lane, or opens a new one while below `max`, and only when every lane is busy does it queue
//! on the least loaded one. tokio-postgres pipelines the statements queued on one connection
//! (one write and one read for many), which is where the CPU per call goes down under load.
//! Nothing queues behind a write (it may wait on a row lock): a lane with a write in flight is
//! left alone until it ends, so one slow write does not stall unrelated calls.
//!
//! Bounds: a statement gets `queryTimeout` to answer, after which its connection is cancelled and
//! closed (a silent network never answers); after a failed connect the server is "down" and
//! calls that would need a new connection fail at once while one probe at a time tries again.
//!
//! A write given up on may still be on its way (bytes held by the network, a row lock about to
//! be released): closing our end does not stop it. So its backend is ended from another
//! connection (`pg_terminate_backend`), and `settled()` waits until it is known gone; the calls
//! layer keeps that write's sessions busy until then, so a later call never lands before it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{
  Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use futures_util::future::join3;
use futures_util::{pin_mut, TryStreamExt};
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{self, ConnectionOptions};
use crate::error::{StoreError, StoreResult};
use crate::sql::Stmt;

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// How many times one call may meet a connection that died under it.
const ATTEMPTS: usize = 3;
/// After a failed connect, calls that need a new connection fail at once for this long; then one
/// call at a time tries again.
const DOWN_COOL_OFF: Duration = Duration::from_millis(250);

/// One open connection shared by the calls running on it.
struct Lane {
  /// Always Some until the lane is dropped.
  client: Option<Object>,
  /// Set when a statement on it ran out of time: the connection is closed, never reused.
  dead: AtomicBool,
  in_flight: AtomicUsize,
  /// Writes in flight: a write may wait on a row lock, so nothing queues behind one.
  writes: AtomicUsize,
  /// Milliseconds after `Target::epoch` when the last call finished.
  last_used_ms: AtomicU64,
  /// The server process behind it (pid, start time as text), to end it when a write on it is
  /// given up; None behind a pooler, where the server connection changes under us.
  backend: Option<Backend>,
}

impl Lane {
  fn client(&self) -> &Object {
    self
      .client
      .as_ref()
      .expect("a lane holds its connection until dropped")
  }
}

impl Drop for Lane {
  fn drop(&mut self) {
    if let (true, Some(client)) = (self.dead.load(Ordering::Acquire), self.client.take()) {
      // Out of the pool and dropped: deadpool aborts the connection task, closing the socket.
      drop(Object::take(client));
    }
  }
}

/// One server process: its pid and when it started (a pid alone may be reused after a restart).
#[derive(Clone)]
struct Backend {
  pid: i32,
  started: String,
}

/// What `Target::status` reports, in deadpool's terms.
pub struct Status {
  pub max_size: usize,
  pub size: usize,
  pub idle: usize,
  pub waiting: usize,
}

/// One server's pool and how statements are sent to it.
pub struct Target {
  pool: Pool,
  max_size: usize,
  lanes: Mutex<Lanes>,
  epoch: Instant,
  /// Woken when a lane may have become usable: a write ended, a connection attempt ended.
  changed: Notify,
  /// Calls waiting for a usable lane.
  waiting: AtomicUsize,
  timeout: Duration,
  /// How long a statement may take to answer before its connection is given up.
  query_timeout: Duration,
  /// false: unnamed statements with explicit types, for PgBouncer in transaction mode.
  prepared: bool,
  /// `host:port` (or the socket directory), for messages.
  pub address: String,
  tls: MakeRustlsConnect,
  down: Mutex<Down>,
  /// Backends of given-up writes not yet known gone; `settled()` waits for none.
  ending: AtomicUsize,
  /// Woken when an ending backend is known gone (or can no longer be ended: closed).
  ended: Notify,
  /// Set by `abandon_writes` (close): a statement whose connection breaks is not retried.
  closing: AtomicBool,
}

/// What the last connection attempts said about the server.
#[derive(Default)]
struct Down {
  /// Why the last connect failed, and when; None while connects succeed.
  failed: Option<(StoreError, Instant)>,
  /// A connect attempt is under way while down: the others fail at once.
  probing: bool,
}

#[derive(Default)]
struct Lanes {
  open: Vec<Arc<Lane>>,
  /// Connections being opened right now; they count against `max`.
  opening: usize,
}

/// A call's hold on a lane; dropping it ends the call.
struct LaneGuard<'a> {
  lane: Arc<Lane>,
  write: bool,
  target: &'a Target,
}

impl Drop for LaneGuard<'_> {
  fn drop(&mut self) {
    let lane = &self.lane;
    lane
      .last_used_ms
      .store(self.target.now_ms(), Ordering::Relaxed);
    lane.in_flight.fetch_sub(1, Ordering::AcqRel);
    if self.write {
      lane.writes.fetch_sub(1, Ordering::AcqRel);
      self.target.changed.notify_waiters();
    }
  }
}

/// Undoes an `opening` count (and a probe) if the connect is abandoned or fails.
struct Opening<'a>(&'a Target);

impl Drop for Opening<'_> {
  fn drop(&mut self) {
    if let Ok(mut lanes) = self.0.lanes.lock() {
      lanes.opening -= 1;
    }
    if let Ok(mut down) = self.0.down.lock() {
      down.probing = false;
    }
    self.0.changed.notify_waiters();
  }
}

/// Counts a call waiting for a lane, for `stats()`.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
  fn drop(&mut self) {
    self.0.fetch_sub(1, Ordering::Relaxed);
  }
}

enum Pick {
  Lane(Arc<Lane>),
  Open,
  Wait,
}

impl Target {
  /// `at`: a Citus worker node reached with `options`' settings instead of their server.
  pub fn new(
    options: &ConnectionOptions,
    at: Option<(&str, u16)>,
    max_size: usize,
    timeout: Duration,
    query_timeout: Duration,
    prepared: bool,
  ) -> StoreResult<Self> {
    let settings = config::resolve(options, at, timeout, &|key| std::env::var(key).ok())?;
    let address = settings.address.clone();
    let tls = config::make_tls(&settings.tls)?;
    let manager = Manager::from_config(
      settings.config,
      tls.clone(),
      ManagerConfig {
        // A dead socket is noticed by the connection task; checking `is_closed` is enough.
        recycling_method: RecyclingMethod::Fast,
      },
    );
    let pool = Pool::builder(manager)
      .max_size(max_size)
      .runtime(Runtime::Tokio1)
      .wait_timeout(Some(timeout))
      .create_timeout(Some(timeout))
      .recycle_timeout(Some(timeout))
      .build()
      .map_err(|e| {
        StoreError::InvalidOption(format!("could not build the connection pool: {e}"))
      })?;
    Ok(Target {
      pool,
      max_size,
      lanes: Mutex::new(Lanes::default()),
      epoch: Instant::now(),
      changed: Notify::new(),
      waiting: AtomicUsize::new(0),
      timeout,
      query_timeout,
      prepared,
      address,
      tls,
      down: Mutex::new(Down::default()),
      ending: AtomicUsize::new(0),
      ended: Notify::new(),
      closing: AtomicBool::new(false),
    })
  }

  fn now_ms(&self) -> u64 {
    self.epoch.elapsed().as_millis() as u64
  }

  /// An idle lane; else a new one while below `max`; else the least loaded lane with no write
  /// in flight; else wait (at most the connection timeout) for one of those.
  async fn lane(&self, write: bool) -> StoreResult<LaneGuard<'_>> {
    let deadline = tokio::time::Instant::now() + self.timeout;
    loop {
      let changed = self.changed.notified();
      let pick = {
        let mut lanes = self.lanes.lock().map_err(|_| poisoned())?;
        lanes.open.retain(|lane| !lane.client().is_closed());
        let least = lanes
          .open
          .iter()
          .filter(|lane| lane.writes.load(Ordering::Acquire) == 0)
          .min_by_key(|lane| lane.in_flight.load(Ordering::Acquire))
          .cloned();
        let may_open = lanes.open.len() + lanes.opening < self.max_size;
        let pick = match least {
          Some(lane) if lane.in_flight.load(Ordering::Acquire) == 0 => Pick::Lane(lane),
          _ if may_open && self.may_connect()? => {
            lanes.opening += 1;
            Pick::Open
          }
          Some(lane) => Pick::Lane(lane),
          // Down, a probe under way and no connection open: waiting could only time out.
          None if may_open && lanes.open.is_empty() => return Err(self.down_error()),
          None => Pick::Wait,
        };
        // Counted under the lock, so the next caller sees this call on the lane.
        if let Pick::Lane(lane) = &pick {
          lane.in_flight.fetch_add(1, Ordering::AcqRel);
          if write {
            lane.writes.fetch_add(1, Ordering::AcqRel);
          }
        }
        pick
      };
      match pick {
        Pick::Lane(lane) => {
          return Ok(LaneGuard {
            lane,
            write,
            target: self,
          })
        }
        Pick::Open => {
          let lane = self.open_lane(write).await?;
          return Ok(LaneGuard {
            lane,
            write,
            target: self,
          });
        }
        Pick::Wait => {
          self.waiting.fetch_add(1, Ordering::Relaxed);
          let _waiting = Waiting(&self.waiting);
          if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return Err(StoreError::Timeout(format!(
              "no connection to PostgreSQL at {} within connectionTimeoutMillis: every connection \
               is busy with a write that is still waiting (a row lock, a slow server)",
              self.address
            )));
          }
        }
      }
    }
  }

  /// Whether this call may try to open a connection: always while the server is up; while it
  /// is down, only after a short cool-off and when no other attempt is under way (that call
  /// becomes the probe).
  fn may_connect(&self) -> StoreResult<bool> {
    let mut down = self.down.lock().map_err(|_| poisoned())?;
    let Some((_, since)) = &down.failed else {
      return Ok(true);
    };
    if down.probing || since.elapsed() < DOWN_COOL_OFF {
      return Ok(false);
    }
    down.probing = true;
    Ok(true)
  }

  /// The error of a call that finds the server down and a probe already under way.
  fn down_error(&self) -> StoreError {
    let cause = self
      .down
      .lock()
      .ok()
      .and_then(|d| d.failed.as_ref().map(|(cause, _)| cause.clone()));
    match cause {
      Some(StoreError::Timeout(m)) => StoreError::Timeout(format!(
        "PostgreSQL at {} is not answering; failing at once while a reconnect is tried ({m})",
        self.address
      )),
      Some(cause) => StoreError::Connect(format!(
        "PostgreSQL at {} is unreachable; failing at once while a reconnect is tried ({cause})",
        self.address
      )),
      None => StoreError::Connect(format!(
        "no connection to PostgreSQL at {} could be opened",
        self.address
      )),
    }
  }

  /// Records how a connect attempt ended.
  fn connected(&self, result: Result<(), &StoreError>) {
    if let Ok(mut down) = self.down.lock() {
      down.probing = false;
      down.failed = match result {
        Ok(()) => None,
        Err(e) if e.is_connection_fault() => Some((e.clone(), Instant::now())),
        Err(_) => down.failed.take().map(|(cause, _)| (cause, Instant::now())),
      };
    }
  }

  /// Opens a lane with this call already counted on it.
  async fn open_lane(&self, write: bool) -> StoreResult<Arc<Lane>> {
    let opening = Opening(self);
    let client = match self.pool.get().await {
      Ok(client) => client,
      Err(e) => {
        // Waiting for a pool slot (held by connections being closed) says nothing of the server.
        let said_by_server = !matches!(e, PoolError::Timeout(TimeoutType::Wait));
        let err = StoreError::from(e).at(&self.address);
        if said_by_server {
          self.connected(Err(&err));
        }
        return Err(err);
      }
    };
    let backend = if self.prepared {
      match self.backend(&client).await {
        Ok(backend) => Some(backend),
        Err(e) => {
          // A connection that does not answer its first statement is not kept (nor pooled).
          drop(Object::take(client));
          self.connected(Err(&e));
          return Err(e);
        }
      }
    } else {
      None
    };
    self.connected(Ok(()));
    let lane = Arc::new(Lane {
      client: Some(client),
      dead: AtomicBool::new(false),
      in_flight: AtomicUsize::new(1),
      writes: AtomicUsize::new(write as usize),
      last_used_ms: AtomicU64::new(self.now_ms()),
      backend,
    });
    self
      .lanes
      .lock()
      .map_err(|_| poisoned())?
      .open
      .push(lane.clone());
    drop(opening);
    Ok(lane)
  }

  /// The server process of a new connection, bounded like the connect.
  async fn backend(&self, client: &Object) -> StoreResult<Backend> {
    let ask = client.query_one(
      "SELECT pid, backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()",
      &[],
    );
    match tokio::time::timeout(self.timeout, ask).await {
      Ok(row) => {
        let row = row?;
        Ok(Backend {
          pid: row.get(0),
          started: row.get(1),
        })
      }
      Err(_) => Err(StoreError::Timeout(format!(
        "PostgreSQL at {} did not answer a new connection's first statement within connectionTimeoutMillis",
        self.address
      ))),
    }
  }

  /// Runs `stmt`; returns its rows and the number of rows it changed.
  pub async fn run(
    self: &Arc<Self>,
    stmt: &Stmt,
    params: Params<'_>,
  ) -> StoreResult<(Vec<Row>, u64)> {
    self.run_in(None, stmt, params).await
  }

  /// `run`; with `begin`, inside a transaction that it opens (BEGIN and what follows it, say
  /// SET LOCAL), committed after the statement: the three go out together, one round trip. If
  /// the statement fails, the COMMIT rolls back.
  pub async fn run_in(
    self: &Arc<Self>,
    begin: Option<&str>,
    stmt: &Stmt,
    params: Params<'_>,
  ) -> StoreResult<(Vec<Row>, u64)> {
    let mut attempt = 1;
    loop {
      match self.run_once(begin, stmt, params).await {
        // Every statement the store sends is idempotent, so a retry cannot apply twice. Not
        // while closing: the store ended that connection itself.
        Err(e)
          if attempt < ATTEMPTS
            && is_lost_connection(&e)
            && !self.closing.load(Ordering::Acquire) =>
        {
          attempt += 1
        }
        result => return result,
      }
    }
  }

  async fn run_once(
    self: &Arc<Self>,
    begin: Option<&str>,
    stmt: &Stmt,
    params: Params<'_>,
  ) -> StoreResult<(Vec<Row>, u64)> {
    // Behind a pooler (unnamed statements), no pipelining: a transaction-mode pooler may hand
    // the next queued statement's server connection to another client. Nothing queues inside a
    // transaction either.
    let exclusive = !stmt.read_only || !self.prepared || begin.is_some();
    let guard = self.lane(exclusive).await?;
    let query = async {
      match begin {
        None => self.query(&guard.lane, stmt, params).await,
        Some(begin) => self.query_in(&guard.lane, begin, stmt, params).await,
      }
    };
    match tokio::time::timeout(self.query_timeout, query).await {
      Ok(result) => result,
      Err(_) => {
        self.give_up(&guard.lane, exclusive);
        Err(StoreError::GivenUp(format!(
          "PostgreSQL at {} did not answer within queryTimeout ({} ms); the connection was closed \
           and the statement may or may not have taken effect",
          self.address,
          self.query_timeout.as_millis()
        )))
      }
    }
  }

  /// A lane whose statement ran out of time: asks the server to cancel it (best effort, bounded),
  /// and takes the connection out of use; it closes once the calls on it have let go. When it
  /// carried a write (`wrote`), its backend is also ended from another connection, since a
  /// cancel does not take back bytes already sent (see `settled`).
  fn give_up(self: &Arc<Self>, lane: &Arc<Lane>, wrote: bool) {
    if !self.retire(lane) {
      return;
    }
    if let (true, Some(backend)) = (wrote, lane.backend.clone()) {
      self.ending.fetch_add(1, Ordering::AcqRel);
      tokio::spawn(self.clone().end_backend(backend));
    }
  }

  /// Takes a lane whose statement ran out of time out of use and asks the server to cancel that
  /// statement (best effort, bounded); false when it was retired already.
  fn retire(&self, lane: &Arc<Lane>) -> bool {
    if lane.dead.swap(true, Ordering::AcqRel) {
      return false;
    }
    if let Ok(mut lanes) = self.lanes.lock() {
      lanes.open.retain(|open| !Arc::ptr_eq(open, lane));
    }
    let cancel = lane.client().cancel_token();
    let tls = self.tls.clone();
    let bound = self.timeout;
    tokio::spawn(async move {
      let _ = tokio::time::timeout(bound, cancel.cancel_query(tls)).await;
    });
    self.changed.notify_waiters();
    true
  }

  /// Ends `backend` and waits until the server no longer lists it, trying again while the
  /// server cannot be reached; stops when the store closes or the role may not end it.
  async fn end_backend(self: Arc<Self>, backend: Backend) {
    const RETRY: Duration = Duration::from_millis(100);
    while !self.pool.is_closed() {
      match self.try_end_backend(&backend).await {
        Ok(true) => break,
        // 42501: this role may not signal that backend; nothing more can be done.
        Err(StoreError::Db { sqlstate, .. }) if sqlstate == "42501" => break,
        _ => tokio::time::sleep(RETRY).await,
      }
    }
    self.ending.fetch_sub(1, Ordering::AcqRel);
    self.ended.notify_waiters();
  }

  /// One attempt: true once `backend` is gone.
  async fn try_end_backend(&self, backend: &Backend) -> StoreResult<bool> {
    let guard = self.lane(true).await?;
    let client = guard.lane.client();
    let this = "FROM pg_stat_activity WHERE pid = $1 AND backend_start::text = $2";
    let params: Params = &[&backend.pid, &backend.started];
    let attempt = async {
      client
        .query(&format!("SELECT pg_terminate_backend(pid) {this}"), params)
        .await?;
      for _ in 0..50 {
        let alive = client.query(&format!("SELECT 1 {this}"), params).await?;
        if alive.is_empty() {
          return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
      }
      Ok(false)
    };
    match tokio::time::timeout(self.query_timeout, attempt).await {
      Ok(result) => result,
      Err(_) => {
        // Its connection has an unanswered statement queued: nothing may pipeline behind it.
        self.retire(&guard.lane);
        Ok(false)
      }
    }
  }

  /// Resolves once no write given up on can still reach the server: every backend being
  /// ended is gone (at once when there are none). Unbounded by design: callers hold only the
  /// sessions of the given-up write; their callers were answered by their deadline.
  pub async fn settled(&self) {
    loop {
      let ended = self.ended.notified();
      if self.ending.load(Ordering::Acquire) == 0 {
        return;
      }
      ended.await;
    }
  }

  /// True once `abandon_writes` ran: the store is closing.
  pub fn is_closing(&self) -> bool {
    self.closing.load(Ordering::Acquire)
  }

  /// Close: gives up every connection with a write in flight (its backend is ended), so no
  /// write answered as closed commits later.
  pub fn abandon_writes(self: &Arc<Self>) {
    self.closing.store(true, Ordering::Release);
    let busy: Vec<Arc<Lane>> = match self.lanes.lock() {
      Ok(lanes) => lanes
        .open
        .iter()
        .filter(|lane| lane.writes.load(Ordering::Acquire) > 0)
        .cloned()
        .collect(),
      Err(_) => return,
    };
    for lane in busy {
      self.give_up(&lane, true);
    }
  }

  async fn query(
    &self,
    lane: &Lane,
    stmt: &Stmt,
    params: Params<'_>,
  ) -> StoreResult<(Vec<Row>, u64)> {
    let client = lane.client();
    let stream = if self.prepared {
      let prepared = client.prepare_typed_cached(&stmt.sql, &stmt.types).await?;
      client.query_raw(&prepared, params.iter().copied()).await?
    } else {
      let typed = params.iter().copied().zip(stmt.types.iter().cloned());
      client.query_typed_raw(&stmt.sql, typed).await?
    };
    pin_mut!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.try_next().await? {
      rows.push(row);
    }
    Ok((rows, stream.rows_affected().unwrap_or(0)))
  }

  /// `query` between `begin` and COMMIT. Each request goes out when its future is first polled,
  /// and `join3` polls them in order, so the server receives them in this order, behind only
  /// the calls already queued on the lane (nothing queues behind an exclusive call). The
  /// statement is prepared first: a cache miss is a round trip of its own.
  async fn query_in(
    &self,
    lane: &Lane,
    begin: &str,
    stmt: &Stmt,
    params: Params<'_>,
  ) -> StoreResult<(Vec<Row>, u64)> {
    let client = lane.client();
    if self.prepared {
      client.prepare_typed_cached(&stmt.sql, &stmt.types).await?;
    }
    let (opened, result, committed) = join3(
      client.batch_execute(begin),
      self.query(lane, stmt, params),
      client.batch_execute("COMMIT"),
    )
    .await;
    opened?;
    let result = result?;
    committed?;
    Ok(result)
  }

  /// Runs DDL text (several statements) outside the prepared-statement path.
  pub async fn batch(self: &Arc<Self>, sql: &str) -> StoreResult<()> {
    let guard = self.lane(true).await?;
    let run = guard.lane.client().batch_execute(sql);
    match tokio::time::timeout(self.query_timeout, run).await {
      Ok(result) => Ok(result?),
      Err(_) => {
        self.give_up(&guard.lane, true);
        Err(StoreError::Timeout(format!(
          "PostgreSQL at {} did not answer within queryTimeout ({} ms); the connection was closed",
          self.address,
          self.query_timeout.as_millis()
        )))
      }
    }
  }

  /// Closes connections unused for `idle`, as pg's `idleTimeoutMillis` does.
  pub fn reap_idle(&self, idle: Duration) {
    let now = self.now_ms();
    let idle_ms = idle.as_millis() as u64;
    if let Ok(mut lanes) = self.lanes.lock() {
      lanes.open.retain(|lane| {
        lane.in_flight.load(Ordering::Acquire) > 0
          || now.saturating_sub(lane.last_used_ms.load(Ordering::Relaxed)) < idle_ms
      });
    }
    self.pool.retain(|_, metrics| metrics.last_used() < idle);
  }

  /// Refuses new connections and closes every open one.
  pub fn close(&self) {
    self.pool.close();
    if let Ok(mut lanes) = self.lanes.lock() {
      lanes.open.clear();
    }
  }

  pub fn status(&self) -> Status {
    let pool = self.pool.status();
    let lanes = self.lanes.lock().map(|l| {
      let idle = l
        .open
        .iter()
        .filter(|lane| lane.in_flight.load(Ordering::Acquire) == 0)
        .count();
      (l.open.len(), idle)
    });
    let (open, idle) = lanes.unwrap_or((0, 0));
    Status {
      max_size: self.max_size,
      size: pool.size.max(open),
      idle: pool.available + idle,
      waiting: pool.waiting + self.waiting.load(Ordering::Relaxed),
    }
  }
}

fn poisoned() -> StoreError {
  StoreError::Connect("the connection list is unusable after a panic".into())
}

/// The server went away mid-call (restart, `pg_terminate_backend`): a fresh connection may work.
fn is_lost_connection(err: &StoreError) -> bool {
  matches!(err, StoreError::ConnectionLost(_))
    || matches!(err, StoreError::Db { sqlstate, .. } if sqlstate == "57P01" || sqlstate == "57P02")
}
