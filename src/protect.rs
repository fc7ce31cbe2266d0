//! What the table never holds in clear, when asked: session data sealed with AES-256-GCM under
//! keys derived from `secret`, and session ids replaced by their SHA-256 (`hashSessionIds`).
//!
//! A sealed row is a JSON object `{"cookie":{…expired…},"pgs":1,"k":"<key id>","iv":"<nonce>",
//! "ct":"<ciphertext>"}`, valid in a json, jsonb or text column; a reader that knows no secret
//! (connect-pg-simple, an older version) sees an empty session whose cookie has expired. The stored id is the additional data, so a row's
//! data copied onto another id does not open. Rows that are not envelopes read as they are:
//! turning `secret` on needs no migration.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::digest::{digest, SHA256};
use ring::hkdf::{Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{StoreError, StoreResult};

/// Fixed salt and info: the same secret gives the same key in every process and version.
const SALT: &[u8] = b"express-pg-session/v1";
const INFO: &[u8] = b"session data, AES-256-GCM";
const ENVELOPE: u64 = 1;
/// What a reader without the secret takes for the session's cookie: long expired.
const STUB_COOKIE: &str = r#"{"originalMaxAge":0,"expires":"1970-01-01T00:00:00.000Z"}"#;

struct Key {
  /// First 4 bytes of SHA-256 of the key, in hex: picks the key without trying each.
  id: String,
  key: LessSafeKey,
}

/// The store's protection settings, fixed at construction.
#[derive(Default)]
pub struct Protect {
  /// The first key seals; every key opens.
  keys: Vec<Key>,
  hash_ids: bool,
  rng: Option<SystemRandom>,
}

/// What a stored text reads as.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
  Text(String),
  /// An envelope no configured secret opens (a secret dropped from the list, or tampering).
  Unreadable,
}

impl Protect {
  pub fn new(secrets: &[String], hash_ids: bool) -> StoreResult<Self> {
    let keys = secrets
      .iter()
      .map(|s| derive(s))
      .collect::<StoreResult<Vec<_>>>()?;
    Ok(Protect {
      rng: (!keys.is_empty()).then(SystemRandom::new),
      keys,
      hash_ids,
    })
  }

  /// The id as the table holds it.
  pub fn stored_id(&self, sid: String) -> String {
    if !self.hash_ids {
      return sid;
    }
    hex(digest(&SHA256, sid.as_bytes()).as_ref())
  }

  /// The data as the table holds it: sealed when a secret is set.
  pub fn seal(&self, stored_id: &str, json: String) -> StoreResult<String> {
    let (Some(key), Some(rng)) = (self.keys.first(), &self.rng) else {
      return Ok(json);
    };
    let mut nonce = [0u8; NONCE_LEN];
    rng
      .fill(&mut nonce)
      .map_err(|_| StoreError::Seal("the system random source failed".into()))?;
    let mut sealed = json.into_bytes();
    key
      .key
      .seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(stored_id.as_bytes()),
        &mut sealed,
      )
      .map_err(|_| StoreError::Seal("session data could not be encrypted".into()))?;
    Ok(format!(
      "{{\"cookie\":{STUB_COOKIE},\"pgs\":{ENVELOPE},\"k\":\"{}\",\"iv\":\"{}\",\"ct\":\"{}\"}}",
      key.id,
      B64.encode(nonce),
      B64.encode(sealed)
    ))
  }

  /// The session JSON of a stored text: opened when it is an envelope, as it is otherwise.
  pub fn open(&self, stored_id: &str, text: String) -> Opened {
    // With no secret nothing was sealed by this store: a session that looks like an envelope
    // is a session (a reader that knows no secret sees an envelope as an expired stub).
    if self.keys.is_empty() {
      return Opened::Text(text);
    }
    let Some(envelope) = Envelope::parse(&text) else {
      return Opened::Text(text);
    };
    let Some(key) = self.keys.iter().find(|k| k.id == envelope.key_id) else {
      return Opened::Unreadable;
    };
    let (Ok(nonce), Ok(mut sealed)) = (
      Nonce::try_assume_unique_for_key(&envelope.nonce),
      B64.decode(envelope.sealed.as_bytes()),
    ) else {
      return Opened::Unreadable;
    };
    match key
      .key
      .open_in_place(nonce, Aad::from(stored_id.as_bytes()), &mut sealed)
    {
      Ok(plain) => match String::from_utf8(plain.to_vec()) {
        Ok(json) => Opened::Text(json),
        Err(_) => Opened::Unreadable,
      },
      Err(_) => Opened::Unreadable,
    }
  }
}

fn derive(secret: &str) -> StoreResult<Key> {
  if secret.is_empty() {
    return Err(StoreError::InvalidOption(
      "`secret` must not be empty".into(),
    ));
  }
  let mut bytes = [0u8; 32];
  Salt::new(HKDF_SHA256, SALT)
    .extract(secret.as_bytes())
    .expand(&[INFO], &AES_256_GCM)
    .and_then(|okm| okm.fill(&mut bytes))
    .map_err(|_| StoreError::InvalidOption("`secret` could not be turned into a key".into()))?;
  let id = hex(&digest(&SHA256, &bytes).as_ref()[..4]);
  let key = UnboundKey::new(&AES_256_GCM, &bytes)
    .map_err(|_| StoreError::InvalidOption("`secret` could not be turned into a key".into()))?;
  Ok(Key {
    id,
    key: LessSafeKey::new(key),
  })
}

/// Lower-case hex, into one string (a hashed id is made on every call).
fn hex(bytes: &[u8]) -> String {
  const DIGITS: &[u8; 16] = b"0123456789abcdef";
  let mut out = String::with_capacity(bytes.len() * 2);
  for b in bytes {
    out.push(DIGITS[(b >> 4) as usize] as char);
    out.push(DIGITS[(b & 0xf) as usize] as char);
  }
  out
}

struct Envelope {
  key_id: String,
  nonce: Vec<u8>,
  sealed: String,
}

impl Envelope {
  /// An envelope has the four members and the stub cookie (in any order and spacing: jsonb
  /// reorders them).
  fn parse(text: &str) -> Option<Self> {
    if !text.contains("\"pgs\"") {
      return None;
    }
    let serde_json::Value::Object(map) = serde_json::from_str(text).ok()? else {
      return None;
    };
    if map.len() != 5 || !map.contains_key("cookie") || map.get("pgs")?.as_u64()? != ENVELOPE {
      return None;
    }
    Some(Envelope {
      key_id: map.get("k")?.as_str()?.to_string(),
      nonce: B64.decode(map.get("iv")?.as_str()?).ok()?,
      sealed: map.get("ct")?.as_str()?.to_string(),
    })
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn protect(secrets: &[&str]) -> Protect {
    let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
    Protect::new(&secrets, false).unwrap()
  }

  #[test]
  fn seals_and_opens_with_any_listed_secret() {
    let old = protect(&["old"]);
    let sealed = old.seal("sid1", "{\"a\":1}".into()).unwrap();
    assert!(!sealed.contains("\"a\""));
    let rotated = protect(&["new", "old"]);
    assert_eq!(
      rotated.open("sid1", sealed.clone()),
      Opened::Text("{\"a\":1}".into())
    );
    assert_eq!(protect(&["new"]).open("sid1", sealed), Opened::Unreadable);
    let resealed = rotated.seal("sid1", "{}".into()).unwrap();
    assert_eq!(old.open("sid1", resealed), Opened::Unreadable);
  }

  #[test]
  fn data_moved_to_another_id_does_not_open() {
    let p = protect(&["s"]);
    let sealed = p.seal("victim", "{}".into()).unwrap();
    assert_eq!(p.open("attacker", sealed), Opened::Unreadable);
  }

  #[test]
  fn plaintext_and_lookalikes_read_as_they_are() {
    let p = protect(&["s"]);
    for text in [
      "{\"a\":1}",
      "{\"pgs\":1}",
      "{\"cookie\":{},\"pgs\":2,\"k\":\"\",\"iv\":\"\",\"ct\":\"\"}",
      "{\"pgs\":1,\"k\":\"\",\"iv\":\"\",\"ct\":\"\"}",
    ] {
      assert_eq!(
        p.open("x", text.to_string()),
        Opened::Text(text.to_string())
      );
    }
  }

  #[test]
  fn a_jsonb_reordered_envelope_opens() {
    let p = protect(&["s"]);
    let sealed = p.seal("x", "{}".into()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&sealed).unwrap();
    let reordered = format!(
      "{{\"k\": {}, \"ct\": {}, \"iv\": {}, \"pgs\": 1, \"cookie\": {}}}",
      v["k"], v["ct"], v["iv"], v["cookie"]
    );
    assert_eq!(p.open("x", reordered), Opened::Text("{}".into()));
  }

  #[test]
  fn hashed_ids_are_sha256_hex() {
    let p = Protect::new(&[], true).unwrap();
    assert_eq!(
      p.stored_id("abc".into()),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(Protect::default().stored_id("abc".into()), "abc");
    assert!(Protect::new(&["".into()], false).is_err());
  }
}
