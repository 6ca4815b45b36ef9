//! `Authorization: Bearer <token>` (RFC 6750 section 2.1) and bare-value
//! headers such as `X-Api-Key`.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::{CarrierError, Limits, all_bytes, is_vchar};

/// The single value of `name`, or an error if the header is repeated or
/// longer than `max`.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    max: usize,
) -> Result<Option<&'a HeaderValue>, CarrierError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(CarrierError::Malformed("header repeated"));
    }
    if value.len() > max {
        return Err(CarrierError::TooLarge);
    }
    Ok(Some(value))
}

/// A `token68` body character: `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`.
/// Branch-free, so the loop over a token vectorises. The terms are mutually
/// exclusive (no byte satisfies two), so `|` and `^` between them are the
/// same function: those mutants are equivalent and excluded from the
/// mutation score.
#[inline]
fn is_token68_body(b: u8) -> bool {
    ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

/// `token68` characters: `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`,
/// followed by optional `=` padding.
fn is_token68(token: &[u8]) -> bool {
    let padding = token.iter().rev().take_while(|&&b| b == b'=').count();
    let (body, _padding) = token.split_at(token.len() - padding);
    !body.is_empty() && all_bytes(body, is_token68_body)
}

/// Reads a bearer token. `Ok(None)` when there is no `Authorization` header.
///
/// The scheme is matched case-insensitively. Another scheme, an empty
/// token, two tokens, a character outside `token68` or a repeated header is
/// [`CarrierError::Malformed`].
pub(crate) fn parse_bearer(
    headers: &HeaderMap,
    limits: Limits,
) -> Result<Option<&str>, CarrierError> {
    let Some(value) = single(headers, &AUTHORIZATION, limits.max_header)? else {
        return Ok(None);
    };
    // A header parser strips the white space around a field value; a value
    // built by hand (or relayed by a proxy) may still hold it.
    let bytes = value.as_bytes().trim_ascii();
    let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
        Some(i) => bytes.split_at(i),
        None => (bytes, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(CarrierError::Malformed(
            "authorization scheme is not Bearer",
        ));
    }
    let token = rest.trim_ascii();
    // The common case, checked in one pass: a non-empty token68 within the
    // cap (token68 holds no space or tab, so it is also a single token).
    if !token.is_empty() && token.len() <= limits.max_credential && is_token68(token) {
        return token_str(token).map(Some);
    }
    if token.is_empty() {
        return Err(CarrierError::Malformed("empty bearer token"));
    }
    if token.len() > limits.max_credential {
        return Err(CarrierError::TooLarge);
    }
    if token.iter().any(|&b| b == b' ' || b == b'\t') {
        return Err(CarrierError::Malformed("more than one bearer token"));
    }
    Err(CarrierError::Malformed("bearer token is not token68"))
}

/// token68 is ASCII, so this cannot fail; the error arm keeps it panic-free.
fn token_str(token: &[u8]) -> Result<&str, CarrierError> {
    std::str::from_utf8(token).map_err(|_| CarrierError::Malformed("bearer token is not ASCII"))
}

/// Reads a header that holds the bare credential (`X-Api-Key: <key>`).
/// The value must be one run of visible ASCII characters.
pub(crate) fn parse_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    limits: Limits,
) -> Result<Option<&'a str>, CarrierError> {
    let Some(value) = single(headers, name, limits.max_header)? else {
        return Ok(None);
    };
    let bytes = value.as_bytes().trim_ascii();
    if bytes.is_empty() {
        return Err(CarrierError::Malformed("empty credential header"));
    }
    if bytes.len() > limits.max_credential {
        return Err(CarrierError::TooLarge);
    }
    if !bytes.iter().copied().all(is_vchar) {
        return Err(CarrierError::Malformed(
            "credential header holds non-visible characters",
        ));
    }
    std::str::from_utf8(bytes)
        .map(Some)
        .map_err(|_| CarrierError::Malformed("credential header is not ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn auth(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    fn bearer(values: &[&[u8]]) -> Result<Option<String>, CarrierError> {
        parse_bearer(&auth(values), Limits::default()).map(|o| o.map(str::to_owned))
    }

    #[test]
    fn token68_set() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_token68_body(b), expected, "{b:#04x}");
        }
    }

    #[test]
    fn accepts_bearer_in_any_case() {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let v = format!("{scheme} abc.def-_~+/==");
            assert_eq!(bearer(&[v.as_bytes()]), Ok(Some("abc.def-_~+/==".into())));
        }
        assert_eq!(bearer(&[b"Bearer    tok  "]), Ok(Some("tok".into())));
        // White space around the value (found by tests/fuzz_equivalents.rs).
        assert_eq!(bearer(&[b" Bearer tok"]), Ok(Some("tok".into())));
        assert_eq!(bearer(&[b"\tbearer tok\t"]), Ok(Some("tok".into())));
        assert_eq!(bearer(&[]), Ok(None));
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Basic dXNlcjpwYXNz",
            b"Bearertoken",
            b"Bearer a b",
            b"Bearer a\tb",
            b"Bearer ===",
            b"Bearer a=b",
            b"Bearer t\xc3\xa9",
            b"Bearer {json}",
        ] {
            assert!(
                matches!(bearer(&[bad]), Err(CarrierError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            bearer(&[b"Bearer a", b"Bearer a"]),
            Err(CarrierError::Malformed(_))
        ));
    }

    #[test]
    fn caps_sizes_before_parsing() {
        let limits = Limits::default();
        let long = format!("Bearer {}", "a".repeat(limits.max_credential + 1));
        assert_eq!(bearer(&[long.as_bytes()]), Err(CarrierError::TooLarge));
        let huge = format!("Bearer {}", "a b".repeat(limits.max_header));
        assert_eq!(bearer(&[huge.as_bytes()]), Err(CarrierError::TooLarge));
        let at_cap = format!("Bearer {}", "a".repeat(limits.max_credential));
        assert!(bearer(&[at_cap.as_bytes()]).unwrap().is_some());
    }

    #[test]
    fn custom_header() {
        let name = HeaderName::from_static("x-api-key");
        let mut h = HeaderMap::new();
        h.insert(&name, HeaderValue::from_static("sk_live_123"));
        assert_eq!(
            parse_header(&h, &name, Limits::default()),
            Ok(Some("sk_live_123"))
        );
        h.insert(&name, HeaderValue::from_static("two words"));
        assert!(parse_header(&h, &name, Limits::default()).is_err());
        h.insert(&name, HeaderValue::from_static(""));
        assert!(parse_header(&h, &name, Limits::default()).is_err());
        h.append(&name, HeaderValue::from_static("x"));
        assert!(parse_header(&h, &name, Limits::default()).is_err());
    }

    /// The straightforward parser the optimised one replaced: the oracle
    /// for `same_as_reference` (results and reasons must not change).
    fn reference(headers: &HeaderMap, limits: Limits) -> Result<Option<&str>, CarrierError> {
        fn is_token68_reference(token: &[u8]) -> bool {
            let body_end = token.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
            let (body, _padding) = token.split_at(body_end);
            !body.is_empty()
                && body.iter().all(|&b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
                })
        }
        let Some(value) = single(headers, &AUTHORIZATION, limits.max_header)? else {
            return Ok(None);
        };
        let bytes = value.as_bytes().trim_ascii();
        let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
            Some(i) => bytes.split_at(i),
            None => (bytes, &[][..]),
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return Err(CarrierError::Malformed(
                "authorization scheme is not Bearer",
            ));
        }
        let token = rest.trim_ascii();
        if token.is_empty() {
            return Err(CarrierError::Malformed("empty bearer token"));
        }
        if token.len() > limits.max_credential {
            return Err(CarrierError::TooLarge);
        }
        if token.iter().any(|&b| b == b' ' || b == b'\t') {
            return Err(CarrierError::Malformed("more than one bearer token"));
        }
        if !is_token68_reference(token) {
            return Err(CarrierError::Malformed("bearer token is not token68"));
        }
        std::str::from_utf8(token)
            .map(Some)
            .map_err(|_| CarrierError::Malformed("bearer token is not ASCII"))
    }

    proptest! {
        #[test]
        fn bearer_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20_000)) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let mut h = HeaderMap::new();
                h.insert(AUTHORIZATION, value);
                let limits = Limits::default();
                match parse_bearer(&h, limits) {
                    Ok(Some(token)) => {
                        prop_assert!(token.len() <= limits.max_credential);
                        prop_assert!(is_token68(token.as_bytes()));
                    }
                    Err(CarrierError::TooLarge) => prop_assert!(bytes.len() > limits.max_credential),
                    _ => {}
                }
                let _ = parse_header(&h, &AUTHORIZATION, limits);
            }
        }

        #[test]
        fn same_as_reference(
            scheme in "(Bearer|bearer|BEARER|Basic|Bear|)",
            gap in "[ \t]{0,3}",
            token in "[A-Za-z0-9._~+/= \t-]{0,40}",
            cap in 1usize..48,
        ) {
            let value = format!("{scheme}{gap}{token}");
            if let Ok(value) = HeaderValue::from_str(&value) {
                let mut h = HeaderMap::new();
                h.insert(AUTHORIZATION, value);
                let limits = Limits { max_credential: cap, max_header: 64 };
                prop_assert_eq!(parse_bearer(&h, limits), reference(&h, limits));
            }
        }

        #[test]
        fn same_as_reference_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let mut h = HeaderMap::new();
                h.insert(AUTHORIZATION, value);
                let limits = Limits::default();
                prop_assert_eq!(parse_bearer(&h, limits), reference(&h, limits));
            }
        }

        #[test]
        fn bearer_round_trips(token in "[A-Za-z0-9._~+/-]{1,200}=*") {
            let v = format!("Bearer {token}");
            prop_assert_eq!(bearer(&[v.as_bytes()]), Ok(Some(token)));
        }
    }
}
