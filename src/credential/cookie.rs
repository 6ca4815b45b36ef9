//! The cookie carrier.
//!
//! A cookie is sent by the browser on its own, whatever page opened the
//! socket, so the layer only accepts it together with an
//! [`OriginPolicy`](crate::OriginPolicy).

use std::borrow::Cow;

use ::cookie::Cookie;
use http::HeaderMap;
use http::header::COOKIE;

use super::{CarrierError, Limits, all_bytes, is_token};

/// `true` if `name` is a valid cookie name: a non-empty RFC 6265 token
/// (RFC 9110 `tchar`s).
pub(crate) fn is_cookie_name(name: &str) -> bool {
    is_token(name.as_bytes())
}

/// A byte a credential cookie value may hold: visible ASCII other than
/// `"`, `;`, `,` and `\`. Branch-free, so the loop over a value vectorises.
fn is_cookie_value_byte(b: u8) -> bool {
    ((0x21..=0x7e).contains(&b)) & (b != b'"') & (b != b';') & (b != b',') & (b != b'\\')
}

/// One `name=value` pair of a `Cookie` line, read by the cookie crate:
/// its name and its value borrowed from the request, or `None` for a piece
/// that holds no pair (no `=`, an empty name).
///
/// A piece that is not UTF-8 is read through a lossy copy: its name still
/// compares as sent (a name is ASCII), and its value, which then holds
/// U+FFFD, is not returned: the caller refuses it if the name is ours.
fn pair(piece: &[u8]) -> Option<(Cow<'_, str>, Option<&str>)> {
    match std::str::from_utf8(piece) {
        Ok(text) => {
            let cookie = Cookie::parse(text).ok()?;
            Some((Cow::Borrowed(cookie.name_raw()?), cookie.value_raw()))
        }
        Err(_) => {
            let lossy = String::from_utf8_lossy(piece);
            let cookie = Cookie::parse(lossy.as_ref()).ok()?;
            Some((Cow::Owned(cookie.name().to_owned()), None))
        }
    }
}

/// Finds the cookie `name` in every `Cookie` header line (HTTP/2 clients
/// send one line per cookie).
///
/// Each line is split on `;` as raw bytes and each piece is one pair
/// ([`Cookie::parse`]): a piece that holds no pair, or another cookie with
/// bytes outside ASCII (browsers send UTF-8 values such as
/// `lang=français`), is skipped on its own and hides nothing else on the
/// line. The cookie `name` itself must hold a valid credential value: an
/// empty or invalid value is malformed. The same name twice with different
/// values, on one line or on several, is ambiguous and refused.
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
    for line in values.iter() {
        for piece in line.as_bytes().split(|&b| b == b';') {
            let Some((key, raw)) = pair(piece) else {
                continue;
            };
            if key != name {
                continue;
            }
            let Some(raw) = raw else {
                return Err(CarrierError::Malformed(
                    "credential cookie holds invalid characters",
                ));
            };
            let val = raw
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(raw);
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
    use crate::credential::is_vchar;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn cookie(lines: &[&str]) -> Result<Option<String>, CarrierError> {
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        cookie_bytes(&lines)
    }

    fn cookie_bytes(lines: &[&[u8]]) -> Result<Option<String>, CarrierError> {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(COOKIE, HeaderValue::from_bytes(l).unwrap());
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

    // Reference oracle: the hand-written reader the cookie crate replaced.
    // It skipped whole lines holding a byte outside visible ASCII (the bug
    // `non_ascii_cookies_hide_nothing` covers); on the ASCII lines of
    // `same_as_reference` the results and reasons must not change.
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

    #[test]
    fn non_ascii_cookies_hide_nothing() {
        // Browsers send every cookie of the host on one line, UTF-8 values included.
        let line = "lang=français; session=abc; city=Zürich".as_bytes();
        assert_eq!(cookie_bytes(&[line]), Ok(Some("abc".into())));
        assert_eq!(
            cookie_bytes(&[b"x=\xff\xfe; session=abc".as_slice()]),
            Ok(Some("abc".into()))
        );
        assert_eq!(
            cookie_bytes(&[b"x=\xff; session=abc; \xc3=1".as_slice()]),
            Ok(Some("abc".into()))
        );
        // The duplicate rule holds across a line with non-ASCII bytes.
        assert!(cookie_bytes(&[b"session=abc", "lang=é; session=def".as_bytes()]).is_err());
        assert!(cookie_bytes(&[b"session=abc", b"x=\xff; session=def"]).is_err());
        assert_eq!(
            cookie_bytes(&[b"session=abc", "lang=é; session=abc".as_bytes()]),
            Ok(Some("abc".into()))
        );
        // Our cookie with a non-ASCII value, UTF-8 or not, is malformed.
        for value in [
            "session=abcé".as_bytes(),
            b"session=ab\xffc",
            b"a=1; session=\x80",
        ] {
            assert_eq!(
                cookie_bytes(&[value]),
                Err(CarrierError::Malformed(
                    "credential cookie holds invalid characters"
                )),
                "{value:?}"
            );
        }
        // A non-ASCII name is another cookie.
        assert_eq!(cookie_bytes(&["séssion=abc".as_bytes()]), Ok(None));
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
        fn finds_the_cookie_beside_any_other_bytes(
            before in proptest::collection::vec(any::<u8>(), 0..40),
            after in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            // Whatever other pieces hold (no `;`, no `session=`), the cookie is found.
            let clean = |v: Vec<u8>| -> Vec<u8> {
                v.into_iter().filter(|&b| b != b';' && b != b'\\' && (b >= 0x20 || b == b'\t') && b != 0x7f).collect()
            };
            let (before, after) = (clean(before), clean(after));
            prop_assume!(!before.windows(7).any(|w| w == b"session") && !after.windows(7).any(|w| w == b"session"));
            let mut line = before;
            line.extend_from_slice(b"; session=abc; ");
            line.extend_from_slice(&after);
            prop_assert_eq!(cookie_bytes(&[&line]), Ok(Some("abc".to_owned())));
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
