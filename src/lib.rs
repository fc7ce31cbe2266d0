//! express-pg-session's engine: a PostgreSQL session store for express-session, run on
//! napi's tokio runtime. JS keeps the clock, the JSON and the callbacks (`index.js`); this
//! crate owns connections (`pool`, `config`), the table and its statements (`table`, `sql`),
//! how the ordered calls travel (`calls`, `batch`, `relay`), what is stored sealed or hashed
//! (`protect`) and the class JS sees (`store`).
#![deny(clippy::all)]

mod batch;
mod calls;
mod citus;
mod config;
mod engine;
mod error;
mod nodes;
mod pool;
mod protect;
mod relay;
mod sql;
mod store;
mod table;
