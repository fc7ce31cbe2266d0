//! Connection pools and running one statement on them, retried once over a lost connection.
//!
//! Calls share connections ("lanes") instead of checking one out each: a call takes an idle
//! lane, or opens a new one while below `max`, and only when every lane is busy does it queue
//! on the least loaded one. tokio-postgres pipelines the statements queued on one connection
//! (one write and one read for many), which is where the CPU per call goes down under load.
//! Nothing queues behind a write (it may wait on a row lock): a lane with a write in flight is
//! left alone until it ends, so one slow write does not stall unrelated calls.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use futures_util::{pin_mut, TryStreamExt};
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::config::{self, ConnectionOptions};
use crate::error::{StoreError, StoreResult};
use crate::sql::Stmt;

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// How many times one call may meet a connection that died under it.
const ATTEMPTS: usize = 3;

/// One open connection shared by the calls running on it.
struct Lane {
  client: Object,
  in_flight: AtomicUsize,
  /// Writes in flight: a write may wait on a row lock, so nothing queues behind one.
  writes: AtomicUsize,
  /// Milliseconds after `Target::epoch` when the last call finished.
  last_used_ms: AtomicU64,
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
  /// false: unnamed statements with explicit types, for PgBouncer in transaction mode.
  prepared: bool,
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

/// Undoes an `opening` count if the connect is abandoned or fails.
struct Opening<'a>(&'a Target);

impl Drop for Opening<'_> {
  fn drop(&mut self) {
    if let Ok(mut lanes) = self.0.lanes.lock() {
      lanes.opening -= 1;
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
  pub fn new(
    options: &ConnectionOptions,
    max_size: usize,
    timeout: Duration,
    prepared: bool,
  ) -> StoreResult<Self> {
    let settings = config::resolve(options, timeout, &|key| std::env::var(key).ok())?;
    let tls = config::make_tls(&settings.tls)?;
    let manager = Manager::from_config(
      settings.config,
      tls,
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
      prepared,
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
        lanes.open.retain(|lane| !lane.client.is_closed());
        let least = lanes
          .open
          .iter()
          .filter(|lane| lane.writes.load(Ordering::Acquire) == 0)
          .min_by_key(|lane| lane.in_flight.load(Ordering::Acquire))
          .cloned();
        let pick = match least {
          Some(lane) if lane.in_flight.load(Ordering::Acquire) == 0 => Pick::Lane(lane),
          _ if lanes.open.len() + lanes.opening < self.max_size => {
            lanes.opening += 1;
            Pick::Open
          }
          Some(lane) => Pick::Lane(lane),
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
            return Err(StoreError::Timeout(
              "no PostgreSQL connection within connectionTimeoutMillis: every connection is busy \
               with a write that is still waiting (a row lock, a slow server)"
                .into(),
            ));
          }
        }
      }
    }
  }

  /// Opens a lane with this call already counted on it.
  async fn open_lane(&self, write: bool) -> StoreResult<Arc<Lane>> {
    let opening = Opening(self);
    let client = self.pool.get().await?;
    let lane = Arc::new(Lane {
      client,
      in_flight: AtomicUsize::new(1),
      writes: AtomicUsize::new(write as usize),
      last_used_ms: AtomicU64::new(self.now_ms()),
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

  /// Runs `stmt`; returns its rows and the number of rows it changed.
  pub async fn run(&self, stmt: &Stmt, params: Params<'_>) -> StoreResult<(Vec<Row>, u64)> {
    let mut attempt = 1;
    loop {
      match self.run_once(stmt, params).await {
        // Every statement the store sends is idempotent, so a retry cannot apply twice.
        Err(e) if attempt < ATTEMPTS && is_lost_connection(&e) => attempt += 1,
        result => return result,
      }
    }
  }

  async fn run_once(&self, stmt: &Stmt, params: Params<'_>) -> StoreResult<(Vec<Row>, u64)> {
    // Behind a pooler (unnamed statements), no pipelining: a transaction-mode pooler may hand
    // the next queued statement's server connection to another client.
    let exclusive = !stmt.read_only || !self.prepared;
    let guard = self.lane(exclusive).await?;
    let client = &guard.lane.client;
    let stream = if self.prepared {
      let prepared = client.prepare_typed_cached(&stmt.sql, stmt.types).await?;
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

  /// Runs DDL text (several statements) outside the prepared-statement path.
  pub async fn batch(&self, sql: &str) -> StoreResult<()> {
    let guard = self.lane(true).await?;
    guard.lane.client.batch_execute(sql).await?;
    Ok(())
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
