//! express-pg-session's engine: a PostgreSQL session store for express-session, run on
//! napi's tokio runtime. JS keeps the clock, the JSON and the callbacks (`index.js`); this
//! crate owns connections (`pool`, `config`), statement text (`sql`) and the store (`store`).
#![deny(clippy::all)]

mod config;
mod error;
mod pool;
mod relay;
mod sql;
mod store;
