//! How the ordered calls' answers cross from the tokio worker to the JS thread.
//! A napi `async fn` costs the Node thread a promise, a threadsafe function, a libuv handle
//! and a wake-up of the worker per call, and a wake-up of the JS thread per answer. Here a call
//! is queued synchronously on the JS thread (`calls`), and answers ready together share one
//! wake-up and one JS call (the outbox, through one long-lived threadsafe function).

use std::future::Future;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use napi::bindgen_prelude::*;

use napi::sys;
use napi::threadsafe_function::{
  ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};

use crate::error::StoreError;

// napi's runtime is absent from `noop` builds (unit tests), which never start a call.
#[cfg(not(feature = "noop"))]
use napi::bindgen_prelude::spawn;
#[cfg(feature = "noop")]
use tokio::spawn;

/// What a finished call answers.
pub enum Answer {
  /// `get`: the stored JSON text, or none.
  Text(Option<String>),
  /// `get` of data no configured secret opens: JS receives `false`.
  Unreadable,
  /// `touch`: whether the session exists.
  Found(bool),
  /// `set`, `destroy`, `clear`: done.
  Done,
  /// Any call: the coded message (`CODE: what happened`), as a rejection would carry it.
  Failed(String),
}

/// One element of the flat array JS receives: `[id, value, id, value, …]`, where a failed
/// call's id is negated and its value is the coded message.
enum Slot {
  Id(i32),
  Text(String),
  Null,
  Found(bool),
}

impl ToNapiValue for Slot {
  unsafe fn to_napi_value(env: sys::napi_env, slot: Self) -> Result<sys::napi_value> {
    match slot {
      Slot::Id(id) => i32::to_napi_value(env, id),
      Slot::Text(text) => String::to_napi_value(env, text),
      Slot::Null => Null::to_napi_value(env, Null),
      Slot::Found(found) => bool::to_napi_value(env, found),
    }
  }
}

type Deliver = ThreadsafeFunction<(), (), Vec<Slot>, Status, false, true>;

/// State the delivering callback shares with the senders.
struct Queue {
  done: Mutex<Vec<(i32, Answer)>>,
  /// Calls started and not yet delivered; while any are, the threadsafe function keeps the
  /// event loop alive, and when none are it lets the process exit.
  pending: AtomicU32,
  raw: AtomicPtr<sys::napi_threadsafe_function__>,
}

/// Locks a queue whose every change is one push, take or swap: a panic while holding it cannot
/// leave it half-changed, so a poisoned lock is used as it is (the outbox here, the call queues
/// in `calls`).
pub fn lock<T>(queue: &Mutex<T>) -> MutexGuard<'_, T> {
  queue
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Queues `item`; true when the queue was empty, so the caller must wake its consumer (a
/// non-empty queue already has a wake-up on its way that will take this item too).
fn push_first<T>(queue: &Mutex<Vec<T>>, item: T) -> bool {
  let mut items = lock(queue);
  items.push(item);
  items.len() == 1
}

/// Runs `work` on the tokio runtime; callable from the JS thread, which has no runtime of its own.
pub fn spawn_from_js(work: impl Future<Output = ()> + Send + 'static) {
  spawn(work);
}

/// The JS side of the ordered calls: where their answers go.
pub struct Relay {
  outbox: Arc<Outbox>,
}

impl Relay {
  /// `deliver` is called on the JS thread with the flat array of answers.
  pub fn new(deliver: Function<'_, (), ()>) -> Result<Self> {
    Ok(Relay {
      outbox: Arc::new(Outbox::new(deliver)?),
    })
  }

  /// True while answers wait to reach JS (checked on the JS thread, where a batch the outbox
  /// took has been delivered already).
  pub fn has_undelivered(&self) -> bool {
    !lock(&self.outbox.queue.done).is_empty()
  }

  /// The promise to answer call `id` (made on the JS thread); until it is kept, the process
  /// stays alive.
  pub fn ticket(&self, env: &Env, id: i32) -> Ticket {
    self.outbox.begin(env, id)
  }
}

/// Answers ready for JS.
struct Outbox {
  queue: Arc<Queue>,
  deliver: Deliver,
}

impl Outbox {
  fn new(deliver: Function<'_, (), ()>) -> Result<Self> {
    let queue = Arc::new(Queue {
      done: Mutex::new(Vec::new()),
      pending: AtomicU32::new(0),
      raw: AtomicPtr::new(std::ptr::null_mut()),
    });
    let shared = queue.clone();
    let deliver: Deliver = deliver
      .build_threadsafe_function::<()>()
      .callee_handled::<false>()
      .weak::<true>()
      .build_callback(move |ctx: ThreadsafeCallContext<()>| {
        let done = std::mem::take(&mut *lock(&shared.done));
        let n = done.len() as u32;
        if n > 0 && shared.pending.fetch_sub(n, Ordering::AcqRel) == n {
          // Nothing left in flight: let the process exit once JS is done with these.
          unsafe {
            sys::napi_unref_threadsafe_function(ctx.env.raw(), shared.raw.load(Ordering::Acquire))
          };
        }
        let mut slots = Vec::with_capacity(done.len() * 2);
        for (id, answer) in done {
          let (id, value) = match answer {
            Answer::Text(Some(text)) => (id, Slot::Text(text)),
            Answer::Text(None) | Answer::Done => (id, Slot::Null),
            Answer::Found(found) => (id, Slot::Found(found)),
            Answer::Unreadable => (id, Slot::Found(false)),
            Answer::Failed(message) => (-id, Slot::Text(message)),
          };
          slots.push(Slot::Id(id));
          slots.push(value);
        }
        Ok(slots)
      })?;
    queue.raw.store(deliver.raw(), Ordering::Release);
    Ok(Outbox { queue, deliver })
  }

  /// Counts a call about to start (on the JS thread); its answer must come through `send`.
  fn begin(self: &Arc<Self>, env: &Env, id: i32) -> Ticket {
    if self.queue.pending.fetch_add(1, Ordering::AcqRel) == 0 {
      unsafe { sys::napi_ref_threadsafe_function(env.raw(), self.deliver.raw()) };
    }
    Ticket {
      id,
      outbox: Some(self.clone()),
    }
  }

  fn push(&self, id: i32, answer: Answer) {
    if push_first(&self.queue.done, (id, answer)) {
      self
        .deliver
        .call((), ThreadsafeFunctionCallMode::NonBlocking);
    }
  }
}

/// The promise to answer one call exactly once: dropped unanswered (a task cancelled when the
/// runtime shuts down), it answers with a coded error so no caller waits forever.
pub struct Ticket {
  id: i32,
  outbox: Option<Arc<Outbox>>,
}

impl Ticket {
  pub fn send(mut self, answer: Answer) {
    if let Some(outbox) = self.outbox.take() {
      outbox.push(self.id, answer);
    }
  }
}

impl Drop for Ticket {
  fn drop(&mut self) {
    if let Some(outbox) = self.outbox.take() {
      outbox.push(
        self.id,
        Answer::Failed(napi::Error::from(StoreError::dropped()).reason),
      );
    }
  }
}
