//! The store's one error type and its mapping to a JS `Error` with a stable `code`.

use std::fmt;

/// Every failure the store reports. `code()` is the stable string JS branches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
  /// A call after `close()`, or queued and not sent when it came.
  Closed,
  /// A call whose statement was out when `close()` came.
  ClosedInFlight,
  /// A malformed option (connection string, TLS material, identifier).
  InvalidOption(String),
  /// No connection could be opened (refused, unreachable, DNS).
  Connect(String),
  /// No connection became available within `connectionTimeoutMillis`.
  Timeout(String),
  /// A statement sent and unanswered within `queryTimeout`: given up on (code as `Timeout`).
  GivenUp(String),
  /// The connection broke while a statement was in flight.
  ConnectionLost(String),
  /// TLS set-up or handshake failed (bad certificate, wrong host, unknown CA).
  Tls(String),
  /// The table does not exist and `createTableIfMissing` is off.
  NoTable(String),
  /// The table exists but lacks a column or has a type the store cannot use.
  Schema(String),
  /// Session data could not be encrypted (the system random source failed).
  Seal(String),
  /// An error reported by PostgreSQL; `code` is its SQLSTATE.
  Db { sqlstate: String, message: String },
}

impl StoreError {
  /// A call whose task ended without answering it (a panic, the runtime shutting down).
  pub fn dropped() -> Self {
    StoreError::ConnectionLost(
      "the call was dropped before it was answered; it may be retried".into(),
    )
  }

  /// The same error, saying which server it came from (`host:port`, never a password).
  pub fn at(self, address: &str) -> Self {
    let place = |m: String| m.replacen("PostgreSQL", &format!("PostgreSQL at {address}"), 1);
    match self {
      StoreError::Connect(m) => StoreError::Connect(place(m)),
      StoreError::Timeout(m) => StoreError::Timeout(place(m)),
      StoreError::Tls(m) => StoreError::Tls(place(m)),
      StoreError::Db { sqlstate, message } => StoreError::Db {
        sqlstate,
        message: place(message),
      },
      other => other,
    }
  }

  pub fn code(&self) -> &str {
    match self {
      StoreError::Closed | StoreError::ClosedInFlight => "ERR_PG_SESSION_CLOSED",
      StoreError::InvalidOption(_) => "ERR_PG_SESSION_INVALID_OPTION",
      StoreError::Connect(_) => "ERR_PG_SESSION_CONNECT",
      StoreError::Timeout(_) | StoreError::GivenUp(_) => "ERR_PG_SESSION_TIMEOUT",
      StoreError::ConnectionLost(_) => "ERR_PG_SESSION_CONNECTION_LOST",
      StoreError::Tls(_) => "ERR_PG_SESSION_TLS",
      StoreError::NoTable(_) => "ERR_PG_SESSION_NO_TABLE",
      StoreError::Schema(_) => "ERR_PG_SESSION_SCHEMA",
      StoreError::Seal(_) => "ERR_PG_SESSION_ENCRYPT",
      StoreError::Db { sqlstate, .. } => sqlstate,
    }
  }

  /// Errors every call of a batch shares: the connection failed, or the statement ran out of
  /// time (statement_timeout, lock_timeout, a cancel), which the calls one by one would only
  /// meet again, one timeout each.
  pub fn fails_whole_batch(&self) -> bool {
    self.is_connection_fault()
      || matches!(self, StoreError::Db { sqlstate, .. } if sqlstate == "57014" || sqlstate == "55P03")
  }

  /// Errors one session of a batch may cause alone (its row locked elsewhere, its data or id
  /// refused): the batch's sessions are then sent one by one, so only that session fails.
  pub fn is_per_session(&self) -> bool {
    matches!(self, StoreError::Db { sqlstate, .. } if matches!(sqlstate.as_str(), "55P03" | "40P01" | "40001" | "21000" | "54000")
      || sqlstate.starts_with("22") || sqlstate.starts_with("23"))
  }

  /// A value PostgreSQL could not take as the column's type (22xxx): say, an id that is no uuid.
  pub fn is_bad_input(&self) -> bool {
    matches!(self, StoreError::Db { sqlstate, .. } if sqlstate.starts_with("22"))
  }

  /// A lock wait that ran out (lock_timeout): the batch statements' own short wait ends so.
  pub fn is_lock_wait(&self) -> bool {
    matches!(self, StoreError::Db { sqlstate, .. } if sqlstate == "55P03")
  }

  /// Errors after which a retry on a fresh connection may succeed.
  pub fn is_connection_fault(&self) -> bool {
    matches!(
      self,
      StoreError::Connect(_)
        | StoreError::Timeout(_)
        | StoreError::GivenUp(_)
        | StoreError::ConnectionLost(_)
    ) || matches!(self, StoreError::Db { sqlstate, .. } if sqlstate.starts_with("08") || sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03" || sqlstate == "53300")
  }
}

impl fmt::Display for StoreError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      StoreError::Closed => write!(
        f,
        "the session store is closed; create a new store to keep using sessions"
      ),
      StoreError::ClosedInFlight => write!(
        f,
        "the session store was closed before PostgreSQL answered this call: it took effect \
         before close() resolved or not at all (its backend was ended; behind a pooler with \
         preparedStatements: false it may still take effect)"
      ),
      StoreError::InvalidOption(m)
      | StoreError::Connect(m)
      | StoreError::Timeout(m)
      | StoreError::GivenUp(m)
      | StoreError::ConnectionLost(m)
      | StoreError::Tls(m)
      | StoreError::NoTable(m)
      | StoreError::Schema(m)
      | StoreError::Seal(m) => f.write_str(m),
      StoreError::Db { message, .. } => f.write_str(message),
    }
  }
}

impl From<tokio_postgres::Error> for StoreError {
  fn from(err: tokio_postgres::Error) -> Self {
    if let Some(db) = err.as_db_error() {
      let sqlstate = db.code().code().to_string();
      let mut message = format!("PostgreSQL: {}", without_value(&sqlstate, db.message()));
      // No DETAIL: it quotes values ("Failing row contains (<session id>, <data>…)", "Key
      // (sid)=(…)"). The names it would help with are kept.
      for (what, name) in [("column", db.column()), ("constraint", db.constraint())] {
        if let Some(name) = name.filter(|n| !message.contains(&format!("\"{n}\""))) {
          message.push_str(&format!(" ({what} \"{name}\")"));
        }
      }
      if let Some(hint) = db.hint() {
        message.push_str(&format!("; hint: {hint}"));
      }
      message.push_str(pooler_hint(&sqlstate, db.message()));
      return StoreError::Db { sqlstate, message };
    }
    let text = error_chain(&err);
    if err.is_closed() {
      return StoreError::ConnectionLost(format!(
        "the connection to PostgreSQL was lost ({text}); the call may be retried"
      ));
    }
    if text.contains("tls") || text.contains("certificate") || text.contains("TLS") {
      return StoreError::Tls(format!(
        "TLS connection to PostgreSQL failed ({text}); check the `ssl` option or `sslmode`"
      ));
    }
    StoreError::Connect(format!(
      "could not connect to PostgreSQL ({text}); check that the server is running and the connection settings"
    ))
  }
}

impl From<deadpool_postgres::PoolError> for StoreError {
  fn from(err: deadpool_postgres::PoolError) -> Self {
    use deadpool_postgres::PoolError;
    match err {
      PoolError::Backend(e) => e.into(),
      PoolError::Closed => StoreError::Closed,
      PoolError::Timeout(kind) => StoreError::Timeout(format!(
        "no connection to PostgreSQL within connectionTimeoutMillis ({kind:?} timed out); the database may be down or every connection busy"
      )),
      other => StoreError::Connect(format!("could not get a connection to PostgreSQL ({other})")),
    }
  }
}

/// A data error (22xxx) quotes the value it refused (`invalid input syntax for type uuid: "…"`,
/// `value "…" is out of range for type integer`, bytes `0x…`), which may be a session id, a user id
/// or an extra column's value: the message keeps what was wrong, not the value.
fn without_value<'a>(sqlstate: &str, message: &'a str) -> std::borrow::Cow<'a, str> {
  if !sqlstate.starts_with("22") {
    return message.into();
  }
  let (head, tail) = match message.find(": ") {
    Some(at) => (&message[..at], " (value not shown)"),
    None => (message, ""),
  };
  let mut words: Vec<&str> = Vec::new();
  let mut quoted = false;
  for word in head.split(' ') {
    if quoted {
      // Inside a quoted value: dropped up to its closing quote.
      quoted = !word.ends_with('"');
    } else if words.last() == Some(&"value") && word.starts_with('"') {
      words.push("(not shown)");
      quoted = !(word.len() > 1 && word.ends_with('"'));
    } else if word.starts_with("0x") {
      words.push("(not shown)");
    } else {
      words.push(word);
    }
  }
  format!("{}{tail}", words.join(" ")).into()
}

/// What to change when a pooler in front of PostgreSQL (PgBouncer) refuses what the store sends.
fn pooler_hint(sqlstate: &str, message: &str) -> &'static str {
  // Transaction pooling moves a client between server connections, so a named prepared statement
  // is missing on the next one (26000) or clashes with another client's of the same name (42P05).
  if sqlstate == "26000" || sqlstate == "42P05" {
    return "; if a connection pooler such as PgBouncer sits in front of PostgreSQL, set the option `preparedStatements: false`";
  }
  // PgBouncer before 1.20 refuses the `options` startup parameter that carries statement_timeout.
  if message.contains("unsupported startup parameter") {
    return "; PgBouncer refuses this connection setting: drop `statement_timeout` from the options or add the parameter to PgBouncer's `ignore_startup_parameters` (it is then not applied)";
  }
  ""
}

/// The error and its sources in one line, so the cause is not lost at the JS boundary.
fn error_chain(err: &dyn std::error::Error) -> String {
  let mut text = err.to_string();
  let mut source = err.source();
  while let Some(cause) = source {
    let s = cause.to_string();
    if !text.contains(&s) {
      text.push_str(": ");
      text.push_str(&s);
    }
    source = cause.source();
  }
  text
}

/// napi rejects async calls only with its own `Status`, so the code travels as the
/// message's first word; `index.js` moves it into `error.code`.
impl From<StoreError> for napi::Error {
  fn from(err: StoreError) -> Self {
    napi::Error::new(
      napi::Status::GenericFailure,
      format!("{}: {}", err.code(), err),
    )
  }
}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn codes_are_stable() {
    assert_eq!(StoreError::Closed.code(), "ERR_PG_SESSION_CLOSED");
    let db = StoreError::Db {
      sqlstate: "57014".into(),
      message: "x".into(),
    };
    assert_eq!(db.code(), "57014");
    let napi_err: napi::Error = StoreError::Timeout("slow".into()).into();
    assert_eq!(napi_err.reason, "ERR_PG_SESSION_TIMEOUT: slow");
  }

  #[test]
  fn data_errors_keep_no_value() {
    let cut = without_value(
      "22P02",
      "invalid input syntax for type uuid: \"secret-sid\"",
    );
    assert_eq!(cut, "invalid input syntax for type uuid (value not shown)");
    let bytes = without_value("22021", "invalid byte sequence for encoding \"UTF8\": 0x00");
    assert!(!bytes.contains("0x00"));
    assert_eq!(
      without_value("23505", "duplicate key: x"),
      "duplicate key: x"
    );
    assert_eq!(
      without_value(
        "22003",
        "value \"99999999999\" is out of range for type integer"
      ),
      "value (not shown) is out of range for type integer"
    );
    assert_eq!(
      without_value("22003", "value \"a b c\" is out of range"),
      "value (not shown) is out of range"
    );
    let bytes = without_value(
      "22P05",
      "character with byte sequence 0xe2 0x82 0xac in encoding \"UTF8\" has no equivalent in encoding \"LATIN1\"",
    );
    assert!(
      !bytes.contains("0xe2") && bytes.contains("\"LATIN1\""),
      "{bytes}"
    );
  }

  #[test]
  fn pooler_errors_point_to_the_options() {
    assert!(
      pooler_hint("26000", "prepared statement \"s0\" does not exist")
        .contains("preparedStatements: false")
    );
    assert!(
      pooler_hint("42P05", "prepared statement \"s0\" already exists")
        .contains("preparedStatements: false")
    );
    assert!(
      pooler_hint("08P01", "unsupported startup parameter: options")
        .contains("ignore_startup_parameters")
    );
    assert_eq!(pooler_hint("23505", "duplicate key"), "");
  }

  #[test]
  fn connection_faults_are_retryable() {
    assert!(StoreError::ConnectionLost("x".into()).is_connection_fault());
    let db = |sqlstate: &str| StoreError::Db {
      sqlstate: sqlstate.into(),
      message: String::new(),
    };
    assert!(db("57014").fails_whole_batch() && db("55P03").fails_whole_batch());
    assert!(db("08006").fails_whole_batch() && !db("54000").fails_whole_batch());
    assert!(db("55P03").is_per_session() && db("22P02").is_per_session());
    assert!(!db("25006").is_per_session() && !db("42P01").is_per_session());
    assert!(StoreError::Db {
      sqlstate: "57P01".into(),
      message: "x".into()
    }
    .is_connection_fault());
    assert!(!StoreError::Db {
      sqlstate: "23505".into(),
      message: "x".into()
    }
    .is_connection_fault());
  }
}
