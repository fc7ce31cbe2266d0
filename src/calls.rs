//! How one call travels: get, set, touch, destroy and clear, from the JS thread to PostgreSQL
//! and back. This file owns their order, their batching and their bounds.
//!
//! 1. `start_*` (store.rs) hands the call to `Calls::enqueue` on the JS thread, where it joins
//!    its session's queue; JS calls `flush` once per turn of its event loop (lib/store.js), so
//!    the calls of one turn wake the worker once. A session's calls run one at a time, in the
//!    order they were made, so a destroy after a set wins, a get after a set reads it, and the
//!    last of two sets stays.
//! 2. A session whose next call can go waits in a list for its kind. A pump on the tokio worker
//!    takes up to `BATCH_MAX` of them into one batch (one statement, one round trip). At most
//!    `MAX_BATCHES` batches of a kind are in flight; the calls that arrive meanwhile gather for
//!    the next, which is how batches grow under load. A session's consecutive calls that one
//!    statement can carry go as one: set+set (the last data), set+touch (the set with the
//!    touch's expiry), touch+touch, get+get, destroy+destroy; each caller gets its own answer.
//! 3. `batch::send` runs the statement and reports each session's outcome to `complete`, which
//!    answers its calls through the relay and lets the session's next call go.
//! 4. Bounds: a call has a deadline (connectionTimeoutMillis + queryTimeout from when it was
//!    made); a sweep answers calls past it, queued or in flight (a session whose statement is
//!    still out stays busy, so order holds); `settle_all` answers everything on `close()`.
//!    `clear` is a barrier: it runs once every earlier call is done; later calls wait for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::batch;
use crate::engine::{Engine, Op};
use crate::error::{StoreError, StoreResult};
use crate::relay::{self, spawn_from_js, Answer, Ticket};

/// Batches of one kind in flight at once; more calls gather for the next batch.
const MAX_BATCHES: usize = 2;
/// Most sessions one batch statement carries.
const BATCH_MAX: usize = 500;
/// How often calls past their deadline are looked for while any call is pending.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// The kinds of call that batch together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
  Get = 0,
  Set = 1,
  Touch = 2,
  Destroy = 3,
}

const KINDS: [Kind; 4] = [Kind::Get, Kind::Set, Kind::Touch, Kind::Destroy];

/// What a call asks of its session.
#[derive(Debug)]
pub enum Work {
  Get {
    now: f64,
  },
  Set {
    /// As the table holds it (sealed when a secret is set).
    session_json: String,
    expire_at: f64,
    /// The owner, when `columns.user_id` is configured.
    user_id: Option<String>,
    /// A tombstone expiring before this (seconds since the epoch) has ended its guard by the
    /// caller's clock: the set may reclaim its id.
    tombstones_before: f64,
    /// The caller's clock (seconds), for `columns.created_at` and `columns.last_seen`.
    now: f64,
    /// The `extraColumns` values, in their order, as text.
    extra: Vec<Option<String>>,
  },
  Touch {
    expire_at: f64,
    /// The caller's clock (seconds), for `columns.last_seen`.
    now: f64,
  },
  Destroy {
    /// Until when (seconds since the epoch) a tombstone keeps the id from coming back.
    until: f64,
  },
  /// A touch JS decided to skip (within the touch bound): it sends nothing, and is answered
  /// when the session's earlier calls are, so answers keep call order.
  Skip,
}

impl Work {
  fn kind(&self) -> Kind {
    match self {
      Work::Get { .. } => Kind::Get,
      Work::Set { .. } => Kind::Set,
      Work::Touch { .. } => Kind::Touch,
      Work::Destroy { .. } => Kind::Destroy,
      // Never sent: listed with touches only until `take` answers it.
      Work::Skip => Kind::Touch,
    }
  }

  fn op(&self) -> Op {
    match self {
      Work::Get { .. } => Op::Get,
      Work::Set { .. } => Op::Set,
      Work::Touch { .. } => Op::Touch,
      Work::Destroy { .. } => Op::Destroy,
      Work::Skip => Op::Touch,
    }
  }

  /// Folds the session's next call into this one when one statement does both, as if they had
  /// run one after the other; hands it back when it must go on its own.
  fn absorb(&mut self, next: Work) -> Result<(), Work> {
    match (self, next) {
      // A skipped touch rides on whatever goes before it.
      (_, Work::Skip) => Ok(()),
      (Work::Get { .. }, Work::Get { .. }) => Ok(()),
      (Work::Destroy { until }, Work::Destroy { until: later }) => {
        *until = until.max(later);
        Ok(())
      }
      (this @ Work::Set { .. }, next @ Work::Set { .. }) => {
        *this = next;
        Ok(())
      }
      (
        Work::Set { expire_at, now, .. },
        Work::Touch {
          expire_at: later,
          now: seen,
        },
      )
      | (
        Work::Touch { expire_at, now },
        Work::Touch {
          expire_at: later,
          now: seen,
        },
      ) => {
        *expire_at = later;
        *now = seen;
        Ok(())
      }
      (_, next) => Err(next),
    }
  }
}

/// What a session's statement gave.
#[derive(Clone, Debug)]
pub enum Outcome {
  /// A get: the stored JSON text, or none.
  Text(Option<String>),
  /// A get whose stored data no configured secret opens.
  Unreadable,
  /// A touch: whether the session exists.
  Found(bool),
  /// A set, destroy or clear.
  Done,
}

/// One session's share of a batch.
pub struct Item {
  pub sid: String,
  pub work: Work,
}

pub enum Batch {
  Of(Kind, Vec<Item>),
  Clear,
}

/// What `take` found for a ready session.
enum Taken {
  Item(Item),
  /// Its next call is of another kind: it went to that kind's list.
  Moved,
  Nothing,
}

/// A call waiting for its answer.
struct Waiter {
  op: Op,
  ticket: Ticket,
  deadline: Instant,
}

struct Queued {
  work: Work,
  waiter: Waiter,
}

#[derive(Default)]
struct Session {
  queue: VecDeque<Queued>,
  /// Some while a statement for this session is out: the calls it answers.
  in_flight: Option<Vec<Waiter>>,
}

/// Calls made after a pending clear, in order.
enum Held {
  Call(String, Queued),
  Clear(Waiter),
}

struct PendingClear {
  waiters: Vec<Waiter>,
  running: bool,
}

#[derive(Default)]
struct State {
  sessions: HashMap<String, Session>,
  /// Sessions whose next call can go, by the kind of that call.
  ready: [VecDeque<String>; 4],
  /// Batches in flight, by kind.
  batches: [usize; 4],
  clear: Option<PendingClear>,
  held: VecDeque<Held>,
  pump_scheduled: bool,
  sweeping: bool,
}

impl State {
  fn is_idle(&self) -> bool {
    self.sessions.is_empty() && self.held.is_empty() && self.clear.is_none()
  }
}

pub struct Calls {
  engine: Arc<Engine>,
  state: Mutex<State>,
}

impl Calls {
  pub fn new(engine: Arc<Engine>) -> Self {
    Calls {
      engine,
      state: Mutex::new(State::default()),
    }
  }

  pub fn engine(&self) -> &Arc<Engine> {
    &self.engine
  }

  /// A panic while holding the lock cannot leave the queues half-changed in a way that loses a
  /// call's answer (every ticket answers on drop): keep using them.
  fn lock(&self) -> MutexGuard<'_, State> {
    relay::lock(&self.state)
  }

  /// Queues a call of session `sid` (on the JS thread); its answer reaches JS through `ticket`.
  pub fn enqueue(self: &Arc<Self>, sid: String, work: Work, ticket: Ticket) {
    if let Some(waiter) = self.admit(work.op(), ticket) {
      self.queue(|state| queue_call(state, sid, Queued { work, waiter }));
    }
  }

  /// A skipped touch (on the JS thread): false when the session has no call pending, so JS
  /// answers it at once; else it is queued and answered right after those calls.
  pub fn enqueue_skip(self: &Arc<Self>, sid: String, ticket: impl FnOnce() -> Ticket) -> bool {
    let state = self.lock();
    if state.clear.is_none() && !state.sessions.contains_key(&sid) {
      return false;
    }
    drop(state);
    self.enqueue(sid, Work::Skip, ticket());
    true
  }

  /// Queues a clear (on the JS thread): it runs after every call made before it.
  pub fn enqueue_clear(self: &Arc<Self>, ticket: Ticket) {
    if let Some(waiter) = self.admit(Op::Clear, ticket) {
      self.queue(|state| match &mut state.clear {
        Some(_) => state.held.push_back(Held::Clear(waiter)),
        None => {
          state.clear = Some(PendingClear {
            waiters: vec![waiter],
            running: false,
          })
        }
      });
    }
  }

  /// A new call with its deadline; None (the call answered) once the store is closed.
  fn admit(&self, op: Op, ticket: Ticket) -> Option<Waiter> {
    let waiter = Waiter {
      op,
      ticket,
      deadline: Instant::now() + self.engine.call_bound(),
    };
    if self.engine.is_closed() {
      self.answer(waiter, &Err(StoreError::Closed));
      return None;
    }
    Some(waiter)
  }

  /// Adds to the state (on the JS thread). Nothing is sent until `flush`, which JS calls once
  /// per turn of its event loop: the calls of one turn reach the worker with one wake-up.
  fn queue(self: &Arc<Self>, add: impl FnOnce(&mut State)) {
    add(&mut self.lock());
  }

  /// Sends what the calls queued so far allow (on the JS thread): wakes the worker unless a
  /// pump is already on its way, which takes them too.
  pub fn flush(self: &Arc<Self>) {
    let wake = {
      let mut state = self.lock();
      !state.is_idle() && !std::mem::replace(&mut state.pump_scheduled, true)
    };
    if wake {
      spawn_from_js(self.clone().pump());
    }
  }

  /// On the worker: sends what can go, and keeps the sweep running while calls are pending.
  async fn pump(self: Arc<Self>) {
    let (mut batches, sweep) = {
      let mut state = self.lock();
      state.pump_scheduled = false;
      let batches = self.form(&mut state);
      let sweep = !state.is_idle() && !std::mem::replace(&mut state.sweeping, true);
      (batches, sweep)
    };
    self.engine.start_reaper();
    if sweep {
      tokio::spawn(self.clone().sweep());
    }
    // The last batch runs in this task: a lone call costs one task, not two.
    let last = batches.pop();
    self.launch(batches);
    if let Some(last) = last {
      batch::send(self, last).await;
    }
  }

  fn launch(self: &Arc<Self>, batches: Vec<Batch>) {
    for b in batches {
      tokio::spawn(batch::send(self.clone(), b));
    }
  }

  /// Takes the batches that may go now out of the ready lists. Taking may move a session to
  /// another kind's list (its head call expired), so it goes round until nothing moves.
  fn form(&self, state: &mut State) -> Vec<Batch> {
    let mut out = Vec::new();
    let now = Instant::now();
    loop {
      let mut moved = false;
      for kind in KINDS {
        let k = kind as usize;
        while state.batches[k] < MAX_BATCHES && !state.ready[k].is_empty() {
          let mut items = Vec::new();
          while items.len() < BATCH_MAX {
            let Some(sid) = state.ready[k].pop_front() else {
              break;
            };
            match self.take(state, sid, kind, now) {
              Taken::Item(item) => items.push(item),
              Taken::Moved => moved = true,
              Taken::Nothing => {}
            }
          }
          if !items.is_empty() {
            state.batches[k] += 1;
            out.push(Batch::Of(kind, items));
          }
        }
      }
      if !moved {
        break;
      }
    }
    if let Some(clear) = &mut state.clear {
      if !clear.running && state.sessions.is_empty() {
        clear.running = true;
        out.push(Batch::Clear);
      }
    }
    out
  }

  /// A ready session's next work (with what it absorbs), now in flight; or why there is none.
  fn take(&self, state: &mut State, sid: String, kind: Kind, now: Instant) -> Taken {
    let Some(session) = state.sessions.get_mut(&sid) else {
      return Taken::Nothing;
    };
    if session.in_flight.is_some() {
      return Taken::Nothing;
    }
    self.expire_queued(session, now);
    self.answer_skips(session);
    let Some(head) = session.queue.front() else {
      state.sessions.remove(&sid);
      return Taken::Nothing;
    };
    let head_kind = head.work.kind();
    if head_kind != kind {
      state.ready[head_kind as usize].push_back(sid);
      return Taken::Moved;
    }
    let first = session.queue.pop_front().expect("a front");
    let mut work = first.work;
    let mut waiters = vec![first.waiter];
    while let Some(next) = session.queue.pop_front() {
      match work.absorb(next.work) {
        Ok(()) => waiters.push(next.waiter),
        Err(work) => {
          session.queue.push_front(Queued {
            work,
            waiter: next.waiter,
          });
          break;
        }
      }
    }
    session.in_flight = Some(waiters);
    Taken::Item(Item { sid, work })
  }

  /// A batch's outcome: frees its slot (`slot`), answers each finished session's calls and
  /// lets each session's next call go.
  pub fn complete(
    self: &Arc<Self>,
    slot: Option<Kind>,
    finished: Vec<(String, StoreResult<Outcome>)>,
  ) {
    let batches = {
      let mut state = self.lock();
      if let Some(kind) = slot {
        let n = &mut state.batches[kind as usize];
        *n = n.saturating_sub(1);
      }
      for (sid, result) in finished {
        let Some(session) = state.sessions.get_mut(&sid) else {
          continue; // settled by close()
        };
        for waiter in session.in_flight.take().unwrap_or_default() {
          self.answer(waiter, &result);
        }
        self.answer_skips(session);
        match session.queue.front() {
          None => {
            state.sessions.remove(&sid);
          }
          Some(next) => {
            let kind = next.work.kind();
            state.ready[kind as usize].push_back(sid);
          }
        }
      }
      self.form(&mut state)
    };
    self.launch(batches);
  }

  /// A clear's outcome: answers it, then lets the calls made after it in.
  pub fn complete_clear(self: &Arc<Self>, result: StoreResult<Outcome>) {
    let batches = {
      let mut state = self.lock();
      if let Some(clear) = state.clear.take() {
        for waiter in clear.waiters {
          self.answer(waiter, &result);
        }
      }
      release_held(&mut state);
      self.form(&mut state)
    };
    self.launch(batches);
  }

  /// Answers calls past their deadline, every `SWEEP_EVERY`, until no call is pending.
  async fn sweep(self: Arc<Self>) {
    loop {
      tokio::time::sleep(SWEEP_EVERY).await;
      let batches = self.sweep_once();
      match batches {
        Some(batches) => self.launch(batches),
        None => return,
      }
    }
  }

  /// One sweep; None once nothing is pending (the sweep then ends).
  fn sweep_once(&self) -> Option<Vec<Batch>> {
    let now = Instant::now();
    let mut state = self.lock();
    let state = &mut *state;
    let mut refile = Vec::new();
    for (sid, session) in state.sessions.iter_mut() {
      if let Some(waiters) = &mut session.in_flight {
        for waiter in drain_expired(waiters, now) {
          self.answer(waiter, &Err(no_answer_in_time(&self.engine)));
        }
      }
      let head_before = session.queue.front().map(|q| q.work.kind());
      self.expire_queued(session, now);
      if session.in_flight.is_none() {
        self.answer_skips(session);
      }
      // An idle session whose first call expired is listed under its new first call's kind
      // (a stale entry elsewhere is skipped by `take`).
      let head_after = session.queue.front().map(|q| q.work.kind());
      if let Some(kind) =
        head_after.filter(|k| session.in_flight.is_none() && Some(*k) != head_before)
      {
        refile.push((kind, sid.clone()));
      }
    }
    for (kind, sid) in refile {
      state.ready[kind as usize].push_back(sid);
    }
    state
      .sessions
      .retain(|_, s| s.in_flight.is_some() || !s.queue.is_empty());
    let held = std::mem::take(&mut state.held);
    for h in held {
      match h {
        Held::Call(_, q) if q.waiter.deadline <= now => {
          self.answer(q.waiter, &Err(waited_too_long()))
        }
        Held::Clear(w) if w.deadline <= now => self.answer(w, &Err(waited_too_long())),
        keep => state.held.push_back(keep),
      }
    }
    if let Some(clear) = &mut state.clear {
      let running = clear.running;
      for waiter in drain_expired(&mut clear.waiters, now) {
        let err = if running {
          no_answer_in_time(&self.engine)
        } else {
          waited_too_long()
        };
        self.answer(waiter, &Err(err));
      }
      // A clear nobody waits for any more and not yet sent is not sent at all.
      if !running && clear.waiters.is_empty() {
        state.clear = None;
        release_held(state);
      }
    }
    if state.is_idle() {
      state.sweeping = false;
      return None;
    }
    Some(self.form(state))
  }

  /// Answers the session's queued calls that are past their deadline (never sent). Deadlines
  /// grow in call order, so they are a prefix of the queue.
  fn expire_queued(&self, session: &mut Session, now: Instant) {
    while session
      .queue
      .front()
      .is_some_and(|q| q.waiter.deadline <= now)
    {
      let expired = session.queue.pop_front().expect("a front");
      self.answer(expired.waiter, &Err(waited_too_long()));
    }
  }

  /// Answers the skipped touches at the head of an idle session's queue: nothing goes before
  /// them any more.
  fn answer_skips(&self, session: &mut Session) {
    while session
      .queue
      .front()
      .is_some_and(|q| matches!(q.work, Work::Skip))
    {
      let skip = session.queue.pop_front().expect("a front");
      self.answer(skip.waiter, &Ok(Outcome::Found(false)));
    }
  }

  /// True when no call is queued or in flight.
  pub fn is_idle(&self) -> bool {
    self.lock().is_idle()
  }

  /// Answers every pending call (close): `in_flight` for calls whose statement is out, `err`
  /// for the others.
  pub fn settle_all(&self, err: &StoreError, in_flight: &StoreError) {
    let mut state = self.lock();
    let sessions = std::mem::take(&mut state.sessions);
    for (_, session) in sessions {
      for waiter in session.in_flight.unwrap_or_default() {
        self.answer(waiter, &Err(in_flight.clone()));
      }
      for q in session.queue {
        self.answer(q.waiter, &Err(err.clone()));
      }
    }
    for held in std::mem::take(&mut state.held) {
      let waiter = match held {
        Held::Call(_, q) => q.waiter,
        Held::Clear(w) => w,
      };
      self.answer(waiter, &Err(err.clone()));
    }
    if let Some(clear) = state.clear.take() {
      let err = if clear.running { in_flight } else { err };
      for waiter in clear.waiters {
        self.answer(waiter, &Err(err.clone()));
      }
    }
    state.ready.iter_mut().for_each(VecDeque::clear);
  }

  fn answer(&self, waiter: Waiter, result: &StoreResult<Outcome>) {
    let answer = match result {
      Ok(outcome) => {
        self.engine.succeeded(waiter.op);
        match (waiter.op, outcome) {
          (Op::Get, Outcome::Text(text)) => Answer::Text(text.clone()),
          (Op::Get, Outcome::Unreadable) => Answer::Unreadable,
          (Op::Touch, Outcome::Found(found)) => Answer::Found(*found),
          // A touch carried by a set: the session exists now.
          (Op::Touch, Outcome::Done) => Answer::Found(true),
          _ => Answer::Done,
        }
      }
      Err(err) => Answer::Failed(self.engine.failed(err.clone()).reason),
    };
    waiter.ticket.send(answer);
  }
}

/// After a clear: lets the calls made after it in, up to the next clear.
fn release_held(state: &mut State) {
  while let Some(held) = state.held.pop_front() {
    match held {
      Held::Call(sid, queued) => queue_call(state, sid, queued),
      Held::Clear(waiter) => {
        state.clear = Some(PendingClear {
          waiters: vec![waiter],
          running: false,
        });
        break;
      }
    }
  }
}

/// Adds a call to its session's queue (or holds it behind a pending clear).
fn queue_call(state: &mut State, sid: String, queued: Queued) {
  if state.clear.is_some() {
    state.held.push_back(Held::Call(sid, queued));
    return;
  }
  let kind = queued.work.kind();
  match state.sessions.get_mut(&sid) {
    Some(session) => session.queue.push_back(queued),
    None => {
      let mut session = Session::default();
      session.queue.push_back(queued);
      state.sessions.insert(sid.clone(), session);
      state.ready[kind as usize].push_back(sid);
    }
  }
}

/// The waiters past their deadline, taken out of `waiters` (which is left alone when none are).
fn drain_expired(waiters: &mut Vec<Waiter>, now: Instant) -> Vec<Waiter> {
  if !waiters.iter().any(|w| w.deadline <= now) {
    return Vec::new();
  }
  let (expired, kept) = std::mem::take(waiters)
    .into_iter()
    .partition(|w| w.deadline <= now);
  *waiters = kept;
  expired
}

fn waited_too_long() -> StoreError {
  StoreError::Timeout(
    "the call waited longer than connectionTimeoutMillis + queryTimeout behind earlier calls \
     (of the same session, or a clear) and was not sent"
      .into(),
  )
}

fn no_answer_in_time(engine: &Engine) -> StoreError {
  StoreError::Timeout(format!(
    "no answer from PostgreSQL at {} within connectionTimeoutMillis + queryTimeout ({} ms); \
     the call may or may not have taken effect",
    engine.primary.address,
    engine.call_bound().as_millis()
  ))
}
