//! The query-parameter carrier (opt-in).
//!
//! Query strings end up in access logs, proxies and browser history, so
//! this carrier is off unless configured. When it carries a credential the
//! parameter is removed from the URI before the inner service (and any
//! tracing layer inside this one) sees the request, and the layer itself
//! never logs a query string.

use std::borrow::Cow;

use http::Uri;
use http::uri::PathAndQuery;

use super::{CarrierError, Limits, has_control};

/// `true` if the raw (still encoded) key of a `key=value` pair decodes to
/// `name`. A key without `%` or `+` is its own decoding, the usual case.
fn key_is(raw_key: &str, name: &str) -> bool {
    if !raw_key.bytes().any(|b| b == b'%' || b == b'+') {
        return raw_key == name;
    }
    // `raw_key` holds no `&` or `=`: it parses as one pair with an empty value.
    form_urlencoded::parse(raw_key.as_bytes()).any(|(k, v)| v.is_empty() && k == name)
}

/// The decoded value of a `key=value` pair (`form_urlencoded` rules),
/// borrowed when it needs no decoding.
fn value_of(pair: &str) -> Cow<'_, str> {
    let raw = pair.split_once('=').map_or("", |(_, v)| v);
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(raw);
    }
    form_urlencoded::parse(pair.as_bytes())
        .next()
        .map_or(Cow::Borrowed(""), |(_, v)| v)
}

/// Finds `name` in `query`. A repeated or empty parameter is malformed.
///
/// Keys and values are decoded as `application/x-www-form-urlencoded`
/// (`+` is a space, `%XX` a byte, invalid UTF-8 replaced), but only the
/// ones that need it: a key or value without `%` or `+` is compared or
/// returned as it is.
pub(crate) fn parse_query<'a>(
    query: Option<&'a str>,
    name: &str,
    limits: Limits,
) -> Result<Option<Cow<'a, str>>, CarrierError> {
    let Some(query) = query else { return Ok(None) };
    if query.len() > limits.max_header {
        return Err(CarrierError::TooLarge);
    }
    let mut found: Option<Cow<'a, str>> = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let raw_key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if !key_is(raw_key, name) {
            continue;
        }
        if found.is_some() {
            return Err(CarrierError::Malformed(
                "credential query parameter repeated",
            ));
        }
        let value = value_of(pair);
        if value.is_empty() {
            return Err(CarrierError::Malformed("empty credential query parameter"));
        }
        if value.len() > limits.max_credential {
            return Err(CarrierError::TooLarge);
        }
        if has_control(&value) {
            return Err(CarrierError::Malformed(
                "credential query parameter holds control characters",
            ));
        }
        found = Some(value);
    }
    Ok(found)
}

/// Removes every `name=...` pair from the query of `uri`, for the request
/// the authenticator and the inner service see. A URI that cannot be
/// rebuilt that way loses its whole query; one that cannot even be rebuilt
/// without its query is malformed.
pub(crate) fn strip_from(uri: &mut Uri, name: &str) -> Result<(), CarrierError> {
    *uri = match strip_query_param(uri, name) {
        Some(stripped) => stripped,
        None => Uri::builder()
            .path_and_query(uri.path())
            .build()
            .map_err(|_| CarrierError::Malformed("URI cannot be rebuilt without its query"))?,
    };
    Ok(())
}

/// `uri` without any `name=...` pair in its query; `None` if it cannot be
/// rebuilt (it then keeps nothing of the query at all, see [`strip_from`]).
fn strip_query_param(uri: &Uri, name: &str) -> Option<Uri> {
    let query = uri.query()?;
    let mut path_and_query = String::with_capacity(query.len() + uri.path().len() + 1);
    path_and_query.push_str(uri.path());
    // Every pair but `name`'s, empty ones included, in order.
    let mut kept = 0usize;
    for pair in query.split('&') {
        let raw_key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if !raw_key.is_empty() && key_is(raw_key, name) {
            continue;
        }
        path_and_query.push(if kept == 0 { '?' } else { '&' });
        path_and_query.push_str(pair);
        kept += 1;
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = uri.scheme().cloned();
    parts.authority = uri.authority().cloned();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(query: &str) -> Result<Option<String>, CarrierError> {
        parse_query(Some(query), "token", Limits::default()).map(|o| o.map(Cow::into_owned))
    }

    #[test]
    fn finds_and_decodes() {
        assert_eq!(q("a=1&token=abc%2Edef&b=2"), Ok(Some("abc.def".into())));
        assert_eq!(q("tok=1"), Ok(None));
        assert_eq!(parse_query(None, "token", Limits::default()), Ok(None));
    }

    #[test]
    fn refuses_repeats_and_empties() {
        assert!(q("token=a&token=b").is_err());
        assert!(q("token=a&token=a").is_err());
        assert!(q("token=").is_err());
        assert!(q("token=%0a").is_err());
        let long = format!("token={}", "a".repeat(Limits::default().max_credential + 1));
        assert_eq!(q(&long), Err(CarrierError::TooLarge));
    }

    #[test]
    fn strips_the_parameter() {
        let uri: Uri = "/ws?a=1&token=secret&b=2".parse().unwrap();
        assert_eq!(strip_query_param(&uri, "token").unwrap(), "/ws?a=1&b=2");
        let uri: Uri = "/ws?%74oken=secret".parse().unwrap();
        assert_eq!(strip_query_param(&uri, "token").unwrap(), "/ws");
        let uri: Uri = "http://h:1/ws?token=s".parse().unwrap();
        assert_eq!(strip_query_param(&uri, "token").unwrap(), "http://h:1/ws");
    }

    // The straightforward versions the faster ones replaced: the oracles
    // for `same_as_reference` (results and reasons must not change).
    fn reference_parse(
        query: Option<&str>,
        name: &str,
        limits: Limits,
    ) -> Result<Option<String>, CarrierError> {
        let Some(query) = query else { return Ok(None) };
        if query.len() > limits.max_header {
            return Err(CarrierError::TooLarge);
        }
        let mut found: Option<Cow<'_, str>> = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key != name {
                continue;
            }
            if found.is_some() {
                return Err(CarrierError::Malformed(
                    "credential query parameter repeated",
                ));
            }
            if value.is_empty() {
                return Err(CarrierError::Malformed("empty credential query parameter"));
            }
            if value.len() > limits.max_credential {
                return Err(CarrierError::TooLarge);
            }
            if value.chars().any(char::is_control) {
                return Err(CarrierError::Malformed(
                    "credential query parameter holds control characters",
                ));
            }
            found = Some(value);
        }
        Ok(found.map(Cow::into_owned))
    }
    fn reference_strip(uri: &Uri, name: &str) -> Option<Uri> {
        let query = uri.query()?;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let raw_key = pair.split_once('=').map_or(*pair, |(k, _)| k);
                !form_urlencoded::parse(raw_key.as_bytes()).any(|(k, v)| v.is_empty() && k == name)
            })
            .collect();
        let mut path_and_query = String::with_capacity(query.len() + uri.path().len() + 1);
        path_and_query.push_str(uri.path());
        if !kept.is_empty() {
            path_and_query.push('?');
            path_and_query.push_str(&kept.join("&"));
        }
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
        Uri::from_parts(parts).ok()
    }

    proptest! {
        #[test]
        fn same_as_reference(
            pieces in proptest::collection::vec(
                prop_oneof![
                    Just("token"), Just("tok%65n"), Just("to+ken"), Just("%74oken"), Just("token+"),
                    Just("="), Just("&"), Just("a"), Just("%"), Just("%2"), Just("%zz"), Just("+"),
                    Just("%0a"), Just("%c3%a9"), Just("%ff"), Just("x.y-z"), Just("é"),
                ],
                0..12,
            ),
            cap in 1usize..12,
        ) {
            let query: String = pieces.concat();
            for limits in [Limits::default(), Limits { max_credential: cap, max_header: 40 }] {
                let ours = parse_query(Some(&query), "token", limits).map(|o| o.map(Cow::into_owned));
                prop_assert_eq!(ours, reference_parse(Some(&query), "token", limits));
            }
            if let Ok(uri) = format!("/ws?{query}").parse::<Uri>() {
                prop_assert_eq!(strip_query_param(&uri, "token"), reference_strip(&uri, "token"));
            }
            if let Ok(uri) = format!("https://example.com:8443/ws?{query}").parse::<Uri>() {
                prop_assert_eq!(strip_query_param(&uri, "token"), reference_strip(&uri, "token"));
            }
        }

        #[test]
        fn never_panics(query in "[ -~]{0,3000}") {
            let _ = q(&query);
            if let Ok(uri) = format!("/ws?{query}").parse::<Uri>()
                && let Some(stripped) = strip_query_param(&uri, "token")
            {
                prop_assert_eq!(parse_query(stripped.query(), "token", Limits::default()), Ok(None));
            }
        }
    }
}
