//! What the session table looks like, learned once: one catalog query (creating the table when
//! asked to), then the statement text. Calls that arrive while the lookup runs share it and its
//! outcome: a failed lookup fails them all at once, and the next call tries again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::future::{BoxFuture, FutureExt, Shared};

use crate::citus::Shards;
use crate::error::{StoreError, StoreResult};
use crate::pool::Target;
use crate::sql::{quote_ident, DataType, ExpireType, QuotedTable, Shape, SidType, Statements};

type Lookup = Shared<BoxFuture<'static, StoreResult<Arc<Statements>>>>;

/// What the store asks of the table besides its names.
#[derive(Clone, Copy)]
pub struct Wants {
  /// Create the table (and schema) when it is missing.
  pub create: bool,
  /// On a Citus coordinator, distribute a table it creates on the session id.
  pub distribute: bool,
  /// A destroy leaves a tombstone.
  pub tombstones: bool,
  /// Ids are stored hashed: the sid column must hold text.
  pub hashed_ids: bool,
  /// Data is sealed to its id as given: the sid column must hold text as given (a uuid column
  /// would give back another spelling, and `all()` could not open the row).
  pub sealed: bool,
}

pub struct Table {
  quoted: Arc<QuotedTable>,
  wants: Wants,
  ready: OnceLock<Arc<Statements>>,
  lookup: Mutex<Option<Lookup>>,
}

/// One column as the catalog describes it.
struct Column {
  typname: String,
  /// pg_type's typcategory: `S` for strings (and domains over them).
  category: String,
  formatted: String,
  deterministic: bool,
  not_null: bool,
}

/// What the catalog says about the table.
struct Found {
  /// None when the table does not exist; else its columns by name.
  columns: Option<HashMap<String, Column>>,
  /// The citus extension is installed in the database.
  citus_installed: bool,
}

impl Table {
  pub fn new(quoted: QuotedTable, wants: Wants) -> Self {
    Table {
      quoted: Arc::new(quoted),
      wants,
      ready: OnceLock::new(),
      lookup: Mutex::new(None),
    }
  }

  /// The table's name, schema-qualified and quoted.
  pub fn qualified(&self) -> &str {
    &self.quoted.qualified
  }

  /// The statements; the first call (and every call after a failed lookup) asks the catalog.
  pub async fn statements(&self, primary: &Arc<Target>) -> StoreResult<&Statements> {
    if let Some(st) = self.ready.get() {
      return Ok(st);
    }
    let lookup = {
      let mut slot = self.lookup.lock().map_err(|_| poisoned())?;
      slot
        .get_or_insert_with(|| {
          inspect(self.quoted.clone(), primary.clone(), self.wants)
            .boxed()
            .shared()
        })
        .clone()
    };
    let result = lookup.clone().await;
    match result {
      Ok(st) => Ok(self.ready.get_or_init(|| st)),
      Err(e) => {
        // Only the lookup that failed is forgotten, not a newer one another call started.
        if let Ok(mut slot) = self.lookup.lock() {
          if slot.as_ref().is_some_and(|l| Shared::ptr_eq(l, &lookup)) {
            *slot = None;
          }
        }
        Err(e)
      }
    }
  }
}

fn poisoned() -> StoreError {
  StoreError::Connect("the table lookup is unusable after a panic".into())
}

async fn inspect(
  table: Arc<QuotedTable>,
  primary: Arc<Target>,
  wants: Wants,
) -> StoreResult<Arc<Statements>> {
  let mut found = column_types(&table, &primary).await?;
  if found.columns.is_none() && wants.create {
    // On Citus the table is created and distributed in one transaction (the string runs as one),
    // so no other process ever sees it local and builds the plain statements for it.
    let distributing = found.citus_installed && wants.distribute;
    let sql = if distributing {
      format!("{}\n{}", table.create_table_sql(), table.distribute_sql())
    } else {
      table.create_table_sql()
    };
    match primary.batch(&sql).await {
      // Another process created it between our look and our CREATE: IF NOT EXISTS does not cover
      // a concurrent creation, which fails on the catalog (23505), the name (42P07) or the table's
      // row type (42710); on Citus, it may have distributed it first.
      Err(StoreError::Db { sqlstate, .. })
        if matches!(sqlstate.as_str(), "23505" | "42P07" | "42710") => {}
      Err(_) if distributing && is_citus_table(&table, &primary).await? => {}
      other => other?,
    }
    found = column_types(&table, &primary).await?;
  }
  let citus = found.citus_installed && is_citus_table(&table, &primary).await?;
  let columns = found.columns;
  let spec = table.spec();
  let Some(columns) = columns else {
    return Err(StoreError::NoTable(format!(
      "the session table {} does not exist; create it (with the configured names) by running\n{}\nor pass `createTableIfMissing: true`",
      table.qualified,
      table.create_table_sql()
    )));
  };
  let missing = |col: &str, option: &str| {
    StoreError::Schema(format!(
      "the session table {} has no column \"{col}\"; set `columns.{option}` to the right name",
      table.qualified
    ))
  };
  let sid = columns
    .get(&spec.session_id)
    .ok_or_else(|| missing(&spec.session_id, "session_id"))?;
  let data = columns
    .get(&spec.session_data)
    .ok_or_else(|| missing(&spec.session_data, "session_data"))?;
  let expire = columns
    .get(&spec.expire)
    .ok_or_else(|| missing(&spec.expire, "expire"))?;
  let data_type = DataType::from_pg(&data.typname).ok_or_else(|| {
    StoreError::Schema(format!(
      "column \"{}\" of {} is {}; the session data column must be json, jsonb or text",
      spec.session_data, table.qualified, data.formatted
    ))
  })?;
  let expire_type = ExpireType::from_pg(&expire.typname).ok_or_else(|| {
    StoreError::Schema(format!(
      "column \"{}\" of {} is {}; the expire column must be timestamp or timestamptz",
      spec.expire, table.qualified, expire.formatted
    ))
  })?;
  // The optional columns: every missing one named in one error, with the ALTER TABLEs that add
  // them; each must take NULL (a tombstone clears them, an extra column's value may be none).
  let wanted: Vec<(String, String)> = [
    (&spec.user_id, "columns.user_id"),
    (&spec.created_at, "columns.created_at"),
    (&spec.last_seen, "columns.last_seen"),
  ]
  .into_iter()
  .filter_map(|(name, option)| Some((name.clone()?, option.to_string())))
  .chain(
    spec
      .extras
      .iter()
      .map(|e| (e.clone(), format!("extraColumns.{e}"))),
  )
  .collect();
  let missing: Vec<&(String, String)> = wanted
    .iter()
    .filter(|(name, _)| !columns.contains_key(name))
    .collect();
  if !missing.is_empty() {
    let names: Vec<String> = missing
      .iter()
      .map(|(n, o)| format!("\"{n}\" for `{o}`"))
      .collect();
    let alters: Vec<String> = missing
      .iter()
      .filter_map(|(n, _)| {
        if spec.user_id.as_ref() == Some(n) {
          table.add_user_column_sql()
        } else {
          table.add_column_sql(n)
        }
      })
      .collect();
    return Err(StoreError::Schema(format!(
      "the session table {} has no column {}; add {} by running\n{}\nor set the option to the right name",
      table.qualified,
      names.join(", "),
      if missing.len() == 1 { "it" } else { "them" },
      alters.join("\n")
    )));
  }
  let not_null: Vec<&str> = wanted
    .iter()
    .filter(|(name, _)| columns.get(name).is_some_and(|c| c.not_null))
    .map(|(name, _)| name.as_str())
    .collect();
  if !not_null.is_empty() {
    let alters: Vec<String> = not_null
      .iter()
      .map(|n| {
        let column = quote_ident(n, "column").unwrap_or_default();
        format!(
          "ALTER TABLE {} ALTER COLUMN {column} DROP NOT NULL;",
          table.qualified
        )
      })
      .collect();
    return Err(StoreError::Schema(format!(
      "column {} of {} is NOT NULL; the store writes NULL there (a destroyed session's tombstone clears it), so run\n{}",
      not_null.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", "),
      table.qualified,
      alters.join("\n")
    )));
  }
  let user_type = spec
    .user_id
    .as_ref()
    .and_then(|user| columns.get(user))
    .map(|column| SidType::from_pg(&column.category, &column.formatted));
  let optional = |name: &str| {
    (columns.get(name)).ok_or_else(|| StoreError::Schema(format!("no column \"{name}\"")))
  };
  let time = |name: &Option<String>, option: &str| -> StoreResult<Option<ExpireType>> {
    let Some(name) = name else { return Ok(None) };
    let column = optional(name)?;
    let ty = ExpireType::from_pg(&column.typname).ok_or_else(|| {
      StoreError::Schema(format!(
        "column \"{name}\" of {} is {}; `{option}` must be timestamp or timestamptz",
        table.qualified, column.formatted
      ))
    })?;
    Ok(Some(ty))
  };
  let created = time(&spec.created_at, "columns.created_at")?;
  let seen = time(&spec.last_seen, "columns.last_seen")?;
  let extras = spec
    .extras
    .iter()
    .map(|e| {
      let column = optional(e)?;
      Ok(SidType::from_pg(&column.category, &column.formatted))
    })
    .collect::<StoreResult<Vec<_>>>()?;
  let sid_type = SidType::from_pg(&sid.category, &sid.formatted);
  if (wants.hashed_ids || wants.sealed) && !sid_type.is_text() {
    let option = if wants.hashed_ids {
      "`hashSessionIds` stores a 64-character hex hash"
    } else {
      "`secret` binds each session's data to its id as given"
    };
    return Err(StoreError::Schema(format!(
      "column \"{}\" of {} is {}; {option}, so the session id column must be varchar or text",
      spec.session_id, table.qualified, sid.formatted
    )));
  }
  let mut statements = Statements::new(
    &table,
    &Shape {
      data: data_type,
      expire: expire_type,
      sid: &sid_type,
      user: user_type.as_ref(),
      tombstones: wants.tombstones,
      citus,
      created,
      seen,
      extras: &extras,
    },
  );
  statements.batch_gets &= sid.deterministic;
  // Ids hash as Citus hashes them only as the bytes of a text or varchar value.
  if citus && sid.deterministic && matches!(sid.typname.as_str(), "text" | "varchar") {
    statements.shards = shards(&table, &primary).await?;
  }
  Ok(Arc::new(statements))
}

/// The table's columns (None when it does not exist), and whether Citus is installed.
async fn column_types(table: &QuotedTable, primary: &Arc<Target>) -> StoreResult<Found> {
  let (rows, _) = primary
    .run(&table.catalog_query(), &[&table.qualified])
    .await?;
  let citus_installed = rows.first().is_some_and(|r| r.get::<_, bool>(6));
  if !rows.first().map(|r| r.get::<_, bool>(0)).unwrap_or(false) {
    return Ok(Found {
      columns: None,
      citus_installed,
    });
  }
  let columns = Some(
    rows
      .iter()
      .filter_map(|r| {
        let column = Column {
          typname: r.get::<_, Option<String>>(2)?,
          deterministic: r.get::<_, bool>(3),
          category: r.get::<_, Option<String>>(4)?,
          formatted: r.get::<_, Option<String>>(5)?,
          not_null: r.get::<_, Option<bool>>(7).unwrap_or(false),
        };
        Some((r.get::<_, Option<String>>(1)?, column))
      })
      .collect(),
  );
  Ok(Found {
    columns,
    citus_installed,
  })
}

/// One more catalog query, only where the citus extension is installed.
async fn is_citus_table(table: &QuotedTable, primary: &Arc<Target>) -> StoreResult<bool> {
  let (rows, _) = primary
    .run(&table.citus_table_query(), &[&table.qualified])
    .await?;
  Ok(rows.first().is_some_and(|r| r.get::<_, bool>(0)))
}

/// The shards of a table hash-distributed on the session id column, else None.
async fn shards(table: &QuotedTable, primary: &Arc<Target>) -> StoreResult<Option<Shards>> {
  let (rows, _) = primary
    .run(
      &Shards::query(),
      &[&table.qualified, &table.spec().session_id],
    )
    .await?;
  let Some(row) = rows.first() else {
    return Ok(None);
  };
  let mins = row.get::<_, Option<Vec<i32>>>(0);
  let hosts = row
    .get::<_, Option<Vec<Option<String>>>>(1)
    .unwrap_or_default();
  let ports = row
    .get::<_, Option<Vec<Option<i32>>>>(2)
    .unwrap_or_default();
  let groups = row
    .get::<_, Option<Vec<Option<i32>>>>(3)
    .unwrap_or_default();
  Ok(mins.and_then(|mins| Shards::new(mins, hosts, ports, groups)))
}
