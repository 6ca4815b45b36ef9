//! [`OriginPolicy`]: the defence against cross-site WebSocket hijacking.
//!
//! Browsers attach cookies to a WebSocket handshake whatever page opened it,
//! and the same-origin policy does not apply to WebSockets. A server that
//! authenticates upgrades by cookie must therefore check the `Origin` header
//! the browser sends, or any site its users visit can open a socket in their
//! name.

use std::fmt;

use http::HeaderMap;
use http::header::ORIGIN;

use crate::error::ConfigError;

/// An allow-list of origins, compared exactly as scheme + host + port.
///
/// * Entries are `scheme://host[:port]`; scheme and host are compared
///   case-insensitively, and a default port (80 for `http`/`ws`, 443 for
///   `https`/`wss`) equals no port.
/// * `https://*.example.com` allows every subdomain of `example.com` (at any
///   depth) but not `example.com` itself. There is no other wildcard and no
///   substring or suffix matching.
/// * `Origin: null` (sandboxed frames, `file:` pages, some redirects) is
///   refused unless [`allow_null`](Self::allow_null) is set.
/// * A request with several `Origin` headers is malformed (400).
/// * A request without one (browsers always send `Origin` on a WebSocket
///   handshake, non-browser clients usually do not) is refused unless
///   [`allow_missing`](Self::allow_missing) is set.
///
/// ```
/// use tower_ws_auth::OriginPolicy;
///
/// let policy = OriginPolicy::from_origins(["https://app.example.com", "https://*.example.org:8443"])?
///     .allow_missing(false);
/// assert!(policy.allows("https://APP.example.com:443"));
/// assert!(policy.allows("https://a.b.example.org:8443"));
/// assert!(!policy.allows("https://example.org:8443"));
/// assert!(!policy.allows("https://app.example.com.evil.net"));
/// assert!(!policy.allows("http://app.example.com"));
/// assert!(!policy.allows("null"));
/// # Ok::<(), tower_ws_auth::ConfigError>(())
/// ```
#[derive(Clone, Default)]
pub struct OriginPolicy {
    exact: Vec<Origin>,
    wildcard: Vec<Origin>,
    allow_null: bool,
    allow_missing: bool,
}

impl fmt::Debug for OriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginPolicy")
            .field("exact", &self.exact)
            .field("wildcard", &self.wildcard)
            .field("allow_null", &self.allow_null)
            .field("allow_missing", &self.allow_missing)
            .finish()
    }
}

/// A parsed, normalised origin. For wildcard entries `host` is the suffix
/// after `*.`.
#[derive(Clone, PartialEq, Eq)]
struct Origin {
    scheme: Box<str>,
    host: Box<str>,
    port: u16,
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// An origin as read from a request, borrowed and not yet lower-cased.
struct RawOrigin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
}

/// The outcome of checking a request's `Origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OriginVerdict {
    Allowed,
    /// Refused: 403. The reason is for logs.
    Refused(&'static str),
    /// Several `Origin` headers: 400.
    Malformed,
}

/// Longest `Origin` value looked at; longer ones are refused.
const MAX_ORIGIN_LEN: usize = 1024;

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        Some(443)
    } else {
        None
    }
}

fn is_reg_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !host.starts_with('.')
        && !host.ends_with('.')
        && !host.as_bytes().windows(2).any(|w| w == b"..")
}

fn is_ip_literal(host: &str) -> bool {
    host.len() > 2
        && host.starts_with('[')
        && host.ends_with(']')
        && host
            .bytes()
            .skip(1)
            .take(host.len() - 2)
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
}

/// Parses `scheme://host[:port]` (no path, query, fragment or userinfo).
/// `s.split_once("://")`, with a fast path for the usual case where the
/// first `:` starts the separator (so disabling the fast path is an
/// equivalent mutant; `split_scheme_is_split_once` checks the two agree).
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let colon = s.find(':')?;
    match s.split_at(colon) {
        (scheme, rest) if rest.starts_with("://") => Some((scheme, rest.get(3..).unwrap_or(""))),
        _ => s.split_once("://"),
    }
}

fn parse_origin(s: &str) -> Result<RawOrigin<'_>, &'static str> {
    if s.len() > MAX_ORIGIN_LEN {
        return Err("origin too long");
    }
    let (scheme, rest) = split_scheme(s).ok_or("missing scheme")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return Err("invalid scheme");
    }
    // An IPv6 literal contains colons; the port separator is after `]`.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest.ends_with(']') => {
            let (host, port) = rest.split_at(i);
            let digits = port.get(1..).unwrap_or("");
            // A serialized origin writes its port in decimal without a sign
            // or leading zeros (`:+443`, `:0443` are not `:443`; so never
            // port 0); `u16` refuses empty and out-of-range ports.
            if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err("invalid port");
            }
            let port: u16 = digits.parse().map_err(|_| "invalid port")?;
            (host, Some(port))
        }
        _ => (rest, None),
    };
    if !(is_reg_name(host) || is_ip_literal(host)) {
        return Err("invalid host");
    }
    let port = match port.or_else(|| default_port(scheme)) {
        Some(p) => p,
        None => return Err("a port is required for this scheme"),
    };
    Ok(RawOrigin { scheme, host, port })
}

impl OriginPolicy {
    /// An empty policy: every origin is refused until some are allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy allowing `origins`: each `scheme://host[:port]`, or
    /// `scheme://*.domain[:port]` for every subdomain of `domain`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidOrigin`] for an entry with a path, userinfo,
    /// an invalid host or port, or a scheme without default port and no port.
    pub fn from_origins<I>(origins: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut policy = Self::new();
        for origin in origins {
            policy = policy.allow(origin.as_ref())?;
        }
        Ok(policy)
    }

    /// Adds one origin (or `*.` wildcard entry) to the allow-list.
    ///
    /// # Errors
    ///
    /// As for [`from_origins`](Self::from_origins).
    pub fn allow(mut self, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidOrigin {
            origin: origin.to_owned(),
            reason,
        };
        let trimmed = origin.strip_suffix('/').unwrap_or(origin);
        let (candidate, wildcard) = match trimmed.split_once("://*.") {
            Some((scheme, rest)) => (format!("{scheme}://{rest}"), true),
            None => (trimmed.to_owned(), false),
        };
        let raw = parse_origin(&candidate).map_err(invalid)?;
        if wildcard && is_ip_literal(raw.host) {
            return Err(invalid("wildcards apply to domain names only"));
        }
        let entry = Origin {
            scheme: raw.scheme.to_ascii_lowercase().into(),
            host: raw.host.to_ascii_lowercase().into(),
            port: raw.port,
        };
        if wildcard {
            self.wildcard.push(entry);
        } else {
            self.exact.push(entry);
        }
        Ok(self)
    }

    /// Allows `Origin: null`. Only for applications that really serve
    /// sandboxed or `file:` pages: any page can make its origin `null`.
    #[must_use]
    pub fn allow_null(mut self, allow: bool) -> Self {
        self.allow_null = allow;
        self
    }

    /// Lets requests without `Origin` through (default `false`: refused
    /// with 403). For policies that must also admit non-browser clients,
    /// which cannot be hijacked cross-site: browsers always send `Origin`
    /// on a WebSocket handshake.
    #[must_use]
    pub fn allow_missing(mut self, allow: bool) -> Self {
        self.allow_missing = allow;
        self
    }

    /// `true` if the serialized origin `origin` (an `Origin` header value)
    /// is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        self.check_value(origin).is_ok()
    }

    /// `true` if a request with these headers passes the policy exactly as
    /// a cookie-authenticated upgrade must: one `Origin` header that is
    /// allowed (several are refused), `null` only with
    /// [`allow_null`](Self::allow_null), and no header only with
    /// [`allow_missing`](Self::allow_missing). Use it on the routes that share the
    /// cookie's ambient authority, such as login and logout forms
    /// (`SameSite=Lax` does not stop a same-site page on another port).
    ///
    /// ```
    /// use http::{HeaderMap, HeaderValue, header::ORIGIN};
    /// use tower_ws_auth::OriginPolicy;
    ///
    /// let policy = OriginPolicy::from_origins(["https://app.example.com"])?;
    /// let mut headers = HeaderMap::new();
    /// assert!(!policy.allows_headers(&headers), "no Origin: refused by default");
    /// headers.insert(ORIGIN, HeaderValue::from_static("https://app.example.com"));
    /// assert!(policy.allows_headers(&headers));
    /// headers.append(ORIGIN, HeaderValue::from_static("https://app.example.com"));
    /// assert!(!policy.allows_headers(&headers), "several Origin headers");
    /// # Ok::<(), tower_ws_auth::ConfigError>(())
    /// ```
    pub fn allows_headers(&self, headers: &HeaderMap) -> bool {
        self.check(headers) == OriginVerdict::Allowed
    }

    fn check_value(&self, origin: &str) -> Result<(), &'static str> {
        if origin.eq_ignore_ascii_case("null") {
            return if self.allow_null {
                Ok(())
            } else {
                Err("origin null is not allowed")
            };
        }
        let raw = parse_origin(origin).map_err(|_| "origin is not a valid serialized origin")?;
        let same = |e: &Origin| e.port == raw.port && e.scheme.eq_ignore_ascii_case(raw.scheme);
        if self
            .exact
            .iter()
            .any(|e| same(e) && e.host.eq_ignore_ascii_case(raw.host))
        {
            return Ok(());
        }
        let host = raw.host.as_bytes();
        // `host` is a valid host name, which never starts with a dot, so the
        // one length this bound could wrongly admit or refuse (`.suffix`)
        // never reaches it: mutating `> len + 1` to `>= len + 1` or
        // `> len * 1` is equivalent (excluded from the mutation score).
        let matches_wildcard = |e: &Origin| {
            let suffix = e.host.as_bytes();
            host.len() > suffix.len() + 1
                && host
                    .get(host.len() - suffix.len() - 1..)
                    .and_then(|tail| tail.split_first())
                    .is_some_and(|(dot, tail)| *dot == b'.' && tail.eq_ignore_ascii_case(suffix))
        };
        if self.wildcard.iter().any(|e| same(e) && matches_wildcard(e)) {
            return Ok(());
        }
        Err("origin not in the allow-list")
    }

    /// Checks a request's `Origin` header(s).
    pub(crate) fn check(&self, headers: &HeaderMap) -> OriginVerdict {
        let mut values = headers.get_all(ORIGIN).iter();
        let Some(value) = values.next() else {
            return if self.allow_missing {
                OriginVerdict::Allowed
            } else {
                OriginVerdict::Refused("no Origin header")
            };
        };
        if values.next().is_some() {
            return OriginVerdict::Malformed;
        }
        let Ok(origin) = value.to_str() else {
            return OriginVerdict::Refused("origin is not ASCII");
        };
        match self.check_value(origin) {
            Ok(()) => OriginVerdict::Allowed,
            Err(reason) => OriginVerdict::Refused(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn policy() -> OriginPolicy {
        OriginPolicy::from_origins([
            "https://app.example.com",
            "http://localhost:3000",
            "https://*.example.org",
            "http://[::1]:8080",
        ])
        .unwrap()
    }

    #[test]
    fn exact_matches_after_normalising() {
        let p = policy();
        for ok in [
            "https://app.example.com",
            "HTTPS://APP.EXAMPLE.COM",
            "https://app.example.com:443",
            "http://localhost:3000",
            "https://a.example.org",
            "https://a.b.example.org:443",
            "http://[::1]:8080",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
    }

    #[test]
    fn refuses_lookalikes() {
        let p = policy();
        for bad in [
            "https://app.example.com.evil.com",
            "https://evilapp.example.com",
            "https://app.example.co",
            "http://app.example.com",
            "https://app.example.com:8443",
            "http://localhost:3001",
            "http://localhost",
            "https://example.org",
            "https://evilexample.org",
            "https://a.example.org:8443",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://user@app.example.com",
            "null",
            "",
            "app.example.com",
            "https://",
            "https://app..example.com",
            "https://app.example.com:0",
            "https://app.example.com:99999",
        ] {
            assert!(!p.allows(bad), "{bad}");
        }
    }

    #[test]
    fn null_and_missing_rules() {
        let p = policy();
        let mut h = HeaderMap::new();
        assert!(matches!(p.check(&h), OriginVerdict::Refused(_)));
        let lenient = policy().allow_missing(true);
        assert_eq!(lenient.check(&h), OriginVerdict::Allowed);
        h.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(matches!(p.check(&h), OriginVerdict::Refused(_)));
        assert_eq!(policy().allow_null(true).check(&h), OriginVerdict::Allowed);
        h.append(ORIGIN, HeaderValue::from_static("https://app.example.com"));
        assert_eq!(p.check(&h), OriginVerdict::Malformed);
        assert!(!p.allows_headers(&h), "several Origin headers");
        h.insert(ORIGIN, HeaderValue::from_static("https://app.example.com"));
        assert!(p.allows_headers(&h));
        h.insert(ORIGIN, HeaderValue::from_static("https://evil.example.com"));
        assert!(!p.allows_headers(&h));
    }

    #[test]
    fn debug_shows_the_normalised_entries() {
        let p =
            OriginPolicy::from_origins(["HTTPS://App.Example.com", "http://*.example.org:8080"])
                .unwrap()
                .allow_null(true);
        assert_eq!(
            format!("{p:?}"),
            "OriginPolicy { exact: [https://app.example.com:443], \
             wildcard: [http://example.org:8080], allow_null: true, allow_missing: false }"
        );
    }

    #[test]
    fn rejects_bad_entries() {
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "https://*.[::1]",
            "ftp://files.example.com",
            "https://a b",
            "https://x:70000",
        ] {
            assert!(OriginPolicy::from_origins([bad]).is_err(), "{bad}");
        }
        assert!(
            OriginPolicy::from_origins(["ftp://files.example.com:21", "https://x.com/"]).is_ok()
        );
    }

    proptest! {
        #[test]
        fn never_panics(origin in "[ -~]{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let p = policy();
            let _ = p.allows(&origin);
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                let mut h = HeaderMap::new();
                h.insert(ORIGIN, v);
                let _ = p.check(&h);
            }
        }

        #[test]
        fn split_scheme_is_split_once(s in "[a-z:/.]{0,12}") {
            prop_assert_eq!(split_scheme(&s), s.split_once("://"));
        }

        #[test]
        fn subdomains_of_other_domains_never_match(label in "[a-z0-9]{1,10}", domain in "[a-z]{1,10}\\.(com|net)") {
            let p = policy();
            let forged = format!("https://{label}.example.org.{domain}");
            prop_assert!(!p.allows(&forged));
            let prefixed = format!("https://{label}example.org");
            prop_assert!(!p.allows(&prefixed));
        }
    }
}
