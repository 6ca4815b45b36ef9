//! Pre-validation of compact JWS tokens: the cheap structural checks done
//! before any key lookup or cryptography.
//!
//! Everything here is linear in the token, bounded by size caps checked
//! before any decoding, and never panics: the token is network data.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::algorithm::JwtAlgorithm;

/// The largest `kid` accepted, in bytes.
pub(crate) const MAX_KID_BYTES: usize = 256;
/// The largest protected header accepted, base64url-encoded.
pub(crate) const MAX_HEADER_CHARS: usize = 2048;
/// The largest signature accepted, base64url-encoded: an RSA-8192
/// signature (1024 bytes), the largest any supported key produces.
pub(crate) const MAX_SIGNATURE_CHARS: usize = 1366;

/// Why a token was refused before any cryptography.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The credential is not shaped like a compact JWS at all (not three
    /// dot-separated segments): possibly another kind of credential.
    NotJws(&'static str),
    /// The credential is a broken or unacceptable JWS.
    Invalid(&'static str),
}

impl Refusal {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::NotJws(reason) | Self::Invalid(reason) => reason,
        }
    }
}

/// The protected header fields this crate reads. Everything else,
/// including `jwk`, `jku`, `x5u`, `x5c` and `x5t`, is skipped unread: key
/// material in a token is never trusted.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct JoseHeader {
    pub(crate) alg: JwtAlgorithm,
    pub(crate) kid: Option<Box<str>>,
    pub(crate) typ: Option<Box<str>>,
}

impl fmt::Debug for JoseHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoseHeader")
            .field("alg", &self.alg)
            .field("kid_len", &self.kid.as_ref().map(|k| k.len()))
            .field("typ", &self.typ)
            .finish()
    }
}

/// A token that passed pre-validation: three base64url segments within
/// their caps and a readable header naming a supported algorithm.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Compact<'a> {
    pub(crate) header: Arc<JoseHeader>,
    /// `header "." payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a str,
    /// The payload segment, still base64url-encoded.
    pub(crate) payload: &'a str,
    /// The signature segment, still base64url-encoded.
    pub(crate) signature: &'a str,
}

/// Branch-free, for `all_bytes`.
fn is_base64url(b: u8) -> bool {
    (b.wrapping_sub(b'0') < 10) | ((b | 0x20).wrapping_sub(b'a') < 26) | (b == b'-') | (b == b'_')
}

/// The number of bytes `chars` base64url characters (unpadded) decode to,
/// or `None` if no byte string encodes to that many characters.
pub(crate) fn decoded_len(chars: usize) -> Option<usize> {
    match chars % 4 {
        1 => None,
        rem => Some(chars / 4 * 3 + rem.saturating_sub(1)),
    }
}

/// Pre-validates `token`; `max_len` caps the whole token in bytes.
///
/// Order of checks, cheapest first: shape (exactly two dots; otherwise
/// [`Refusal::NotJws`]), size caps, alphabet, segment lengths, then the
/// decoding and parsing of the (capped) header.
pub(crate) fn parse(token: &str, max_len: usize) -> Result<Compact<'_>, Refusal> {
    let bytes = token.as_bytes();
    if bytes.first() == Some(&b'{') {
        return Err(Refusal::NotJws("JWS JSON serialization is not accepted"));
    }
    // Two passes without branches per byte (they vectorise), rather than
    // one that branches on every byte: tokens are hundreds of bytes.
    // Counted in byte-wide lanes, 255 bytes at a time (a `usize` count would
    // widen every byte to 64 bits and process four at a time).
    let count: usize = bytes
        .chunks(255)
        .map(|chunk| usize::from(chunk.iter().fold(0u8, |n, &b| n + u8::from(b == b'.'))))
        .sum();
    match count {
        2 => {}
        4 => return Err(Refusal::NotJws("five segments: a JWE, not a JWS")),
        _ => return Err(Refusal::NotJws("not three dot-separated segments")),
    }
    if bytes.len() > max_len {
        return Err(Refusal::Invalid("token over the size cap"));
    }
    if !crate::credential::all_bytes(bytes, |b| is_base64url(b) | (b == b'.')) {
        return Err(Refusal::Invalid("character outside the base64url alphabet"));
    }
    let (Some(first), Some(second)) = (token.find('.'), token.rfind('.')) else {
        return Err(Refusal::Invalid("not three dot-separated segments"));
    };
    let (Some(header), Some(payload), Some(signature), Some(signing_input)) = (
        token.get(..first),
        token.get(first + 1..second),
        token.get(second + 1..),
        token.get(..second),
    ) else {
        return Err(Refusal::Invalid("not three dot-separated segments"));
    };
    if header.is_empty() {
        return Err(Refusal::Invalid("empty header"));
    }
    if payload.is_empty() {
        return Err(Refusal::Invalid("empty or detached payload"));
    }
    if signature.is_empty() {
        return Err(Refusal::Invalid("unsigned token"));
    }
    if header.len() > MAX_HEADER_CHARS {
        return Err(Refusal::Invalid("header over the size cap"));
    }
    if signature.len() > MAX_SIGNATURE_CHARS {
        return Err(Refusal::Invalid("signature over the size cap"));
    }
    if decoded_len(header.len()).is_none()
        || decoded_len(payload.len()).is_none()
        || decoded_len(signature.len()).is_none()
    {
        return Err(Refusal::Invalid("segment length impossible for base64url"));
    }
    let header = header_of(header)?;
    Ok(Compact {
        header,
        signing_input,
        payload,
        signature,
    })
}

thread_local! {
    /// The last protected header this thread decoded, by its encoded form.
    /// The tokens of one issuer usually share their header byte for byte,
    /// so most verifications skip decoding and parsing it (a tenth of an
    /// HS256 verification). Parsing depends on nothing but these bytes, so
    /// the cached result is exactly what parsing again would give; only
    /// successes are kept. One entry per thread, at most
    /// `MAX_HEADER_CHARS` bytes.
    static LAST_HEADER: RefCell<Option<(Box<str>, Arc<JoseHeader>)>> =
        const { RefCell::new(None) };
}

/// Decodes and parses the encoded protected header, or takes the result
/// from the thread's last header when it is the same one.
fn header_of(encoded: &str) -> Result<Arc<JoseHeader>, Refusal> {
    let cached = LAST_HEADER
        .try_with(|last| {
            let last = last.try_borrow().ok()?;
            let (seen, header) = last.as_ref()?;
            (**seen == *encoded).then(|| header.clone())
        })
        .ok()
        .flatten();
    if let Some(header) = cached {
        return Ok(header);
    }
    let decoded = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| Refusal::Invalid("header is not canonical base64url"))?;
    let header = Arc::new(parse_header(&decoded)?);
    let _ = LAST_HEADER.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = Some((encoded.into(), header.clone()));
        }
    });
    Ok(header)
}

/// Parses a decoded protected header.
pub(crate) fn parse_header(json: &[u8]) -> Result<JoseHeader, Refusal> {
    // JSON is UTF-8 (RFC 8259); serde_json checks only the strings it keeps,
    // so bytes in an ignored member would otherwise pass.
    let json = std::str::from_utf8(json).map_err(|_| Refusal::Invalid("header is not UTF-8"))?;
    let mut de = serde_json::Deserializer::from_str(json);
    let mut outcome = HeaderOutcome::default();
    let parsed = HeaderSeed {
        outcome: &mut outcome,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Some(refusal) = outcome.refusal {
        return Err(refusal);
    }
    parsed.map_err(|_| Refusal::Invalid("header is not a JSON object"))?;
    let alg = outcome.alg.ok_or(Refusal::Invalid("header has no alg"))?;
    Ok(JoseHeader {
        alg,
        kid: outcome.kid,
        typ: outcome.typ,
    })
}

#[derive(Default)]
struct HeaderOutcome {
    alg: Option<JwtAlgorithm>,
    kid: Option<Box<str>>,
    typ: Option<Box<str>>,
    refusal: Option<Refusal>,
}

struct HeaderSeed<'o> {
    outcome: &'o mut HeaderOutcome,
}

#[derive(Clone, Copy)]
enum Field {
    Alg,
    Kid,
    Typ,
    Crit,
    B64,
    Other,
}

struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Field, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a header parameter name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
        Ok(match name {
            "alg" => Field::Alg,
            "kid" => Field::Kid,
            "typ" => Field::Typ,
            "crit" => Field::Crit,
            "b64" => Field::B64,
            _ => Field::Other,
        })
    }
}

/// A JSON string, borrowed when it has no escapes.
struct Str<'de>(std::borrow::Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.outcome;
        let mut seen_alg = false;
        let mut seen_kid = false;
        let mut seen_typ = false;
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            let refuse = |out: &mut HeaderOutcome, reason| {
                out.refusal = Some(Refusal::Invalid(reason));
                de::Error::custom(reason)
            };
            match field {
                Field::Alg => {
                    if std::mem::replace(&mut seen_alg, true) {
                        return Err(refuse(out, "duplicate alg"));
                    }
                    let Ok(Str(name)) = map.next_value::<Str<'de>>() else {
                        return Err(refuse(out, "alg is not a string"));
                    };
                    match JwtAlgorithm::from_name(&name) {
                        Some(alg) => out.alg = Some(alg),
                        None => return Err(refuse(out, "alg not supported (none is never)")),
                    }
                }
                Field::Kid => {
                    if std::mem::replace(&mut seen_kid, true) {
                        return Err(refuse(out, "duplicate kid"));
                    }
                    let Ok(Str(kid)) = map.next_value::<Str<'de>>() else {
                        return Err(refuse(out, "kid is not a string"));
                    };
                    if kid.len() > MAX_KID_BYTES {
                        return Err(refuse(out, "kid over the size cap"));
                    }
                    out.kid = Some(kid.into());
                }
                Field::Typ => {
                    if std::mem::replace(&mut seen_typ, true) {
                        return Err(refuse(out, "duplicate typ"));
                    }
                    let Ok(Str(typ)) = map.next_value::<Str<'de>>() else {
                        return Err(refuse(out, "typ is not a string"));
                    };
                    out.typ = Some(typ.into());
                }
                Field::Crit => {
                    return Err(refuse(out, "crit header extensions are not supported"));
                }
                Field::B64 => match map.next_value::<serde_json::Value>() {
                    Ok(serde_json::Value::Bool(true)) => {}
                    _ => return Err(refuse(out, "unencoded payloads (b64) are not supported")),
                },
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_that_is_not_utf8_is_refused() {
        // Found by the `jwt` fuzz target: bytes that are not UTF-8 inside a
        // member serde_json skips.
        let header = b"{\"alg\":\"HS256\",\"dyp\":\"#Jiat\xa2\xab\"}";
        assert_eq!(
            parse_header(header).map(|h| h.alg),
            Err(Refusal::Invalid("header is not UTF-8"))
        );
        assert!(parse_header(br##"{"alg":"HS256","dyp":"#Jiat\u00e9"}"##).is_ok());
    }

    #[test]
    fn base64url_alphabet() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            assert_eq!(is_base64url(b), expected, "{b:#04x}");
        }
    }
    use proptest::prelude::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str, sig: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), sig)
    }

    const SIG: &str = "c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0";

    #[test]
    fn accepts_a_well_formed_token() {
        let t = token(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT","x5u":"https://evil"}"#,
            "{}",
            SIG,
        );
        let c = parse(&t, 8192).unwrap();
        assert_eq!(c.header.alg, JwtAlgorithm::ES256);
        assert_eq!(c.header.kid.as_deref(), Some("k1"));
        assert_eq!(c.header.typ.as_deref(), Some("JWT"));
        assert_eq!(c.signature, SIG);
        assert_eq!(c.payload, b64("{}"));
        assert_eq!(
            c.signing_input,
            format!(
                "{}.{}",
                b64(r#"{"alg":"ES256","kid":"k1","typ":"JWT","x5u":"https://evil"}"#),
                b64("{}")
            )
        );
    }

    #[test]
    fn shapes_that_are_not_a_jws() {
        for t in ["opaque-api-key", "a.b", "a.b.c.d", "", "...."] {
            assert!(matches!(parse(t, 8192), Err(Refusal::NotJws(_))), "{t:?}");
        }
        assert_eq!(
            parse("a.b.c.d.e", 8192),
            Err(Refusal::NotJws("five segments: a JWE, not a JWS"))
        );
        assert!(matches!(
            parse(r#"{"payload":"e30","signatures":[]}"#, 8192),
            Err(Refusal::NotJws(_))
        ));
    }

    #[test]
    fn broken_jws() {
        let cases: Vec<(String, &str)> = vec![
            (
                format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}")),
                "unsigned token",
            ),
            (format!(".{}.{SIG}", b64("{}")), "empty header"),
            (
                format!("{}..{SIG}", b64(r#"{"alg":"HS256"}"#)),
                "empty or detached payload",
            ),
            (
                format!("{}.{}.a+b/", b64(r#"{"alg":"HS256"}"#), b64("{}")),
                "character outside the base64url alphabet",
            ),
            (
                format!("{}=.{}.{SIG}", b64(r#"{"alg":"HS256"}"#), b64("{}")),
                "character outside the base64url alphabet",
            ),
            (
                format!("{}.{}.abcde", b64(r#"{"alg":"HS256"}"#), b64("{}")),
                "segment length impossible for base64url",
            ),
            (
                format!("eyJ.{}.{SIG}", b64("{}")),
                "header is not canonical base64url",
            ),
            (token("not json", "{}", SIG), "header is not a JSON object"),
            (token("[1,2]", "{}", SIG), "header is not a JSON object"),
            (
                token(r#"{"alg":"HS256"} x"#, "{}", SIG),
                "header is not a JSON object",
            ),
            (token(r#"{"typ":"JWT"}"#, "{}", SIG), "header has no alg"),
            (
                token(r#"{"alg":"HS256","alg":"HS256"}"#, "{}", SIG),
                "duplicate alg",
            ),
            (token(r#"{"alg":7}"#, "{}", SIG), "alg is not a string"),
            (
                token(r#"{"alg":"HS256","kid":7}"#, "{}", SIG),
                "kid is not a string",
            ),
            (
                token(r#"{"alg":"HS256","kid":null}"#, "{}", SIG),
                "kid is not a string",
            ),
            (
                token(r#"{"alg":"HS256","crit":["exp"],"exp":1}"#, "{}", SIG),
                "crit header extensions are not supported",
            ),
            (
                token(r#"{"alg":"HS256","b64":false}"#, "{}", SIG),
                "unencoded payloads (b64) are not supported",
            ),
        ];
        for (t, reason) in cases {
            assert_eq!(
                parse(&t, 8192).map(|_| ()),
                Err(Refusal::Invalid(reason)),
                "{t}"
            );
        }
        for none in [
            "none", "None", "NONE", "nOnE", "HS256 ", "", "RSA-OAEP", "ES512",
        ] {
            let t = token(&format!(r#"{{"alg":"{none}"}}"#), "{}", SIG);
            assert_eq!(
                parse(&t, 8192).map(|_| ()),
                Err(Refusal::Invalid("alg not supported (none is never)")),
                "{none:?}"
            );
        }
        // An escaped spelling of "none" is still none.
        let t = token(r#"{"alg":"\u006eone"}"#, "{}", SIG);
        assert!(parse(&t, 8192).is_err());
    }

    #[test]
    fn caps() {
        let long_kid = "k".repeat(MAX_KID_BYTES + 1);
        let t = token(
            &format!(r#"{{"alg":"HS256","kid":"{long_kid}"}}"#),
            "{}",
            SIG,
        );
        assert_eq!(
            parse(&t, 8192).map(|_| ()),
            Err(Refusal::Invalid("kid over the size cap"))
        );
        let ok_kid = "k".repeat(MAX_KID_BYTES);
        let t = token(&format!(r#"{{"alg":"HS256","kid":"{ok_kid}"}}"#), "{}", SIG);
        assert!(parse(&t, 8192).is_ok());

        let t = token(r#"{"alg":"HS256"}"#, &"x".repeat(9000), SIG);
        assert_eq!(
            parse(&t, 8192).map(|_| ()),
            Err(Refusal::Invalid("token over the size cap"))
        );
        assert!(parse(&t, 64 * 1024).is_ok());

        let big_header = format!(r#"{{"alg":"HS256","x":"{}"}}"#, "y".repeat(2000));
        let t = token(&big_header, "{}", SIG);
        assert_eq!(
            parse(&t, 64 * 1024).map(|_| ()),
            Err(Refusal::Invalid("header over the size cap"))
        );

        let t = token(
            r#"{"alg":"RS256"}"#,
            "{}",
            &"A".repeat(MAX_SIGNATURE_CHARS + 2),
        );
        assert_eq!(
            parse(&t, 64 * 1024).map(|_| ()),
            Err(Refusal::Invalid("signature over the size cap"))
        );
    }

    #[test]
    fn decoded_lengths() {
        assert_eq!(decoded_len(0), Some(0));
        assert_eq!(decoded_len(1), None);
        assert_eq!(decoded_len(2), Some(1));
        assert_eq!(decoded_len(3), Some(2));
        assert_eq!(decoded_len(4), Some(3));
        assert_eq!(decoded_len(43), Some(32));
        assert_eq!(decoded_len(86), Some(64));
        assert_eq!(decoded_len(342), Some(256));
        assert_eq!(decoded_len(1366), Some(1024));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,600}") {
            let _ = parse(&s, 8192);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = parse(&s, 8192);
            let _ = parse_header(&bytes);
        }

        #[test]
        fn dotted_base64_shapes_never_panic(
            h in "[A-Za-z0-9_-]{0,80}",
            p in "[A-Za-z0-9_-]{0,80}",
            s in "[A-Za-z0-9_=+/-]{0,80}",
        ) {
            let t = format!("{h}.{p}.{s}");
            let _ = parse(&t, 8192);
        }

        #[test]
        fn arbitrary_headers_never_panic(json in "[{}\\[\\]\":,a-z0-9 \\\\]{0,120}") {
            let t = format!("{}.e30.{SIG}", URL_SAFE_NO_PAD.encode(&json));
            let _ = parse(&t, 8192);
        }

        /// A token over the cap is refused before its header is decoded,
        /// whatever it holds.
        #[test]
        fn oversized_tokens_are_refused_by_the_cap(extra in 1usize..4096, h in "[A-Za-z0-9_-]{4,40}") {
            let cap = 512;
            let body = "A".repeat(cap + extra);
            let t = format!("{h}.{body}.{SIG}");
            prop_assert_eq!(parse(&t, cap).map(|_| ()), Err(Refusal::Invalid("token over the size cap")));
        }

        /// Whatever the header says, a parsed header never carries a kid over
        /// the cap, and `alg` is always one of the supported names.
        #[test]
        fn parsed_headers_respect_caps(kid in "\\PC{0,300}", alg in "(HS256|RS256|EdDSA|none|ES512|[A-Za-z0-9]{1,6})") {
            let header = serde_json::json!({"alg": alg, "kid": kid}).to_string();
            let t = format!("{}.e30.{SIG}", URL_SAFE_NO_PAD.encode(header));
            if let Ok(c) = parse(&t, 64 * 1024) {
                prop_assert!(c.header.kid.as_ref().is_none_or(|k| k.len() <= MAX_KID_BYTES));
                prop_assert_eq!(c.header.alg.as_str(), alg.as_str());
            }
        }
    }

    /// The work done on a token is bounded by the caps: the largest token
    /// the cap lets through parses quickly, and a huge input is refused
    /// after a single linear scan.
    #[test]
    fn work_is_bounded() {
        let header = format!(r#"{{"alg":"HS256","pad":"{}"}}"#, "z".repeat(1400));
        let t = format!("{}.{}.{SIG}", b64(&header), "A".repeat(6000));
        let start = std::time::Instant::now();
        for _ in 0..1000 {
            let _ = parse(&t, 8192);
        }
        let huge = format!(
            "{}.{}.{SIG}",
            b64(r#"{"alg":"HS256"}"#),
            "A".repeat(4 << 20)
        );
        assert_eq!(
            parse(&huge, 8192).map(|_| ()),
            Err(Refusal::Invalid("token over the size cap"))
        );
        // Generous: 1000 parses of a capped token take well under a millisecond each.
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}
