//! The claims this crate validates, read strictly from the verified
//! payload: a registered claim of the wrong JSON type (`"exp": "123"`,
//! `"nbf": true`, `"exp": null`) is a failure, never "absent".

use std::fmt;

use std::borrow::Cow;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

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

/// A claim value, as much as validation needs of it. Strings borrow from
/// the payload when they have no escapes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Claim<'de> {
    /// Any JSON number, as the nearest `f64`.
    Number(f64),
    Str(Cow<'de, str>),
    /// An array whose items are all strings (possibly none).
    Strings(Vec<Cow<'de, str>>),
    Null,
    /// A boolean, an object or an array holding something else.
    Other,
}

impl Claim<'_> {
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }
}

impl<'de> de::Deserialize<'de> for Claim<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ClaimVisitor)
    }
}

struct ClaimVisitor;

impl<'de> Visitor<'de> for ClaimVisitor {
    type Value = Claim<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Claim<'de>, E> {
        Ok(Claim::Other)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Claim<'de>, E> {
        Ok(Claim::Number(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Claim<'de>, E> {
        Ok(Claim::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Claim<'de>, E> {
        Ok(Claim::Number(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Claim<'de>, E> {
        Ok(Claim::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Claim<'de>, E> {
        Ok(Claim::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Claim<'de>, E> {
        Ok(Claim::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Claim<'de>, A::Error> {
        let mut strings = Some(Vec::new());
        while let Some(item) = seq.next_element::<Claim<'de>>()? {
            match (item, strings.as_mut()) {
                (Claim::Str(s), Some(all)) => all.push(s),
                _ => strings = None,
            }
        }
        Ok(strings.map_or(Claim::Other, Claim::Strings))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claim<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Claim::Other)
    }
}

/// The values of the claims named in [`ClaimNames`], by position.
pub(crate) struct Claims<'de> {
    values: Vec<Option<Claim<'de>>>,
}

impl<'de> Claims<'de> {
    pub(crate) fn get(&self, index: usize) -> Option<&Claim<'de>> {
        self.values.get(index).and_then(Option::as_ref)
    }
}

/// Why a payload was refused.
pub(crate) type Reason = &'static str;

/// Reads the claims named in `names` from a verified payload, which must
/// be one JSON object without duplicate names among those claims.
pub(crate) fn read<'de>(payload: &'de str, names: &ClaimNames) -> Result<Claims<'de>, Reason> {
    let mut de = serde_json::Deserializer::from_str(payload);
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
    type Value = Claims<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Claims<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PayloadSeed<'_, '_> {
    type Value = Claims<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims<'de>, A::Error> {
        let mut values: Vec<Option<Claim<'de>>> = vec![None; self.names.names.len()];
        while let Some(position) = map.next_key_seed(NameSeed(self.names))? {
            match position.and_then(|i| values.get_mut(i)) {
                Some(slot) => {
                    if slot.is_some() {
                        *self.duplicate = true;
                        return Err(de::Error::custom("duplicate claim"));
                    }
                    *slot = Some(map.next_value::<Claim<'de>>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Claims { values })
    }
}

/// A NumericDate (RFC 7519 section 2): a JSON number, in seconds since
/// the epoch (fractions allowed).
pub(crate) fn numeric_date(value: &Claim<'_>) -> Result<f64, ()> {
    match *value {
        Claim::Number(n) if n.is_finite() => Ok(n),
        _ => Err(()),
    }
}

/// A string claim.
pub(crate) fn string<'v>(value: &'v Claim<'_>) -> Result<&'v str, ()> {
    match value {
        Claim::Str(s) => Ok(s),
        _ => Err(()),
    }
}

/// `aud`: one string or an array of strings.
pub(crate) fn audiences<'v>(value: &'v Claim<'_>) -> Result<Vec<&'v str>, ()> {
    match value {
        Claim::Str(s) => Ok(vec![&**s]),
        Claim::Strings(items) => Ok(items.iter().map(|s| &**s).collect()),
        _ => Err(()),
    }
}

/// A scope claim: a space-separated string (`scope`, RFC 8693) or an array
/// of strings (`scp`, `roles`).
pub(crate) fn scopes<'v>(value: &'v Claim<'_>, out: &mut Vec<&'v str>) -> Result<(), ()> {
    match value {
        Claim::Str(s) => {
            out.extend(s.split(' ').filter(|s| !s.is_empty()));
            Ok(())
        }
        Claim::Strings(items) => {
            out.extend(items.iter().map(|s| &**s));
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

    fn claim(json: &str) -> Claim<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reads_named_claims_only() {
        let n = names();
        let payload = r#"{"sub":"alice","exp":10,"scope":"a b","other":{"deep":[1,2,3]},"tenant":"acme","scp":["x","y\u0041"]}"#;
        let c = read(payload, &n).unwrap();
        assert_eq!(c.get(n.subject), Some(&Claim::Str(Cow::Borrowed("alice"))));
        assert!(matches!(
            c.get(n.subject),
            Some(Claim::Str(Cow::Borrowed(_)))
        ));
        assert_eq!(c.get(n.exp), Some(&Claim::Number(10.0)));
        assert_eq!(c.get(n.nbf), None);
        assert_eq!(c.get(n.required[0]), Some(&Claim::Str("acme".into())));
        assert_eq!(
            c.get(n.scopes[1]),
            Some(&Claim::Strings(vec!["x".into(), "yA".into()]))
        );
        assert_eq!(n.required[1], n.nbf);
    }

    #[test]
    fn claim_values() {
        assert_eq!(claim("-5"), Claim::Number(-5.0));
        assert_eq!(claim("18446744073709551616"), Claim::Number(2f64.powi(64)));
        assert_eq!(claim("5.5"), Claim::Number(5.5));
        assert_eq!(claim("null"), Claim::Null);
        assert_eq!(claim("true"), Claim::Other);
        assert_eq!(claim("{\"a\":[1]}"), Claim::Other);
        assert_eq!(claim("[\"a\",1]"), Claim::Other);
        assert_eq!(claim("[]"), Claim::Strings(vec![]));
        assert_eq!(claim("[[\"a\"]]"), Claim::Other);
    }

    #[test]
    fn refuses_duplicates_and_non_objects() {
        let n = names();
        assert_eq!(
            read(r#"{"exp":1,"exp":2}"#, &n).err(),
            Some("duplicate claim")
        );
        assert_eq!(
            read(r#"{"sub":"a","sub":"b"}"#, &n).err(),
            Some("duplicate claim")
        );
        // Duplicates of claims nobody reads are left to the claims type.
        assert!(read(r#"{"x":1,"x":2}"#, &n).is_ok());
        for bad in [
            "[]",
            "\"s\"",
            "null",
            "{",
            "{} {}",
            "Example of Ed25519 signing",
        ] {
            assert_eq!(read(bad, &n).err(), Some("claims are not a JSON object"));
        }
    }

    #[test]
    fn strict_types() {
        assert_eq!(numeric_date(&claim("5.5")), Ok(5.5));
        assert_eq!(numeric_date(&claim("1e300")), Ok(1e300));
        for bad in ["\"123\"", "true", "null", "[1]", "{}"] {
            assert!(numeric_date(&claim(bad)).is_err(), "{bad}");
        }
        assert_eq!(audiences(&claim("\"a\"")), Ok(vec!["a"]));
        assert_eq!(audiences(&claim("[\"a\",\"b\"]")), Ok(vec!["a", "b"]));
        assert!(audiences(&claim("[\"a\",1]")).is_err());
        assert!(audiences(&claim("1")).is_err());
        let (a, b, c, d) = (
            claim("\" chat:read  chat:write\""),
            claim("[\"admin\"]"),
            claim("true"),
            claim("[true]"),
        );
        let mut out = Vec::new();
        scopes(&a, &mut out).unwrap();
        scopes(&b, &mut out).unwrap();
        assert_eq!(out, ["chat:read", "chat:write", "admin"]);
        assert!(scopes(&c, &mut out).is_err());
        assert!(scopes(&d, &mut out).is_err());
    }
}
