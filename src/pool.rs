//! Connection pools and running one statement on them, retried once over a lost connection.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::config::{self, ConnectionOptions};
use crate::error::{StoreError, StoreResult};
use crate::sql::Stmt;

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// How many times one call may meet a connection that died under it.
const ATTEMPTS: usize = 3;

/// One server's pool and how statements are sent to it.
pub struct Target {
  pub pool: Pool,
  /// false: unnamed statements with explicit types, for PgBouncer in transaction mode.
  prepared: bool,
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
      .map_err(|e| StoreError::InvalidOption(format!("could not build the connection pool: {e}")))?;
    Ok(Target { pool, prepared })
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
    let client = self.pool.get().await?;
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
    let client = self.pool.get().await?;
    client.batch_execute(sql).await?;
    Ok(())
  }

  /// Drops connections unused for `idle`, as pg's `idleTimeoutMillis` does.
  pub fn reap_idle(&self, idle: Duration) {
    self.pool.retain(|_, metrics| metrics.last_used() < idle);
  }
}

/// The server went away mid-call (restart, `pg_terminate_backend`): a fresh connection may work.
fn is_lost_connection(err: &StoreError) -> bool {
  matches!(err, StoreError::ConnectionLost(_))
    || matches!(err, StoreError::Db { sqlstate, .. } if sqlstate == "57P01" || sqlstate == "57P02")
}
