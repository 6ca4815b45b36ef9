//! The policy checks done before any key lookup or cryptography: the shape
//! of a compact JWS (RFC 7515 section 7.1) and its protected header, read
//! by [`jsonwebtoken::decode_header`].
//!
//! Everything here is linear in the token, bounded by size caps checked
//! before any decoding, and never panics: the token is network data.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Header;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use super::algorithm::JwtAlgorithm;

/// The largest `kid` accepted, in bytes.
pub(crate) const MAX_KID_BYTES: usize = 256;
/// The largest protected header accepted, base64url-encoded.
const MAX_HEADER_CHARS: usize = 2048;
/// The largest signature accepted, base64url-encoded: an RSA-8192
/// signature (1024 bytes), the largest any supported key produces.
const MAX_SIGNATURE_CHARS: usize = 1366;

/// Why a token was refused before any cryptography.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not shaped like a compact JWS at all (not three dot-separated
    /// segments): possibly another kind of credential.
    NotJws,
    /// A broken or unacceptable JWS.
    Invalid(&'static str),
}

/// What the policy reads from a token's protected header.
pub(crate) struct Checked {
    pub(crate) alg: JwtAlgorithm,
    pub(crate) header: Header,
}

/// A character a base64url segment (RFC 4648 section 5, unpadded) may hold.
fn base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Checks the shape of `token` and reads its header, cheapest first: the
/// segment count (otherwise [`Refusal::NotJws`]), the size caps, the
/// alphabet and lengths of the segments, then the header: JSON with a
/// supported `alg`, no duplicate member, no `crit` (so no `b64`
/// extension), a `kid` within its cap.
pub(crate) fn check(token: &str, max_len: usize) -> Result<Checked, Refusal> {
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(Refusal::NotJws);
    };
    if token.len() > max_len {
        return Err(Refusal::Invalid("token over the size cap"));
    }
    if header.is_empty() || payload.is_empty() {
        return Err(Refusal::Invalid("empty header or payload"));
    }
    if signature.is_empty() {
        return Err(Refusal::Invalid("unsigned token"));
    }
    if header.len() > MAX_HEADER_CHARS || signature.len() > MAX_SIGNATURE_CHARS {
        return Err(Refusal::Invalid("header or signature over its cap"));
    }
    for segment in [header, payload, signature] {
        // No byte string encodes to 4n+1 characters.
        if segment.len() % 4 == 1 || !segment.bytes().all(base64url) {
            return Err(Refusal::Invalid("a segment is not base64url"));
        }
    }
    let header_json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Refusal::Invalid("a segment is not base64url"))?;
    // jsonwebtoken reads a `null` member as absent (`"kid": null` would
    // select the kid-less key); here it is refused.
    serde_json::from_slice::<NoNulls>(&header_json)
        .map_err(|_| Refusal::Invalid("header is not a JSON object without null members"))?;
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| Refusal::Invalid("header unreadable or alg not supported"))?;
    let alg =
        JwtAlgorithm::from_jsonwebtoken(header.alg).ok_or(Refusal::Invalid("alg not supported"))?;
    if header.crit.is_some() {
        // RFC 7515 section 4.1.11: no extension is understood here
        // (`b64: false` of RFC 7797 included), so `crit` is refused.
        return Err(Refusal::Invalid("crit is not supported"));
    }
    if header.extras.inner().contains_key("b64") {
        return Err(Refusal::Invalid("b64 is not supported"));
    }
    if header.kid.as_ref().is_some_and(|k| k.len() > MAX_KID_BYTES) {
        return Err(Refusal::Invalid("kid over 256 bytes"));
    }
    Ok(Checked { alg, header })
}

/// A JSON object none of whose members is `null`; the values are skipped.
struct NoNulls;

impl<'de> de::Deserialize<'de> for NoNulls {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(NoNulls)
    }
}

impl<'de> Visitor<'de> for NoNulls {
    type Value = NoNulls;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object without null members")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoNulls, A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            if map.next_value::<Option<IgnoredAny>>()?.is_none() {
                return Err(de::Error::custom("null member"));
            }
        }
        Ok(NoNulls)
    }
}
