//! The `#[napi]` session store: the class JS sees. Ordered calls (get, set, touch, destroy,
//! clear) go through `calls`; the others run on `engine` as plain async methods.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::calls::{Calls, Work};
use crate::config::ConnectionOptions;
use crate::engine::{Engine, EngineOptions, Op};
use crate::error::StoreError;
use crate::pool::Target;
use crate::protect::Opened;
use crate::relay::{Answer, Relay};
use crate::sql::{TableSpec, EARLIEST_EXPIRY_SECONDS, TOMBSTONE_RECLAIM_SECONDS};
use crate::table::Wants;

/// How long a tombstone keeps a destroyed id from coming back at least, past the session's own
/// expiry: longer than any request that loaded the session before the logout can still run.
pub const TOMBSTONE_GUARD_SECONDS: f64 = 86_400.0;

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
  /// Owner column, for listUserSessions / destroyUserSessions; default none.
  pub user_id_column: Option<String>,
  /// When the session was first saved (`columns.created_at`); default none.
  pub created_at_column: Option<String>,
  /// The clock of the last set or written touch (`columns.last_seen`); default none.
  pub last_seen_column: Option<String>,
  /// Columns a set fills with values JS takes from the session (`extraColumns`), in the order
  /// `start_set` gives their values.
  pub extra_columns: Option<Vec<String>>,
  /// A session older than its created_at plus this many ms reads as missing (`maxLifetime`).
  pub max_lifetime: Option<f64>,
  /// A destroyed id stays destroyed (a tombstone row) against late writes; default true.
  pub tombstones: Option<bool>,
  /// Seal session data with AES-256-GCM; the first secret seals, every one opens.
  pub secrets: Option<Vec<String>>,
  /// Store SHA-256 hashes of session ids instead of the ids.
  pub hash_session_ids: Option<bool>,
  /// Create the table (and schema) on first use when it is missing.
  pub create_table_if_missing: Option<bool>,
  /// On a Citus coordinator, distribute the table `create_table_if_missing` creates on the
  /// session id column; false keeps it a local table. Default true.
  pub distribute_table: Option<bool>,
  /// false: send every statement unnamed, for PgBouncer in transaction mode. Default true.
  pub prepared_statements: Option<bool>,
  /// On Citus, send each shard's statements to the worker node holding it. Default true.
  pub route_to_nodes: Option<bool>,
  /// Connections per server; default 10.
  pub max: Option<u32>,
  /// Longest wait to connect or for a free connection, in ms; default 5000.
  pub connection_timeout_millis: Option<u32>,
  /// Longest wait for a statement's answer, in ms, after which its connection is closed; default 10000.
  pub query_timeout: Option<u32>,
  /// Close connections idle this long, in ms; 0 keeps them. Default 10000.
  pub idle_timeout_millis: Option<u32>,
  /// Rows deleted per statement while pruning; default 20000.
  pub prune_batch_size: Option<u32>,
}

/// One live session as `all()` returns it.
#[napi(object)]
pub struct SessionRow {
  /// The id as stored (its hash with `hashSessionIds`).
  pub sid: String,
  /// The session's JSON text.
  pub data: String,
}

/// One live session of a user, as `listUserSessions` returns it.
#[napi(object)]
pub struct UserSessionRow {
  /// The id as stored (its hash with `hashSessionIds`).
  pub sid: String,
  /// The session's JSON text.
  pub data: String,
  /// When it expires, in ms since the epoch.
  pub expires: f64,
  /// `columns.created_at` in ms since the epoch (none when not configured or not yet written).
  pub created_at: Option<f64>,
  /// `columns.last_seen` in ms since the epoch, likewise.
  pub last_seen: Option<f64>,
  /// The `extraColumns` as a JSON object's text, when configured.
  pub extra: Option<String>,
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

/// A Citus worker node's pool (`stats().nodes`).
#[napi(object)]
pub struct NodeStats {
  /// `host:port`, as the cluster names the node.
  pub address: String,
  /// The statements of the node's shards go to it now (else to the coordinator).
  pub in_use: bool,
  pub pool: PoolStats,
}

/// What `stats()` returns.
#[napi(object)]
pub struct StoreStats {
  pub primary: PoolStats,
  pub replicas: Vec<PoolStats>,
  /// Citus: the worker nodes holding the table's shards, which the store sends their statements.
  pub nodes: Vec<NodeStats>,
  /// Completed calls by method name.
  pub operations: HashMap<String, i64>,
  /// Failed calls by error code.
  pub errors: HashMap<String, i64>,
}

/// The native half of the store. `index.js` wraps it in an express-session `Store`.
#[napi]
pub struct NativeStore {
  engine: Arc<Engine>,
  calls: Arc<Calls>,
  /// Where the answers of the `start_*` calls go.
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
    let engine = Arc::new(Engine::new(EngineOptions {
      connection: options.connection,
      replicas: options.replicas.unwrap_or_default(),
      table: TableSpec {
        schema: options.schema_name.filter(|s| !s.is_empty()),
        table: options.table_name.unwrap_or_else(|| "session".into()),
        session_id: options.session_id_column.unwrap_or_else(|| "sid".into()),
        session_data: options.session_data_column.unwrap_or_else(|| "sess".into()),
        expire: options.expire_column.unwrap_or_else(|| "expire".into()),
        user_id: options.user_id_column.filter(|s| !s.is_empty()),
        created_at: options.created_at_column.filter(|s| !s.is_empty()),
        last_seen: options.last_seen_column.filter(|s| !s.is_empty()),
        extras: options.extra_columns.unwrap_or_default(),
        max_lifetime: options.max_lifetime.map(|ms| ms / 1000.0),
      },
      wants: Wants {
        create: options.create_table_if_missing.unwrap_or(false),
        distribute: options.distribute_table.unwrap_or(true),
        tombstones: options.tombstones.unwrap_or(true),
        hashed_ids: options.hash_session_ids.unwrap_or(false),
        sealed: options.secrets.as_ref().is_some_and(|s| !s.is_empty()),
      },
      secrets: options.secrets.unwrap_or_default(),
      prepared: options.prepared_statements.unwrap_or(true),
      route_to_nodes: options.route_to_nodes.unwrap_or(true),
      max: options.max,
      connection_timeout_ms: options.connection_timeout_millis,
      query_timeout_ms: options.query_timeout,
      idle_timeout_ms: options.idle_timeout_millis,
      prune_batch: options.prune_batch_size,
    })?);
    Ok(NativeStore {
      calls: Arc::new(Calls::new(engine.clone())),
      engine,
      relay: Relay::new(deliver)?,
    })
  }

  /// Starts a `get`: `deliver` receives the stored JSON text of the live session, or null.
  #[napi]
  pub fn start_get(&self, env: Env, id: i32, sid: String, now_ms: f64) {
    let work = Work::Get {
      now: now_ms / 1000.0,
    };
    self.enqueue(&env, id, sid, work);
  }

  /// Starts an upsert of one session: `deliver` receives null once it is stored.
  #[napi]
  #[allow(clippy::too_many_arguments)] // napi passes each JS argument on its own
  pub fn start_set(
    &self,
    env: Env,
    id: i32,
    sid: String,
    session_json: String,
    expire_at_ms: f64,
    user_id: Option<String>,
    now_ms: f64,
    extra: Option<Vec<Option<String>>>,
  ) {
    let protect = &self.engine.protect;
    let stored = protect.stored_id(sid);
    match protect.seal(&stored, session_json) {
      Ok(session_json) => {
        let work = Work::Set {
          session_json,
          expire_at: expiry(expire_at_ms),
          user_id,
          tombstones_before: now_ms / 1000.0 - TOMBSTONE_RECLAIM_SECONDS,
          now: now_ms / 1000.0,
          extra: extra.unwrap_or_default(),
        };
        self
          .calls
          .enqueue(stored, work, self.relay.ticket(&env, id));
      }
      Err(e) => {
        let message = self.engine.failed(e).reason;
        self.relay.ticket(&env, id).send(Answer::Failed(message));
      }
    }
  }

  /// Starts moving a session's expiry: `deliver` receives true when the session exists.
  #[napi]
  pub fn start_touch(&self, env: Env, id: i32, sid: String, expire_at_ms: f64, now_ms: f64) {
    let work = Work::Touch {
      expire_at: expiry(expire_at_ms),
      now: now_ms / 1000.0,
    };
    self.enqueue(&env, id, sid, work);
  }

  /// A touch the shim skips (within the touch bound): true when it is queued behind the
  /// session's pending calls and `deliver` will answer it after them; false when none are
  /// pending, and the shim answers it itself.
  #[napi]
  pub fn start_skipped_touch(&self, env: Env, id: i32, sid: String) -> bool {
    let stored = self.engine.protect.stored_id(sid);
    if self
      .calls
      .enqueue_skip(stored, || self.relay.ticket(&env, id))
    {
      return true;
    }
    // An answer of this session may be on its way to JS still: this one goes behind it.
    if self.relay.has_undelivered() {
      self.relay.ticket(&env, id).send(Answer::Found(false));
      return true;
    }
    false
  }

  /// Starts destroying a session (a missing one is not an error): `deliver` receives null.
  /// With tombstones the row stays as one, so no late write brings the id back.
  #[napi]
  pub fn start_destroy(&self, env: Env, id: i32, sid: String, now_ms: f64) {
    let work = Work::Destroy {
      until: now_ms / 1000.0 + TOMBSTONE_GUARD_SECONDS,
    };
    self.enqueue(&env, id, sid, work);
  }

  fn enqueue(&self, env: &Env, id: i32, sid: String, work: Work) {
    let stored = self.engine.protect.stored_id(sid);
    self.calls.enqueue(stored, work, self.relay.ticket(env, id));
  }

  /// Sends the calls started since the last flush: the JS shim calls it once per turn of the
  /// event loop (setImmediate), so one wake-up of the worker carries them all.
  #[napi]
  pub fn flush(&self) {
    self.calls.flush();
  }

  /// Starts deleting every session, after every call made before it: `deliver` receives null.
  #[napi]
  pub fn start_clear(&self, env: Env, id: i32) {
    self.calls.enqueue_clear(self.relay.ticket(&env, id));
  }

  /// Every live session with its id.
  #[napi]
  pub async fn all(&self, now_ms: f64) -> Result<Vec<SessionRow>> {
    let engine = &self.engine;
    let now = now_ms / 1000.0;
    let rows = engine
      .call(Op::All, engine.read(|s| &s.all, &[&now]))
      .await?;
    Ok(
      rows
        .iter()
        .filter_map(|r| {
          let (sid, data) = self.opened(r)?;
          Some(SessionRow { sid, data })
        })
        .collect(),
    )
  }

  /// A user's live sessions (`columns.user_id`), the latest expiry first.
  #[napi]
  pub async fn list_user_sessions(
    &self,
    user_id: String,
    now_ms: f64,
  ) -> Result<Vec<UserSessionRow>> {
    let engine = &self.engine;
    let now = now_ms / 1000.0;
    let list = async {
      let st = engine.statements().await?;
      let stmt = st.user_sessions.as_ref().ok_or_else(no_user_column)?;
      Ok(engine.primary.run(stmt, &[&user_id, &now]).await?.0)
    };
    let rows = engine.call(Op::UserSessions, list).await?;
    Ok(
      rows
        .iter()
        .filter_map(|r| {
          let (sid, data) = self.opened(r)?;
          let ms = |i| r.get::<_, Option<f64>>(i).map(|s| s * 1000.0);
          Some(UserSessionRow {
            sid,
            data,
            expires: r.get::<_, f64>(2) * 1000.0,
            created_at: ms(3),
            last_seen: ms(4),
            extra: r.get(5),
          })
        })
        .collect(),
    )
  }

  /// Destroys a user's live sessions (as `start_destroy` does each), but `except` (a session id
  /// as the app knows it), or only those of `sids` (ids as listUserSessions gives them); resolves
  /// how many.
  #[napi]
  pub async fn destroy_user_sessions(
    &self,
    user_id: String,
    except: Option<String>,
    sids: Option<Vec<String>>,
    now_ms: f64,
  ) -> Result<i64> {
    let engine = &self.engine;
    let now = now_ms / 1000.0;
    let until = now + TOMBSTONE_GUARD_SECONDS;
    let except = except.map(|sid| engine.protect.stored_id(sid));
    let destroy = async {
      let st = engine.statements().await?;
      let stmt = st
        .destroy_user_sessions
        .as_ref()
        .ok_or_else(no_user_column)?;
      let (_, n) = engine
        .primary
        .run(stmt, &[&user_id, &except, &now, &until, &sids])
        .await?;
      Ok(n as i64)
    };
    engine.call(Op::DestroyUserSessions, destroy).await
  }

  /// A row's (id, session JSON): None for a NULL in the data column (a row written by hand) or
  /// for data no secret opens.
  fn opened(&self, row: &tokio_postgres::Row) -> Option<(String, String)> {
    let sid: String = row.get(0);
    match self
      .engine
      .protect
      .open(&sid, row.get::<_, Option<String>>(1)?)
    {
      Opened::Text(json) => Some((sid, json)),
      Opened::Unreadable => None,
    }
  }

  /// The ids of every live session.
  #[napi]
  pub async fn ids(&self, now_ms: f64) -> Result<Vec<String>> {
    let engine = &self.engine;
    let now = now_ms / 1000.0;
    let rows = engine
      .call(Op::Ids, engine.read(|s| &s.ids, &[&now]))
      .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
  }

  /// How many live sessions there are.
  #[napi]
  pub async fn length(&self, now_ms: f64) -> Result<i64> {
    let engine = &self.engine;
    let now = now_ms / 1000.0;
    let rows = engine
      .call(Op::Length, engine.read(|s| &s.count, &[&now]))
      .await?;
    Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0))
  }

  /// Deletes expired sessions in batches; resolves the number deleted.
  #[napi]
  pub async fn prune(&self, now_ms: f64) -> Result<i64> {
    let engine = &self.engine;
    engine.call(Op::Prune, engine.prune(now_ms / 1000.0)).await
  }

  /// Resolves once the primary answers and the table is usable (created when asked to);
  /// rejects with the coded error that calls would meet.
  #[napi]
  pub async fn ready(&self) -> Result<()> {
    let engine = &self.engine;
    let check = async { engine.statements().await.map(drop) };
    engine.call(Op::Ping, check).await
  }

  /// One round trip to the primary: resolves once the database answers.
  #[napi]
  pub async fn ping(&self) -> Result<()> {
    let engine = &self.engine;
    let probe = async { engine.primary.batch("SELECT 1").await };
    engine.call(Op::Ping, probe).await
  }

  /// Refuses new calls, lets calls in flight finish (up to connectionTimeoutMillis), ends the
  /// backends of writes still in flight, answers every call still pending with
  /// ERR_PG_SESSION_CLOSED, then closes every connection.
  /// Calling it again does nothing.
  #[napi]
  pub async fn close(&self) -> Result<()> {
    let engine = &self.engine;
    if !engine.mark_closed() {
      return Ok(());
    }
    let deadline = tokio::time::Instant::now() + engine.timeout;
    while !(self.calls.is_idle() && engine.unordered_in_flight() == 0)
      && tokio::time::Instant::now() < deadline
    {
      tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Writes still waiting (a row lock): their backends are ended, and close() resolves once
    // they are gone (bounded), so none commits after close().
    engine.abandon_writes();
    self
      .calls
      .settle_all(&StoreError::Closed, &StoreError::ClosedInFlight);
    let _ = tokio::time::timeout(engine.timeout, engine.settled()).await;
    engine.close_pools();
    Ok(())
  }

  /// Pool sizes and call counters.
  #[napi]
  pub fn stats(&self) -> StoreStats {
    let engine = &self.engine;
    StoreStats {
      primary: pool_stats(&engine.primary),
      replicas: engine.replicas.iter().map(|r| pool_stats(r)).collect(),
      nodes: engine
        .nodes()
        .map(|(target, in_use)| NodeStats {
          address: target.address.clone(),
          in_use,
          pool: pool_stats(target),
        })
        .collect(),
      operations: engine.operations(),
      errors: engine.errors(),
    }
  }

  /// True once `close()` was called.
  #[napi(getter)]
  pub fn closed(&self) -> bool {
    self.engine.is_closed()
  }
}

/// An expiry in ms as the statements take it (seconds), never so early that it reads as a
/// tombstone.
fn expiry(expire_at_ms: f64) -> f64 {
  (expire_at_ms / 1000.0).max(EARLIEST_EXPIRY_SECONDS)
}

fn no_user_column() -> StoreError {
  StoreError::InvalidOption(
    "listUserSessions and destroyUserSessions need `columns.user_id`: the column that names each session's user".into(),
  )
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

/// One tokio worker instead of one per core: a call's Rust work is a few microseconds, and on
/// a small machine a second worker costs more in wake-ups and work stealing than it saves
/// (the cores also run Node's main thread and PostgreSQL).
#[napi_derive::module_init]
fn init_runtime() {
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(1)
    .on_thread_start(yield_to_js_thread)
    .enable_all()
    .build();
  // On failure napi builds its default runtime.
  if let Ok(runtime) = runtime {
    napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
  }
}

/// On Linux the runtime's threads run as SCHED_BATCH: the same share of the CPU, but a woken
/// worker does not preempt the thread running (on a core it shares with Node's JS thread, it
/// runs when that thread waits or its slice ends). It then wakes once for several turns' calls
/// and answers instead of once per turn: with the app alone on one core, a third of the
/// context switches and 0.85× the app's CPU per `/write` request (docs/benchmarks.md). Where
/// the call is refused (a sandbox), or on other systems, the default policy stays.
fn yield_to_js_thread() {
  #[cfg(target_os = "linux")]
  {
    // Zeroed (priority 0): musl's sched_param has more fields than glibc's.
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // The system call itself (0: this thread): musl's `sched_setscheduler` always fails.
    unsafe {
      libc::syscall(
        libc::SYS_sched_setscheduler,
        0,
        libc::SCHED_BATCH,
        &param as *const libc::sched_param,
      )
    };
  }
}
