//! The wire format of authentication messages on an open socket.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::identity::Identity;

/// What a text message holds, as far as authentication is concerned.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Parsed {
    /// A message of the expected kind, carrying this credential.
    Credential(String),
    /// A message of the expected kind that is broken (no token, wrong JSON
    /// types).
    Malformed,
    /// Some other message.
    Other,
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Credential(_) => f.write_str("Credential(<redacted>)"),
            Self::Malformed => f.write_str("Malformed"),
            Self::Other => f.write_str("Other"),
        }
    }
}

/// Reads authentication messages and writes the server's answers. The
/// default is [`JsonMessages`]; implement this for another protocol (the
/// graphql-ws `connection_init` payload, say).
pub trait AuthMessages: Send + Sync + 'static {
    /// Reads the first message of a connection using first-message
    /// authentication.
    fn parse_auth(&self, text: &str) -> Parsed;

    /// Reads a message on an authenticated socket: a refresh carries a new
    /// credential; anything else ([`Parsed::Other`]) goes to the application.
    fn parse_refresh(&self, text: &str) -> Parsed;

    /// The answer to a successful authentication, if any.
    fn authenticated(&self, identity: &Identity) -> Option<String>;

    /// The answer to a successful refresh, if any.
    fn refreshed(&self, identity: &Identity) -> Option<String>;

    /// The answer to a refresh the verifier could not check (its backend is
    /// down); the socket stays open with its old expiry.
    fn refresh_failed(&self) -> Option<String>;

    /// A warning sent `remaining` before the identity expires, if any.
    fn expiring(&self, identity: &Identity, remaining: Duration) -> Option<String>;
}

/// JSON messages:
///
/// | direction | message |
/// |---|---|
/// | client → server | `{"type":"auth","token":"..."}` (first message) |
/// | server → client | `{"type":"authenticated","user":{"id":"alice"},"expires_at":1767225600}` |
/// | client → server | `{"type":"refresh","token":"..."}` |
/// | server → client | `{"type":"refreshed","expires_at":...}` / `{"type":"refresh_failed"}` |
/// | server → client | `{"type":"expiring","expires_in":30}` |
///
/// `expires_at` is in seconds since the Unix epoch and absent without an
/// expiry.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonMessages;

/// What a scan of a JSON object found: only the `type` member and the one
/// member that carries the credential are read; every other member is
/// skipped without being built ([`IgnoredAny`]).
#[derive(Default)]
struct Scan {
    /// The last `type` member is the string looked for (a duplicate
    /// `type` makes the message [`Parsed::Malformed`] when it matches).
    kind_matches: bool,
    kinds: usize,
    /// The credential, if its member is a string.
    token: Option<String>,
    tokens: usize,
}

/// Reads one member value as "is it the string `expected`?", skipping any
/// other value.
struct IsString<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for IsString<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer
            .deserialize_any(StringVisitor(Some(self.0)))
            .map(|found| found.is_some())
    }
}

/// The visitor methods of the values a member visitor skips (`Ok(None)`):
/// scalars, and arrays drained without being built.
macro_rules! skip_other_values {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    };
}

/// Reads a member value as a string, skipping any other value (`None`).
/// With `Some(expected)`, only compares (and yields `Some` on a match).
struct StringVisitor<'a>(Option<&'a str>);

impl<'de> Visitor<'de> for StringVisitor<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(match self.0 {
            Some(expected) => (value == expected).then(String::new),
            None => Some(value.to_owned()),
        })
    }
    skip_other_values!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// A member name: `type`, the credential's member, or another one (not kept).
enum Key {
    Kind,
    Token,
    Other,
}

struct KeySeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        Ok(if name == "type" {
            Key::Kind
        } else if name == self.0 {
            Key::Token
        } else {
            Key::Other
        })
    }
}

/// Scans a JSON object for `"type": kind` and the string member `token`
/// (or, with `nested`, the string member `nested` of the object `token`).
struct ScanSeed<'a> {
    kind: &'a str,
    token: &'a str,
    nested: Option<&'a str>,
}

impl<'de> DeserializeSeed<'de> for ScanSeed<'_> {
    type Value = Scan;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Scan, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ScanSeed<'_> {
    type Value = Scan;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scan, A::Error> {
        let mut scan = Scan::default();
        while let Some(key) = map.next_key_seed(KeySeed(self.token))? {
            match key {
                Key::Kind => {
                    scan.kinds += 1;
                    scan.kind_matches = map.next_value_seed(IsString(self.kind))?;
                }
                Key::Token => {
                    scan.tokens += 1;
                    scan.token = match self.nested {
                        None => map.next_value_seed(StringSeed)?,
                        Some(member) => map.next_value_seed(Nested(member))?,
                    };
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(scan)
    }
}

struct StringSeed;

impl<'de> DeserializeSeed<'de> for StringSeed {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(StringVisitor(None))
    }
}

/// Reads an object member's value as the one string member `name` of an
/// object (the graphql-ws payload); anything else is skipped (`None`).
struct Nested<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for Nested<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Nested<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut found, mut count) = (None, 0);
        while let Some(key) = map.next_key_seed(KeySeed(self.0))? {
            if let Key::Token = key {
                count += 1;
                found = map.next_value_seed(StringSeed)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found.filter(|_| count == 1))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    skip_other_values!();
}

/// Scans `text`, a JSON object, reading only `type` and the credential's
/// member. `None` if it is not one JSON object.
fn scan(text: &str, seed: ScanSeed<'_>) -> Option<Scan> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let scan = seed.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(scan)
}

/// A message `{"type": kind, token_member: "<credential>"}`; other members
/// are allowed and skipped.
fn parse(text: &str, kind: &str, token_member: &str) -> Parsed {
    parse_with(
        text,
        ScanSeed {
            kind,
            token: token_member,
            nested: None,
        },
    )
}

fn parse_with(text: &str, seed: ScanSeed<'_>) -> Parsed {
    // Objects only.
    if !text.trim_start().starts_with('{') {
        return Parsed::Other;
    }
    match scan(text, seed) {
        Some(scan) if scan.kind_matches => match scan.token {
            Some(token) if scan.kinds == 1 && scan.tokens == 1 && !token.is_empty() => {
                Parsed::Credential(token)
            }
            _ => Parsed::Malformed,
        },
        _ => Parsed::Other,
    }
}

/// `true` if `text` is one JSON value (checked without building it).
fn is_json(text: &str) -> bool {
    serde_json::from_str::<IgnoredAny>(text).is_ok()
}

/// The graphql-ws protocol (`graphql-transport-ws`, the protocol of the npm
/// `graphql-ws` library and of async-graphql's `GraphQLProtocol`), for
/// first-message authentication:
///
/// | direction | message |
/// |---|---|
/// | client → server | `{"type":"connection_init","payload":{"token":"..."}}` (first message) |
/// | server → client | `{"type":"connection_ack"}` |
///
/// Other members of the message and of its payload are allowed and
/// skipped unread; a `connection_init` without exactly one string `token`
/// in its payload is [`Parsed::Malformed`]. graphql-ws has no in-band
/// refresh: no message is read as one, and no warning goes out before
/// expiry. Use it with [`CloseCodes::graphql_ws`](crate::CloseCodes::graphql_ws).
///
/// ```
/// use tower_ws_auth::socket::{AuthMessages, GraphqlWsMessages, Parsed};
///
/// let init = r#"{"type":"connection_init","payload":{"token":"abc"}}"#;
/// assert_eq!(GraphqlWsMessages.parse_auth(init), Parsed::Credential("abc".into()));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GraphqlWsMessages;

impl AuthMessages for GraphqlWsMessages {
    fn parse_auth(&self, text: &str) -> Parsed {
        let seed = ScanSeed {
            kind: "connection_init",
            token: "payload",
            nested: Some("token"),
        };
        match parse_with(text, seed) {
            Parsed::Other if !is_json(text) => Parsed::Malformed,
            parsed => parsed,
        }
    }

    fn parse_refresh(&self, _text: &str) -> Parsed {
        Parsed::Other
    }

    fn authenticated(&self, _identity: &Identity) -> Option<String> {
        Some(r#"{"type":"connection_ack"}"#.to_owned())
    }

    fn refreshed(&self, _identity: &Identity) -> Option<String> {
        None
    }

    fn refresh_failed(&self) -> Option<String> {
        None
    }

    fn expiring(&self, _identity: &Identity, _remaining: Duration) -> Option<String> {
        None
    }
}

/// [`GraphqlWsMessages`] without the `connection_ack`: for a GraphQL server
/// that runs its own graphql-ws state machine behind first-message
/// authentication, such as async-graphql's `GraphQLWebSocket`, which
/// refuses every `subscribe` until it has acknowledged a `connection_init`
/// itself.
///
/// [`FirstMessageAuth`](crate::FirstMessageAuth) reads and verifies the
/// client's `connection_init` (exactly as [`GraphqlWsMessages`] does) and
/// answers nothing; hand the GraphQL server
/// [`REPLAYED_INIT`](Self::REPLAYED_INIT) as the socket's first message
/// instead, and it sends the one `connection_ack` the client sees. The
/// replayed message carries no payload, so the token never reaches the
/// GraphQL layer; pass the [`Identity`] to it as connection data.
///
/// ```
/// use tower_ws_auth::socket::{AuthMessages, GraphqlWsDeferredAck, Parsed};
/// use tower_ws_auth::{AuthMethod, Identity};
///
/// let init = r#"{"type":"connection_init","payload":{"token":"abc"}}"#;
/// assert_eq!(GraphqlWsDeferredAck.parse_auth(init), Parsed::Credential("abc".into()));
/// let alice = Identity::new("alice", AuthMethod::Jwt);
/// assert_eq!(GraphqlWsDeferredAck.authenticated(&alice), None);
/// assert_eq!(GraphqlWsDeferredAck::REPLAYED_INIT, r#"{"type":"connection_init"}"#);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GraphqlWsDeferredAck;

impl GraphqlWsDeferredAck {
    /// The `connection_init` to give the GraphQL server in place of the
    /// client's (which first-message authentication consumed): no payload.
    pub const REPLAYED_INIT: &'static str = r#"{"type":"connection_init"}"#;
}

impl AuthMessages for GraphqlWsDeferredAck {
    fn parse_auth(&self, text: &str) -> Parsed {
        GraphqlWsMessages.parse_auth(text)
    }

    fn parse_refresh(&self, text: &str) -> Parsed {
        GraphqlWsMessages.parse_refresh(text)
    }

    fn authenticated(&self, _identity: &Identity) -> Option<String> {
        None
    }

    fn refreshed(&self, identity: &Identity) -> Option<String> {
        GraphqlWsMessages.refreshed(identity)
    }

    fn refresh_failed(&self) -> Option<String> {
        GraphqlWsMessages.refresh_failed()
    }

    fn expiring(&self, identity: &Identity, remaining: Duration) -> Option<String> {
        GraphqlWsMessages.expiring(identity, remaining)
    }
}

fn unix(at: Option<SystemTime>) -> Option<u64> {
    at.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

impl AuthMessages for JsonMessages {
    fn parse_auth(&self, text: &str) -> Parsed {
        match parse(text, "auth", "token") {
            Parsed::Other if !is_json(text) => Parsed::Malformed,
            parsed => parsed,
        }
    }

    fn parse_refresh(&self, text: &str) -> Parsed {
        // Application messages are not JSON-parsed unless they could be a refresh.
        if !text.contains("refresh") {
            return Parsed::Other;
        }
        parse(text, "refresh", "token")
    }

    fn authenticated(&self, identity: &Identity) -> Option<String> {
        // Keys in a fixed order: {"type":..,"user":{"id":..}[,"expires_at":..]}.
        let subject = serde_json::Value::from(identity.subject());
        Some(match unix(identity.expires_at()) {
            Some(at) => {
                format!(r#"{{"type":"authenticated","user":{{"id":{subject}}},"expires_at":{at}}}"#)
            }
            None => format!(r#"{{"type":"authenticated","user":{{"id":{subject}}}}}"#),
        })
    }

    fn refreshed(&self, identity: &Identity) -> Option<String> {
        Some(match unix(identity.expires_at()) {
            Some(at) => format!(r#"{{"type":"refreshed","expires_at":{at}}}"#),
            None => r#"{"type":"refreshed"}"#.to_owned(),
        })
    }

    fn refresh_failed(&self) -> Option<String> {
        Some(r#"{"type":"refresh_failed"}"#.to_owned())
    }

    fn expiring(&self, _identity: &Identity, remaining: Duration) -> Option<String> {
        Some(
            serde_json::json!({ "type": "expiring", "expires_in": remaining.as_secs() })
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;
    use proptest::prelude::*;

    #[test]
    fn auth_messages() {
        let m = JsonMessages;
        assert_eq!(
            m.parse_auth(r#"{"type":"auth","token":"abc"}"#),
            Parsed::Credential("abc".into())
        );
        assert_eq!(
            m.parse_auth(r#"{"token":"abc","type":"auth","extra":1}"#),
            Parsed::Credential("abc".into())
        );
        assert_eq!(m.parse_auth(r#"{"type":"auth"}"#), Parsed::Malformed);
        assert_eq!(
            m.parse_auth(r#"{"type":"auth","token":""}"#),
            Parsed::Malformed
        );
        assert_eq!(
            m.parse_auth(r#"{"type":"auth","token":42}"#),
            Parsed::Malformed
        );
        assert_eq!(m.parse_auth("not json"), Parsed::Malformed);
        assert_eq!(
            m.parse_auth(r#"{"type":"chat","text":"hi"}"#),
            Parsed::Other
        );
        assert_eq!(m.parse_auth(r#"["auth","abc"]"#), Parsed::Other);
    }

    #[test]
    fn refresh_messages() {
        let m = JsonMessages;
        assert_eq!(
            m.parse_refresh(r#"{"type":"refresh","token":"t2"}"#),
            Parsed::Credential("t2".into())
        );
        assert_eq!(m.parse_refresh(r#"{"type":"refresh"}"#), Parsed::Malformed);
        assert_eq!(m.parse_refresh("please refresh the page"), Parsed::Other);
        assert_eq!(
            m.parse_refresh(r#"{"type":"chat","text":"refresh"}"#),
            Parsed::Other
        );
        assert_eq!(m.parse_refresh("hello"), Parsed::Other);
    }

    #[test]
    fn only_type_and_token_are_read() {
        let m = JsonMessages;
        // Duplicates of the members that count are malformed; of others, fine.
        for text in [
            r#"{"type":"auth","token":"a","token":"b"}"#,
            r#"{"type":"auth","type":"auth","token":"a"}"#,
            r#"{"type":"chat","type":"auth","token":"a"}"#,
        ] {
            assert_eq!(m.parse_auth(text), Parsed::Malformed, "{text}");
        }
        assert_eq!(
            m.parse_auth(r#"{"type":"auth","type":"chat","token":"a"}"#),
            Parsed::Other
        );
        assert_eq!(
            m.parse_auth(
                r#"{"x":[{"y":[1,2.5,null,true]}],"x":{},"type":"auth","token":"a\u0041"}"#
            ),
            Parsed::Credential("aA".into())
        );
        assert_eq!(m.parse_auth(r#"{"type":7,"token":"a"}"#), Parsed::Other);
        assert_eq!(
            m.parse_auth(r#"{"type":"auth","token":{"t":"a"}}"#),
            Parsed::Malformed
        );
        // Trailing bytes, truncation. Skipped members are skipped without
        // recursion, however deep.
        assert_eq!(
            m.parse_auth(r#"{"type":"auth","token":"a"} x"#),
            Parsed::Malformed
        );
        assert_eq!(
            m.parse_auth(r#"{"type":"auth","token":"a""#),
            Parsed::Malformed
        );
        let deep = format!(
            r#"{{"type":"auth","token":"a","x":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(m.parse_auth(&deep), Parsed::Credential("a".into()));
        assert_eq!(
            m.parse_refresh(r#"{"type":"refresh","token":"a"} x"#),
            Parsed::Other
        );
    }

    #[test]
    fn answers_escape_subjects() {
        let id = Identity::new("a\"b", AuthMethod::Jwt);
        let text = JsonMessages.authenticated(&id).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["user"]["id"], "a\"b");
        assert!(v.get("expires_at").is_none());
        let plain = JsonMessages
            .authenticated(&Identity::new("alice", AuthMethod::Jwt))
            .unwrap();
        assert_eq!(plain, r#"{"type":"authenticated","user":{"id":"alice"}}"#);
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let expiring = Identity::builder("alice", AuthMethod::Jwt)
            .expires_at(at)
            .build();
        assert_eq!(
            JsonMessages.authenticated(&expiring).unwrap(),
            r#"{"type":"authenticated","user":{"id":"alice"},"expires_at":1800000000}"#
        );
        assert_eq!(
            JsonMessages.refreshed(&expiring).unwrap(),
            r#"{"type":"refreshed","expires_at":1800000000}"#
        );
    }

    #[test]
    fn graphql_ws_messages() {
        let m = GraphqlWsMessages;
        assert_eq!(
            m.parse_auth(r#"{"type":"connection_init","payload":{"token":"t1"}}"#),
            Parsed::Credential("t1".into())
        );
        assert_eq!(
            m.parse_auth(
                r#"{"payload":{"x":[1,{}],"token":"t1"},"id":"1","type":"connection_init"}"#
            ),
            Parsed::Credential("t1".into())
        );
        for text in [
            r#"{"type":"connection_init"}"#,
            r#"{"type":"connection_init","payload":{}}"#,
            r#"{"type":"connection_init","payload":null}"#,
            r#"{"type":"connection_init","payload":"t1"}"#,
            r#"{"type":"connection_init","payload":{"token":""}}"#,
            r#"{"type":"connection_init","payload":{"token":7}}"#,
            r#"{"type":"connection_init","payload":{"token":"a","token":"b"}}"#,
            r#"{"type":"connection_init","payload":{"token":"a"},"payload":{"token":"a"}}"#,
            "not json",
        ] {
            assert_eq!(m.parse_auth(text), Parsed::Malformed, "{text}");
        }
        assert_eq!(
            m.parse_auth(r#"{"type":"subscribe","id":"1","payload":{"token":"t1"}}"#),
            Parsed::Other
        );
        assert_eq!(
            m.parse_refresh(r#"{"type":"refresh","token":"t2"}"#),
            Parsed::Other
        );
        let id = Identity::new("alice", AuthMethod::Jwt);
        assert_eq!(
            m.authenticated(&id).as_deref(),
            Some(r#"{"type":"connection_ack"}"#)
        );
        assert_eq!(m.expiring(&id, Duration::from_secs(1)), None);
    }

    #[test]
    fn graphql_ws_deferred_ack() {
        let (deferred, preset) = (GraphqlWsDeferredAck, GraphqlWsMessages);
        for text in [
            r#"{"type":"connection_init","payload":{"token":"t1"}}"#,
            r#"{"type":"connection_init","payload":{}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"token":"t1"}}"#,
            r#"{"type":"refresh","token":"t2"}"#,
            "not json",
        ] {
            assert_eq!(deferred.parse_auth(text), preset.parse_auth(text), "{text}");
            assert_eq!(deferred.parse_refresh(text), Parsed::Other, "{text}");
        }
        let id = Identity::new("alice", AuthMethod::Jwt);
        assert_eq!(deferred.authenticated(&id), None);
        assert_eq!(deferred.refreshed(&id), None);
        assert_eq!(deferred.refresh_failed(), None);
        assert_eq!(deferred.expiring(&id, Duration::from_secs(1)), None);
        // The replayed init is a connection_init the preset reads as one
        // (without a credential: it never carries the token on).
        assert_eq!(
            preset.parse_auth(GraphqlWsDeferredAck::REPLAYED_INIT),
            Parsed::Malformed
        );
        assert!(is_json(GraphqlWsDeferredAck::REPLAYED_INIT));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,400}") {
            let _ = JsonMessages.parse_auth(&text);
            let _ = JsonMessages.parse_refresh(&text);
            let _ = GraphqlWsMessages.parse_auth(&text);
        }
    }
}
