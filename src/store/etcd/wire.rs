//! The JSON wire format: request bodies, base64 keys and values, int64s, prefix ranges, answers.
//!
//! Wire format (etcd's gRPC gateway, protobuf JSON mapping with the proto field names):
//! `bytes` fields (keys, values) are base64 strings, `int64` fields are decimal strings on
//! the way out (numbers are accepted too), and fields holding their zero value are left out.
//! Streaming RPCs (`/v3/watch`, `/v3/lease/keepalive`) answer with newline-delimited
//! `{"result":{...}}` objects, or `{"error":{...}}` when the stream fails.

use super::{Compare, KeyValue, Op, WatchEvent};
use anyhow::{anyhow, bail, Result};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{DecodeError, Engine};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use std::borrow::Cow;

// ---- request bodies ------------------------------------------------------------------

/// The `[key, range_end)` of a prefix (an empty prefix means every key).
pub(super) fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (vec![0], vec![0]);
    }
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (prefix.to_vec(), end);
        }
    }
    // All 0xff: every key from the prefix on.
    (prefix.to_vec(), vec![0])
}

pub(super) fn put_body(key: &str, value: &str, lease: Option<i64>) -> Value {
    let mut body = json!({
        "key": b64_encode(key.as_bytes()),
        "value": b64_encode(value.as_bytes()),
    });
    if let Some(l) = lease.filter(|&l| l != 0) {
        body["lease"] = json!(l.to_string());
    }
    body
}

fn compare_json(c: &Compare) -> Value {
    let (target, key, field, value) = match c {
        Compare::Version(k, v) => ("VERSION", k, "version", json!(v.to_string())),
        Compare::CreateRevision(k, v) => ("CREATE", k, "create_revision", json!(v.to_string())),
        Compare::ModRevision(k, v) => ("MOD", k, "mod_revision", json!(v.to_string())),
        Compare::Value(k, v) => ("VALUE", k, "value", json!(b64_encode(v.as_bytes()))),
    };
    let mut obj = json!({
        "result": "EQUAL",
        "target": target,
        "key": b64_encode(key.as_bytes()),
    });
    obj[field] = value;
    obj
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Put { key, value, lease } => json!({ "request_put": put_body(key, value, *lease) }),
        Op::Delete { key } => {
            json!({ "request_delete_range": { "key": b64_encode(key.as_bytes()) } })
        }
        Op::DeletePrefix { prefix } => {
            let (key, end) = prefix_range(prefix.as_bytes());
            json!({ "request_delete_range": {
                "key": b64_encode(&key),
                "range_end": b64_encode(&end),
            } })
        }
    }
}

pub(super) fn txn_body(compares: &[Compare], success: &[Op], failure: &[Op]) -> Value {
    json!({
        "compare": compares.iter().map(compare_json).collect::<Vec<_>>(),
        "success": success.iter().map(op_json).collect::<Vec<_>>(),
        "failure": failure.iter().map(op_json).collect::<Vec<_>>(),
    })
}

// ---- answers -------------------------------------------------------------------------

/// An int64 as the gateway writes it (a string), or as a plain number.
fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Num(i64),
        Str(String),
    }
    match Int::deserialize(d)? {
        Int::Num(n) => Ok(n),
        Int::Str(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("invalid int64 {s:?}"))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Header {
    #[serde(deserialize_with = "de_i64")]
    pub(super) revision: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct HeaderOnly {
    pub(super) header: Header,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawKv {
    key: String,
    value: String,
    #[serde(deserialize_with = "de_i64")]
    create_revision: i64,
    #[serde(deserialize_with = "de_i64")]
    mod_revision: i64,
    #[serde(deserialize_with = "de_i64")]
    version: i64,
    #[serde(deserialize_with = "de_i64")]
    lease: i64,
}

impl RawKv {
    pub(super) fn decode(self) -> Result<KeyValue> {
        let key = String::from_utf8(b64_decode(&self.key)?)
            .map_err(|_| anyhow!("etcd key {:?} (base64) is not UTF-8", self.key))?;
        let value = String::from_utf8(b64_decode(&self.value)?)
            .map_err(|_| anyhow!("the value of etcd key {key:?} is not UTF-8"))?;
        Ok(KeyValue {
            key,
            value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RangeResponse {
    pub(super) header: Header,
    pub(super) kvs: Vec<RawKv>,
    pub(super) more: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct DeleteResponse {
    pub(super) header: Header,
    #[serde(deserialize_with = "de_i64")]
    pub(super) deleted: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TxnResponse {
    pub(super) header: Header,
    pub(super) succeeded: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LeaseGrantResponse {
    #[serde(rename = "ID", deserialize_with = "de_i64")]
    pub(super) id: i64,
    pub(super) error: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LeaseKeepAliveResponse {
    #[serde(rename = "TTL", deserialize_with = "de_i64")]
    pub(super) ttl: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WatchResponse {
    pub(super) header: Header,
    pub(super) created: bool,
    pub(super) canceled: bool,
    #[serde(deserialize_with = "de_i64")]
    pub(super) compact_revision: i64,
    pub(super) cancel_reason: String,
    pub(super) events: Vec<RawEvent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawEvent {
    /// "PUT" (the default, usually left out) or "DELETE".
    #[serde(rename = "type")]
    kind: String,
    kv: RawKv,
}

impl RawEvent {
    pub(super) fn decode(self) -> Result<WatchEvent> {
        let delete = match self.kind.as_str() {
            "" | "PUT" => false,
            "DELETE" => true,
            other => bail!("unknown etcd event type {other:?}"),
        };
        let kv = self.kv.decode()?;
        Ok(if delete {
            WatchEvent::Delete {
                key: kv.key,
                mod_revision: kv.mod_revision,
            }
        } else {
            WatchEvent::Put(kv)
        })
    }
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CallError {
    /// The request never reached etcd, or etcd refused it before applying it.
    NotApplied(String),
    /// No (complete) answer: timeout, connection lost, 5xx. It may have been applied.
    Unknown(String),
    /// The auth token is missing, expired or invalid.
    Auth(String),
    /// A definite answer: bad request, not found, permission denied...
    Rejected(String),
}

/// Server messages meaning "nothing was applied, try again (elsewhere)".
const NOT_APPLIED_MESSAGES: &[&str] = &[
    "etcdserver: no leader",
    "etcdserver: not capable",
    "etcdserver: too many requests",
    "raft proposal dropped",
];

/// Server messages refusing a request that repeating cannot change, whatever the status
/// (the gateway answers a request over gRPC's message limit with a 429).
const REJECTED_MESSAGES: &[&str] = &["received message larger than max"];

/// Server messages meaning "get a new auth token".
pub(super) const AUTH_MESSAGES: &[&str] = &["invalid auth token", "user name is empty"];

/// The error class of an HTTP status and etcd message.
pub(super) fn classify_status(status: u16, msg: &str) -> CallError {
    if status == 401 || AUTH_MESSAGES.iter().any(|m| msg.contains(m)) {
        CallError::Auth(msg.to_string())
    } else if NOT_APPLIED_MESSAGES.iter().any(|m| msg.contains(m)) {
        CallError::NotApplied(msg.to_string())
    } else if REJECTED_MESSAGES.iter().any(|m| msg.contains(m)) {
        CallError::Rejected(msg.to_string())
    } else if status >= 500 || status == 429 || status == 408 {
        CallError::Unknown(msg.to_string())
    } else {
        CallError::Rejected(msg.to_string())
    }
}

/// Turns one HTTP answer into a JSON value or a classified error. Streaming endpoints
/// answer `{"result":...}` lines; the first one is used.
pub(super) fn parse_answer(status: u16, bytes: &[u8]) -> Result<Value, CallError> {
    let text = String::from_utf8_lossy(bytes);
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let parsed: Option<Value> = serde_json::from_str(first).ok();
    if (200..300).contains(&status) {
        let Some(v) = parsed else {
            return Err(CallError::Unknown(format!(
                "HTTP {status} with an unreadable body: {}",
                snippet(first)
            )));
        };
        if let Some(result) = v.get("result") {
            return Ok(result.clone());
        }
        if let Some(err) = v.get("error").filter(|e| e.is_object()) {
            let (code, msg) = stream_error(err);
            return Err(classify_status(code, &msg));
        }
        return Ok(v);
    }
    let msg = parsed
        .as_ref()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| snippet(first));
    Err(classify_status(status, &format!("{msg} (HTTP {status})")))
}

/// The HTTP status and message of a mid-stream `{"error":{...}}` object.
pub(super) fn stream_error(err: &Value) -> (u16, String) {
    let code = err
        .get("http_code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(500);
    let msg = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("stream error")
        .to_string();
    (code, msg)
}

fn snippet(s: &str) -> String {
    let s: String = s.chars().take(200).collect();
    if s.is_empty() {
        "(empty body)".to_string()
    } else {
        s
    }
}

/// Removes and returns the first complete line of `buf` (blank lines skipped).
pub(super) fn take_line(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        let pos = buf.iter().position(|&b| b == b'\n')?;
        let mut line: Vec<u8> = buf.drain(..=pos).collect();
        line.pop();
        if line.iter().any(|b| !b.is_ascii_whitespace()) {
            return Some(line);
        }
    }
}

// ---- base64 (standard alphabet, padded; decoding also takes URL-safe and unpadded) ----

/// Decodes the standard alphabet without padding (`b64_decode` strips it and maps the
/// URL-safe symbols first); bits left over after the last byte are ignored.
const B64_DECODER: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

pub(super) fn b64_encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Takes what [`b64_encode`] writes and also the URL-safe alphabet (even mixed with the
/// standard one), with or without padding (at most two `=`), as the gateway's peers might.
fn b64_decode(s: &str) -> Result<Vec<u8>> {
    let data = s.trim_end_matches('=');
    if data.len() % 4 == 1 || s.len() - data.len() > 2 {
        bail!("invalid base64 (length {})", s.len());
    }
    let standard: Cow<'_, [u8]> = if data.contains(['-', '_']) {
        let url_safe_to_standard = |b| match b {
            b'-' => b'+',
            b'_' => b'/',
            b => b,
        };
        Cow::Owned(data.bytes().map(url_safe_to_standard).collect())
    } else {
        Cow::Borrowed(data.as_bytes())
    };
    B64_DECODER.decode(standard).map_err(|e| match e {
        DecodeError::InvalidByte(_, c) => anyhow!("invalid base64 character {:?}", char::from(c)),
        _ => anyhow!("invalid base64 (length {})", s.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_base64_is_named_by_its_character_or_its_length() {
        let e = b64_decode("ab!d").unwrap_err().to_string();
        assert_eq!(e, "invalid base64 character '!'");
        let e = b64_decode("abcde").unwrap_err().to_string();
        assert_eq!(e, "invalid base64 (length 5)");
        assert_eq!(b64_decode("aGk=").unwrap(), b"hi");
    }

    #[test]
    fn a_401_or_an_auth_message_alone_means_a_new_token() {
        // Either one is enough: etcd answers a bad token with a 401 or with its message
        // under another status.
        assert!(matches!(
            classify_status(401, "unauthorized"),
            CallError::Auth(_)
        ));
        assert!(matches!(
            classify_status(400, "etcdserver: invalid auth token"),
            CallError::Auth(_)
        ));
        assert!(matches!(
            classify_status(400, "bad"),
            CallError::Rejected(_)
        ));
        assert!(matches!(
            classify_status(503, "busy"),
            CallError::Unknown(_)
        ));
        // A 429 or a 408 may have been applied or not: unknown, as a 5xx is.
        for status in [429, 408] {
            assert!(matches!(
                classify_status(status, "later"),
                CallError::Unknown(_)
            ));
        }
        // Except a request too big to take: that is final (not applied, and never will be).
        assert!(matches!(
            classify_status(
                429,
                "grpc: received message larger than max (2097207 vs. 2097152) (HTTP 429)"
            ),
            CallError::Rejected(_)
        ));
        assert!(matches!(
            classify_status(429, "etcdserver: too many requests (HTTP 429)"),
            CallError::NotApplied(_)
        ));
    }

    #[test]
    fn base64_known_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in cases {
            assert_eq!(b64_encode(plain.as_bytes()), enc);
            assert_eq!(b64_decode(enc).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn base64_round_trips_every_byte_and_length() {
        let all: Vec<u8> = (0..=255u8).collect();
        for len in 0..all.len() {
            let data = &all[..len];
            assert_eq!(b64_decode(&b64_encode(data)).unwrap(), data, "len {len}");
        }
        // Non-ASCII text survives too.
        let text = "inventory/ü/✓";
        assert_eq!(
            b64_decode(&b64_encode(text.as_bytes())).unwrap(),
            text.as_bytes()
        );
    }

    #[test]
    fn base64_decode_accepts_url_safe_and_unpadded_and_rejects_garbage() {
        assert_eq!(b64_decode("-_8").unwrap(), b64_decode("+/8=").unwrap());
        assert_eq!(b64_decode("Zg").unwrap(), b"f");
        assert!(b64_decode("Zm9v!").is_err());
        assert!(b64_decode("Z").is_err());
        assert!(b64_decode("Zg===").is_err());
    }

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_range(b"abc"), (b"abc".to_vec(), b"abd".to_vec()));
        assert_eq!(prefix_range(b"a\xff"), (b"a\xff".to_vec(), b"b".to_vec()));
        assert_eq!(prefix_range(b"\xff\xff"), (b"\xff\xff".to_vec(), vec![0]));
        assert_eq!(prefix_range(b""), (vec![0], vec![0]));
    }

    #[test]
    fn txn_body_uses_the_gateway_shapes() {
        let body = txn_body(
            &[
                Compare::ModRevision("k".into(), 7),
                Compare::CreateRevision("l".into(), 0),
                Compare::Version("m".into(), 2),
                Compare::Value("n".into(), "v".into()),
            ],
            &[
                Op::Put {
                    key: "k".into(),
                    value: "x".into(),
                    lease: Some(255),
                },
                Op::Delete { key: "d".into() },
            ],
            &[Op::DeletePrefix {
                prefix: "p/".into(),
            }],
        );
        let want = json!({
            "compare": [
                {"result": "EQUAL", "target": "MOD", "key": "aw==", "mod_revision": "7"},
                {"result": "EQUAL", "target": "CREATE", "key": "bA==", "create_revision": "0"},
                {"result": "EQUAL", "target": "VERSION", "key": "bQ==", "version": "2"},
                {"result": "EQUAL", "target": "VALUE", "key": "bg==", "value": "dg=="},
            ],
            "success": [
                {"request_put": {"key": "aw==", "value": "eA==", "lease": "255"}},
                {"request_delete_range": {"key": "ZA=="}},
            ],
            "failure": [
                {"request_delete_range": {"key": "cC8=", "range_end": "cDA="}},
            ],
        });
        assert_eq!(body, want);
        // No lease: no lease field.
        assert_eq!(put_body("a", "", None), json!({"key": "YQ==", "value": ""}));
    }

    #[test]
    fn parses_range_answers_with_string_int64s_and_missing_zero_fields() {
        let text = r#"{"header":{"cluster_id":"8331526191021593177","member_id":"3474563437252470173","revision":"12","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"9","version":"3","value":"YmFy","lease":"7322186823211720971"},{"key":"Zm9w","create_revision":"4","mod_revision":"4","version":"1"}],"more":true,"count":"5"}"#;
        let v = parse_answer(200, text.as_bytes()).unwrap();
        let r: RangeResponse = serde_json::from_value(v).unwrap();
        assert_eq!(r.header.revision, 12);
        assert!(r.more);
        let kvs: Vec<KeyValue> = r.kvs.into_iter().map(|k| k.decode().unwrap()).collect();
        assert_eq!(
            kvs[0],
            KeyValue {
                key: "foo".into(),
                value: "bar".into(),
                create_revision: 2,
                mod_revision: 9,
                version: 3,
                lease: 7322186823211720971,
            }
        );
        // Empty value and no lease are left out by the gateway.
        assert_eq!(kvs[1].value, "");
        assert_eq!(kvs[1].lease, 0);
        // An empty range has no kvs at all.
        let r: RangeResponse = serde_json::from_str(r#"{"header":{"revision":"3"}}"#).unwrap();
        assert!(r.kvs.is_empty() && !r.more);
    }

    #[test]
    fn parses_txn_lease_and_delete_answers() {
        let t: TxnResponse = serde_json::from_str(
            r#"{"header":{"revision":"3"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"3"}}}]}"#,
        )
        .unwrap();
        assert!(t.succeeded);
        assert_eq!(t.header.revision, 3);
        // A failed compare leaves `succeeded` out.
        let t: TxnResponse = serde_json::from_str(r#"{"header":{"revision":"3"}}"#).unwrap();
        assert!(!t.succeeded);
        let g: LeaseGrantResponse = serde_json::from_str(
            r#"{"header":{"revision":"3"},"ID":"7322186823211720971","TTL":"5"}"#,
        )
        .unwrap();
        assert_eq!(g.id, 7322186823211720971);
        assert!(g.error.is_empty());
        // Keepalive answers are stream results; an expired lease has no TTL.
        let v = parse_answer(200, br#"{"result":{"header":{"revision":"3"},"ID":"1"}}"#).unwrap();
        let k: LeaseKeepAliveResponse = serde_json::from_value(v).unwrap();
        assert_eq!(k.ttl, 0);
        let d: DeleteResponse =
            serde_json::from_str(r#"{"header":{"revision":"4"},"deleted":"1"}"#).unwrap();
        assert_eq!(d.deleted, 1);
        // Plain JSON numbers are accepted as well.
        let h: Header = serde_json::from_str(r#"{"revision":42}"#).unwrap();
        assert_eq!(h.revision, 42);
        assert!(serde_json::from_str::<Header>(r#"{"revision":"x"}"#).is_err());
    }

    #[test]
    fn parses_watch_messages() {
        let line = br#"{"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}},{"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"4"}}]}}"#;
        let v: Value = serde_json::from_slice(line).unwrap();
        let w: WatchResponse = serde_json::from_value(v["result"].clone()).unwrap();
        let events: Vec<WatchEvent> = w.events.into_iter().map(|e| e.decode().unwrap()).collect();
        assert_eq!(
            events,
            vec![
                WatchEvent::Put(KeyValue {
                    key: "foo".into(),
                    value: "bar".into(),
                    create_revision: 2,
                    mod_revision: 2,
                    version: 1,
                    lease: 0,
                }),
                WatchEvent::Delete {
                    key: "foo".into(),
                    mod_revision: 4
                },
            ]
        );
        let w: WatchResponse = serde_json::from_str(
            r#"{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"3"}"#,
        )
        .unwrap();
        assert!(w.canceled && w.compact_revision == 3);
        let w: WatchResponse = serde_json::from_str(
            r#"{"header":{"revision":"4"},"watch_id":"-1","created":true,"canceled":true,"cancel_reason":"rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"}"#,
        )
        .unwrap();
        assert!(w.created && w.canceled && w.cancel_reason.contains("invalid auth token"));
    }

    #[test]
    fn stream_lines_are_split_on_newlines() {
        let mut buf = b"{\"a\":1}\n\n{\"b\":".to_vec();
        assert_eq!(take_line(&mut buf).unwrap(), b"{\"a\":1}");
        assert_eq!(take_line(&mut buf), None);
        buf.extend_from_slice(b"2}\n");
        assert_eq!(take_line(&mut buf).unwrap(), b"{\"b\":2}");
        assert!(buf.is_empty());
    }

    #[test]
    fn classifies_gateway_errors() {
        let e = parse_answer(
            404,
            br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#,
        );
        assert!(
            matches!(e, Err(CallError::Rejected(ref m)) if m.contains("requested lease not found")),
            "{e:?}"
        );
        let e = parse_answer(
            401,
            br#"{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}"#,
        );
        assert!(matches!(e, Err(CallError::Auth(_))), "{e:?}");
        let e = parse_answer(
            400,
            br#"{"error":"etcdserver: user name is empty","code":3}"#,
        );
        assert!(matches!(e, Err(CallError::Auth(_))), "{e:?}");
        let e = parse_answer(
            503,
            br#"{"error":"etcdserver: request timed out","code":14}"#,
        );
        assert!(matches!(e, Err(CallError::Unknown(_))), "{e:?}");
        let e = parse_answer(503, br#"{"error":"etcdserver: no leader","code":14}"#);
        assert!(matches!(e, Err(CallError::NotApplied(_))), "{e:?}");
        let e = parse_answer(
            200,
            br#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#,
        );
        assert!(matches!(e, Err(CallError::NotApplied(_))), "{e:?}");
        let e = parse_answer(502, b"<html>bad gateway</html>");
        assert!(
            matches!(e, Err(CallError::Unknown(ref m)) if m.contains("bad gateway")),
            "{e:?}"
        );
    }
}
