//! Identifier quoting and the statement text for one (schema, table, columns, column types).

use tokio_postgres::types::Type;

use crate::citus::Shards;
use crate::error::{StoreError, StoreResult};

/// PostgreSQL truncates longer identifiers silently; we refuse them instead.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// How long a batch statement waits for a row lock before it gives up, so that one locked
/// session cannot hold up the other sessions of its batch (which are then sent one by one).
pub const BATCH_LOCK_WAIT_MS: u32 = 100;

/// A destroyed session's row becomes a tombstone: its expiry moved back this far, so every
/// reader (ours, connect-pg-simple) sees an expired row, while the span it still guards is
/// kept: it ends at the tombstone's expiry plus this interval.
const TOMBSTONE_SHIFT: &str = "interval '1000 years'";
/// A row expiring before this is a tombstone (sessions expire after 1970; tombstones of
/// sessions expiring before 2899 land before 1900).
const TOMBSTONE_FLOOR: &str = "1900-01-01";
/// A tombstone's guard ends its shift (1000 years) after its expiry; a set reclaims the id once
/// the tombstone expires before the set's clock minus this many seconds: 1000 years at their
/// longest (365,243 days) and two days more, so the guard never ends early whatever the time
/// zone. A plain number: Citus takes only IMMUTABLE functions in an ON CONFLICT's WHERE.
pub const TOMBSTONE_RECLAIM_SECONDS: f64 = 365_245.0 * 86_400.0;
/// The earliest expiry a set or touch writes (1901-01-01, seconds since the epoch): an earlier
/// one would read as a tombstone and block its id. A day's margin over the floor in any zone.
pub const EARLIEST_EXPIRY_SECONDS: f64 = -2_177_452_800.0;
/// What a tombstone's data column holds: should any reader see it, it is an empty session
/// whose cookie has long expired.
const TOMBSTONE_DATA: &str =
  r#"{"cookie":{"originalMaxAge":0,"expires":"1970-01-01T00:00:00.000Z"},"destroyed":true}"#;

/// Quotes one identifier. Every table, schema and column name goes through here.
pub fn quote_ident(name: &str, option: &str) -> StoreResult<String> {
  if name.is_empty() {
    return Err(StoreError::InvalidOption(format!(
      "`{option}` must not be empty"
    )));
  }
  if name.contains('\0') {
    return Err(StoreError::InvalidOption(format!(
      "`{option}` must not contain a NUL character"
    )));
  }
  if name.len() > MAX_IDENTIFIER_BYTES {
    return Err(StoreError::InvalidOption(format!(
      "`{option}` is {} bytes long; PostgreSQL identifiers hold at most {MAX_IDENTIFIER_BYTES}",
      name.len()
    )));
  }
  Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Where the sessions live: names as the user gave them.
#[derive(Debug, Clone)]
pub struct TableSpec {
  pub schema: Option<String>,
  pub table: String,
  pub session_id: String,
  pub session_data: String,
  pub expire: String,
  /// The owner column (`columns.user_id`), when sessions are listed and destroyed per user.
  pub user_id: Option<String>,
  /// `columns.created_at`: when the session was first saved, kept by every later write.
  pub created_at: Option<String>,
  /// `columns.last_seen`: the clock of the last set or written touch.
  pub last_seen: Option<String>,
  /// `extraColumns`' names, in the order a set gives their values.
  pub extras: Vec<String>,
  /// `maxLifetime` in seconds: a session older than created_at plus this reads as missing.
  pub max_lifetime: Option<f64>,
}

/// The same names, quoted once at construction.
#[derive(Debug, Clone)]
pub struct QuotedTable {
  pub schema: Option<String>,
  /// `"schema"."table"` or `"table"`.
  pub qualified: String,
  pub session_id: String,
  pub session_data: String,
  pub expire: String,
  pub user_id: Option<String>,
  pub created_at: Option<String>,
  pub last_seen: Option<String>,
  pub extras: Vec<String>,
  spec: TableSpec,
}

impl QuotedTable {
  pub fn new(spec: TableSpec) -> StoreResult<Self> {
    let schema = match &spec.schema {
      Some(s) => Some(quote_ident(s, "schemaName")?),
      None => None,
    };
    let table = quote_ident(&spec.table, "tableName")?;
    let qualified = match &schema {
      Some(s) => format!("{s}.{table}"),
      None => table,
    };
    let session_id = quote_ident(&spec.session_id, "columns.session_id")?;
    let session_data = quote_ident(&spec.session_data, "columns.session_data")?;
    let expire = quote_ident(&spec.expire, "columns.expire")?;
    let optional = |name: &Option<String>, option: &str| match name {
      Some(n) => quote_ident(n, option).map(Some),
      None => Ok(None),
    };
    let user_id = optional(&spec.user_id, "columns.user_id")?;
    let created_at = optional(&spec.created_at, "columns.created_at")?;
    let last_seen = optional(&spec.last_seen, "columns.last_seen")?;
    let extras = spec
      .extras
      .iter()
      .map(|e| quote_ident(e, &format!("extraColumns.{e}")))
      .collect::<StoreResult<Vec<_>>>()?;
    let mut names = vec![&spec.session_id, &spec.session_data, &spec.expire];
    names.extend(&spec.user_id);
    names.extend(&spec.created_at);
    names.extend(&spec.last_seen);
    names.extend(&spec.extras);
    let given = names.len();
    names.sort();
    names.dedup();
    if names.len() < given {
      return Err(StoreError::InvalidOption(
        "`columns` and `extraColumns` must name different columns".into(),
      ));
    }
    Ok(QuotedTable {
      schema,
      qualified,
      session_id,
      session_data,
      expire,
      user_id,
      created_at,
      last_seen,
      extras,
      spec,
    })
  }

  pub fn spec(&self) -> &TableSpec {
    &self.spec
  }

  /// One catalog query: does the table exist, what type has each column, and does its collation
  /// compare by bytes. `collisdeterministic` is read through `to_jsonb` because servers before
  /// PostgreSQL 12 lack the column (every collation there is deterministic). Existence comes from
  /// pg_class under the statement's snapshot, not from `to_regclass` alone: that one reads the
  /// newest catalog, so a table another process just created would exist with no columns.
  /// Then whether the citus extension is installed (then `citus_table_query`), and whether the
  /// column is NOT NULL.
  pub fn catalog_query(&self) -> Stmt {
    Stmt::new(
      "SELECT rel.oid IS NOT NULL, a.attname::text, t.typname::text, \
       coalesce((to_jsonb(c) ->> 'collisdeterministic')::bool, true), \
       t.typcategory::text, format_type(a.atttypid, -1), \
       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus'), a.attnotnull \
       FROM (SELECT to_regclass($1::text) AS oid) r \
       LEFT JOIN pg_class rel ON rel.oid = r.oid \
       LEFT JOIN pg_attribute a ON a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped \
       LEFT JOIN pg_type t ON t.oid = a.atttypid \
       LEFT JOIN pg_collation c ON c.oid = a.attcollation"
        .to_string(),
      &[Type::TEXT],
    )
  }

  /// connect-pg-simple's table, with the configured names; safe to run concurrently.
  pub fn create_table_sql(&self) -> String {
    let t = &self.qualified;
    let mut sql = String::new();
    if let Some(schema) = &self.schema {
      sql.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {schema};\n"));
    }
    let mut user = match &self.user_id {
      Some(user) => format!(",\n  {user} varchar NULL"),
      None => String::new(),
    };
    for (column, ty) in self.optional_columns() {
      user.push_str(&format!(",\n  {column} {ty} NULL"));
    }
    sql.push_str(&format!(
      "CREATE TABLE IF NOT EXISTS {t} (\n  {sid} varchar NOT NULL COLLATE \"default\" PRIMARY KEY,\n  {data} json NOT NULL,\n  {exp} timestamp(6) NOT NULL{user}\n);\n{index}",
      sid = self.session_id,
      data = self.session_data,
      exp = self.expire,
      index = self.index_sql(&self.spec.expire),
    ));
    if let Some(user) = &self.spec.user_id {
      sql.push('\n');
      sql.push_str(&self.index_sql(user));
    }
    if let Some(index) = self.created_index_sql() {
      sql.push('\n');
      sql.push_str(&index);
    }
    sql
  }

  /// The columns besides connect-pg-simple's and the owner, each with the type
  /// createTableIfMissing gives it: (quoted name, type).
  fn optional_columns(&self) -> Vec<(&str, &'static str)> {
    let times = [&self.created_at, &self.last_seen];
    let times = times
      .into_iter()
      .flatten()
      .map(|c| (c.as_str(), "timestamp(6)"));
    times
      .chain(self.extras.iter().map(|c| (c.as_str(), "text")))
      .collect()
  }

  /// With `maxLifetime`, prune finds aged sessions by created_at.
  fn created_index_sql(&self) -> Option<String> {
    self.spec.max_lifetime?;
    Some(self.index_sql(self.spec.created_at.as_ref()?))
  }

  /// What to run on an existing table that lacks the column `name` (as given; one of
  /// `created_at`, `last_seen`, the extra columns).
  pub fn add_column_sql(&self, name: &str) -> Option<String> {
    let quoted = quote_ident(name, "column").ok()?;
    let (_, ty) = self
      .optional_columns()
      .into_iter()
      .find(|(c, _)| *c == quoted)?;
    let mut sql = format!(
      "ALTER TABLE {} ADD COLUMN {quoted} {ty} NULL;",
      self.qualified
    );
    if self.spec.created_at.as_deref() == Some(name) {
      if let Some(index) = self.created_index_sql() {
        sql.push('\n');
        sql.push_str(&index);
      }
    }
    Some(sql)
  }

  /// Asked only where the citus extension is installed: is the table in Citus's metadata
  /// (distributed, reference, or a local table Citus manages)? Its statements then take the
  /// Citus forms (see `Shape::citus`).
  pub fn citus_table_query(&self) -> Stmt {
    Stmt::new(
      "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass($1::text))"
        .to_string(),
      &[Type::TEXT],
    )
  }

  /// Distributes the table on its session id column (Citus), after `create_table_sql` in the same
  /// string, so one transaction creates and distributes it. Names go in as quoted literals.
  /// Two shards per worker node unless `citus.shard_count` was set (for the role, the database,
  /// the connection): a session table is small, and every statement that spans shards costs a
  /// task per shard; 4 shards ran 1.5–3× the operations of Citus's default 32 on two workers
  /// (bench/citus.js, docs/distributed.md).
  pub fn distribute_sql(&self) -> String {
    format!(
      "SELECT create_distributed_table({}, {}, shard_count => CASE \
       WHEN (SELECT source FROM pg_settings WHERE name = 'citus.shard_count') = 'default' \
       THEN greatest(2 * (SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' \
       AND isactive AND shouldhaveshards)::int, 2) \
       ELSE current_setting('citus.shard_count')::int END);",
      literal(&self.qualified),
      literal(&self.spec.session_id)
    )
  }

  /// What to run on an existing table that lacks the `columns.user_id` column.
  pub fn add_user_column_sql(&self) -> Option<String> {
    let (user, spec_user) = (self.user_id.as_ref()?, self.spec.user_id.as_ref()?);
    Some(format!(
      "ALTER TABLE {} ADD COLUMN {user} varchar NULL;\n{}",
      self.qualified,
      self.index_sql(spec_user)
    ))
  }

  /// connect-pg-simple's index name for `column`: `IDX_<table>_<column>`.
  fn index_sql(&self, column: &str) -> String {
    let index = quote_ident(
      &index_name(&format!("IDX_{}_{}", self.spec.table, column)),
      "index name",
    )
    .unwrap_or_else(|_| "\"IDX_session_expire\"".into());
    let column = quote_ident(column, "column").unwrap_or_default();
    format!(
      "CREATE INDEX IF NOT EXISTS {index} ON {} ({column});",
      self.qualified
    )
  }
}

/// `name` when it fits in an identifier; else its start and a hash of all of it, so that two long
/// table names sharing their first 63 bytes still get an index each.
fn index_name(name: &str) -> String {
  if name.len() <= MAX_IDENTIFIER_BYTES {
    return name.to_string();
  }
  // FNV-1a: the same name gives the same index name in every process and version.
  let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
    (h ^ b as u32).wrapping_mul(0x0100_0193)
  });
  let mut end = MAX_IDENTIFIER_BYTES - 9;
  while !name.is_char_boundary(end) {
    end -= 1;
  }
  format!("{}_{hash:08x}", &name[..end])
}

/// How a session id (sent as text) is compared with the sid column: string types (text,
/// varchar, char(n), domains over them) as text, as connect-pg-simple does; any other type
/// (uuid, …) through a cast to the column's type, without a length (a `char(1)` cast would cut
/// every id to one character).
#[derive(Debug, Clone, Default)]
pub struct SidType {
  /// `::uuid`, or empty for text columns.
  cast: String,
}

impl SidType {
  /// `category` is pg_type's typcategory, `formatted` format_type(type, -1) of the column.
  pub fn from_pg(category: &str, formatted: &str) -> Self {
    match category {
      "S" => SidType::default(),
      _ => SidType {
        cast: format!("::{formatted}"),
      },
    }
  }

  /// True for string columns: rows read back can be matched to the ids asked for by their text.
  pub fn is_text(&self) -> bool {
    self.cast.is_empty()
  }

  fn one(&self, param: &str) -> String {
    format!("{param}::text{}", self.cast)
  }

  fn many(&self, param: &str) -> String {
    if self.cast.is_empty() {
      format!("{param}::text[]")
    } else {
      format!("{param}::text[]{}[]", self.cast)
    }
  }
}

/// The data column's type decides the cast on write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
  Json,
  Jsonb,
  Text,
}

/// The expire column's type decides how the JS time is compared and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireType {
  Timestamp,
  Timestamptz,
}

impl DataType {
  pub fn from_pg(typname: &str) -> Option<Self> {
    match typname {
      "json" => Some(DataType::Json),
      "jsonb" => Some(DataType::Jsonb),
      "text" | "varchar" => Some(DataType::Text),
      _ => None,
    }
  }
  fn cast(self) -> &'static str {
    match self {
      DataType::Json => "::json",
      DataType::Jsonb => "::jsonb",
      DataType::Text => "",
    }
  }
}

impl ExpireType {
  pub fn from_pg(typname: &str) -> Option<Self> {
    match typname {
      "timestamp" => Some(ExpireType::Timestamp),
      "timestamptz" => Some(ExpireType::Timestamptz),
      _ => None,
    }
  }
  /// The tombstone floor as the column's type.
  fn floor(self) -> String {
    match self {
      ExpireType::Timestamp => format!("'{TOMBSTONE_FLOOR}'::timestamp"),
      ExpireType::Timestamptz => format!("'{TOMBSTONE_FLOOR}'::timestamptz"),
    }
  }
  /// Seconds since the epoch as the column's type, so its index stays usable.
  fn at(self, seconds: &str) -> String {
    match self {
      ExpireType::Timestamp => format!("to_timestamp({seconds})::timestamp"),
      ExpireType::Timestamptz => format!("to_timestamp({seconds})"),
    }
  }
  /// `at` for seconds read from a column (an unnest's), as Citus takes it: it refuses STABLE
  /// functions over columns in UPDATE, and the timestamptz → timestamp cast is STABLE. The same
  /// value: `timezone(zone, timestamptz)` is IMMUTABLE, and the zone is the session's, read once
  /// on the coordinator.
  fn at_row(self, seconds: &str, citus: bool) -> String {
    match self {
      ExpireType::Timestamp if citus => {
        format!("timezone(current_setting('TimeZone'), to_timestamp({seconds}))")
      }
      _ => self.at(seconds),
    }
  }
  /// `column - TOMBSTONE_SHIFT` unless the row is a tombstone already, without a STABLE function
  /// over the column (Citus refuses those in UPDATE, and any non-IMMUTABLE one in `CASE` or in
  /// `DO UPDATE SET`). timestamptz minus an interval is STABLE, so that type shifts as UTC
  /// wall-clock time: it may land some minutes away from the session-time-zone shift (time
  /// zones' offsets a thousand years ago), far inside the tombstone's guard of a day or more.
  fn shifted_back(self, column: &str) -> String {
    let by = format!(
      "CASE WHEN {column} < {} THEN interval '0' ELSE {TOMBSTONE_SHIFT} END",
      self.floor()
    );
    match self {
      ExpireType::Timestamp => format!("{column} - {by}"),
      ExpireType::Timestamptz => format!("timezone('UTC', timezone('UTC', {column}) - {by})"),
    }
  }
}

/// A statement's text and its parameter types (explicit, so it can also run unnamed).
#[derive(Debug, Clone)]
pub struct Stmt {
  pub sql: String,
  pub types: Vec<Type>,
  /// A plain SELECT: it never waits on a row lock, so other calls may queue behind it.
  pub read_only: bool,
}

impl Stmt {
  pub(crate) fn new(sql: String, types: &[Type]) -> Self {
    let read_only = sql.starts_with("SELECT ") && !sql.contains(" FOR UPDATE");
    Stmt {
      sql,
      types: types.to_vec(),
      read_only,
    }
  }
}

/// What decides the statements besides the names: the columns' types, and whether a destroy
/// leaves a tombstone.
pub struct Shape<'a> {
  pub data: DataType,
  pub expire: ExpireType,
  pub sid: &'a SidType,
  /// The `columns.user_id` column's type, when it is configured.
  pub user: Option<&'a SidType>,
  pub tombstones: bool,
  /// The table is a Citus table: statements in forms Citus runs (see `Statements::citus`).
  pub citus: bool,
  /// The types of `columns.created_at` and `columns.last_seen`, when configured.
  pub created: Option<ExpireType>,
  pub seen: Option<ExpireType>,
  /// How each extra column (`extraColumns`, in order) takes its value, sent as text.
  pub extras: &'a [SidType],
}

/// What a set sends after (sid, data, expiry, reclaim), in this order: the owner
/// (`columns.user_id`), the set's clock (for `columns.created_at` / `last_seen`), then one value
/// per extra column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetLayout {
  pub user: bool,
  pub clock: bool,
  pub extras: usize,
}

impl SetLayout {
  /// Parameters per session.
  pub fn stride(&self) -> usize {
    4 + self.user as usize + self.clock as usize + self.extras
  }
  fn user_at(&self) -> usize {
    5
  }
  fn clock_at(&self) -> usize {
    5 + self.user as usize
  }
  fn extra_at(&self, i: usize) -> usize {
    5 + self.user as usize + self.clock as usize + i
  }
}

/// Every statement the store runs, built once per store after the column types are known.
#[derive(Debug, Clone)]
pub struct Statements {
  /// False when rows read back cannot be matched to the ids asked for by their text: the sid
  /// column's collation is nondeterministic (say, case-insensitive) or it is not a text column.
  pub batch_gets: bool,
  /// The sid column is not a string type: an id it cannot hold (22xxx) is a missing session.
  pub typed_sid: bool,
  /// What `set` statements take besides (sid, data, expiry, reclaim).
  pub set_layout: SetLayout,
  /// Touches take their clock (seconds) as a third parameter, for `columns.last_seen`.
  pub touch_clock: bool,
  /// A Citus table. A `set_config('lock_timeout', …, true)` would bound the coordinator's wait
  /// only, not the workers' where the rows are locked; so the short-wait writes (`*_one`,
  /// `*_batch`) are the plain statements run inside `CITUS_LOCK_WAIT`'s transaction, whose
  /// SET LOCAL Citus passes on to the workers. Prune picks its batch without FOR UPDATE.
  pub citus: bool,
  /// Citus, a table hash-distributed on a text sid: its shards, so writes go one shard at a time.
  pub shards: Option<Shards>,
  pub get: Stmt,
  /// Several gets in one statement: the rows among the sids live at the earliest caller's
  /// clock, with their sid and expiry.
  pub get_many: Stmt,
  /// One upsert that waits as long as a row lock is held (bounded by queryTimeout).
  pub set: Stmt,
  /// Upserts of distinct sids, in the order given; gives up on a row lock after
  /// `BATCH_LOCK_WAIT_MS` (55P03).
  pub set_batch: Stmt,
  /// `set`, `touch` and `destroy` of one session that give up on a row lock like the batches:
  /// a batch of one, without the arrays.
  pub set_one: Stmt,
  /// Citus only (else empty): `set` of 2, 3, … `CITUS_SET_ROWS` sessions as one multi-row
  /// VALUES upsert (`set_rows[k]` holds k + 2 rows; each connection prepares a size when it
  /// first runs it). Citus sends each shard its rows, where the
  /// unnest of `set_batch` is an INSERT … SELECT it runs through the coordinator.
  pub set_rows: Vec<Stmt>,
  pub touch_one: Stmt,
  pub destroy_one: Stmt,
  pub touch: Stmt,
  /// Expiry moves of distinct sids; returns the sids (as given) that exist. Gives up on a lock
  /// like `set_batch`.
  pub touch_batch: Stmt,
  /// Deletes a session, or with tombstones turns its row into one: (sid, guard until).
  pub destroy: Stmt,
  /// `destroy` of several sids; gives up on a lock like `set_batch`.
  pub destroy_batch: Stmt,
  pub all: Stmt,
  pub ids: Stmt,
  pub count: Stmt,
  pub clear: Stmt,
  pub prune_batch: Stmt,
  /// With `maxLifetime`: ends sessions older than it (tombstones, or deleted without): (now,
  /// batch size, guard until).
  pub prune_aged: Option<Stmt>,
  /// A user's live sessions, newest activity first: (user, now) → (sid, data, expiry, created,
  /// last seen, extra columns as a JSON object), the last three NULL unless configured.
  pub user_sessions: Option<Stmt>,
  /// Destroys a user's live sessions: (user, except sid or null, now, guard until, only these
  /// stored ids or null).
  pub destroy_user_sessions: Option<Stmt>,
}

/// The most sessions one multi-row set carries on Citus (`Statements::set_rows`).
pub const CITUS_SET_ROWS: usize = 64;
/// The first part of a batch statement: a row lock held elsewhere ends the statement after a
/// short wait instead of holding up every session in the batch. `set_config(…, true)` lasts
/// for the statement's own transaction only, so it also suits a transaction-mode pooler; the
/// CTE is joined into the statement, so it runs before the first row is locked.
fn lock_wait() -> String {
  format!(
    "WITH lock_wait AS MATERIALIZED (SELECT set_config('lock_timeout', '{BATCH_LOCK_WAIT_MS}ms', true)) "
  )
}

/// What a Citus write runs in, sent with it in one round trip: a transaction whose SET LOCAL
/// Citus sends on to every worker transaction it opens (`citus.propagate_set_commands`), so the
/// short lock wait (`BATCH_LOCK_WAIT_MS`) holds where the rows are locked. COMMIT follows the write.
pub const CITUS_LOCK_WAIT: &str = "BEGIN; SET LOCAL citus.propagate_set_commands TO 'local'; \
  SET LOCAL lock_timeout TO '100ms'";

impl Statements {
  pub fn new(t: &QuotedTable, shape: &Shape) -> Self {
    let (table, sid, sess, exp) = (&t.qualified, &t.session_id, &t.session_data, &t.expire);
    let Shape {
      data,
      expire,
      sid: sid_type,
      tombstones,
      ..
    } = *shape;
    let live = format!("{exp} >= {}", expire.at("$1::float8"));
    let one = sid_type.one("$1");
    let many = sid_type.many("$1");
    let cast = data.cast();
    let floor = expire.floor();
    // A row that is no tombstone: what a set may overwrite and a touch may move.
    let alive = |alias: &str| format!("{alias}{exp} >= {floor}");
    let user = t.user_id.as_ref().zip(shape.user);
    let created = t.created_at.as_ref().zip(shape.created);
    let seen = t.last_seen.as_ref().zip(shape.seen);
    let extras: Vec<(&String, &SidType)> = t.extras.iter().zip(shape.extras).collect();
    let layout = SetLayout {
      user: user.is_some(),
      clock: created.is_some() || seen.is_some(),
      extras: extras.len(),
    };
    // What a set writes besides (sid, data, expiry), in SetLayout's order: each column with its
    // value from the k-th parameter (`one`), from the unnest's row `v` (`many`), its array in the
    // unnest, and its DO UPDATE part. created_at keeps the first save's time (a tombstone has
    // none, so a reclaimed id starts anew).
    struct Written {
      col: String,
      one: Box<dyn Fn(&str) -> String>,
      many: String,
      array: Option<String>,
      update: String,
    }
    let mut written: Vec<(usize, Written)> = Vec::new();
    if let Some((col, ty)) = user {
      let ty = ty.clone();
      written.push((
        layout.user_at(),
        Written {
          col: col.clone(),
          one: Box::new(move |p| ty.one(p)),
          many: format!(
            "v.p{}{}",
            layout.user_at(),
            shape.user.map(|t| t.cast.as_str()).unwrap_or("")
          ),
          array: Some("text[]".into()),
          update: format!("{col} = EXCLUDED.{col}"),
        },
      ));
    }
    for (i, time) in [created, seen].into_iter().enumerate() {
      let Some((col, ty)) = time else { continue };
      let k = layout.clock_at();
      written.push((
        k,
        Written {
          col: col.clone(),
          one: Box::new(move |p| ty.at(&format!("{p}::float8"))),
          many: ty.at_row(&format!("v.p{k}"), shape.citus),
          // Both times come from the one clock parameter.
          array: (i == 0 || created.is_none()).then(|| "float8[]".into()),
          update: if i == 0 {
            format!("{col} = coalesce(s.{col}, EXCLUDED.{col})")
          } else {
            format!("{col} = EXCLUDED.{col}")
          },
        },
      ));
    }
    for (i, (col, ty)) in extras.iter().enumerate() {
      let k = layout.extra_at(i);
      let ty = (*ty).clone();
      written.push((
        k,
        Written {
          col: (*col).clone(),
          many: format!("v.p{k}{}", ty.cast),
          one: Box::new(move |p| ty.one(p)),
          array: Some("text[]".into()),
          update: format!("{col} = EXCLUDED.{col}"),
        },
      ));
    }
    let more_cols: String = written
      .iter()
      .map(|(_, w)| format!(", {}", w.col))
      .collect();
    let more_update: String = written
      .iter()
      .map(|(_, w)| format!(", {}", w.update))
      .collect();
    let more_many: String = written
      .iter()
      .map(|(_, w)| format!(", {}", w.many))
      .collect();
    let (mut more_arrays, mut more_alias) = (String::new(), String::new());
    for (k, w) in &written {
      if let Some(array) = &w.array {
        more_arrays.push_str(&format!(", ${k}::{array}"));
        more_alias.push_str(&format!(", p{k}"));
      }
    }
    // A set's values from its parameters, `p(k)` naming the k-th (1-based, as in SetLayout).
    let set_values = |p: &dyn Fn(usize) -> String| {
      let mut values = format!(
        "{}, {}::text{}, {}",
        sid_type.one(&p(1)),
        p(2),
        data.cast(),
        expire.at(&format!("{}::float8", p(3)))
      );
      for (k, w) in &written {
        values.push_str(&format!(", {}", (w.one)(&p(*k))));
      }
      values
    };
    let dollar = |k: usize| format!("${k}");
    // A set never brings back an id whose tombstone still guards it; once the guard has ended
    // ($4: see TOMBSTONE_RECLAIM_SECONDS) the id is free again. IMMUTABLE functions only: a
    // timestamp column compares in UTC, a skew of hours inside the two days' margin. Without
    // tombstones $4 goes unused.
    let guard = if tombstones {
      let reclaim = match expire {
        ExpireType::Timestamp => "timezone('UTC', to_timestamp($4::float8))",
        ExpireType::Timestamptz => "to_timestamp($4::float8)",
      };
      format!(" WHERE {} OR s.{exp} < {reclaim}", alive("s."))
    } else {
      " WHERE $4::float8 IS NOT NULL".to_string()
    };
    let upsert = format!(
      "ON CONFLICT ({sid}) DO UPDATE SET {sess} = EXCLUDED.{sess}, {exp} = EXCLUDED.{exp}{more_update}{guard}"
    );
    let touch_guard = if tombstones {
      format!(" AND {}", alive("s."))
    } else {
      String::new()
    };
    // A touch that reaches the table is activity: `columns.last_seen` takes its clock ($3).
    let seen_one = seen
      .map(|(c, ty)| format!(", {c} = {}", ty.at("$3::float8")))
      .unwrap_or_default();
    let seen_many = |citus: bool| {
      seen
        .map(|(c, ty)| format!(", {c} = {}", ty.at_row("v.seen", citus)))
        .unwrap_or_default()
    };
    let (seen_array, seen_alias) = if seen.is_some() {
      (", $3::float8[]", ", seen")
    } else {
      ("", "")
    };
    let (touch_types, touch_batch_types): (&[Type], &[Type]) = if seen.is_some() {
      (
        &[Type::TEXT, Type::FLOAT8, Type::FLOAT8],
        &[Type::TEXT_ARRAY, Type::FLOAT8_ARRAY, Type::FLOAT8_ARRAY],
      )
    } else {
      (
        &[Type::TEXT, Type::FLOAT8],
        &[Type::TEXT_ARRAY, Type::FLOAT8_ARRAY],
      )
    };
    let mut set_types = vec![Type::TEXT, Type::TEXT, Type::FLOAT8, Type::FLOAT8];
    let mut set_batch_types = vec![
      Type::TEXT_ARRAY,
      Type::TEXT_ARRAY,
      Type::FLOAT8_ARRAY,
      Type::FLOAT8,
    ];
    if layout.user {
      set_types.push(Type::TEXT);
      set_batch_types.push(Type::TEXT_ARRAY);
    }
    if layout.clock {
      set_types.push(Type::FLOAT8);
      set_batch_types.push(Type::FLOAT8_ARRAY);
    }
    for _ in 0..layout.extras {
      set_types.push(Type::TEXT);
      set_batch_types.push(Type::TEXT_ARRAY);
    }
    // A tombstone's expiry: the later of the session's own expiry and the guard's end (the
    // parameter), shifted back; kept below the floor whatever the session's expiry was.
    // `guard_end` is the end of the guard, already shifted back; a row that is a tombstone already
    // keeps the later of its two ends.
    let tomb_expiry = |guard_end: &str| {
      if shape.citus {
        // The same value, with no STABLE function over a column and none inside the CASE.
        let last_day = match expire {
          ExpireType::Timestamp => "'1899-12-31'::timestamp",
          ExpireType::Timestamptz => "'1899-12-31'::timestamptz",
        };
        return format!(
          "least(greatest({}, {guard_end}), {last_day})",
          expire.shifted_back(&format!("s.{exp}"))
        );
      }
      format!(
        "least(CASE WHEN s.{exp} < {floor} THEN greatest(s.{exp}, {guard_end}) \
         ELSE greatest(s.{exp} - {TOMBSTONE_SHIFT}, {guard_end}) END, {floor} - interval '1 day')"
      )
    };
    // A tombstone holds no owner, times or device.
    let cleared: String = written
      .iter()
      .map(|(_, w)| format!(", {} = NULL", w.col))
      .collect();
    let tomb = || {
      format!(
        "ON CONFLICT ({sid}) DO UPDATE SET {sess} = EXCLUDED.{sess}, {exp} = {}{cleared}",
        tomb_expiry(&format!("EXCLUDED.{exp}"))
      )
    };
    let marker = format!("'{TOMBSTONE_DATA}'{cast}");
    let (destroy, destroy_one, destroy_batch) = if tombstones {
      let until = |p: &str| format!("{} - {TOMBSTONE_SHIFT}", expire.at(p));
      let until_row = format!(
        "{} - {TOMBSTONE_SHIFT}",
        expire.at_row("v.until", shape.citus)
      );
      (
        format!(
          "INSERT INTO {table} AS s ({sid}, {sess}, {exp}) VALUES ({one}, {marker}, {}) {}",
          until("$2::float8"),
          tomb()
        ),
        format!(
          "{wait}INSERT INTO {table} AS s ({sid}, {sess}, {exp}) SELECT {one}, {marker}, {} \
           FROM lock_wait {}",
          until("$2::float8"),
          tomb(),
          wait = lock_wait()
        ),
        format!(
          "{wait}INSERT INTO {table} AS s ({sid}, {sess}, {exp}) \
           SELECT v.sid{sid_cast}, {marker}, {} \
           FROM lock_wait, unnest($1::text[], $2::float8[]) AS v(sid, until) {}",
          until_row,
          tomb(),
          wait = lock_wait(),
          sid_cast = sid_type.cast
        ),
      )
    } else {
      // $2 (the guard's end) is declared and not used: the parameters stay the same either way.
      (
        format!("DELETE FROM {table} WHERE {sid} = {one} AND $2::float8 IS NOT NULL"),
        format!(
          "{wait}DELETE FROM {table} USING lock_wait WHERE {sid} = {one} AND $2::float8 IS NOT NULL",
          wait = lock_wait()
        ),
        // Joined with unnest like the touch, so rows are found (and locked) in the array's order.
        format!(
          "{wait}DELETE FROM {table} AS s USING lock_wait, unnest($1::text[], $2::float8[]) AS v(sid, until) \
           WHERE s.{sid} = v.sid{sid_cast}",
          wait = lock_wait(),
          sid_cast = sid_type.cast
        ),
      )
    };
    // With `maxLifetime`: the row was created no longer ago than it, by the clock `p` (a row
    // with no created_at, written before the column was added, is not limited until its next set).
    let lifetime = created.zip(t.spec().max_lifetime);
    let life = |p: &str| match lifetime {
      Some(((c, ty), l)) => format!(
        " AND ({c} IS NULL OR {c} >= {})",
        ty.at(&format!("{p} - {l}"))
      ),
      None => String::new(),
    };
    // A row's expiry in seconds, as readers judge it: the earlier of its own and its lifetime's end.
    let expires = match lifetime {
      Some(((c, _), l)) => format!(
        "least(extract(epoch FROM {exp}::timestamptz), \
         coalesce(extract(epoch FROM {c}::timestamptz) + {l}, extract(epoch FROM {exp}::timestamptz)))::float8"
      ),
      None => format!("extract(epoch FROM {exp}::timestamptz)::float8"),
    };
    let (user_sessions, destroy_user_sessions) = match user {
      Some((col, ty)) => {
        // Ids compared as text, as listUserSessions gives them and as the app knows them: an
        // `except` a uuid column could not hold must not fail the call.
        let of_user = format!(
          "s.{col} = {} AND s.{exp} >= {} AND ($2::text IS NULL OR s.{sid}::text <> $2::text) \
           AND ($5::text[] IS NULL OR s.{sid}::text = ANY($5::text[])){}",
          ty.one("$1"),
          expire.at("$3::float8"),
          life("$3::float8"),
        );
        let destroy = if tombstones {
          format!(
            "UPDATE {table} AS s SET {sess} = {marker}, {exp} = {}{cleared} WHERE {of_user}",
            tomb_expiry(&format!("{} - {TOMBSTONE_SHIFT}", expire.at("$4::float8")))
          )
        } else {
          format!("DELETE FROM {table} AS s WHERE {of_user} AND $4::float8 IS NOT NULL")
        };
        (
          Some(Stmt::new(
            format!(
              "SELECT {sid}::text, {sess}::text, {expires}, {}, {}, {} \
               FROM {table} WHERE {col} = {} AND {exp} >= {}{} ORDER BY {}{exp} DESC",
              epoch_of(created.map(|c| c.0)),
              epoch_of(seen.map(|c| c.0)),
              json_object(&t.spec().extras, &t.extras, shape.extras),
              ty.one("$1"),
              expire.at("$2::float8"),
              life("$2::float8"),
              seen
                .map(|(c, _)| format!("{c} DESC NULLS LAST, "))
                .unwrap_or_default(),
            ),
            &[Type::TEXT, Type::FLOAT8],
          )),
          Some(Stmt::new(
            destroy,
            &[
              Type::TEXT,
              Type::TEXT,
              Type::FLOAT8,
              Type::FLOAT8,
              Type::TEXT_ARRAY,
            ],
          )),
        )
      }
      None => (None, None),
    };
    let at_now = expire.at("$1::float8");
    let mut statements = Statements {
      batch_gets: sid_type.is_text(),
      typed_sid: !sid_type.is_text(),
      set_layout: layout,
      touch_clock: seen.is_some(),
      citus: shape.citus,
      shards: None,
      get: Stmt::new(
        format!(
          "SELECT {sess}::text FROM {table} WHERE {sid} = {one} AND {exp} >= {}{}",
          expire.at("$2::float8"),
          life("$2::float8")
        ),
        &[Type::TEXT, Type::FLOAT8],
      ),
      // `= ANY`, not a join with unnest: the planner keeps one index probe per sid whatever the
      // table's size, where a join may turn into a hash join over the whole table.
      // $2 is the earliest caller's clock; each row comes with its expiry (seconds) so that each
      // caller's own clock judges it.
      get_many: Stmt::new(
        format!(
          "SELECT {sid}::text, {sess}::text, {expires} \
           FROM {table} WHERE {sid} = ANY({many}) AND {exp} >= {}{}",
          expire.at("$2::float8"),
          life("$2::float8")
        ),
        &[Type::TEXT_ARRAY, Type::FLOAT8],
      ),
      set: Stmt::new(
        format!(
          "INSERT INTO {table} AS s ({sid}, {sess}, {exp}{more_cols}) VALUES ({}) {upsert}",
          set_values(&dollar)
        ),
        &set_types,
      ),
      // Rows are inserted, and so locked, in the order of the arrays: callers sort them, so two
      // batches never wait on each other in a cycle.
      set_batch: Stmt::new(
        format!(
          "{wait}INSERT INTO {table} AS s ({sid}, {sess}, {exp}{more_cols}) \
           SELECT v.sid{sid_cast}, v.sess{cast}, {at}{more_many} \
           FROM lock_wait, unnest($1::text[], $2::text[], $3::float8[]{more_arrays}) AS v(sid, sess, expire_at{more_alias}) {upsert}",
          wait = lock_wait(),
          sid_cast = sid_type.cast,
          at = expire.at("v.expire_at"),
        ),
        &set_batch_types,
      ),
      set_one: Stmt::new(
        format!(
          "{wait}INSERT INTO {table} AS s ({sid}, {sess}, {exp}{more_cols}) SELECT {} \
           FROM lock_wait {upsert}",
          set_values(&dollar),
          wait = lock_wait(),
        ),
        &set_types,
      ),
      set_rows: Vec::new(),
      touch_one: Stmt::new(
        format!(
          "{wait}UPDATE {table} AS s SET {exp} = {}{seen_one} FROM lock_wait WHERE s.{sid} = {one}{touch_guard}",
          expire.at("$2::float8"),
          wait = lock_wait()
        ),
        touch_types,
      ),
      destroy_one: Stmt::new(destroy_one, &[Type::TEXT, Type::FLOAT8]),
      touch: Stmt::new(
        format!(
          "UPDATE {table} AS s SET {exp} = {}{seen_one} WHERE s.{sid} = {one}{touch_guard}",
          expire.at("$2::float8")
        ),
        touch_types,
      ),
      touch_batch: Stmt::new(
        format!(
          "{wait}UPDATE {table} AS s SET {exp} = {at}{seen_many} \
           FROM lock_wait, unnest($1::text[], $2::float8[]{seen_array}) AS v(sid, expire_at{seen_alias}) \
           WHERE s.{sid} = v.sid{sid_cast}{touch_guard} RETURNING v.sid",
          wait = lock_wait(),
          sid_cast = sid_type.cast,
          at = expire.at("v.expire_at"),
          seen_many = seen_many(false),
        ),
        touch_batch_types,
      ),
      destroy: Stmt::new(destroy, &[Type::TEXT, Type::FLOAT8]),
      destroy_batch: Stmt::new(destroy_batch, &[Type::TEXT_ARRAY, Type::FLOAT8_ARRAY]),
      all: Stmt::new(
        format!("SELECT {sid}::text, {sess}::text FROM {table} WHERE {live}{}", life("$1::float8")),
        &[Type::FLOAT8],
      ),
      ids: Stmt::new(
        format!("SELECT {sid}::text FROM {table} WHERE {live}{}", life("$1::float8")),
        &[Type::FLOAT8],
      ),
      count: Stmt::new(
        format!("SELECT count(*) FROM {table} WHERE {live}{}", life("$1::float8")),
        &[Type::FLOAT8],
      ),
      clear: Stmt::new(format!("DELETE FROM {table}"), &[]),
      // SKIP LOCKED: two processes pruning at once never wait on (or deadlock with) each other.
      // `= ANY(ARRAY(…))` probes the sid index once per chosen row (`IN (…)` became a hash join
      // over the whole table). Not by ctid: a ctid is only unique within one partition or
      // inheritance child. The outer expiry test is what makes it safe: a row is deleted only
      // if it is itself expired, whatever else shares its sid. Two ranges of the expiry index:
      // expired sessions, and tombstones whose guard has ended (live tombstones lie between); each
      // range takes up to the batch size, so one statement deletes at most twice that.
      prune_batch: Stmt::new(
        format!(
          "WITH expired AS (SELECT {sid} FROM {table} WHERE {exp} < {at_now} AND {exp} >= {floor} \
           LIMIT $2::int8 FOR UPDATE SKIP LOCKED), \
           ended AS (SELECT {sid} FROM {table} WHERE {exp} < {at_now} - {TOMBSTONE_SHIFT} \
           LIMIT $2::int8 FOR UPDATE SKIP LOCKED) \
           DELETE FROM {table} WHERE {sid} = ANY(ARRAY(SELECT {sid} FROM expired UNION ALL SELECT {sid} FROM ended)) \
           AND ({exp} < {at_now} AND {exp} >= {floor} OR {exp} < {at_now} - {TOMBSTONE_SHIFT})"
        ),
        &[Type::FLOAT8, Type::INT8],
      ),
      prune_aged: lifetime.map(|((c, ty), l)| {
        // Aged sessions still live by their expiry (expired ones prune_batch deletes), up to the
        // batch size; the outer test makes it safe as prune_batch's does. With tombstones they become ones (guarding their id as a destroy
        // does: until the later of their expiry and $3), so no late write brings them back.
        let aged = format!("{c} < {} AND {exp} >= {at_now}", ty.at(&format!("$1::float8 - {l}")));
        let pick = format!("SELECT {sid} FROM {table} WHERE {aged} LIMIT $2::int8 FOR UPDATE SKIP LOCKED");
        let sql = if tombstones {
          format!(
            "WITH aged AS ({pick}) UPDATE {table} AS s SET {sess} = {marker}, {exp} = {}{cleared} \
             WHERE s.{sid} = ANY(ARRAY(SELECT {sid} FROM aged)) AND {aged}",
            tomb_expiry(&format!("{} - {TOMBSTONE_SHIFT}", expire.at("$3::float8")))
          )
        } else {
          format!(
            "WITH aged AS ({pick}) DELETE FROM {table} AS s \
             WHERE s.{sid} = ANY(ARRAY(SELECT {sid} FROM aged)) AND {aged} AND $3::float8 IS NOT NULL"
          )
        };
        Stmt::new(sql, &[Type::FLOAT8, Type::INT8, Type::FLOAT8])
      }),
      user_sessions,
      destroy_user_sessions,
    };
    if shape.citus {
      let s = &mut statements;
      // The lock wait comes from the transaction the writes run in (`CITUS_LOCK_WAIT`): the
      // single-row forms are the plain ones, and the batches drop the lock_wait CTE (a CTE Citus
      // would run on the coordinator first). `= ANY` beside the unnest join lets Citus send an
      // UPDATE or DELETE to the shards of those ids only.
      let from_lock_wait = |sql: &str| {
        sql
          .replacen(&lock_wait(), "", 1)
          .replacen("FROM lock_wait, ", "FROM ", 1)
          .replacen("USING lock_wait, ", "USING ", 1)
      };
      s.set_one = s.set.clone();
      let stride = layout.stride();
      let row = |i: usize| {
        format!(
          "({})",
          set_values(&|k: usize| format!("${}", i * stride + k))
        )
      };
      let mut rows = 2;
      while rows <= CITUS_SET_ROWS {
        let values: Vec<String> = (0..rows).map(row).collect();
        s.set_rows.push(Stmt::new(
          format!(
            "INSERT INTO {table} AS s ({sid}, {sess}, {exp}{more_cols}) VALUES {} {upsert}",
            values.join(", ")
          ),
          &(0..rows)
            .flat_map(|_| set_types.iter().cloned())
            .collect::<Vec<_>>(),
        ));
        rows += 1;
      }
      s.touch_one = s.touch.clone();
      s.destroy_one = s.destroy.clone();
      s.set_batch.sql = from_lock_wait(&s.set_batch.sql).replacen(
        &expire.at("v.expire_at"),
        &expire.at_row("v.expire_at", true),
        1,
      );
      s.touch_batch.sql = format!(
        "UPDATE {table} AS s SET {exp} = {at}{seen_many} \
         FROM unnest($1::text[], $2::float8[]{seen_array}) AS v(sid, expire_at{seen_alias}) \
         WHERE s.{sid} = v.sid{sid_cast} AND s.{sid} = ANY({many}){touch_guard} RETURNING v.sid",
        sid_cast = sid_type.cast,
        at = expire.at_row("v.expire_at", true),
        seen_many = seen_many(true),
      );
      s.destroy_batch.sql = if tombstones {
        from_lock_wait(&s.destroy_batch.sql)
      } else {
        format!(
          "DELETE FROM {table} AS s USING unnest($1::text[], $2::float8[]) AS v(sid, until) \
           WHERE s.{sid} = v.sid{sid_cast} AND s.{sid} = ANY({many})",
          sid_cast = sid_type.cast
        )
      };
      // Citus runs no multi-shard FOR UPDATE. Without SKIP LOCKED a pruner waits on a row
      // locked elsewhere, then tests its expiry again (the outer test), so it still deletes only
      // rows that are themselves expired and no live tombstone.
      s.prune_batch.sql = s.prune_batch.sql.replace(" FOR UPDATE SKIP LOCKED", "");
      if let Some(aged) = &mut s.prune_aged {
        aged.sql = aged.sql.replace(" FOR UPDATE SKIP LOCKED", "");
      }
    }
    statements
  }
}

/// `text` as a string literal, whatever `standard_conforming_strings` says (a backslash escapes
/// in `E'…'` always).
fn literal(text: &str) -> String {
  format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A time column's value in seconds since the epoch, or NULL when it is not configured.
fn epoch_of(column: Option<&String>) -> String {
  match column {
    Some(c) => format!("extract(epoch FROM {c}::timestamptz)::float8"),
    None => "NULL::float8".into(),
  }
}

/// The extra columns as one JSON object text (`{"ip": …}`), or NULL when there are none.
/// A bigint or numeric value goes in as text: JSON.parse would round it to a double.
fn json_object(names: &[String], quoted: &[String], types: &[SidType]) -> String {
  if names.is_empty() {
    return "NULL::text".into();
  }
  let pairs: Vec<String> = names
    .iter()
    .zip(quoted)
    .zip(types)
    .map(|((name, q), ty)| {
      let wide = ty.cast == "::bigint" || ty.cast.starts_with("::numeric");
      format!("{}, {q}{}", literal(name), if wide { "::text" } else { "" })
    })
    .collect();
  format!("json_build_object({})::text", pairs.join(", "))
}

#[cfg(test)]
mod tests {
  use super::*;

  fn spec(table: &str) -> TableSpec {
    TableSpec {
      schema: Some("app".into()),
      table: table.into(),
      session_id: "sid".into(),
      session_data: "sess".into(),
      expire: "expire".into(),
      user_id: None,
      created_at: None,
      last_seen: None,
      extras: Vec::new(),
      max_lifetime: None,
    }
  }

  fn shape(data: DataType, expire: ExpireType, sid: &SidType) -> Shape<'_> {
    Shape {
      data,
      expire,
      sid,
      user: None,
      tombstones: true,
      citus: false,
      created: None,
      seen: None,
      extras: &[],
    }
  }

  #[test]
  fn quotes_and_doubles_embedded_quotes() {
    assert_eq!(quote_ident("session", "t").unwrap(), "\"session\"");
    assert_eq!(
      quote_ident("a\"; DROP TABLE x; --", "t").unwrap(),
      "\"a\"\"; DROP TABLE x; --\""
    );
  }

  #[test]
  fn rejects_nul_empty_and_long_names() {
    for bad in ["", "a\0b", &"x".repeat(64)] {
      let err = quote_ident(bad, "tableName").unwrap_err();
      assert_eq!(err.code(), "ERR_PG_SESSION_INVALID_OPTION");
      assert!(err.to_string().contains("tableName"));
    }
    assert!(quote_ident(&"x".repeat(63), "t").is_ok());
  }

  #[test]
  fn rejects_repeated_columns() {
    let mut s = spec("t");
    s.expire = "sid".into();
    assert!(QuotedTable::new(s).is_err());
  }

  #[test]
  fn statements_use_quoted_names_and_casts() {
    let t = QuotedTable::new(spec("user \"sessions\"")).unwrap();
    assert_eq!(t.qualified, "\"app\".\"user \"\"sessions\"\"\"");
    let text = SidType::default();
    let s = Statements::new(&t, &shape(DataType::Jsonb, ExpireType::Timestamp, &text));
    assert!(s.set.sql.contains("$2::text::jsonb"));
    assert!(s.get.sql.contains("to_timestamp($2::float8)::timestamp"));
    assert!(s.set.sql.contains("ON CONFLICT (\"sid\")"));
    let s = Statements::new(&t, &shape(DataType::Text, ExpireType::Timestamptz, &text));
    assert!(s.set.sql.contains("$2::text, to_timestamp($3::float8))"));
    assert!(!s.get.sql.contains("::timestamp "));
    assert_eq!(s.set.types.len(), 4);
    assert!(s.get.read_only && s.get_many.read_only && s.count.read_only);
    assert!(s.get_many.sql.contains("= ANY($1::text[])"));
    assert!(!s.set.read_only && !s.touch_batch.read_only && !s.prune_batch.read_only);
    assert!(s.set_batch.sql.starts_with("WITH lock_wait"));
    assert!(!s.prune_batch.sql.contains("ctid"));
  }

  #[test]
  fn tombstones_guard_writes_and_off_means_delete() {
    let t = QuotedTable::new(spec("t")).unwrap();
    let text = SidType::default();
    let on = Statements::new(&t, &shape(DataType::Json, ExpireType::Timestamp, &text));
    // A tombstone holds a set back until its guard has ended ($4).
    for stmt in [&on.set, &on.set_one, &on.set_batch] {
      assert!(stmt.sql.ends_with(
        "WHERE s.\"expire\" >= '1900-01-01'::timestamp \
         OR s.\"expire\" < timezone('UTC', to_timestamp($4::float8))"
      ));
    }
    assert!(on
      .touch_batch
      .sql
      .contains("AND s.\"expire\" >= '1900-01-01'"));
    assert!(on.destroy.sql.starts_with("INSERT INTO"));
    assert!(on
      .destroy_batch
      .sql
      .contains("unnest($1::text[], $2::float8[])"));
    assert!(on.user_sessions.is_none());
    let off = Statements::new(
      &t,
      &Shape {
        tombstones: false,
        ..shape(DataType::Json, ExpireType::Timestamp, &text)
      },
    );
    assert!(off.destroy.sql.starts_with("DELETE FROM"));
    assert!(!off.set.sql.contains("1900"));
    // Prune is the same either way: a table may be shared by stores with either setting.
    assert_eq!(on.prune_batch.sql, off.prune_batch.sql);
  }

  #[test]
  fn a_user_column_is_written_by_sets_and_created() {
    let t = QuotedTable::new(TableSpec {
      user_id: Some("owner".into()),
      ..spec("t")
    })
    .unwrap();
    let text = SidType::default();
    let s = Statements::new(
      &t,
      &Shape {
        user: Some(&text),
        ..shape(DataType::Json, ExpireType::Timestamp, &text)
      },
    );
    assert!(s.set_layout.user && s.set.types.len() == 5 && s.set_batch.types.len() == 5);
    assert!(s.set.sql.contains("$5::text") && s.set_batch.sql.contains("$5::text[]"));
    assert!(s.set_batch.sql.contains("\"owner\" = EXCLUDED.\"owner\""));
    assert!(s.destroy.sql.contains("\"owner\" = NULL"));
    assert!(s.user_sessions.is_some() && s.destroy_user_sessions.is_some());
    let create = t.create_table_sql();
    assert!(create.contains("\"owner\" varchar NULL"));
    assert!(create.contains("\"IDX_t_owner\" ON \"app\".\"t\" (\"owner\")"));
    assert!(t.add_user_column_sql().unwrap().starts_with("ALTER TABLE"));
  }

  #[test]
  fn device_columns_are_written_and_lifetime_limits_reads() {
    let t = QuotedTable::new(TableSpec {
      user_id: Some("owner".into()),
      created_at: Some("created".into()),
      last_seen: Some("seen".into()),
      extras: vec!["ip".into(), "ua".into()],
      max_lifetime: Some(2.5),
      ..spec("t")
    })
    .unwrap();
    let text = SidType::default();
    let extras = [SidType::default(), SidType::from_pg("N", "bigint")];
    for citus in [false, true] {
      let s = Statements::new(
        &t,
        &Shape {
          user: Some(&text),
          created: Some(ExpireType::Timestamptz),
          seen: Some(ExpireType::Timestamp),
          extras: &extras,
          citus,
          ..shape(DataType::Json, ExpireType::Timestamp, &text)
        },
      );
      // (sid, data, expiry, reclaim, owner, clock, ip, ua)
      assert_eq!(s.set.types.len(), 8);
      assert_eq!(s.set_layout.stride(), 8);
      assert!(s.set.sql.contains(
        "(\"sid\", \"sess\", \"expire\", \"owner\", \"created\", \"seen\", \"ip\", \"ua\") VALUES ($1::text, $2::text::json, to_timestamp($3::float8)::timestamp, $5::text, to_timestamp($6::float8), to_timestamp($6::float8)::timestamp, $7::text, $8::text::bigint)"
      ), "{}", s.set.sql);
      assert!(s
        .set
        .sql
        .contains("\"created\" = coalesce(s.\"created\", EXCLUDED.\"created\")"));
      assert!(
        s.set_batch.sql.contains(
          "$6::float8[], $7::text[], $8::text[]) AS v(sid, sess, expire_at, p5, p6, p7, p8)"
        ),
        "{}",
        s.set_batch.sql
      );
      assert!(s
        .touch
        .sql
        .contains("\"seen\" = to_timestamp($3::float8)::timestamp"));
      assert_eq!(s.touch_batch.types.len(), 3);
      assert!(s
        .get
        .sql
        .ends_with("AND (\"created\" IS NULL OR \"created\" >= to_timestamp($2::float8 - 2.5))"));
      assert!(s.get_many.sql.contains("least("));
      assert!(s.count.sql.contains("\"created\" IS NULL OR"));
      assert!(s
        .destroy
        .sql
        .contains("\"created\" = NULL, \"seen\" = NULL, \"ip\" = NULL, \"ua\" = NULL"));
      let list = s.user_sessions.as_ref().unwrap();
      assert!(list
        .sql
        .contains("json_build_object(E'ip', \"ip\", E'ua', \"ua\"::text)::text"));
      assert!(list
        .sql
        .contains("ORDER BY \"seen\" DESC NULLS LAST, \"expire\" DESC"));
      let aged = s.prune_aged.as_ref().unwrap();
      assert!(aged.sql.starts_with("WITH aged AS") && aged.sql.contains("UPDATE"));
      assert_eq!(aged.sql.contains("FOR UPDATE"), !citus);
      if citus {
        assert_eq!(s.set_rows[0].types.len(), 16);
        assert!(
          s.set_rows[0].sql.contains(
            "$14::float8), to_timestamp($14::float8)::timestamp, $15::text, $16::text::bigint)"
          ),
          "{}",
          s.set_rows[0].sql
        );
      }
    }
    let create = t.create_table_sql();
    assert!(
      create.contains("\"created\" timestamp(6) NULL") && create.contains("\"ua\" text NULL")
    );
    assert!(create.contains("\"IDX_t_created\""));
    assert!(t
      .add_column_sql("ip")
      .unwrap()
      .starts_with("ALTER TABLE \"app\".\"t\" ADD COLUMN \"ip\" text NULL;"));
    assert!(t
      .add_column_sql("created")
      .unwrap()
      .contains("IDX_t_created"));
    // Without the options nothing changes.
    let plain = Statements::new(
      &QuotedTable::new(spec("t")).unwrap(),
      &shape(DataType::Json, ExpireType::Timestamp, &text),
    );
    assert_eq!(plain.set.types.len(), 4);
    assert!(plain.prune_aged.is_none() && !plain.touch_clock);
    assert!(!plain.get.sql.contains("IS NULL"));
  }

  #[test]
  fn create_table_names_index_after_table() {
    let t = QuotedTable::new(TableSpec {
      schema: None,
      ..spec("session")
    })
    .unwrap();
    let sql = t.create_table_sql();
    assert!(sql.contains("\"IDX_session_expire\""));
    assert!(!sql.contains("CREATE SCHEMA"));
    let long = QuotedTable::new(spec(&"é".repeat(31))).unwrap();
    assert!(long
      .create_table_sql()
      .contains("CREATE SCHEMA IF NOT EXISTS \"app\""));
  }

  #[test]
  fn long_index_names_stay_distinct() {
    let a = index_name(&format!("IDX_{}_a_expire", "t".repeat(60)));
    let b = index_name(&format!("IDX_{}_b_expire", "t".repeat(60)));
    assert!(a.len() <= MAX_IDENTIFIER_BYTES && b.len() <= MAX_IDENTIFIER_BYTES);
    assert_ne!(a, b);
    assert_eq!(index_name("IDX_session_expire"), "IDX_session_expire");
    assert!(index_name(&"é".repeat(40)).len() <= MAX_IDENTIFIER_BYTES);
  }

  #[test]
  fn non_text_sid_columns_are_cast() {
    let t = QuotedTable::new(spec("t")).unwrap();
    let uuid = SidType::from_pg("U", "uuid");
    let s = Statements::new(&t, &shape(DataType::Json, ExpireType::Timestamp, &uuid));
    assert!(s.get.sql.contains("\"sid\" = $1::text::uuid"));
    assert!(s.get_many.sql.contains("ANY($1::text[]::uuid[])"));
    assert!(s.destroy_batch.sql.contains("v.sid::uuid"));
    assert!(s.set_batch.sql.contains("v.sid::uuid"));
    assert!(!s.batch_gets);
    assert!(SidType::from_pg("S", "character varying").is_text());
    // char(n) compares as text: a cast to its type would cut ids.
    assert!(SidType::from_pg("S", "bpchar").is_text());
  }

  #[test]
  fn citus_forms_leave_out_what_citus_refuses() {
    let t = QuotedTable::new(TableSpec {
      user_id: Some("owner".into()),
      ..spec("t")
    })
    .unwrap();
    let text = SidType::default();
    for expire in [ExpireType::Timestamp, ExpireType::Timestamptz] {
      let plain = Statements::new(
        &t,
        &Shape {
          user: Some(&text),
          ..shape(DataType::Json, expire, &text)
        },
      );
      let citus = Statements::new(
        &t,
        &Shape {
          user: Some(&text),
          citus: true,
          ..shape(DataType::Json, expire, &text)
        },
      );
      assert!(citus.citus && !plain.citus);
      for stmt in [&citus.set_one, &citus.set_batch, &citus.touch_one] {
        assert!(!stmt.sql.contains("lock_wait"), "{}", stmt.sql);
      }
      assert!(!citus
        .touch_batch
        .sql
        .contains("to_timestamp(v.expire_at)::timestamp"));
      assert!(citus
        .touch_batch
        .sql
        .contains("AND s.\"sid\" = ANY($1::text[])"));
      assert!(!citus.prune_batch.sql.contains("FOR UPDATE"));
      assert!(plain.prune_batch.sql.contains("FOR UPDATE SKIP LOCKED"));
      let destroy_user = citus.destroy_user_sessions.as_ref().unwrap();
      assert!(!destroy_user.sql.contains("THEN greatest"));
      assert!(destroy_user.sql.contains("'1899-12-31'"));
      assert_eq!(citus.get.sql, plain.get.sql);
      assert_eq!(citus.get_many.sql, plain.get_many.sql);
      assert_eq!(citus.set.sql, plain.set.sql);
      assert!(plain.set_rows.is_empty());
      // Every size from 2 to CITUS_SET_ROWS, so a batch's group is one statement.
      assert_eq!(citus.set_rows.len(), CITUS_SET_ROWS - 1);
      for (k, stmt) in citus.set_rows.iter().enumerate() {
        assert_eq!(stmt.types.len(), (k + 2) * 5);
      }
      let two = &citus.set_rows[0];
      assert!(two.sql.contains("VALUES ($1::text, $2::text::json, "));
      assert!(two.sql.contains("($6::text, $7::text::json, "));
      assert!(two
        .sql
        .ends_with(&plain.set.sql[plain.set.sql.find(" ON CONFLICT").unwrap()..]));
      let last = citus.set_rows.last().unwrap();
      assert_eq!(last.types.len(), CITUS_SET_ROWS * 5);
      assert!(last
        .sql
        .contains(&format!("${}::text)", CITUS_SET_ROWS * 5)));
    }
    let wait = format!("SET LOCAL lock_timeout TO '{BATCH_LOCK_WAIT_MS}ms'");
    assert!(CITUS_LOCK_WAIT.ends_with(&wait));
  }

  #[test]
  fn literals_hold_quotes_and_backslashes_whatever_the_server_setting() {
    assert_eq!(literal("it's"), "E'it''s'");
    // With standard_conforming_strings off, '…\' would end in an escaped quote.
    assert_eq!(literal("x\\"), "E'x\\\\'");
  }

  #[test]
  fn column_types() {
    assert_eq!(DataType::from_pg("jsonb"), Some(DataType::Jsonb));
    assert_eq!(DataType::from_pg("bytea"), None);
    assert_eq!(
      ExpireType::from_pg("timestamptz"),
      Some(ExpireType::Timestamptz)
    );
    assert_eq!(ExpireType::from_pg("date"), None);
  }
}
