//! The claims this crate validates, read strictly from the verified
//! payload: a registered claim of the wrong JSON type (`"exp": "123"`,
//! `"nbf": true`, `"exp": null`) is a failure, never "absent".

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, Visitor};

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
        let [exp, nbf, iat, iss, aud, jti, subject] =
            ["exp", "nbf", "iat", "iss", "aud", "jti", subject].map(&mut index);
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
            subject,
            scopes,
            required,
        }
    }
}

/// A JSON string, borrowed from the input when it has no escapes (serde's
/// own `Cow<str>` always copies).
pub(crate) struct Text<'de>(pub(crate) Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A claim value, as much as validation needs of it.
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

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Claim<'de>, A::Error> {
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
pub(crate) struct Claims<'de>(Vec<Option<Claim<'de>>>);

impl<'de> Claims<'de> {
    pub(crate) fn get(&self, index: usize) -> Option<&Claim<'de>> {
        self.0.get(index).and_then(Option::as_ref)
    }
}

/// Reads the claims named in `names` from a verified payload, which must
/// be one JSON object in which none of them is repeated; other members
/// are skipped (the typed claims `C` were read by `jsonwebtoken::decode`).
pub(crate) fn read<'de>(
    payload: &'de str,
    names: &ClaimNames,
) -> Result<Claims<'de>, &'static str> {
    let mut de = serde_json::Deserializer::from_str(payload);
    let mut reader = Reader {
        names,
        values: vec![None; names.names.len()],
        duplicate: false,
    };
    match (&mut de)
        .deserialize_map(&mut reader)
        .and_then(|()| de.end())
    {
        Ok(()) => Ok(Claims(reader.values)),
        Err(_) if reader.duplicate => Err("duplicate claim"),
        Err(_) => Err("claims are not a JSON object"),
    }
}

struct Reader<'n, 'de> {
    names: &'n ClaimNames,
    values: Vec<Option<Claim<'de>>>,
    duplicate: bool,
}

impl<'de> Visitor<'de> for &mut Reader<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            let slot = self.names.names.iter().position(|n| **n == *name);
            match slot.and_then(|i| self.values.get_mut(i)) {
                Some(Some(_)) => {
                    self.duplicate = true;
                    return Err(de::Error::custom("duplicate claim"));
                }
                Some(value) => *value = Some(map.next_value::<Claim<'de>>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
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

/// A scope claim: a space-separated string (`scope`, RFC 8693) or an array
/// of strings (`scp`, `roles`).
pub(crate) fn scopes<'v>(value: &'v Claim<'_>, out: &mut Vec<&'v str>) -> Result<(), ()> {
    match value {
        Claim::Str(s) => out.extend(s.split(' ').filter(|s| !s.is_empty())),
        Claim::Strings(items) => out.extend(items.iter().map(|s| &**s)),
        _ => return Err(()),
    }
    Ok(())
}
