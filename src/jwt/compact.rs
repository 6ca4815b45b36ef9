//! The policy checks done before any key lookup or cryptography: the shape
//! of a compact JWS (RFC 7515 section 7.1) and the members of its protected
//! header that the policy needs. `jsonwebtoken::decode` reads the header
//! again, whole, to verify the token.
//!
//! Everything here is linear in the token, bounded by size caps checked
//! before any decoding, and never panics: the token is network data.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use super::claims::Text;
use jsonwebtoken::Algorithm;

/// The largest `kid` accepted, in bytes.
pub(crate) const MAX_KID_BYTES: usize = 256;
/// The largest protected header accepted, base64url-encoded.
const MAX_HEADER_CHARS: usize = 2048;
/// The largest protected header accepted, decoded: what
/// [`check`] decodes it into.
pub(crate) const MAX_HEADER_BYTES: usize = MAX_HEADER_CHARS / 4 * 3;
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

/// What the policy reads from a token's protected header, borrowed from
/// the decoded header where it has no escapes.
pub(crate) struct Checked<'h> {
    /// The payload segment, still base64url-encoded.
    pub(crate) payload: &'h str,
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<Text<'h>>,
    pub(crate) typ: Option<Text<'h>>,
}

/// A byte of a base64url segment (RFC 4648 section 5, unpadded) or a dot;
/// branch-free, for [`all_bytes`](crate::credential::all_bytes) (an RS256
/// token is some 500 bytes).
fn base64url_or_dot(b: u8) -> bool {
    (b.wrapping_sub(b'0') < 10)
        | ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b == b'-')
        | (b == b'_')
        | (b == b'.')
}

/// Checks the shape of `token` and reads its header, cheapest first: the
/// segment count (otherwise [`Refusal::NotJws`]), the size caps, the
/// alphabet and lengths of the segments, then the header: JSON with a
/// supported `alg`, no duplicate member, no `crit` (so no `b64`
/// extension), a `kid` within its cap. The header is decoded into `buf`.
pub(crate) fn check<'h>(
    token: &'h str,
    max_len: usize,
    buf: &'h mut [u8; MAX_HEADER_BYTES],
) -> Result<Checked<'h>, Refusal> {
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
    // No byte string encodes to 4n+1 characters.
    if [header, payload, signature]
        .iter()
        .any(|s| s.len() % 4 == 1)
        || !crate::credential::all_bytes(token.as_bytes(), base64url_or_dot)
    {
        return Err(Refusal::Invalid("a segment is not base64url"));
    }
    let len = URL_SAFE_NO_PAD
        .decode_slice(header, buf)
        .map_err(|_| Refusal::Invalid("a segment is not base64url"))?;
    let header = serde_json::from_slice::<PolicyHeader<'h>>(buf.get(..len).unwrap_or_default())
        .map_err(|_| Refusal::Invalid("header refused"))?;
    let alg = header
        .alg
        .and_then(|alg| super::algorithm::from_name(&alg.0))
        .ok_or(Refusal::Invalid("alg missing or not supported"))?;
    if header
        .kid
        .as_ref()
        .is_some_and(|k| k.0.len() > MAX_KID_BYTES)
    {
        return Err(Refusal::Invalid("kid over 256 bytes"));
    }
    Ok(Checked {
        payload,
        alg,
        kid: header.kid,
        typ: header.typ,
    })
}

/// The header members the policy reads, in one pass: `alg`, `kid` and
/// `typ` as strings (each at most once); `crit` refused (RFC 7515 section
/// 4.1.11: no extension is understood here, RFC 7797's `b64` included, so
/// `b64` is refused too); any member `null` refused (jsonwebtoken reads
/// `"kid": null` as no `kid`, which would select the kid-less key). Other
/// members (`jwk`, `jku`, `x5u`, `x5c`, ...) are skipped, never used.
struct PolicyHeader<'de> {
    alg: Option<Text<'de>>,
    kid: Option<Text<'de>>,
    typ: Option<Text<'de>>,
}

impl<'de> de::Deserialize<'de> for PolicyHeader<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PolicyHeaderVisitor)
    }
}

struct PolicyHeaderVisitor;

impl<'de> Visitor<'de> for PolicyHeaderVisitor {
    type Value = PolicyHeader<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PolicyHeader<'de>, A::Error> {
        let (mut alg, mut kid, mut typ) = (None, None, None);
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            let slot = match &*name {
                "alg" => &mut alg,
                "kid" => &mut kid,
                "typ" => &mut typ,
                "crit" | "b64" => return Err(de::Error::custom("crit or b64")),
                _ => {
                    if map.next_value::<Option<IgnoredAny>>()?.is_none() {
                        return Err(de::Error::custom("null member"));
                    }
                    continue;
                }
            };
            if slot.replace(map.next_value::<Text<'de>>()?).is_some() {
                return Err(de::Error::custom("duplicate member"));
            }
        }
        Ok(PolicyHeader { alg, kid, typ })
    }
}
