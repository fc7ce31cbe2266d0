//! Connection settings: URL / object / PG* environment → `tokio_postgres::Config`, and TLS.

use std::sync::Arc;
use std::time::Duration;

use napi_derive::napi;
use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{StoreError, StoreResult};

/// Where and how to connect: pg's `conObject` fields, already normalised by `index.js`.
#[napi(object)]
#[derive(Clone, Default, Debug)]
pub struct ConnectionOptions {
  /// A `postgres://` or `socket:` URL. As in pg, its settings win over the fields below.
  pub connection_string: Option<String>,
  /// Host name or IP; a path starting with `/` is a directory holding a Unix socket.
  pub host: Option<String>,
  pub port: Option<u32>,
  pub user: Option<String>,
  pub password: Option<String>,
  pub database: Option<String>,
  pub application_name: Option<String>,
  /// Milliseconds; sent at connect time as PostgreSQL's `statement_timeout`.
  pub statement_timeout: Option<u32>,
  /// TLS settings; absent means "as the URL or PGSSLMODE says, else no TLS".
  pub ssl: Option<TlsOptions>,
}

/// TLS as pg's `ssl` option describes it, reduced to a mode and PEM material.
#[napi(object)]
#[derive(Clone, Default, Debug)]
pub struct TlsOptions {
  /// `disable`, `prefer`, `require`, `verify-ca`, `verify-full` or `no-verify`.
  pub mode: String,
  /// PEM text of the certificate authorities to trust (default: the Mozilla roots).
  pub ca: Option<String>,
  /// PEM text of a client certificate chain.
  pub cert: Option<String>,
  /// PEM text of the client certificate's private key.
  pub key: Option<String>,
}

/// How much of the server's certificate is checked (libpq's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
  Disable,
  /// Try TLS without checking the certificate; fall back to plain text.
  Prefer,
  /// TLS without checking the certificate.
  Require,
  /// TLS, the chain checked against the CAs, any host name.
  VerifyCa,
  /// TLS, the chain and the host name checked.
  VerifyFull,
}

impl TlsMode {
  /// `libpq`: libpq's meanings; otherwise pg's, where prefer/require/verify-ca mean verify-full.
  fn parse(mode: &str, libpq: bool) -> StoreResult<Self> {
    Ok(match (mode, libpq) {
      ("disable", _) => TlsMode::Disable,
      ("no-verify", _) => TlsMode::Require,
      ("verify-full", _) => TlsMode::VerifyFull,
      ("prefer", true) => TlsMode::Prefer,
      ("require", true) => TlsMode::Require,
      ("verify-ca", true) => TlsMode::VerifyCa,
      ("prefer" | "require" | "verify-ca", false) => TlsMode::VerifyFull,
      (other, _) => {
        return Err(StoreError::InvalidOption(format!(
          "unknown sslmode `{other}`; use disable, prefer, require, verify-ca, verify-full or no-verify"
        )))
      }
    })
  }
}

/// The resolved TLS choice with its material.
#[derive(Debug, Clone)]
pub struct TlsSettings {
  pub mode: TlsMode,
  pub ca: Option<String>,
  pub cert: Option<String>,
  pub key: Option<String>,
}

/// Everything needed to open connections to one server.
pub struct ConnectSettings {
  pub config: tokio_postgres::Config,
  pub tls: TlsSettings,
  /// `host:port`, or the socket directory: where errors say the server is.
  pub address: String,
}

/// What a connection string says; every field optional so the object and env can fill gaps.
#[derive(Debug, Default, PartialEq)]
struct UrlParts {
  host: Option<String>,
  port: Option<u16>,
  user: Option<String>,
  password: Option<String>,
  database: Option<String>,
  application_name: Option<String>,
  options: Option<String>,
  statement_timeout: Option<u32>,
  connect_timeout: Option<u64>,
  sslmode: Option<String>,
  ssl: Option<bool>,
  sslrootcert: Option<String>,
  sslcert: Option<String>,
  sslkey: Option<String>,
  libpq_compat: bool,
}

/// Percent-decodes a URL part; `+` stays `+` (a base64 password holds them), as in pg.
fn decode(s: &str) -> String {
  percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// A query-string key or value, where `+` means a space (as URLSearchParams reads it).
fn decode_query(s: &str) -> String {
  decode(&s.replace('+', " "))
}

fn parse_port(s: &str) -> StoreResult<u16> {
  // Not echoed: in a URL whose password holds an unencoded `/`, the "port" is part of the password.
  s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
    StoreError::InvalidOption(
      "invalid port in the connection settings (a number from 1 to 65535 is expected; \
       percent-encode `/`, `@`, `:`, `#` and `?` in a URL's user name and password)"
        .into(),
    )
  })
}

/// Parses pg's connection string forms: `postgres[ql]://…` and `socket:/dir?db=…`.
/// Errors never repeat the string: it may hold a password.
fn parse_url(url: &str) -> StoreResult<UrlParts> {
  let mut parts = UrlParts::default();
  let (main, query) = match url.split_once('?') {
    Some((m, q)) => (m, q),
    None => (url, ""),
  };
  if let Some(path) = main.strip_prefix("socket:") {
    parts.host = Some(decode(path.trim_start_matches("//")));
  } else {
    let rest = main
      .strip_prefix("postgres://")
      .or_else(|| main.strip_prefix("postgresql://"))
      .ok_or_else(|| {
        StoreError::InvalidOption(
          "the connection string must start with postgres://, postgresql:// or socket:".into(),
        )
      })?;
    let (authority, path) = match rest.split_once('/') {
      Some((a, p)) => (a, p),
      None => (rest, ""),
    };
    let hostport = match authority.rsplit_once('@') {
      Some((userinfo, hostport)) => {
        let (user, password) = match userinfo.split_once(':') {
          Some((u, p)) => (u, Some(p)),
          None => (userinfo, None),
        };
        if !user.is_empty() {
          parts.user = Some(decode(user));
        }
        parts.password = password.map(decode);
        hostport
      }
      None => authority,
    };
    if let Some(v6) = hostport.strip_prefix('[') {
      let (host, after) = v6.split_once(']').ok_or_else(|| {
        StoreError::InvalidOption("unclosed [ in the connection string's host".into())
      })?;
      parts.host = Some(host.to_string());
      if let Some(port) = after.strip_prefix(':') {
        parts.port = Some(parse_port(port)?);
      }
    } else {
      let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
      };
      if !host.is_empty() {
        parts.host = Some(decode(host));
      }
      if let Some(p) = port.filter(|p| !p.is_empty()) {
        parts.port = Some(parse_port(p)?);
      }
    }
    if !path.is_empty() {
      parts.database = Some(decode(path));
    }
  }
  for pair in query.split('&').filter(|p| !p.is_empty()) {
    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
    let value = decode_query(value);
    match decode_query(key).as_str() {
      "host" => parts.host = Some(value),
      "port" => parts.port = Some(parse_port(&value)?),
      "user" => parts.user = Some(value),
      "password" => parts.password = Some(value),
      "db" | "dbname" | "database" => parts.database = Some(value),
      "application_name" => parts.application_name = Some(value),
      "options" => parts.options = Some(value),
      "statement_timeout" => {
        parts.statement_timeout = Some(value.parse().map_err(|_| {
          StoreError::InvalidOption(
            "statement_timeout in the connection string must be milliseconds".into(),
          )
        })?)
      }
      "connect_timeout" => {
        parts.connect_timeout = Some(value.parse().map_err(|_| {
          StoreError::InvalidOption(
            "connect_timeout in the connection string must be seconds".into(),
          )
        })?)
      }
      "sslmode" => parts.sslmode = Some(value),
      "ssl" => parts.ssl = Some(matches!(value.as_str(), "true" | "1" | "")),
      "sslrootcert" => parts.sslrootcert = Some(value),
      "sslcert" => parts.sslcert = Some(value),
      "sslkey" => parts.sslkey = Some(value),
      "uselibpqcompat" => parts.libpq_compat = value == "true",
      // pg ignores what it does not know; so do we.
      _ => {}
    }
  }
  Ok(parts)
}

fn read_pem_file(path: &str, what: &str) -> StoreResult<String> {
  std::fs::read_to_string(path)
    .map_err(|e| StoreError::InvalidOption(format!("could not read the {what} file `{path}`: {e}")))
}

/// Resolves settings as pg does: URL, then object fields, then PG* environment, then defaults.
/// `at`: another server (a Citus worker node) reached with the same settings.
pub fn resolve(
  opts: &ConnectionOptions,
  at: Option<(&str, u16)>,
  connect_timeout: Duration,
  env: &dyn Fn(&str) -> Option<String>,
) -> StoreResult<ConnectSettings> {
  let url = match &opts.connection_string {
    Some(s) if !s.is_empty() => parse_url(s)?,
    _ => UrlParts::default(),
  };
  let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
  let host = url
    .host
    .clone()
    .or_else(|| nonempty(&opts.host))
    .or_else(|| env("PGHOST"))
    .unwrap_or_else(|| "localhost".into());
  let port = match (url.port, opts.port, env("PGPORT")) {
    (Some(p), _, _) => p,
    (None, Some(p), _) => u16::try_from(p)
      .ok()
      .filter(|p| *p > 0)
      .ok_or_else(|| StoreError::InvalidOption(format!("invalid port {p}")))?,
    (None, None, Some(p)) => parse_port(&p)?,
    (None, None, None) => 5432,
  };
  let (host, port) = match at {
    Some((host, port)) => (host.to_string(), port),
    None => (host, port),
  };
  let user = url
    .user
    .clone()
    .or_else(|| nonempty(&opts.user))
    .or_else(|| env("PGUSER"))
    .or_else(|| env("USER"))
    .unwrap_or_else(|| "postgres".into());
  let password = url
    .password
    .clone()
    .or_else(|| opts.password.clone())
    .or_else(|| env("PGPASSWORD"));
  let database = url
    .database
    .clone()
    .or_else(|| nonempty(&opts.database))
    .or_else(|| env("PGDATABASE"))
    .unwrap_or_else(|| user.clone());
  let application_name = url
    .application_name
    .clone()
    .or_else(|| opts.application_name.clone())
    .or_else(|| env("PGAPPNAME"));
  let statement_timeout = url.statement_timeout.or(opts.statement_timeout);

  let mut config = tokio_postgres::Config::new();
  config
    .host(&host)
    .port(port)
    .user(&user)
    .dbname(&database)
    // A peer that vanished (host down, cable cut) is noticed in about 25 s on an idle connection,
    // and unacknowledged writes give up after 30 s, instead of the kernel's two hours.
    .keepalives(true)
    .keepalives_idle(Duration::from_secs(10))
    .keepalives_interval(Duration::from_secs(5))
    .keepalives_retries(3)
    .tcp_user_timeout(Duration::from_secs(30))
    .connect_timeout(
      url
        .connect_timeout
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .unwrap_or(connect_timeout),
    );
  if let Some(p) = &password {
    config.password(p);
  }
  if let Some(name) = &application_name {
    config.application_name(name);
  }
  let mut options = url.options.clone().unwrap_or_default();
  if let Some(ms) = statement_timeout.filter(|ms| *ms > 0) {
    options = format!("{options} -c statement_timeout={ms}")
      .trim()
      .to_string();
  }
  if !options.is_empty() {
    config.options(&options);
  }

  let tls = resolve_tls(opts, &url, env)?;
  config.ssl_mode(match tls.mode {
    TlsMode::Disable => SslMode::Disable,
    TlsMode::Prefer => SslMode::Prefer,
    _ => SslMode::Require,
  });
  let address = if host.starts_with('/') {
    host.clone()
  } else if host.contains(':') {
    format!("[{host}]:{port}")
  } else {
    format!("{host}:{port}")
  };
  Ok(ConnectSettings {
    config,
    tls,
    address,
  })
}

fn resolve_tls(
  opts: &ConnectionOptions,
  url: &UrlParts,
  env: &dyn Fn(&str) -> Option<String>,
) -> StoreResult<TlsSettings> {
  let from_object = opts.ssl.clone().unwrap_or_default();
  let mut mode = if let Some(m) = &url.sslmode {
    TlsMode::parse(m, url.libpq_compat)?
  } else if url.ssl == Some(true) {
    TlsMode::VerifyFull
  } else if url.ssl == Some(false) {
    TlsMode::Disable
  } else if opts.ssl.is_some() {
    TlsMode::parse(&from_object.mode, true)?
  } else if let Some(m) = env("PGSSLMODE") {
    TlsMode::parse(&m, true)?
  } else {
    TlsMode::Disable
  };
  let ca = match &url.sslrootcert {
    Some(path) => Some(read_pem_file(path, "sslrootcert")?),
    None => from_object.ca.clone(),
  };
  // libpq: `require` with a root certificate checks the chain.
  if mode == TlsMode::Require && url.libpq_compat && url.sslrootcert.is_some() {
    mode = TlsMode::VerifyCa;
  }
  let cert = match &url.sslcert {
    Some(path) => Some(read_pem_file(path, "sslcert")?),
    None => from_object.cert.clone(),
  };
  let key = match &url.sslkey {
    Some(path) => Some(read_pem_file(path, "sslkey")?),
    None => from_object.key.clone(),
  };
  Ok(TlsSettings {
    mode,
    ca,
    cert,
    key,
  })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
  Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS connector for one server; with `Disable` tokio-postgres never calls it.
pub fn make_tls(settings: &TlsSettings) -> StoreResult<MakeRustlsConnect> {
  let provider = provider();
  let mut roots = RootCertStore::empty();
  match &settings.ca {
    Some(pem) => {
      let mut reader = pem.as_bytes();
      let mut added = 0;
      for cert in rustls_pemfile::certs(&mut reader) {
        let cert =
          cert.map_err(|e| StoreError::InvalidOption(format!("ssl.ca is not valid PEM: {e}")))?;
        roots.add(cert).map_err(|e| {
          StoreError::InvalidOption(format!("ssl.ca holds an unusable certificate: {e}"))
        })?;
        added += 1;
      }
      if added == 0 {
        return Err(StoreError::InvalidOption(
          "ssl.ca holds no PEM certificate".into(),
        ));
      }
    }
    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
  }
  let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Tls(format!("TLS set-up failed: {e}")))?;
  let verifier: Arc<dyn ServerCertVerifier> = match settings.mode {
    TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => {
      Arc::new(AcceptAnyCert(provider.clone()))
    }
    TlsMode::VerifyCa | TlsMode::VerifyFull => {
      let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| StoreError::Tls(format!("TLS set-up failed: {e}")))?;
      if settings.mode == TlsMode::VerifyCa {
        Arc::new(AnyHostName(webpki))
      } else {
        webpki
      }
    }
  };
  let builder = builder
    .dangerous()
    .with_custom_certificate_verifier(verifier);
  let config = match (&settings.cert, &settings.key) {
    (Some(cert), Some(key)) => {
      let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::InvalidOption(format!("ssl.cert is not valid PEM: {e}")))?;
      let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.as_bytes())
        .map_err(|e| StoreError::InvalidOption(format!("ssl.key is not valid PEM: {e}")))?
        .ok_or_else(|| StoreError::InvalidOption("ssl.key holds no private key".into()))?;
      builder.with_client_auth_cert(chain, key).map_err(|e| {
        StoreError::InvalidOption(format!("ssl.cert and ssl.key do not fit together: {e}"))
      })?
    }
    (None, None) => builder.with_no_client_auth(),
    _ => {
      return Err(StoreError::InvalidOption(
        "ssl.cert and ssl.key must be given together".into(),
      ))
    }
  };
  Ok(MakeRustlsConnect::new(config))
}

/// `no-verify` / libpq `require`: encrypt, but take any certificate (signatures still checked).
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
  fn verify_server_cert(
    &self,
    _end_entity: &CertificateDer<'_>,
    _intermediates: &[CertificateDer<'_>],
    _server_name: &ServerName<'_>,
    _ocsp: &[u8],
    _now: UnixTime,
  ) -> Result<ServerCertVerified, rustls::Error> {
    Ok(ServerCertVerified::assertion())
  }
  fn verify_tls12_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(
      message,
      cert,
      dss,
      &self.0.signature_verification_algorithms,
    )
  }
  fn verify_tls13_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
      message,
      cert,
      dss,
      &self.0.signature_verification_algorithms,
    )
  }
  fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
    self.0.signature_verification_algorithms.supported_schemes()
  }
}

/// `verify-ca`: the full chain check, but a certificate for another host name is accepted.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
  fn verify_server_cert(
    &self,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    ocsp: &[u8],
    now: UnixTime,
  ) -> Result<ServerCertVerified, rustls::Error> {
    match self
      .0
      .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    {
      Err(rustls::Error::InvalidCertificate(
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
      )) => Ok(ServerCertVerified::assertion()),
      other => other,
    }
  }
  fn verify_tls12_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> Result<HandshakeSignatureValid, rustls::Error> {
    self.0.verify_tls12_signature(message, cert, dss)
  }
  fn verify_tls13_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> Result<HandshakeSignatureValid, rustls::Error> {
    self.0.verify_tls13_signature(message, cert, dss)
  }
  fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
    self.0.supported_verify_schemes()
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use tokio_postgres::config::Host;

  fn no_env(_: &str) -> Option<String> {
    None
  }

  fn settings(opts: ConnectionOptions, env: &dyn Fn(&str) -> Option<String>) -> ConnectSettings {
    resolve(&opts, None, Duration::from_secs(5), env).unwrap()
  }

  fn url(s: &str) -> ConnectionOptions {
    ConnectionOptions {
      connection_string: Some(s.into()),
      ..Default::default()
    }
  }

  #[test]
  fn parses_a_full_url() {
    let p = parse_url(
      "postgres://us%40er:p%3Ass@db.example:6543/my%20db?application_name=app&sslmode=no-verify",
    )
    .unwrap();
    assert_eq!(p.user.as_deref(), Some("us@er"));
    assert_eq!(p.password.as_deref(), Some("p:ss"));
    assert_eq!(p.host.as_deref(), Some("db.example"));
    assert_eq!(p.port, Some(6543));
    assert_eq!(p.database.as_deref(), Some("my db"));
    assert_eq!(p.application_name.as_deref(), Some("app"));
    assert_eq!(p.sslmode.as_deref(), Some("no-verify"));
  }

  #[test]
  fn plus_is_literal_in_the_password_and_a_space_in_the_query() {
    let p = parse_url("postgres://u:a+b%2Bc@h/d+b?application_name=my+app").unwrap();
    assert_eq!(p.password.as_deref(), Some("a+b+c"));
    assert_eq!(p.database.as_deref(), Some("d+b"));
    assert_eq!(p.application_name.as_deref(), Some("my app"));
  }

  #[test]
  fn parses_sockets_and_ipv6() {
    let p = parse_url("postgresql://%2Fvar%2Frun%2Fpostgresql/test").unwrap();
    assert_eq!(p.host.as_deref(), Some("/var/run/postgresql"));
    let p = parse_url("socket:/tmp/pg?db=app").unwrap();
    assert_eq!(p.host.as_deref(), Some("/tmp/pg"));
    assert_eq!(p.database.as_deref(), Some("app"));
    let p = parse_url("postgres://[::1]:5433/x").unwrap();
    assert_eq!(p.host.as_deref(), Some("::1"));
    assert_eq!(p.port, Some(5433));
  }

  #[test]
  fn bad_urls_never_echo_the_password() {
    for bad in [
      "mysql://u:secret@h/db",
      "postgres://u:secret@h:99999/db",
      "postgres://u:secret/x@h/db",
    ] {
      let err = parse_url(bad).unwrap_err().to_string();
      assert!(!err.contains("secret"), "{err}");
    }
  }

  #[test]
  fn url_wins_then_object_then_env_then_defaults() {
    let env = |k: &str| match k {
      "PGHOST" => Some("envhost".to_string()),
      "PGUSER" => Some("envuser".to_string()),
      "PGPASSWORD" => Some("envpw".to_string()),
      _ => None,
    };
    let s = settings(
      ConnectionOptions {
        connection_string: Some("postgres://urlhost/urldb".into()),
        host: Some("objhost".into()),
        database: Some("objdb".into()),
        port: Some(7000),
        ..Default::default()
      },
      &env,
    );
    assert_eq!(s.config.get_hosts(), &[Host::Tcp("urlhost".into())]);
    assert_eq!(s.config.get_dbname(), Some("urldb"));
    assert_eq!(s.config.get_ports(), &[7000]);
    assert_eq!(s.config.get_user(), Some("envuser"));
    assert_eq!(s.config.get_password(), Some(&b"envpw"[..]));
    let s = settings(ConnectionOptions::default(), &no_env);
    assert_eq!(s.config.get_ports(), &[5432]);
    assert_eq!(s.config.get_hosts(), &[Host::Tcp("localhost".into())]);
    assert_eq!(s.tls.mode, TlsMode::Disable);
  }

  #[test]
  fn statement_timeout_goes_into_startup_options() {
    let s = settings(
      ConnectionOptions {
        statement_timeout: Some(250),
        ..url("postgres://h/d?options=-c%20search_path%3Dapp")
      },
      &no_env,
    );
    assert_eq!(
      s.config.get_options(),
      Some("-c search_path=app -c statement_timeout=250")
    );
  }

  #[test]
  fn sslmodes_follow_pg_unless_libpq_compat() {
    let mode = |u: &str| settings(url(u), &no_env).tls.mode;
    assert_eq!(mode("postgres://h/d?sslmode=require"), TlsMode::VerifyFull);
    assert_eq!(mode("postgres://h/d?sslmode=no-verify"), TlsMode::Require);
    assert_eq!(mode("postgres://h/d?ssl=true"), TlsMode::VerifyFull);
    assert_eq!(
      mode("postgres://h/d?sslmode=require&uselibpqcompat=true"),
      TlsMode::Require
    );
    assert_eq!(
      mode("postgres://h/d?sslmode=verify-ca&uselibpqcompat=true"),
      TlsMode::VerifyCa
    );
    assert_eq!(
      mode("postgres://h/d?sslmode=prefer&uselibpqcompat=true"),
      TlsMode::Prefer
    );
    assert_eq!(mode("postgres://h/d?sslmode=disable"), TlsMode::Disable);
    assert!(resolve(
      &url("postgres://h/d?sslmode=bogus"),
      None,
      Duration::from_secs(1),
      &no_env
    )
    .is_err());
  }

  #[test]
  fn tls_connectors_build_for_every_mode() {
    for mode in [
      TlsMode::Disable,
      TlsMode::Prefer,
      TlsMode::Require,
      TlsMode::VerifyCa,
      TlsMode::VerifyFull,
    ] {
      let s = TlsSettings {
        mode,
        ca: None,
        cert: None,
        key: None,
      };
      assert!(make_tls(&s).is_ok());
    }
    let bad = TlsSettings {
      mode: TlsMode::VerifyFull,
      ca: Some("not pem".into()),
      cert: None,
      key: None,
    };
    assert_eq!(
      make_tls(&bad).err().unwrap().code(),
      "ERR_PG_SESSION_INVALID_OPTION"
    );
  }
}
