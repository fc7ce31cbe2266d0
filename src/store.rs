//! The `#[napi]` session store: its options, its async methods and its life cycle.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use tokio::sync::{oneshot, Notify, OnceCell};

use crate::config::ConnectionOptions;
use crate::error::{StoreError, StoreResult};
use crate::pool::{Params, Target};
use crate::relay::Relay;
use crate::sql::{DataType, ExpireType, QuotedTable, Statements, Stmt, TableSpec};

const DEFAULT_MAX: u32 = 10;
const DEFAULT_TIMEOUT_MS: u32 = 5_000;
const DEFAULT_PRUNE_BATCH: u32 = 20_000;
/// After each prune batch, rest this many times as long as the batch took.
const PRUNE_REST_FACTOR: u32 = 6;
/// Batch statements of one kind in flight at once; more calls queue for the next batch.
const MAX_BATCHES: usize = 2;
/// Most calls one batch statement carries.
const BATCH_MAX: usize = 500;

/// A touch waiting for its batch, and where to send its answer.
struct PendingTouch {
  sid: String,
  expire_at: f64,
  reply: oneshot::Sender<StoreResult<bool>>,
}

/// A get waiting for its batch.
struct PendingGet {
  sid: String,
  now: f64,
  reply: oneshot::Sender<StoreResult<Option<String>>>,
}

/// A queued call, answerable with an error.
trait Pending {
  fn fail(self, err: &StoreError);
}

macro_rules! impl_pending {
  ($($kind:ty),*) => {$(
    impl Pending for $kind {
      fn fail(self, err: &StoreError) {
        // The caller may have gone (its task dropped): nobody to tell.
        let _ = self.reply.send(Err(err.clone()));
      }
    }
  )*};
}
impl_pending!(PendingGet, PendingTouch, PendingSet);

/// Answers every call of a batch with `err`.
fn fail_all(batch: Vec<impl Pending>, err: &StoreError) {
  batch.into_iter().for_each(|p| p.fail(err));
}

/// A running batch task: drains one kind's queue.
type BatchTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An upsert waiting for its batch.
struct PendingSet {
  sid: String,
  session_json: String,
  expire_at: f64,
  reply: oneshot::Sender<StoreResult<()>>,
}

/// Calls of one kind waiting to go out together. While a batch is in flight, new calls queue,
/// so under load one statement (one round trip, one commit) carries many; alone, a call goes
/// out at once.
struct Batches<T> {
  queue: Mutex<Vec<T>>,
  /// Batch tasks running.
  running: AtomicUsize,
}

impl<T> Batches<T> {
  fn new() -> Self {
    Batches {
      queue: Mutex::new(Vec::new()),
      running: AtomicUsize::new(0),
    }
  }

  /// Queues a call; true when the caller must start a batch task.
  fn push(&self, item: T) -> bool {
    match self.queue.lock() {
      Ok(mut queue) => queue.push(item),
      // Dropping the item drops its reply: the caller gets a coded error.
      Err(_) => return false,
    }
    if self.running.fetch_add(1, Ordering::AcqRel) < MAX_BATCHES {
      return true;
    }
    self.running.fetch_sub(1, Ordering::AcqRel);
    false
  }

  /// The next batch for a running task, or None when it should end.
  fn next(&self) -> Option<Vec<T>> {
    loop {
      let batch = match self.queue.lock() {
        Ok(mut queue) => {
          let n = queue.len().min(BATCH_MAX);
          queue.drain(..n).collect::<Vec<_>>()
        }
        Err(_) => Vec::new(),
      };
      if !batch.is_empty() {
        return Some(batch);
      }
      self.running.fetch_sub(1, Ordering::AcqRel);
      // A call queued after our look may have seen this task running and not started one.
      let queued = self.queue.lock().map(|q| !q.is_empty()).unwrap_or(false);
      if !queued {
        return None;
      }
      if self.running.fetch_add(1, Ordering::AcqRel) >= MAX_BATCHES {
        self.running.fetch_sub(1, Ordering::AcqRel);
        return None;
      }
    }
  }
}

/// Everything the native store needs; `index.js` fills it from the user's options.
#[napi(object)]
#[derive(Default)]
pub struct StoreOptions {
  /// The primary server: every write, and reads when there is no replica.
  pub connection: ConnectionOptions,
  /// Read replicas for `get`, `all`, `ids` and `length`.
  pub replicas: Option<Vec<ConnectionOptions>>,
  /// Schema of the table; default: the connection's `search_path`.
  pub schema_name: Option<String>,
  /// Table name; default `session`.
  pub table_name: Option<String>,
  /// Session id column; default `sid`.
  pub session_id_column: Option<String>,
  /// Session data column (`json`, `jsonb` or `text`); default `sess`.
  pub session_data_column: Option<String>,
  /// Expiry column (`timestamp` or `timestamptz`); default `expire`.
  pub expire_column: Option<String>,
  /// Create the table (and schema) on first use when it is missing.
  pub create_table_if_missing: Option<bool>,
  /// false: send every statement unnamed, for PgBouncer in transaction mode. Default true.
  pub prepared_statements: Option<bool>,
  /// Connections per server; default 10.
  pub max: Option<u32>,
  /// Longest wait to connect or for a free connection, in ms; default 5000.
  pub connection_timeout_millis: Option<u32>,
  /// Close connections idle this long, in ms; 0 keeps them. Default 10000.
  pub idle_timeout_millis: Option<u32>,
  /// Rows deleted per statement while pruning; default 20000.
  pub prune_batch_size: Option<u32>,
}

/// One live session as `all()` returns it.
#[napi(object)]
pub struct SessionRow {
  pub sid: String,
  /// The stored JSON text.
  pub data: String,
}

/// A pool's state, as deadpool reports it.
#[napi(object)]
pub struct PoolStats {
  pub max_size: u32,
  /// Open connections.
  pub size: u32,
  /// Open connections not in use.
  pub idle: u32,
  /// Calls waiting for a connection.
  pub waiting: u32,
}

/// What `stats()` returns.
#[napi(object)]
pub struct StoreStats {
  pub primary: PoolStats,
  pub replicas: Vec<PoolStats>,
  /// Completed calls by method name.
  pub operations: HashMap<String, i64>,
  /// Failed calls by error code.
  pub errors: HashMap<String, i64>,
}

#[derive(Clone, Copy)]
enum Op {
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
}

const OPS: [&str; 10] = [
  "get", "set", "touch", "destroy", "all", "ids", "length", "clear", "prune", "ping",
];

struct Inner {
  table: QuotedTable,
  primary: Target,
  replicas: Vec<Target>,
  next_replica: AtomicUsize,
  create_table: bool,
  prune_batch: i64,
  timeout: Duration,
  idle_timeout: Option<Duration>,
  statements: OnceCell<Statements>,
  closed: AtomicBool,
  reaper_started: AtomicBool,
  in_flight: AtomicUsize,
  drained: Notify,
  operations: [AtomicU64; OPS.len()],
  errors: Mutex<HashMap<String, i64>>,
  gets: Batches<PendingGet>,
  touches: Batches<PendingTouch>,
  sets: Batches<PendingSet>,
}

/// The native half of the store. `index.js` wraps it in an express-session `Store`.
#[napi]
pub struct NativeStore {
  inner: Arc<Inner>,
  /// How `start_get`, `start_set` and `start_touch` reach the worker and answer.
  relay: Relay,
}

#[napi]
impl NativeStore {
  /// `deliver` receives the answers of the `start_*` calls on the JS thread, as a flat array
  /// `[id, value, …]`; a failed call's id is negated and its value is the coded message.
  #[napi(
    constructor,
    ts_args_type = "options: StoreOptions, deliver: (answers: Array<number | string | boolean | null>) => void"
  )]
  pub fn new(options: StoreOptions, deliver: Function<'_, (), ()>) -> Result<Self> {
    Ok(NativeStore {
      inner: Arc::new(Inner::new(options)?),
      relay: Relay::new(deliver)?,
    })
  }

  /// Starts a `get`: `deliver` receives the stored JSON text of the live session, or null.
  #[napi]
  pub fn start_get(&self, env: Env, id: i32, sid: String, now_ms: f64) {
    let inner = self.inner.clone();
    self.relay.start(&env, id, async move {
      let read = inner.get(sid, now_ms / 1000.0);
      inner.call(Op::Get, read).await.into()
    });
  }

  /// Starts an upsert of one session: `deliver` receives null once it is stored.
  #[napi]
  pub fn start_set(&self, env: Env, id: i32, sid: String, session_json: String, expire_at_ms: f64) {
    let inner = self.inner.clone();
    self.relay.start(&env, id, async move {
      let write = inner.set(sid, session_json, expire_at_ms / 1000.0);
      inner.call(Op::Set, write).await.into()
    });
  }

  /// Starts moving a session's expiry: `deliver` receives true when the session exists.
  #[napi]
  pub fn start_touch(&self, env: Env, id: i32, sid: String, expire_at_ms: f64) {
    let inner = self.inner.clone();
    self.relay.start(&env, id, async move {
      let touch = inner.touch(sid, expire_at_ms / 1000.0);
      inner.call(Op::Touch, touch).await.into()
    });
  }

  /// Deletes a session; deleting a missing one is not an error.
  #[napi]
  pub async fn destroy(&self, sid: String) -> Result<()> {
    let inner = &self.inner;
    inner
      .call(Op::Destroy, inner.write(|s| &s.destroy, &[&sid]))
      .await
      .map(drop)
  }

  /// Every live session with its id.
  #[napi]
  pub async fn all(&self, now_ms: f64) -> Result<Vec<SessionRow>> {
    let inner = &self.inner;
    let now = now_ms / 1000.0;
    let rows = inner.call(Op::All, inner.read(|s| &s.all, &[&now])).await?;
    Ok(
      rows
        .iter()
        .map(|r| SessionRow {
          sid: r.get(0),
          data: r.get(1),
        })
        .collect(),
    )
  }

  /// The ids of every live session.
  #[napi]
  pub async fn ids(&self, now_ms: f64) -> Result<Vec<String>> {
    let inner = &self.inner;
    let now = now_ms / 1000.0;
    let rows = inner.call(Op::Ids, inner.read(|s| &s.ids, &[&now])).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
  }

  /// How many live sessions there are.
  #[napi]
  pub async fn length(&self, now_ms: f64) -> Result<i64> {
    let inner = &self.inner;
    let now = now_ms / 1000.0;
    let rows = inner
      .call(Op::Length, inner.read(|s| &s.count, &[&now]))
      .await?;
    Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0))
  }

  /// Deletes every session, live or not.
  #[napi]
  pub async fn clear(&self) -> Result<()> {
    let inner = &self.inner;
    inner
      .call(Op::Clear, inner.write(|s| &s.clear, &[]))
      .await
      .map(drop)
  }

  /// Deletes expired sessions in batches; resolves the number deleted.
  #[napi]
  pub async fn prune(&self, now_ms: f64) -> Result<i64> {
    let inner = &self.inner;
    inner.call(Op::Prune, inner.prune(now_ms / 1000.0)).await
  }

  /// One round trip to the primary: resolves once the database answers.
  #[napi]
  pub async fn ping(&self) -> Result<()> {
    let inner = &self.inner;
    let probe = async { inner.primary.batch("SELECT 1").await };
    inner.call(Op::Ping, probe).await
  }

  /// Refuses new calls, lets calls in flight finish (up to the connection timeout),
  /// then closes every connection. Calling it again does nothing.
  #[napi]
  pub async fn close(&self) -> Result<()> {
    let inner = &self.inner;
    if inner.closed.swap(true, Ordering::SeqCst) {
      return Ok(());
    }
    let deadline = tokio::time::Instant::now() + inner.timeout;
    loop {
      let drained = inner.drained.notified();
      if inner.in_flight.load(Ordering::SeqCst) == 0 {
        break;
      }
      if tokio::time::timeout_at(deadline, drained).await.is_err() {
        break;
      }
    }
    inner.primary.close();
    for replica in &inner.replicas {
      replica.close();
    }
    Ok(())
  }

  /// Pool sizes and call counters.
  #[napi]
  pub fn stats(&self) -> StoreStats {
    let inner = &self.inner;
    let operations = OPS
      .iter()
      .zip(&inner.operations)
      .map(|(name, n)| (name.to_string(), n.load(Ordering::Relaxed) as i64))
      .collect();
    StoreStats {
      primary: pool_stats(&inner.primary),
      replicas: inner.replicas.iter().map(pool_stats).collect(),
      operations,
      errors: inner.errors.lock().map(|e| e.clone()).unwrap_or_default(),
    }
  }

  /// True once `close()` was called.
  #[napi(getter)]
  pub fn closed(&self) -> bool {
    self.inner.closed.load(Ordering::SeqCst)
  }
}

fn pool_stats(target: &Target) -> PoolStats {
  let s = target.status();
  PoolStats {
    max_size: s.max_size as u32,
    size: s.size as u32,
    idle: s.idle as u32,
    waiting: s.waiting as u32,
  }
}

/// Counts a call in flight so `close()` can wait for it.
struct InFlight<'a>(&'a Inner);

impl Drop for InFlight<'_> {
  fn drop(&mut self) {
    if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
      self.0.drained.notify_waiters();
    }
  }
}

impl Inner {
  fn new(options: StoreOptions) -> StoreResult<Self> {
    let table = QuotedTable::new(TableSpec {
      schema: options.schema_name.filter(|s| !s.is_empty()),
      table: options.table_name.unwrap_or_else(|| "session".into()),
      session_id: options.session_id_column.unwrap_or_else(|| "sid".into()),
      session_data: options.session_data_column.unwrap_or_else(|| "sess".into()),
      expire: options.expire_column.unwrap_or_else(|| "expire".into()),
    })?;
    let max = options.max.filter(|m| *m > 0).unwrap_or(DEFAULT_MAX) as usize;
    // pg reads 0 as "wait forever"; a session store must never hang, so 0 means the default.
    let timeout_ms = options
      .connection_timeout_millis
      .filter(|t| *t > 0)
      .unwrap_or(DEFAULT_TIMEOUT_MS);
    let timeout = Duration::from_millis(timeout_ms as u64);
    let prepared = options.prepared_statements.unwrap_or(true);
    let primary = Target::new(&options.connection, max, timeout, prepared)?;
    let replicas = options
      .replicas
      .unwrap_or_default()
      .iter()
      .map(|r| Target::new(r, max, timeout, prepared))
      .collect::<StoreResult<Vec<_>>>()?;
    Ok(Inner {
      table,
      primary,
      replicas,
      next_replica: AtomicUsize::new(0),
      create_table: options.create_table_if_missing.unwrap_or(false),
      prune_batch: options
        .prune_batch_size
        .filter(|b| *b > 0)
        .unwrap_or(DEFAULT_PRUNE_BATCH) as i64,
      timeout,
      idle_timeout: match options.idle_timeout_millis {
        Some(0) => None,
        Some(ms) => Some(Duration::from_millis(ms as u64)),
        None => Some(Duration::from_secs(10)),
      },
      statements: OnceCell::new(),
      closed: AtomicBool::new(false),
      reaper_started: AtomicBool::new(false),
      in_flight: AtomicUsize::new(0),
      drained: Notify::new(),
      operations: Default::default(),
      errors: Mutex::new(HashMap::new()),
      gets: Batches::new(),
      touches: Batches::new(),
      sets: Batches::new(),
    })
  }

  /// Wraps every public call: refuses after close, counts, and turns errors into coded JS errors.
  async fn call<T>(
    self: &Arc<Self>,
    op: Op,
    work: impl Future<Output = StoreResult<T>>,
  ) -> Result<T> {
    self.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight(self);
    if self.closed.load(Ordering::SeqCst) {
      return Err(self.failed(StoreError::Closed));
    }
    self.start_reaper();
    match work.await {
      Ok(value) => {
        self.operations[op as usize].fetch_add(1, Ordering::Relaxed);
        Ok(value)
      }
      Err(err) => Err(self.failed(err)),
    }
  }

  fn failed(&self, err: StoreError) -> napi::Error {
    if let Ok(mut errors) = self.errors.lock() {
      *errors.entry(err.code().to_string()).or_default() += 1;
    }
    err.into()
  }

  /// The statements, built on first use after one catalog query (and table creation).
  async fn statements(&self) -> StoreResult<&Statements> {
    self
      .statements
      .get_or_try_init(|| self.inspect_table())
      .await
  }

  async fn inspect_table(&self) -> StoreResult<Statements> {
    let mut columns = self.column_types().await?;
    if columns.is_none() && self.create_table {
      match self.primary.batch(&self.table.create_table_sql()).await {
        // Another process created it between our look and our CREATE.
        Err(StoreError::Db { sqlstate, .. }) if sqlstate == "23505" || sqlstate == "42P07" => {}
        other => other?,
      }
      columns = self.column_types().await?;
    }
    let spec = self.table.spec();
    let Some(columns) = columns else {
      return Err(StoreError::NoTable(format!(
        "the session table {} does not exist; create it with table.sql or pass `createTableIfMissing: true`",
        self.table.qualified
      )));
    };
    let type_of = |name: &str| columns.get(name).map(|(t, _)| t.as_str());
    let sid_deterministic = columns.get(&spec.session_id).is_none_or(|(_, d)| *d);
    let sid_type = type_of(&spec.session_id);
    let data_type = type_of(&spec.session_data);
    let expire_type = type_of(&spec.expire);
    let missing = |col: &str, option: &str| {
      StoreError::Schema(format!(
        "the session table {} has no column \"{col}\"; set `columns.{option}` to the right name",
        self.table.qualified
      ))
    };
    sid_type.ok_or_else(|| missing(&spec.session_id, "session_id"))?;
    let data =
      DataType::from_pg(data_type.ok_or_else(|| missing(&spec.session_data, "session_data"))?)
        .ok_or_else(|| {
          StoreError::Schema(format!(
            "column \"{}\" is {}; the session data column must be json, jsonb or text",
            spec.session_data,
            data_type.unwrap_or_default()
          ))
        })?;
    let expire = ExpireType::from_pg(expire_type.ok_or_else(|| missing(&spec.expire, "expire"))?)
      .ok_or_else(|| {
      StoreError::Schema(format!(
        "column \"{}\" is {}; the expire column must be timestamp or timestamptz",
        spec.expire,
        expire_type.unwrap_or_default()
      ))
    })?;
    let mut statements = Statements::new(&self.table, data, expire);
    statements.batch_gets = sid_deterministic;
    Ok(statements)
  }

  /// None when the table does not exist; else column name → type name and whether its
  /// collation is deterministic.
  async fn column_types(&self) -> StoreResult<Option<HashMap<String, (String, bool)>>> {
    let (rows, _) = self
      .primary
      .run(&self.table.catalog_query(), &[&self.table.qualified])
      .await?;
    if !rows.first().map(|r| r.get::<_, bool>(0)).unwrap_or(false) {
      return Ok(None);
    }
    Ok(Some(
      rows
        .iter()
        .filter_map(|r| {
          Some((
            r.get::<_, Option<String>>(1)?,
            (r.get::<_, Option<String>>(2)?, r.get::<_, bool>(3)),
          ))
        })
        .collect(),
    ))
  }

  /// Queues a get; a batch task sends the queued ones as one `get_many` statement. With
  /// replicas, each get goes alone, so a miss on the replica can be asked of the primary; and
  /// alone too when the sid column's collation is nondeterministic (see `batch_gets`).
  async fn get(self: &Arc<Self>, sid: String, now: f64) -> StoreResult<Option<String>> {
    let st = self.statements().await?;
    if !self.replicas.is_empty() || !st.batch_gets {
      return self.get_one(st, &sid, now).await;
    }
    let pending = |reply| PendingGet { sid, now, reply };
    self
      .enqueue(&self.gets, pending, |me| Box::pin(me.send_gets()))
      .await
  }

  async fn get_one(&self, st: &Statements, sid: &str, now: f64) -> StoreResult<Option<String>> {
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
    let (rows, _) = self.primary.run(&st.get, params).await?;
    Ok(rows.first().map(|r| r.get(0)))
  }

  /// The next batch of `batches` with the statements to send it; a batch whose statements
  /// cannot be had is answered with that error here.
  async fn next_batch<T: Pending>(&self, batches: &Batches<T>) -> Option<(&Statements, Vec<T>)> {
    loop {
      let batch = batches.next()?;
      match self.statements().await {
        Ok(st) => return Some((st, batch)),
        Err(e) => fail_all(batch, &e),
      }
    }
  }

  async fn send_gets(self: Arc<Self>) {
    // One turn of the scheduler lets the gets that arrived together join this batch.
    tokio::task::yield_now().await;
    while let Some((st, batch)) = self.next_batch(&self.gets).await {
      if batch.len() == 1 {
        let get = batch.into_iter().next().expect("a batch of one");
        let _ = get.reply.send(self.get_one(st, &get.sid, get.now).await);
        continue;
      }
      let sids: Vec<&str> = batch.iter().map(|g| g.sid.as_str()).collect();
      // The earliest caller's clock: a session live when any of these calls was made is
      // returned (calls in one batch were made within a few milliseconds of each other).
      let now = batch.iter().map(|g| g.now).fold(f64::INFINITY, f64::min);
      let params: Params = &[&sids, &now];
      match self.primary.run(&st.get_many, params).await {
        Ok((rows, _)) => {
          let found: HashMap<&str, &str> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
          for get in batch {
            let text = found.get(get.sid.as_str()).map(|t| t.to_string());
            let _ = get.reply.send(Ok(text));
          }
        }
        Err(e) if e.fails_whole_batch() => {
          fail_all(batch, &e);
        }
        // A failure one of the gets may own: one by one, so each caller gets its own answer.
        Err(_) => {
          for get in batch {
            let _ = get.reply.send(self.get_one(st, &get.sid, get.now).await);
          }
        }
      }
    }
  }

  /// Queues a touch; a batch task sends the queued touches as one `touch_many` statement.
  async fn touch(self: &Arc<Self>, sid: String, expire_at: f64) -> StoreResult<bool> {
    let pending = |reply| PendingTouch {
      sid,
      expire_at,
      reply,
    };
    self
      .enqueue(&self.touches, pending, |me| Box::pin(me.send_touches()))
      .await
  }

  /// Queues an upsert; a batch task sends the queued ones as one `set_many` statement.
  async fn set(
    self: &Arc<Self>,
    sid: String,
    session_json: String,
    expire_at: f64,
  ) -> StoreResult<()> {
    let pending = |reply| PendingSet {
      sid,
      session_json,
      expire_at,
      reply,
    };
    self
      .enqueue(&self.sets, pending, |me| Box::pin(me.send_sets()))
      .await
  }

  /// Queues one call on `batches` and waits for its answer; the call that finds no batch task
  /// running starts `send`, which drains the queue.
  async fn enqueue<T, R>(
    self: &Arc<Self>,
    batches: &Batches<T>,
    pending: impl FnOnce(oneshot::Sender<StoreResult<R>>) -> T,
    send: fn(Arc<Self>) -> BatchTask,
  ) -> StoreResult<R> {
    self.statements().await?;
    let (reply, answer) = oneshot::channel();
    if batches.push(pending(reply)) {
      tokio::spawn(send(self.clone()));
    }
    answer.await.map_err(|_| StoreError::dropped())?
  }

  async fn send_touches(self: Arc<Self>) {
    // One turn of the scheduler lets the touches that arrived together join this batch.
    tokio::task::yield_now().await;
    while let Some((st, batch)) = self.next_batch(&self.touches).await {
      let result = if batch.len() > 1 {
        let sids: Vec<&str> = batch.iter().map(|t| t.sid.as_str()).collect();
        let expire_ats: Vec<f64> = batch.iter().map(|t| t.expire_at).collect();
        let params: Params = &[&sids, &expire_ats];
        Some(self.primary.run(&st.touch_many, params).await)
      } else {
        None
      };
      match result {
        Some(Ok((rows, _))) => {
          let touched: HashSet<&str> = rows.iter().map(|r| r.get(0)).collect();
          for touch in batch {
            let found = touched.contains(touch.sid.as_str());
            let _ = touch.reply.send(Ok(found));
          }
        }
        Some(Err(e)) if e.fails_whole_batch() => {
          fail_all(batch, &e);
        }
        // Alone, or the batch failed for a reason one of its touches may own: one by one,
        // so each caller gets its own answer.
        _ => {
          for touch in batch {
            let params: Params = &[&touch.sid, &touch.expire_at];
            let answer = self.primary.run(&st.touch, params).await;
            let _ = touch.reply.send(answer.map(|(_, changed)| changed > 0));
          }
        }
      }
    }
  }

  async fn send_sets(self: Arc<Self>) {
    tokio::task::yield_now().await;
    while let Some((st, mut batch)) = self.next_batch(&self.sets).await {
      // One upsert cannot change a row twice: of two writes to one session the later wins,
      // as if they had run one after the other; both are acknowledged.
      let mut superseded = Vec::new();
      let mut i = 0;
      while i < batch.len() {
        if batch[i + 1..].iter().any(|later| later.sid == batch[i].sid) {
          superseded.push(batch.remove(i));
        } else {
          i += 1;
        }
      }
      let result = if batch.len() > 1 {
        let sids: Vec<&str> = batch.iter().map(|t| t.sid.as_str()).collect();
        let jsons: Vec<&str> = batch.iter().map(|t| t.session_json.as_str()).collect();
        let expire_ats: Vec<f64> = batch.iter().map(|t| t.expire_at).collect();
        let params: Params = &[&sids, &jsons, &expire_ats];
        Some(self.primary.run(&st.set_many, params).await)
      } else {
        None
      };
      // The answer each session id got, so a superseded write shares its successor's fate.
      let mut outcomes: HashMap<String, StoreResult<()>> = HashMap::new();
      match result {
        Some(Ok(_)) => {
          for set in batch {
            outcomes.insert(set.sid, Ok(()));
            let _ = set.reply.send(Ok(()));
          }
        }
        Some(Err(e)) if e.fails_whole_batch() => {
          for set in batch {
            outcomes.insert(set.sid, Err(e.clone()));
            let _ = set.reply.send(Err(e.clone()));
          }
        }
        // Alone, or one session's data may be what the database refused: one by one.
        _ => {
          for set in batch {
            let params: Params = &[&set.sid, &set.session_json, &set.expire_at];
            let answer = self.primary.run(&st.set, params).await.map(drop);
            let _ = set.reply.send(answer.clone());
            outcomes.insert(set.sid, answer);
          }
        }
      }
      for set in superseded {
        let answer = outcomes
          .get(&set.sid)
          .cloned()
          .unwrap_or(Err(StoreError::dropped()));
        let _ = set.reply.send(answer);
      }
    }
  }

  async fn write(&self, pick: fn(&Statements) -> &Stmt, params: Params<'_>) -> StoreResult<u64> {
    let st = self.statements().await?;
    Ok(self.primary.run(pick(st), params).await?.1)
  }

  /// A read that a replica may answer; falls back to the primary when the replica is away.
  async fn read(
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

  async fn prune(&self, now: f64) -> StoreResult<i64> {
    let st = self.statements().await?;
    let mut deleted = 0;
    // Bounded batches keep each statement short, so concurrent calls are not held up.
    loop {
      let started = tokio::time::Instant::now();
      let (_, n) = self
        .primary
        .run(&st.prune_batch, &[&now, &self.prune_batch])
        .await?;
      deleted += n as i64;
      if (n as i64) < self.prune_batch || self.closed.load(Ordering::SeqCst) {
        return Ok(deleted);
      }
      // Rest six times as long as the batch ran: pruning a large backlog takes at most a seventh
      // of the database's time, so live requests keep their latency. Fewer, larger batches kept
      // get p99 lower than many small ones (measured in bench/table-size.js).
      tokio::time::sleep(started.elapsed() * PRUNE_REST_FACTOR).await;
    }
  }

  fn replica(&self) -> Option<&Target> {
    if self.replicas.is_empty() {
      return None;
    }
    let i = self.next_replica.fetch_add(1, Ordering::Relaxed) % self.replicas.len();
    Some(&self.replicas[i])
  }

  /// Starts, once, the task that closes idle connections; it holds the store weakly.
  fn start_reaper(self: &Arc<Self>) {
    let Some(idle) = self.idle_timeout else {
      return;
    };
    if self.reaper_started.swap(true, Ordering::Relaxed) {
      return;
    }
    let me: Weak<Inner> = Arc::downgrade(self);
    tokio::spawn(async move {
      let mut tick = tokio::time::interval((idle / 2).max(Duration::from_millis(500)));
      loop {
        tick.tick().await;
        let Some(inner) = me.upgrade() else { return };
        if inner.closed.load(Ordering::SeqCst) {
          return;
        }
        inner.primary.reap_idle(idle);
        for replica in &inner.replicas {
          replica.reap_idle(idle);
        }
      }
    });
  }
}

/// One tokio worker instead of one per core: a call's Rust work is a few microseconds, and on
/// a small machine a second worker costs more in wake-ups and work stealing than it saves
/// (the cores also run Node's main thread and PostgreSQL).
#[napi_derive::module_init]
fn init_runtime() {
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(1)
    .enable_all()
    .build();
  // On failure napi builds its default runtime.
  if let Ok(runtime) = runtime {
    napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
  }
}
