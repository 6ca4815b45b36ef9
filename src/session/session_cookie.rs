//! [`SessionCookie`]: the name, protection and attributes of the session
//! cookie; issues it, clears it and opens it.

use std::fmt;
use std::time::Duration;

use ::cookie::{Cookie, CookieJar, Key, SameSite};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;

use super::SessionId;
use crate::credential::{Limits, is_cookie_name, is_vchar, parse_cookie};
use crate::error::ConfigError;

/// How the session id is protected inside the cookie.
#[derive(Clone)]
enum Protection {
    /// The cookie value is the session id.
    Plain,
    /// The value is the session id after an HMAC-SHA256 tag (the cookie
    /// crate's signed jar). With the key, HMAC-SHA256 already keyed with
    /// its signing half: the key schedule (two SHA-256 blocks) is done once,
    /// not per upgrade.
    Signed(Key, Box<Hmac<Sha256>>),
    /// The value is the session id encrypted with AES-256-GCM, the cookie
    /// name as associated data (the cookie crate's private jar).
    Private(Key),
}

/// The length of the base64 (standard, padded) HMAC-SHA256 tag that
/// prefixes a signed cookie's value: the cookie crate's format.
const SIGNED_TAG_CHARS: usize = 44;

/// Verifies a value signed by the cookie crate's `SignedJar` (tag, then
/// value) as it does (the tag is standard padded base64 of HMAC-SHA256
/// over the value, compared in constant time) and returns the value.
fn verify_signed<'v>(mac: &Hmac<Sha256>, signed: &'v str) -> Option<&'v str> {
    let tag = signed.get(..SIGNED_TAG_CHARS)?;
    let value = signed.get(SIGNED_TAG_CHARS..)?;
    let mut decoded = [0u8; 48];
    let len = STANDARD.decode_slice(tag, &mut decoded).ok()?;
    let mut mac = mac.clone();
    mac.update(value.as_bytes());
    mac.verify_slice(decoded.get(..len)?).ok()?;
    Some(value)
}

impl Protection {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Signed(..) => "signed",
            Self::Private(_) => "private",
        }
    }
}

/// The session cookie: its name, how the session id inside is protected
/// (plain, [`signed`](Self::signed) or [`private`](Self::private), with the
/// cookie crate's [`Key`]), and the attributes it is issued with.
///
/// One value describes the cookie everywhere: the login route issues it
/// ([`issue`](Self::issue)), the logout route reads and clears it
/// ([`session_id`](Self::session_id), [`clear`](Self::clear)), and
/// [`SessionAuthenticator`](crate::session::SessionAuthenticator) opens it. Signed
/// and private values use the same format as the cookie crate's signed and
/// private jars, as tower-sessions' `with_signed` and `with_private` do, so
/// a [`TowerSessionStore`](crate::session::TowerSessionStore) reads cookies
/// tower-sessions issued with the same key.
///
/// Defaults: `HttpOnly` (always), `Secure`, `SameSite=Lax`, `Path=/`, no
/// `Domain`, no `Max-Age` (the cookie ends with the browser session).
///
/// ```
/// use std::time::Duration;
/// use tower_ws_auth::session::cookie::{Key, SameSite};
/// use tower_ws_auth::session::{SessionCookie, SessionId};
///
/// let cookie = SessionCookie::new("session")?
///     .signed(Key::generate())
///     .same_site(SameSite::Strict)
///     .max_age(Duration::from_secs(3600));
///
/// let id = SessionId::generate()?;
/// let set_cookie = cookie.issue(&id);
/// let text = set_cookie.to_str()?;
/// assert!(text.starts_with("session="));
/// assert!(text.contains("; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=3600"));
///
/// // What the browser sends back opens to the same session id.
/// let value = text.split(';').next().and_then(|pair| pair.strip_prefix("session=")).unwrap_or_default();
/// let opened = cookie.open(value).expect("an issued cookie opens");
/// assert_eq!(opened.digest(), id.digest());
///
/// // A tampered one does not.
/// let mut tampered = value.to_owned();
/// tampered.push('x');
/// assert!(cookie.open(&tampered).is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SessionCookie {
    name: Box<str>,
    protection: Protection,
    secure: bool,
    same_site: SameSite,
    path: Box<str>,
    domain: Option<Box<str>>,
    max_age: Option<Duration>,
}

impl fmt::Debug for SessionCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCookie")
            .field("name", &self.name)
            .field("protection", &self.protection.as_str())
            .field("secure", &self.secure)
            .field("same_site", &self.same_site)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("max_age", &self.max_age)
            .finish()
    }
}

/// `true` for a `Path` or `Domain` attribute value that cannot break out of
/// its attribute: visible ASCII without `;`.
fn is_attribute_value(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| is_vchar(b) && b != b';')
}

impl SessionCookie {
    /// A plain session cookie named `name`: its value is the session id.
    /// Make it [`signed`](Self::signed) or [`private`](Self::private) unless
    /// the ids are long random values checked by the store alone.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] if `name` is not a valid cookie name
    /// (an RFC 6265 token).
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        if !is_cookie_name(name) {
            return Err(ConfigError::setting("cookie name", "not an RFC 6265 token"));
        }
        Ok(Self {
            name: name.into(),
            protection: Protection::Plain,
            secure: true,
            same_site: SameSite::Lax,
            path: "/".into(),
            domain: None,
            max_age: None,
        })
    }

    /// Signs the cookie with `key` (HMAC-SHA256): the client can read the
    /// session id but not forge one. Same format as tower-sessions'
    /// `with_signed`.
    #[must_use]
    pub fn signed(mut self, key: Key) -> Self {
        let mac = match Hmac::<Sha256>::new_from_slice(key.signing()) {
            Ok(mac) => mac,
            // HMAC takes keys of any length.
            Err(_) => unreachable!("HMAC accepts every key length"),
        };
        self.protection = Protection::Signed(key, Box::new(mac));
        self
    }

    /// Encrypts the cookie with `key` (AES-256-GCM, authenticated with the
    /// cookie name): the client can neither read nor forge the session id.
    /// Same format as tower-sessions' `with_private`.
    #[must_use]
    pub fn private(mut self, key: Key) -> Self {
        self.protection = Protection::Private(key);
        self
    }

    /// Sets the `Secure` attribute (default `true`). Turn it off only for
    /// plain-HTTP development: browsers drop `Secure` cookies over `http:`
    /// except on `localhost`.
    #[must_use]
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets the `SameSite` attribute (default `Lax`). `SameSite=None`
    /// cookies must also be `Secure`.
    #[must_use]
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Sets the `Path` attribute (default `/`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] if `path` does not start with `/`, or
    /// holds a `;`, a space or a non-ASCII or control character.
    pub fn path(mut self, path: &str) -> Result<Self, ConfigError> {
        if !(path.starts_with('/') && is_attribute_value(path)) {
            return Err(ConfigError::setting(
                "cookie path",
                "must start with / and hold visible ASCII without ;",
            ));
        }
        self.path = path.into();
        Ok(self)
    }

    /// Sets the `Domain` attribute (default none: the cookie goes back to
    /// the host that set it only).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] if `domain` is empty or holds a `;`,
    /// a space or a non-ASCII or control character.
    pub fn domain(mut self, domain: &str) -> Result<Self, ConfigError> {
        if !is_attribute_value(domain) {
            return Err(ConfigError::setting(
                "cookie domain",
                "must be non-empty visible ASCII without ;",
            ));
        }
        self.domain = Some(domain.into());
        Ok(self)
    }

    /// Sets the `Max-Age` attribute, in whole seconds (default none: the
    /// cookie lasts until the browser closes). Match it to the session's
    /// time to live.
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The cookie name, for [`WsAuthLayer::cookie`](crate::WsAuthLayer::cookie).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `Set-Cookie` value that gives the browser session `id`, signed or
    /// encrypted as configured, with this cookie's attributes.
    ///
    /// ```
    /// use axum::http::{StatusCode, header::SET_COOKIE};
    /// use axum::response::IntoResponse;
    /// use tower_ws_auth::{session::{MemorySessionStore, SessionCookie}};
    ///
    /// async fn login(store: MemorySessionStore<String>, cookie: SessionCookie, user: String) -> impl IntoResponse {
    ///     match store.create(user) {
    ///         Ok(id) => (StatusCode::NO_CONTENT, [(SET_COOKIE, cookie.issue(&id))]).into_response(),
    ///         Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    ///     }
    /// }
    /// ```
    pub fn issue(&self, id: &SessionId) -> HeaderValue {
        let mut cookie = self.attributes(id.expose_secret().to_owned());
        if let Some(max_age) = self.max_age {
            let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            cookie.set_max_age(::cookie::time::Duration::seconds(seconds));
        }
        to_header_value(&self.seal(cookie))
    }

    /// The `Set-Cookie` value that removes the cookie from the browser: an
    /// empty value, `Max-Age=0` and an expiry in the past, with the same
    /// `Path` and `Domain`. Delete the session from the store too.
    ///
    /// ```
    /// use tower_ws_auth::session::SessionCookie;
    ///
    /// let clear = SessionCookie::new("session")?.clear();
    /// let text = clear.to_str()?;
    /// assert!(text.starts_with("session=;"));
    /// assert!(text.contains("Max-Age=0"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) -> HeaderValue {
        let mut cookie = self.attributes(String::new());
        cookie.make_removal();
        to_header_value(&cookie)
    }

    /// The session id of the cookie in a request's `Cookie` headers, if it
    /// is there and opens (see [`open`](Self::open)): for a logout route,
    /// to delete the session.
    ///
    /// ```
    /// use http::{HeaderMap, HeaderValue, header::COOKIE};
    /// use tower_ws_auth::session::{SessionCookie, SessionId};
    ///
    /// let cookie = SessionCookie::new("session")?;
    /// let id = SessionId::generate()?;
    /// let mut headers = HeaderMap::new();
    /// headers.insert(COOKIE, HeaderValue::from_str(&format!("theme=dark; session={}", id.expose_secret()))?);
    /// assert_eq!(cookie.session_id(&headers).map(|found| *found.digest()), Some(*id.digest()));
    /// assert!(cookie.session_id(&HeaderMap::new()).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn session_id(&self, headers: &HeaderMap) -> Option<SessionId> {
        let value = parse_cookie(headers, &self.name, Limits::default()).ok()??;
        self.open(value)
    }

    /// Opens a cookie value as the browser sent it: verifies its signature
    /// or decrypts it (with this cookie's name), then reads the session id.
    /// `None` if it does not verify or holds no valid [`SessionId`]. No
    /// store is involved.
    pub fn open(&self, value: &str) -> Option<SessionId> {
        match &self.protection {
            Protection::Plain => SessionId::parse(value),
            Protection::Signed(_, mac) => SessionId::parse(verify_signed(mac, value)?),
            Protection::Private(key) => {
                let cookie = Cookie::new(self.name.to_string(), value.to_owned());
                let decrypted = CookieJar::new().private(key).decrypt(cookie)?;
                SessionId::parse(decrypted.value())
            }
        }
    }

    /// A cookie with this cookie's name, `value` and attributes (no
    /// `Max-Age`).
    fn attributes(&self, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::new(self.name.to_string(), value);
        cookie.set_http_only(true);
        cookie.set_secure(self.secure);
        cookie.set_same_site(self.same_site);
        cookie.set_path(self.path.to_string());
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.to_string());
        }
        cookie
    }

    /// Signs or encrypts `cookie`'s value as configured.
    fn seal(&self, cookie: Cookie<'static>) -> Cookie<'static> {
        let mut jar = CookieJar::new();
        match &self.protection {
            Protection::Plain => return cookie,
            Protection::Signed(key, _) => jar.signed_mut(key).add(cookie),
            Protection::Private(key) => jar.private_mut(key).add(cookie),
        }
        // The jar holds exactly the cookie just added, sealed.
        jar.delta().next().cloned().unwrap_or_else(|| {
            // Unreachable; an empty value opens to no session, so this fails closed.
            Cookie::new(self.name.to_string(), "")
        })
    }
}

/// A `Set-Cookie` header value. Every part of the cookie is visible ASCII:
/// the name and attributes are checked when configured, values are
/// base64 or base64url, dates are formatted by the cookie crate.
#[allow(
    clippy::expect_used,
    reason = "every byte is visible ASCII or a space by construction"
)]
fn to_header_value(cookie: &Cookie<'_>) -> HeaderValue {
    HeaderValue::from_str(&cookie.to_string()).expect("a session cookie is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the cookie crate's own signed jar says about `value`.
    fn cookie_crate_verify(key: &Key, value: &str) -> Option<String> {
        CookieJar::new()
            .signed(key)
            .verify(Cookie::new("session", value.to_owned()))
            .map(|c| c.value().to_owned())
    }

    fn signed_by_cookie_crate(key: &Key, value: &str) -> String {
        let mut jar = CookieJar::new();
        jar.signed_mut(key)
            .add(Cookie::new("session", value.to_owned()));
        jar.delta()
            .next()
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    proptest::proptest! {
        #[test]
        fn signed_verification_is_the_cookie_crates(
            value in "[ -~]{0,60}",
            flip in proptest::option::of(0usize..110),
            junk in "[ -~é]{0,80}",
        ) {
            let key = Key::from(&[7u8; 64]);
            let SessionCookie { protection: Protection::Signed(_, mac), .. } =
                SessionCookie::new("session").unwrap().signed(key.clone())
            else {
                panic!("signed");
            };
            let mut signed = signed_by_cookie_crate(&key, &value);
            if let Some(at) = flip
                && at < signed.len()
                && signed.is_char_boundary(at)
                && signed.is_char_boundary(at + 1)
            {
                let replacement = if signed.as_bytes()[at] == b'A' { "B" } else { "A" };
                signed.replace_range(at..at + 1, replacement);
            }
            for candidate in [signed.as_str(), junk.as_str()] {
                proptest::prop_assert_eq!(
                    verify_signed(&mac, candidate).map(str::to_owned),
                    cookie_crate_verify(&key, candidate)
                );
            }
        }
    }

    fn value_of(set_cookie: &HeaderValue) -> String {
        let text = set_cookie.to_str().unwrap();
        let pair = text.split(';').next().unwrap();
        pair.split_once('=').unwrap().1.to_owned()
    }

    #[test]
    fn each_protection_round_trips_and_refuses_tampering() {
        let key = Key::generate();
        let other = Key::generate();
        let id = SessionId::generate().unwrap();
        for cookie in [
            SessionCookie::new("sid").unwrap(),
            SessionCookie::new("sid").unwrap().signed(key.clone()),
            SessionCookie::new("sid").unwrap().private(key.clone()),
        ] {
            let value = value_of(&cookie.issue(&id));
            let opened = cookie.open(&value).unwrap();
            assert_eq!(opened.expose_secret(), id.expose_secret());

            // Flip one character anywhere: nothing opens.
            for i in 0..value.len() {
                let mut bytes = value.clone().into_bytes();
                bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                let tampered = String::from_utf8(bytes).unwrap();
                if let Some(opened) = cookie.open(&tampered) {
                    // Only a plain cookie opens, to another (unknown) id.
                    assert!(matches!(cookie.protection, Protection::Plain));
                    assert_ne!(opened.expose_secret(), id.expose_secret());
                }
            }
        }

        // Signed: the id is readable but a bare id or another key's tag fails.
        let signed = SessionCookie::new("sid").unwrap().signed(key.clone());
        let value = value_of(&signed.issue(&id));
        assert!(value.ends_with(id.expose_secret()));
        assert!(signed.open(id.expose_secret()).is_none());
        assert!(
            SessionCookie::new("sid")
                .unwrap()
                .signed(other.clone())
                .open(&value)
                .is_none()
        );

        // Private: the id is hidden, and bound to the key and the name.
        let private = SessionCookie::new("sid").unwrap().private(key.clone());
        let value = value_of(&private.issue(&id));
        assert!(!value.contains(id.expose_secret()));
        assert!(
            SessionCookie::new("sid")
                .unwrap()
                .private(other)
                .open(&value)
                .is_none()
        );
        assert!(
            SessionCookie::new("other")
                .unwrap()
                .private(key)
                .open(&value)
                .is_none()
        );
    }

    #[test]
    fn attributes() {
        let id = SessionId::parse("abcdefghijklmnopqrstuv").unwrap();
        let cookie = SessionCookie::new("s")
            .unwrap()
            .secure(false)
            .same_site(SameSite::Strict)
            .path("/app")
            .unwrap()
            .domain("example.com")
            .unwrap()
            .max_age(Duration::from_secs(90));
        assert_eq!(
            cookie.issue(&id),
            "s=abcdefghijklmnopqrstuv; HttpOnly; SameSite=Strict; Path=/app; Domain=example.com; Max-Age=90"
        );
        let clear = cookie.clear();
        let clear = clear.to_str().unwrap();
        assert!(
            clear.starts_with(
                "s=; HttpOnly; SameSite=Strict; Path=/app; Domain=example.com; Max-Age=0; Expires="
            ),
            "{clear}"
        );
        assert_eq!(
            SessionCookie::new("s").unwrap().issue(&id),
            "s=abcdefghijklmnopqrstuv; HttpOnly; SameSite=Lax; Secure; Path=/"
        );
        let huge = SessionCookie::new("s")
            .unwrap()
            .max_age(Duration::MAX)
            .issue(&id);
        assert!(huge.to_str().unwrap().contains("Max-Age="));
    }

    #[test]
    fn debug_hides_the_key() {
        let shown = format!(
            "{:?}",
            SessionCookie::new("s")
                .unwrap()
                .private(Key::from(&[7u8; 64]))
        );
        assert!(shown.contains("private"), "{shown}");
        assert!(!shown.contains("7, 7"), "{shown}");
    }

    #[test]
    fn path_and_domain_injection_are_refused() {
        let cookie = SessionCookie::new("s").unwrap();
        for path in ["/; Domain=evil.example", "app", "", "/a b", "/é"] {
            assert!(cookie.clone().path(path).is_err(), "{path:?}");
        }
        for domain in ["example.com; Secure", "", "a b", "exämple.com"] {
            assert!(cookie.clone().domain(domain).is_err(), "{domain:?}");
        }
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["a=b", "", "a b", "a;b", "é"] {
            assert!(SessionCookie::new(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn session_id_from_headers() {
        let cookie = SessionCookie::new("sid").unwrap().signed(Key::generate());
        let id = SessionId::generate().unwrap();
        let mut headers = HeaderMap::new();
        let line = format!("a=1; sid={}", value_of(&cookie.issue(&id)));
        headers.insert(http::header::COOKIE, HeaderValue::from_str(&line).unwrap());
        assert_eq!(
            cookie.session_id(&headers).unwrap().expose_secret(),
            id.expose_secret()
        );
        let line = format!("sid={}", id.expose_secret());
        headers.insert(http::header::COOKIE, HeaderValue::from_str(&line).unwrap());
        assert!(cookie.session_id(&headers).is_none());
    }
}
