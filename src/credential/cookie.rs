//! The cookie carrier.
//!
//! A cookie is sent by the browser on its own, whatever page opened the
//! socket, so the layer only accepts it together with an
//! [`OriginPolicy`](crate::OriginPolicy).

use http::HeaderMap;
use http::header::COOKIE;

use super::{CarrierError, Limits, all_bytes, is_vchar};

/// `true` if `name` is a valid cookie name: a non-empty RFC 6265 token.
pub(crate) fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| is_vchar(b) && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// `s` without leading and trailing spaces and tabs.
fn trim_ows(s: &str) -> &str {
    let bytes = s.as_bytes();
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    // Both ends sit next to ASCII bytes, so they are char boundaries.
    s.get(start..end).unwrap_or("")
}

/// A byte a credential cookie value may hold: visible ASCII other than
/// `"`, `;`, `,` and `\`. Branch-free, so the loop over a value vectorises.
fn is_cookie_value_byte(b: u8) -> bool {
    ((0x21..=0x7e).contains(&b)) & (b != b'"') & (b != b';') & (b != b',') & (b != b'\\')
}

/// Finds the cookie `name` in every `Cookie` header line (HTTP/2 clients
/// send one line per cookie). Malformed pairs of other cookies are skipped.
/// The same name twice with different values is ambiguous and refused.
pub(crate) fn parse_cookie<'a>(
    headers: &'a HeaderMap,
    name: &str,
    limits: Limits,
) -> Result<Option<&'a str>, CarrierError> {
    let values = headers.get_all(COOKIE);
    let mut total = 0usize;
    for v in values.iter() {
        total = total.saturating_add(v.len() + 2);
        if total > limits.max_header {
            return Err(CarrierError::TooLarge);
        }
    }
    if total == 0 {
        return Ok(None);
    }
    let mut found: Option<&'a str> = None;
    for value in values.iter() {
        // Cookie values are ASCII; a line with other bytes holds no cookie of ours.
        let Ok(line) = value.to_str() else { continue };
        for pair in line.split(';') {
            let Some((key, val)) = pair.split_once('=') else {
                continue;
            };
            if trim_ows(key) != name {
                continue;
            }
            let mut val = trim_ows(val);
            if let Some(unquoted) = val.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                val = unquoted;
            }
            if val.is_empty() {
                return Err(CarrierError::Malformed("empty credential cookie"));
            }
            if val.len() > limits.max_credential {
                return Err(CarrierError::TooLarge);
            }
            if !all_bytes(val.as_bytes(), is_cookie_value_byte) {
                return Err(CarrierError::Malformed(
                    "credential cookie holds invalid characters",
                ));
            }
            match found {
                Some(previous) if previous != val => {
                    return Err(CarrierError::Malformed(
                        "credential cookie sent twice with different values",
                    ));
                }
                _ => found = Some(val),
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn cookie(lines: &[&str]) -> Result<Option<String>, CarrierError> {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(COOKIE, HeaderValue::from_str(l).unwrap());
        }
        parse_cookie(&h, "session", Limits::default()).map(|o| o.map(str::to_owned))
    }

    #[test]
    fn finds_the_cookie() {
        assert_eq!(cookie(&["a=1; session=abc; b=2"]), Ok(Some("abc".into())));
        assert_eq!(cookie(&["a=1", "session=abc"]), Ok(Some("abc".into())));
        assert_eq!(cookie(&["session=\"abc\""]), Ok(Some("abc".into())));
        assert_eq!(cookie(&["sessionx=abc; xsession=abc"]), Ok(None));
        assert_eq!(
            cookie(&["garbage; ==; session=a+b/c="]),
            Ok(Some("a+b/c=".into()))
        );
        assert_eq!(
            cookie(&["session=abc; session=abc"]),
            Ok(Some("abc".into()))
        );
        assert_eq!(cookie(&[]), Ok(None));
    }

    #[test]
    fn refuses_ambiguity_and_junk() {
        assert!(cookie(&["session=abc; session=def"]).is_err());
        assert!(cookie(&["session=abc", "session=def"]).is_err());
        assert!(cookie(&["session="]).is_err());
        assert!(cookie(&["session=a\\b"]).is_err());
        let big = format!(
            "session={}",
            "a".repeat(Limits::default().max_credential + 1)
        );
        assert_eq!(cookie(&[&big]), Err(CarrierError::TooLarge));
    }

    // The version the faster one replaced: the oracle for
    // `same_as_reference` (results and reasons must not change).
    fn reference<'a>(
        headers: &'a HeaderMap,
        name: &str,
        limits: Limits,
    ) -> Result<Option<&'a str>, CarrierError> {
        let values = headers.get_all(COOKIE);
        let mut total = 0usize;
        for v in values.iter() {
            total = total.saturating_add(v.len() + 2);
            if total > limits.max_header {
                return Err(CarrierError::TooLarge);
            }
        }
        let mut found: Option<&'a str> = None;
        for value in values.iter() {
            // Cookie values are ASCII; a line with other bytes holds no cookie of ours.
            let Ok(line) = value.to_str() else { continue };
            for pair in line.split(';') {
                let Some((key, val)) = pair.split_once('=') else {
                    continue;
                };
                if key.trim_matches([' ', '\t']) != name {
                    continue;
                }
                let mut val = val.trim_matches([' ', '\t']);
                if let Some(unquoted) = val.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    val = unquoted;
                }
                if val.is_empty() {
                    return Err(CarrierError::Malformed("empty credential cookie"));
                }
                if val.len() > limits.max_credential {
                    return Err(CarrierError::TooLarge);
                }
                if !val
                    .bytes()
                    .all(|b| is_vchar(b) && b != b'"' && b != b';' && b != b',' && b != b'\\')
                {
                    return Err(CarrierError::Malformed(
                        "credential cookie holds invalid characters",
                    ));
                }
                match found {
                    Some(previous) if previous != val => {
                        return Err(CarrierError::Malformed(
                            "credential cookie sent twice with different values",
                        ));
                    }
                    _ => found = Some(val),
                }
            }
        }
        Ok(found)
    }

    proptest! {
        #[test]
        fn same_as_reference(
            lines in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![
                        Just("session=abc"), Just("session=def"), Just(" session = abc "),
                        Just("session=\"abc\""), Just("session=\"\""), Just("session="),
                        Just("\tsession\t=\tabc\t"), Just("session=a\\b"), Just("session=a,b"),
                        Just("a=1"), Just("garbage"), Just("=="), Just(""), Just("sessionx=abc"),
                        Just("session=abcdefghijklmnop"), Just("session=\"abc"),
                    ],
                    0..5,
                ),
                0..4,
            ),
            cap in 1usize..20,
        ) {
            let mut h = HeaderMap::new();
            for line in &lines {
                if let Ok(v) = HeaderValue::from_str(&line.join(";")) {
                    h.append(COOKIE, v);
                }
            }
            for limits in [Limits::default(), Limits { max_credential: cap, max_header: 60 }] {
                prop_assert_eq!(parse_cookie(&h, "session", limits), reference(&h, "session", limits));
            }
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20_000)) {
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                let mut h = HeaderMap::new();
                h.insert(COOKIE, v);
                if let Ok(Some(val)) = parse_cookie(&h, "session", Limits::default()) {
                    prop_assert!(!val.is_empty() && val.len() <= Limits::default().max_credential);
                }
            }
        }
    }
}
