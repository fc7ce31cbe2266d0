//! Sends one batch (see `calls`): one statement for its sessions, and what happens when that
//! statement fails. A failure every session shares (a lost connection, a timeout, a missing
//! table) fails them all. A failure one session may cause alone (its row locked elsewhere past
//! the batch's short lock wait, its data or id refused) sends each session on its own, after
//! freeing the batch's slot, so only the session at fault waits or fails.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::join_all;

use crate::calls::{Batch, Calls, Item, Kind, Outcome, Work};
use crate::citus::Shards;
use crate::engine::Engine;
use crate::error::{StoreError, StoreResult};
use crate::pool::{Params, Target};
use crate::protect::Opened;
use crate::sql::{Statements, Stmt, CITUS_LOCK_WAIT, CITUS_SET_ROWS};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

type Finished = Vec<(String, StoreResult<Outcome>)>;

/// Reports its sessions as failed if the task ends without reporting them (a panic), so they are
/// answered and their next calls can go; `report` hands the outcome over normally.
struct Report {
  calls: Arc<Calls>,
  slot: Option<Kind>,
  sids: Vec<String>,
  clear: bool,
}

impl Report {
  /// Frees the batch's slot while its sessions stay busy, so other sessions' batches can go.
  fn free_slot(&mut self) {
    if let Some(slot) = self.slot.take() {
      self.calls.complete(Some(slot), Vec::new());
    }
  }

  /// Reports a write that failed: when it may still be on its way to the server (given up on),
  /// its sessions stay busy until it can no longer land, so no later call of theirs lands
  /// before it. Its callers were answered at their deadline meanwhile.
  async fn report_failed_write(mut self, finished: Finished, err: &StoreError) {
    if matches!(err, StoreError::GivenUp(_)) {
      self.free_slot();
      self.calls.engine().settled().await;
    }
    self.report(finished);
  }

  fn report(mut self, finished: Finished) {
    let (calls, slot) = (self.calls.clone(), self.slot.take());
    self.sids.clear();
    calls.complete(slot, finished);
  }
}

impl Drop for Report {
  fn drop(&mut self) {
    if self.clear {
      self.calls.complete_clear(Err(StoreError::dropped()));
    } else if self.slot.is_some() || !self.sids.is_empty() {
      let failed = self
        .sids
        .drain(..)
        .map(|sid| (sid, Err(StoreError::dropped())))
        .collect();
      self.calls.complete(self.slot.take(), failed);
    }
  }
}

pub async fn send(calls: Arc<Calls>, batch: Batch) {
  match batch {
    Batch::Clear => {
      let mut report = Report {
        calls: calls.clone(),
        slot: None,
        sids: Vec::new(),
        clear: true,
      };
      let result = clear(calls.engine()).await;
      if matches!(result, Err(StoreError::GivenUp(_))) {
        calls.engine().primary.settled().await;
      }
      report.clear = false;
      calls.complete_clear(result);
    }
    Batch::Of(kind, items) => {
      let report = Report {
        calls: calls.clone(),
        slot: Some(kind),
        sids: items.iter().map(|i| i.sid.clone()).collect(),
        clear: false,
      };
      match kind {
        Kind::Get => gets(report, items).await,
        _ => writes(report, kind, items).await,
      }
    }
  }
}

async fn clear(engine: &Engine) -> StoreResult<Outcome> {
  let st = engine.statements().await?;
  engine.primary.run(&st.clear, &[]).await?;
  Ok(Outcome::Done)
}

fn fail_all(items: Vec<Item>, err: &StoreError) -> Finished {
  items
    .into_iter()
    .map(|item| (item.sid, Err(err.clone())))
    .collect()
}

fn now_of(item: &Item) -> f64 {
  match item.work {
    Work::Get { now } => now,
    _ => f64::INFINITY,
  }
}

async fn gets(report: Report, items: Vec<Item>) {
  let engine = report.calls.engine().clone();
  let finished = match engine.statements().await {
    Err(e) => fail_all(items, &e),
    // With replicas each get goes alone, so a miss on the replica can be asked of the primary.
    Ok(st) if items.len() == 1 || !st.batch_gets || engine.has_replicas() => {
      gets_one_by_one(&engine, st, items).await
    }
    Ok(st) => match &st.shards {
      Some(shards) => gets_by_shard(&engine, st, shards, items).await,
      None => gets_many(&engine, &engine.primary, st, items).await,
    },
  };
  report.report(finished);
}

/// Several gets in one statement (`get_many`); when it fails in a way one session may cause,
/// the sessions go one by one.
async fn gets_many(
  engine: &Engine,
  target: &Arc<Target>,
  st: &Statements,
  items: Vec<Item>,
) -> Finished {
  let sids: Vec<&str> = items.iter().map(|i| i.sid.as_str()).collect();
  // The statement filters by the earliest caller's clock; each get is then judged by its own
  // (a get that waited must not revive another caller's session that expired since).
  let now = items.iter().map(now_of).fold(f64::INFINITY, f64::min);
  let params: Params = &[&sids, &now];
  match engine.run_on(target, None, &st.get_many, params).await {
    Ok((rows, _)) => {
      // A NULL in the data column (a row written by hand) is no session.
      let mut found: HashMap<String, (String, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.get(0), (r.get::<_, Option<String>>(1)?, r.get(2)))))
        .collect();
      items
        .into_iter()
        .map(|i| {
          let live = found
            .remove(&i.sid)
            .filter(|(_, expires)| *expires >= now_of(&i))
            .map(|(text, _)| text);
          let outcome = opened(engine, &i.sid, live);
          (i.sid, Ok(outcome))
        })
        .collect()
    }
    Err(e) if e.is_per_session() => gets_one_by_one(engine, st, items).await,
    Err(e) => fail_all(items, &e),
  }
}

/// Citus: a statement per shard the batch's ids land in, run at once (pipelined on the lanes),
/// on the node holding the shard (`Engine::target_of`). Each is a router query: one task
/// carrying that shard's ids, where one `= ANY` over every id is a task per shard, each carrying
/// every id. A shard's lone id goes as the single-row get (Citus's fast-path router plan). Unlike
/// sets, sparse gets stay one statement per shard: a node's ids as one statement ran get-only
/// 12 % faster on 32 shards but the get+set loop 30 % slower (bench/citus.js).
async fn gets_by_shard(
  engine: &Engine,
  st: &Statements,
  shards: &Shards,
  items: Vec<Item>,
) -> Finished {
  let groups = shards.group(items, |item| item.sid.as_str());
  let finished = join_all(groups.into_iter().map(|group| async move {
    match group.len() {
      1 => gets_one_by_one(engine, st, group).await,
      _ => gets_many(engine, engine.target_of(st, &group[0].sid), st, group).await,
    }
  }))
  .await;
  finished.into_iter().flatten().collect()
}

async fn gets_one_by_one(engine: &Engine, st: &Statements, items: Vec<Item>) -> Finished {
  join_all(items.into_iter().map(|item| async move {
    let text = engine.get_one(st, &item.sid, now_of(&item)).await;
    let outcome = text.map(|t| opened(engine, &item.sid, t));
    (item.sid, outcome)
  }))
  .await
}

/// A get's answer: the stored data, opened when it is sealed.
fn opened(engine: &Engine, sid: &str, text: Option<String>) -> Outcome {
  match text.map(|t| engine.protect.open(sid, t)) {
    None => Outcome::Text(None),
    Some(Opened::Text(json)) => Outcome::Text(Some(json)),
    Some(Opened::Unreadable) => Outcome::Unreadable,
  }
}

async fn writes(report: Report, kind: Kind, mut items: Vec<Item>) {
  let calls = report.calls.clone();
  let engine = calls.engine().clone();
  let st = match engine.statements().await {
    Ok(st) => st,
    Err(e) => return report.report(fail_all(items, &e)),
  };
  // One order for every batch of every process: two batches never wait on each other in a cycle.
  items.sort_unstable_by(|a, b| a.sid.cmp(&b.sid));
  match write_batch(&engine, st, kind, &items).await {
    Ok(finished) => report.report(finished),
    Err(e) if e.is_per_session() => {
      // The slot is free before the sessions go one by one: new batches of this kind need not
      // wait for a session whose row stays locked.
      report.report(Vec::new());
      for item in items {
        let one = Report {
          calls: calls.clone(),
          slot: None,
          sids: vec![item.sid.clone()],
          clear: false,
        };
        tokio::spawn(async move {
          match write_one(one.calls.engine(), &item).await {
            Err(e) => {
              one
                .report_failed_write(vec![(item.sid, Err(e.clone()))], &e)
                .await
            }
            ok => one.report(vec![(item.sid, ok)]),
          }
        });
      }
    }
    Err(e) => {
      let finished = fail_all(items, &e);
      report.report_failed_write(finished, &e).await
    }
  }
}

/// The batch statement of `kind` for `items` (distinct sids, sorted); a batch of one goes as the
/// single-row form of it, which costs the server less.
async fn write_batch(
  engine: &Engine,
  st: &Statements,
  kind: Kind,
  items: &[Item],
) -> StoreResult<Finished> {
  if let [item] = items {
    let outcome = write_lone(engine, st, item).await?;
    return Ok(vec![(item.sid.clone(), Ok(outcome))]);
  }
  let done = || -> Finished {
    items
      .iter()
      .map(|i| (i.sid.clone(), Ok(Outcome::Done)))
      .collect()
  };
  match kind {
    Kind::Set if st.citus => {
      set_rows(engine, st, items).await?;
      Ok(done())
    }
    Kind::Set => {
      let sids: Vec<&str> = items.iter().map(|i| i.sid.as_str()).collect();
      let layout = st.set_layout;
      let mut jsons = Vec::with_capacity(items.len());
      let mut expire_ats = Vec::with_capacity(items.len());
      let mut users = Vec::with_capacity(items.len());
      // Only what the statement takes: a batch without the options builds no more than before.
      let mut nows = Vec::with_capacity(if layout.clock { items.len() } else { 0 });
      let mut extras: Vec<Vec<Option<&str>>> = vec![Vec::with_capacity(items.len()); layout.extras];
      // The earliest of the batch: a tombstone's guard has ended for all of them then.
      let mut reclaim = f64::INFINITY;
      for item in items {
        if let Work::Set {
          session_json,
          expire_at,
          user_id,
          tombstones_before,
          now,
          extra,
        } = &item.work
        {
          jsons.push(session_json.as_str());
          expire_ats.push(*expire_at);
          users.push(user_id.as_deref());
          if layout.clock {
            nows.push(*now);
          }
          for (column, value) in extras.iter_mut().zip(extra) {
            column.push(value.as_deref());
          }
          reclaim = reclaim.min(*tombstones_before);
        }
      }
      let mut params: Vec<&(dyn ToSql + Sync)> = vec![&sids, &jsons, &expire_ats, &reclaim];
      if layout.user {
        params.push(&users);
      }
      if layout.clock {
        params.push(&nows);
      }
      params.extend(extras.iter().map(|e| e as &(dyn ToSql + Sync)));
      run_short(engine, &engine.primary, st, &st.set_batch, &params).await?;
      Ok(done())
    }
    // Citus: each node's share to it, the coordinator's as one statement.
    Kind::Touch | Kind::Destroy if st.shards.is_some() => {
      let groups = by_server(engine, st, items, false);
      let results = join_all(
        groups
          .iter()
          .map(|(target, group)| touches_or_destroys(engine, target, st, kind, group)),
      )
      .await;
      Ok(all_or_worst(results)?.into_iter().flatten().collect())
    }
    Kind::Touch | Kind::Destroy => {
      touches_or_destroys(engine, &engine.primary, st, kind, items).await
    }
    Kind::Get => Err(StoreError::Schema("a get is not a write".into())),
  }
}

/// A batch of touches or of destroys as one statement on `target` (`items`: the batch's own, or
/// a node's share of it).
async fn touches_or_destroys<I: Borrow<Item>>(
  engine: &Engine,
  target: &Arc<Target>,
  st: &Statements,
  kind: Kind,
  items: &[I],
) -> StoreResult<Finished> {
  let items = items.iter().map(Borrow::borrow);
  let sids: Vec<&str> = items.clone().map(|i| i.sid.as_str()).collect();
  if !matches!(kind, Kind::Touch) {
    let untils: Vec<f64> = items
      .clone()
      .map(|i| match i.work {
        Work::Destroy { until } => until,
        _ => f64::NAN,
      })
      .collect();
    let params: Params = &[&sids, &untils];
    run_short(engine, target, st, &st.destroy_batch, params).await?;
    return Ok(items.map(|i| (i.sid.clone(), Ok(Outcome::Done))).collect());
  }
  let mut expire_ats = Vec::with_capacity(sids.len());
  // The clocks only for `columns.last_seen`.
  let mut nows = Vec::with_capacity(if st.touch_clock { sids.len() } else { 0 });
  for item in items.clone() {
    let (expire_at, now) = match item.work {
      Work::Touch { expire_at, now } => (expire_at, now),
      _ => (f64::NAN, f64::NAN),
    };
    expire_ats.push(expire_at);
    if st.touch_clock {
      nows.push(now);
    }
  }
  let params: Params = &[&sids, &expire_ats, &nows];
  let params = &params[..if st.touch_clock { 3 } else { 2 }];
  let (rows, _) = run_short(engine, target, st, &st.touch_batch, params).await?;
  let touched: HashSet<&str> = rows.iter().map(|r| r.get(0)).collect();
  Ok(
    items
      .map(|i| {
        let found = touched.contains(i.sid.as_str());
        (i.sid.clone(), Ok(Outcome::Found(found)))
      })
      .collect(),
  )
}

/// Citus: sets as multi-row VALUES upserts (`Statements::set_rows`), grouped by the server they
/// go to (`by_server`), a group of more than `CITUS_SET_ROWS` in near-equal chunks (sorted sids
/// stay sorted), run at once. Every statement costs the coordinator and a
/// worker far more than a row does, so each carries all the rows it can: with chunks of 2, 4,
/// 8 … only (a 7-row group as three statements) set-only ran 9,640 ops/s against 14,979 on
/// 4 shards (bench/citus.js, docs/distributed.md).
/// A chunk that fails fails the batch, whose sessions then go one by one (a set that already
/// landed lands again, the same).
async fn set_rows(engine: &Engine, st: &Statements, items: &[Item]) -> StoreResult<()> {
  let groups = by_server(engine, st, items, true);
  let chunks = groups.iter().flat_map(|(target, group)| {
    let parts = group.len().div_ceil(CITUS_SET_ROWS).max(1);
    let chunks = group.chunks(group.len().div_ceil(parts).max(1));
    chunks.map(move |chunk| (*target, chunk))
  });
  let results = join_all(chunks.map(|(target, chunk)| async move {
    let stmt = match chunk.len() {
      1 => &st.set,
      n => &st.set_rows[n - 2],
    };
    let mut params = Vec::with_capacity(chunk.len() * st.set_layout.stride());
    for item in chunk {
      push_set_params(st, &item.sid, &item.work, &mut params);
    }
    run_short(engine, target, st, stmt, &params).await
  }))
  .await;
  all_or_worst(results).map(|_| ())
}

/// Every statement's result, or when some failed, the error the batch reports: one given up on
/// first, since its sessions must stay busy until it can no longer land
/// (`Report::report_failed_write`), which another error (a lock wait) would not do.
fn all_or_worst<T>(results: Vec<StoreResult<T>>) -> StoreResult<Vec<T>> {
  let mut worst: Option<StoreError> = None;
  let mut all = Vec::with_capacity(results.len());
  for result in results {
    match result {
      Ok(value) => all.push(value),
      Err(e) if worst.is_none() || matches!(e, StoreError::GivenUp(_)) => worst = Some(e),
      Err(_) => {}
    }
  }
  worst.map_or(Ok(all), Err)
}

/// Per-shard statements only when they carry this many sessions on average.
const MIN_ROWS_PER_SHARD: usize = 4;

/// `items` as statements go, each group with its server and in the order given. Sessions whose
/// shard's node is in use (`Engine::target_of`) go as one group per node: every shard it touches
/// is the node's own, so no two-phase commit, and one statement per node ran set-only 30 % faster
/// than one per shard on 4 shards, 3× on 32 (bench/citus.js). The coordinator's share goes one
/// statement per shard (one worker, one task, no two-phase commit) when each carries a few
/// sessions, else as one statement (one per shard was slower with many shards); and everything
/// to the primary when the shards are unknown.
fn by_server<'a>(
  engine: &'a Engine,
  st: &Statements,
  items: &'a [Item],
  per_shard: bool,
) -> Vec<(&'a Arc<Target>, Vec<&'a Item>)> {
  let primary = &engine.primary;
  let Some(shards) = &st.shards else {
    return vec![(primary, items.iter().collect())];
  };
  let mut groups: Vec<(&Arc<Target>, Vec<&Item>)> = Vec::new();
  let mut coordinator = Vec::new();
  for item in items {
    let target = engine.target_of(st, &item.sid);
    if Arc::ptr_eq(target, primary) {
      coordinator.push(item);
    } else if let Some((_, group)) = groups.iter_mut().find(|(t, _)| Arc::ptr_eq(t, target)) {
      group.push(item);
    } else {
      groups.push((target, vec![item]));
    }
  }
  if coordinator.is_empty() {
    return groups;
  }
  if !per_shard {
    groups.push((primary, coordinator));
    return groups;
  }
  let sessions = coordinator.len();
  let per_shard = shards.group(coordinator.iter().copied(), |item| item.sid.as_str());
  if per_shard.len() * MIN_ROWS_PER_SHARD <= sessions {
    groups.extend(per_shard.into_iter().map(|group| (primary, group)));
  } else {
    // As sorted: one statement over every shard locks its rows in one order.
    groups.push((primary, coordinator));
  }
  groups
}

/// A write that gives up on a row lock after the batches' short wait. On Citus that wait is the
/// SET LOCAL of the transaction it runs in (see `Statements::citus`).
async fn run_short(
  engine: &Engine,
  target: &Arc<Target>,
  st: &Statements,
  stmt: &Stmt,
  params: Params<'_>,
) -> StoreResult<(Vec<Row>, u64)> {
  let begin = st.citus.then_some(CITUS_LOCK_WAIT);
  engine.run_on(target, begin, stmt, params).await
}

/// One set's parameters as its statement takes them (`Statements::set_layout`).
fn push_set_params<'a>(
  st: &Statements,
  sid: &'a String,
  work: &'a Work,
  params: &mut Vec<&'a (dyn ToSql + Sync)>,
) {
  if let Work::Set {
    session_json,
    expire_at,
    user_id,
    tombstones_before,
    now,
    extra,
  } = work
  {
    let layout = st.set_layout;
    params.extend([
      sid as &(dyn ToSql + Sync),
      session_json,
      expire_at,
      tombstones_before,
    ]);
    if layout.user {
      params.push(user_id);
    }
    if layout.clock {
      params.push(now);
    }
    params.extend(extra.iter().map(|e| e as &(dyn ToSql + Sync)));
  }
}

/// How long a single-row write may wait for a row lock.
#[derive(Clone, Copy)]
enum LockWait {
  /// The batches' short wait (a batch of one).
  Short,
  /// As long as queryTimeout allows (a session sent on its own after a short wait ran out).
  Long,
}

/// A batch of one: the single-row statement with the batches' short lock wait.
async fn write_lone(engine: &Engine, st: &Statements, item: &Item) -> StoreResult<Outcome> {
  write_single(engine, st, item, LockWait::Short).await
}

/// One session's write on its own: it waits for a row lock as long as queryTimeout allows,
/// holding a connection, so at most half the pool's sessions wait so at once.
async fn write_one(engine: &Engine, item: &Item) -> StoreResult<Outcome> {
  let st = engine.statements().await?;
  let _turn = engine.lock_waiter().await?;
  match (
    write_single(engine, st, item, LockWait::Long).await,
    &item.work,
  ) {
    // An id the sid column cannot hold (a uuid column) names no session to touch or delete.
    (Err(e), Work::Touch { .. }) if st.typed_sid && e.is_bad_input() => Ok(Outcome::Found(false)),
    (Err(e), Work::Destroy { .. }) if st.typed_sid && e.is_bad_input() => Ok(Outcome::Done),
    (result, _) => result,
  }
}

async fn write_single(
  engine: &Engine,
  st: &Statements,
  item: &Item,
  wait: LockWait,
) -> StoreResult<Outcome> {
  let sid = item.sid.as_str();
  let short = matches!(wait, LockWait::Short);
  let pick = |one, long| if short { one } else { long };
  let target = engine.target_of(st, sid);
  let run = |stmt, params| async move {
    match wait {
      LockWait::Short => run_short(engine, target, st, stmt, params).await,
      LockWait::Long => engine.run_on(target, None, stmt, params).await,
    }
  };
  match &item.work {
    Work::Set { .. } => {
      let mut params = Vec::with_capacity(st.set_layout.stride());
      push_set_params(st, &item.sid, &item.work, &mut params);
      run(pick(&st.set_one, &st.set), &params).await?;
      Ok(Outcome::Done)
    }
    Work::Touch { expire_at, now } => {
      let params: Params = &[&sid, expire_at, now];
      let params = &params[..if st.touch_clock { 3 } else { 2 }];
      let (_, changed) = run(pick(&st.touch_one, &st.touch), params).await?;
      Ok(Outcome::Found(changed > 0))
    }
    Work::Destroy { until } => {
      let params: Params = &[&sid, until];
      run(pick(&st.destroy_one, &st.destroy), params).await?;
      Ok(Outcome::Done)
    }
    Work::Get { now } => Ok(opened(engine, sid, engine.get_one(st, sid, *now).await?)),
    // Answered by `calls` before it could be sent.
    Work::Skip => Ok(Outcome::Found(false)),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_given_up_statement_is_the_batch_error_whatever_its_place() {
    let lock = || StoreError::Db {
      sqlstate: "55P03".into(),
      message: "lock".into(),
    };
    let given_up = || StoreError::GivenUp("late".into());
    assert_eq!(all_or_worst(vec![Ok(1), Ok(2)]).unwrap(), vec![1, 2]);
    let worst = all_or_worst(vec![Err(lock()), Ok(1), Err(given_up()), Err(lock())]);
    assert!(matches!(worst, Err(StoreError::GivenUp(_))));
    let worst = all_or_worst::<u8>(vec![Err(lock()), Err(lock())]);
    assert!(worst.is_err_and(|e| e.is_lock_wait()));
  }
}
