//! The claims this crate validates, read strictly from the verified
//! payload: a registered claim of the wrong JSON type (`"exp": "123"`,
//! `"nbf": true`, `"exp": null`) is a failure, never "absent".

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// The claim names the payload reader looks at, with the positions of the
/// ones validation needs. Built once, when the authenticator is
/// configured.
#[derive(Debug, Clone)]
pub(crate) struct ClaimNames {
    names: Vec<Box<str>>,
    pub(crate) exp: usize,
    pub(crate) nbf: usize,
    pub(crate) iat: usize,
    pub(crate) iss: usize,
    pub(crate) aud: usize,
    pub(crate) jti: usize,
    pub(crate) subject: usize,
    pub(crate) scopes: Vec<usize>,
    pub(crate) required: Vec<usize>,
}

impl ClaimNames {
    pub(crate) fn new(subject: &str, scope_claims: &[Box<str>], required: &[Box<str>]) -> Self {
        let mut names: Vec<Box<str>> = Vec::new();
        let mut index = |name: &str| match names.iter().position(|n| **n == *name) {
            Some(i) => i,
            None => {
                names.push(name.into());
                names.len() - 1
            }
        };
        let exp = index("exp");
        let nbf = index("nbf");
        let iat = index("iat");
        let iss = index("iss");
        let aud = index("aud");
        let jti = index("jti");
        let sub = index(subject);
        let scopes = scope_claims.iter().map(|n| index(n)).collect();
        let required = required.iter().map(|n| index(n)).collect();
        Self {
            names,
            exp,
            nbf,
            iat,
            iss,
            aud,
            jti,
            subject: sub,
            scopes,
            required,
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| **n == *name)
    }
}

/// The values of the claims named in [`ClaimNames`], by position.
pub(crate) struct Claims {
    values: Vec<Option<Value>>,
}

impl Claims {
    pub(crate) fn get(&self, index: usize) -> Option<&Value> {
        self.values.get(index).and_then(Option::as_ref)
    }
}

/// Why a payload was refused.
pub(crate) type Reason = &'static str;

/// Reads the claims named in `names` from a decoded payload, which must be
/// one JSON object without duplicate names among those claims.
pub(crate) fn read(payload: &[u8], names: &ClaimNames) -> Result<Claims, Reason> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let mut duplicate = false;
    let claims = PayloadSeed {
        names,
        duplicate: &mut duplicate,
    }
    .deserialize(&mut de)
    .and_then(|claims| de.end().map(|()| claims));
    match claims {
        Ok(claims) => Ok(claims),
        Err(_) if duplicate => Err("duplicate claim"),
        Err(_) => Err("claims are not a JSON object"),
    }
}

struct PayloadSeed<'n, 'd> {
    names: &'n ClaimNames,
    duplicate: &'d mut bool,
}

struct NameSeed<'n>(&'n ClaimNames);

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for NameSeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a claim name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self.0.position(name))
    }
}

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_, '_> {
    type Value = Claims;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Claims, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PayloadSeed<'_, '_> {
    type Value = Claims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
        let mut values: Vec<Option<Value>> = vec![None; self.names.names.len()];
        while let Some(position) = map.next_key_seed(NameSeed(self.names))? {
            match position.and_then(|i| values.get_mut(i)) {
                Some(slot) => {
                    if slot.is_some() {
                        *self.duplicate = true;
                        return Err(de::Error::custom("duplicate claim"));
                    }
                    *slot = Some(map.next_value::<Value>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Claims { values })
    }
}

/// A NumericDate (RFC 7519 section 2), in whole seconds since the epoch.
/// Fractions round towards the strict side: down for `exp`, up for `nbf`.
pub(crate) fn numeric_date(value: &Value, round_up: bool) -> Result<i64, ()> {
    let Value::Number(number) = value else {
        return Err(());
    };
    if let Some(i) = number.as_i64() {
        return Ok(i);
    }
    if number.as_u64().is_some() {
        return Ok(i64::MAX);
    }
    let f = number.as_f64().ok_or(())?;
    if !f.is_finite() {
        return Err(());
    }
    let whole = if round_up { f.ceil() } else { f.floor() };
    // `as` saturates for out-of-range floats.
    Ok(whole as i64)
}

/// A string claim.
pub(crate) fn string(value: &Value) -> Result<&str, ()> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(()),
    }
}

/// `aud`: one string or an array of strings.
pub(crate) fn audiences(value: &Value) -> Result<Vec<&str>, ()> {
    match value {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) => items.iter().map(string).collect(),
        _ => Err(()),
    }
}

/// A scope claim: a space-separated string (`scope`, RFC 8693) or an array
/// of strings (`scp`, `roles`).
pub(crate) fn scopes<'v>(value: &'v Value, out: &mut Vec<&'v str>) -> Result<(), ()> {
    match value {
        Value::String(s) => {
            out.extend(s.split(' ').filter(|s| !s.is_empty()));
            Ok(())
        }
        Value::Array(items) => {
            for item in items {
                out.push(string(item)?);
            }
            Ok(())
        }
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> ClaimNames {
        ClaimNames::new(
            "sub",
            &["scope".into(), "scp".into()],
            &["tenant".into(), "nbf".into()],
        )
    }

    #[test]
    fn reads_named_claims_only() {
        let n = names();
        let c = read(
            br#"{"sub":"alice","exp":10,"scope":"a b","other":{"deep":[1,2,3]},"tenant":"acme"}"#,
            &n,
        )
        .unwrap();
        assert_eq!(c.get(n.subject), Some(&Value::from("alice")));
        assert_eq!(c.get(n.exp), Some(&Value::from(10)));
        assert_eq!(c.get(n.nbf), None);
        assert_eq!(c.get(n.required[0]), Some(&Value::from("acme")));
        assert_eq!(n.required[1], n.nbf);
    }

    #[test]
    fn refuses_duplicates_and_non_objects() {
        let n = names();
        assert_eq!(
            read(br#"{"exp":1,"exp":2}"#, &n).err(),
            Some("duplicate claim")
        );
        assert_eq!(
            read(br#"{"sub":"a","sub":"b"}"#, &n).err(),
            Some("duplicate claim")
        );
        // Duplicates of claims nobody reads are left to the claims type.
        assert!(read(br#"{"x":1,"x":2}"#, &n).is_ok());
        for bad in [
            &b"[]"[..],
            b"\"s\"",
            b"null",
            b"{",
            b"{} {}",
            b"Example of Ed25519 signing",
        ] {
            assert_eq!(read(bad, &n).err(), Some("claims are not a JSON object"));
        }
    }

    #[test]
    fn strict_types() {
        assert_eq!(numeric_date(&Value::from(5), false), Ok(5));
        assert_eq!(numeric_date(&Value::from(-5), false), Ok(-5));
        assert_eq!(numeric_date(&Value::from(5.5), false), Ok(5));
        assert_eq!(numeric_date(&Value::from(5.5), true), Ok(6));
        assert_eq!(numeric_date(&Value::from(u64::MAX), false), Ok(i64::MAX));
        assert_eq!(numeric_date(&Value::from(1e300), false), Ok(i64::MAX));
        for bad in [
            Value::from("123"),
            Value::Bool(true),
            Value::Null,
            serde_json::json!([1]),
        ] {
            assert!(numeric_date(&bad, false).is_err(), "{bad}");
        }
        assert_eq!(audiences(&Value::from("a")), Ok(vec!["a"]));
        assert_eq!(
            audiences(&serde_json::json!(["a", "b"])),
            Ok(vec!["a", "b"])
        );
        assert!(audiences(&serde_json::json!(["a", 1])).is_err());
        assert!(audiences(&Value::from(1)).is_err());
        let (a, b, c, d) = (
            Value::from(" chat:read  chat:write"),
            serde_json::json!(["admin"]),
            Value::Bool(true),
            serde_json::json!([true]),
        );
        let mut out = Vec::new();
        scopes(&a, &mut out).unwrap();
        scopes(&b, &mut out).unwrap();
        assert_eq!(out, ["chat:read", "chat:write", "admin"]);
        assert!(scopes(&c, &mut out).is_err());
        assert!(scopes(&d, &mut out).is_err());
    }
}
