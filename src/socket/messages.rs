//! The wire format of authentication messages on an open socket.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

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

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    token: Option<String>,
}

fn parse(text: &str, kind: &str) -> Parsed {
    // Objects only (serde would also read a struct from an array).
    if !text.trim_start().starts_with('{') {
        return Parsed::Other;
    }
    let Ok(message) = serde_json::from_str::<Incoming<'_>>(text) else {
        return if serde_json::from_str::<serde_json::Value>(text)
            .is_ok_and(|v| v.get("type").and_then(|t| t.as_str()) == Some(kind))
        {
            Parsed::Malformed
        } else {
            Parsed::Other
        };
    };
    if message.kind != kind {
        return Parsed::Other;
    }
    match message.token {
        Some(token) if !token.is_empty() => Parsed::Credential(token),
        _ => Parsed::Malformed,
    }
}

fn unix(at: Option<SystemTime>) -> Option<u64> {
    at.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

impl AuthMessages for JsonMessages {
    fn parse_auth(&self, text: &str) -> Parsed {
        match parse(text, "auth") {
            Parsed::Other if serde_json::from_str::<serde_json::Value>(text).is_err() => {
                Parsed::Malformed
            }
            parsed => parsed,
        }
    }

    fn parse_refresh(&self, text: &str) -> Parsed {
        // Application messages are not JSON-parsed unless they could be a refresh.
        if !text.contains("refresh") {
            return Parsed::Other;
        }
        parse(text, "refresh")
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

    proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,400}") {
            let _ = JsonMessages.parse_auth(&text);
            let _ = JsonMessages.parse_refresh(&text);
        }
    }
}
