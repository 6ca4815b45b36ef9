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

use super::{CarrierError, Limits};

/// Finds `name` in `query`. A repeated or empty parameter is malformed.
pub(crate) fn parse_query(
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

/// `uri` without any `name=...` pair in its query; `None` if it cannot be
/// rebuilt (it then keeps nothing of the query at all, see the caller).
pub(crate) fn strip_query_param(uri: &Uri, name: &str) -> Option<Uri> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(query: &str) -> Result<Option<String>, CarrierError> {
        parse_query(Some(query), "token", Limits::default())
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

    proptest! {
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
