//! [`Rejection`]: why an upgrade was refused, and the HTTP response for it.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::credential::Carrier;
use crate::error::AuthError;

/// The kind of a [`Rejection`], which decides its status and challenge.
///
/// | kind | status | `WWW-Authenticate` |
/// |---|---|---|
/// | `MissingCredential` | 401 | `Bearer` (no `error`) |
/// | `InvalidToken` | 401 | `Bearer error="invalid_token"` |
/// | `InvalidRequest` | 400 | `Bearer error="invalid_request"` |
/// | `InsufficientScope` | 403 | `Bearer error="insufficient_scope"` |
/// | `Forbidden` | 403 | none |
/// | `OriginRefused` | 403 | none |
/// | `CredentialTooLarge` | 431 | none |
/// | `Unavailable` | 503 + `Retry-After` | none |
/// | `Throttled` | 429 + `Retry-After` | none |
/// | `TooManyConnections` | 429 + `Retry-After` | none |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credential in any configured carrier.
    MissingCredential,
    /// A malformed carrier or conflicting credentials.
    InvalidRequest,
    /// An invalid, forged, expired or revoked credential.
    InvalidToken,
    /// A valid credential without the required scope.
    InsufficientScope,
    /// A valid credential, refused by the authenticator for another reason.
    Forbidden,
    /// The `Origin` is not allowed.
    OriginRefused,
    /// The credential or a header carrying it is over its size cap.
    CredentialTooLarge,
    /// The authenticator's backend could not answer.
    Unavailable,
    /// Too many failed authentications from the client's address
    /// ([`FailedAuthLimit`](crate::throttle::FailedAuthLimit)); the
    /// authenticator did not run.
    Throttled,
    /// The subject holds as many live sockets as it may
    /// ([`AuthError::TooManyConnections`]).
    TooManyConnections,
}

impl RejectionKind {
    /// The HTTP status for this kind.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MissingCredential | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::InsufficientScope | Self::Forbidden | Self::OriginRefused => {
                StatusCode::FORBIDDEN
            }
            Self::CredentialTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Throttled | Self::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingCredential => "missing_credential",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::Forbidden => "forbidden",
            Self::OriginRefused => "origin_refused",
            Self::CredentialTooLarge => "credential_too_large",
            Self::Unavailable => "unavailable",
            Self::Throttled => "throttled",
            Self::TooManyConnections => "too_many_connections",
        }
    }
}

/// A refused request: what went wrong, where the credential came from, and
/// everything needed to answer it.
///
/// [`reason`](Self::reason) is for logs, never for the client. The default
/// response ([`DefaultRejectionHandler`]) carries the status, the RFC 6750
/// challenge and a generic body; a custom [`RejectionHandler`] starts from
/// [`response_builder`](Self::response_builder) to keep them.
#[derive(Clone)]
pub struct Rejection {
    kind: RejectionKind,
    reason: Cow<'static, str>,
    carrier: Option<Carrier>,
    scope: Option<Cow<'static, str>>,
    retry_after: Duration,
    realm: Option<HeaderValue>,
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("kind", &self.kind)
            .field("reason", &self.reason)
            .field("carrier", &self.carrier)
            .field("scope", &self.scope)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

/// Default `Retry-After` for [`RejectionKind::Unavailable`].
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Rejection {
    /// A rejection of `kind`; `reason` goes to logs only.
    pub fn new(kind: RejectionKind, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            reason: reason.into(),
            carrier: None,
            scope: None,
            retry_after: DEFAULT_RETRY_AFTER,
            realm: None,
        }
    }

    /// The rejection for an authenticator's error.
    pub fn from_auth_error(error: &AuthError) -> Self {
        match error {
            AuthError::NotApplicable => Self::new(
                RejectionKind::InvalidToken,
                "no authenticator accepts this credential",
            ),
            AuthError::Invalid(reason) => Self::new(RejectionKind::InvalidToken, reason.clone()),
            AuthError::Malformed(reason) => {
                Self::new(RejectionKind::InvalidRequest, reason.clone())
            }
            AuthError::InsufficientScope { required } => {
                let mut r = Self::new(RejectionKind::InsufficientScope, "insufficient scope");
                r.scope = required.clone();
                r
            }
            AuthError::Forbidden(reason) => Self::new(RejectionKind::Forbidden, reason.clone()),
            AuthError::Unavailable {
                reason,
                retry_after,
                ..
            } => {
                let mut r = Self::new(RejectionKind::Unavailable, reason.clone());
                if let Some(after) = retry_after {
                    r.retry_after = *after;
                }
                r
            }
            AuthError::TooManyConnections { retry_after } => {
                let mut r = Self::new(
                    RejectionKind::TooManyConnections,
                    "the subject is at its cap of live connections",
                );
                r.retry_after = *retry_after;
                r
            }
        }
    }

    /// Too many failed authentications from this address; retry after
    /// `retry_after`.
    pub(crate) fn throttled(retry_after: Duration) -> Self {
        let mut r = Self::new(
            RejectionKind::Throttled,
            "too many failed authentications from this address",
        );
        r.retry_after = retry_after;
        r
    }

    pub(crate) fn with_carrier(mut self, carrier: Option<Carrier>) -> Self {
        self.carrier = carrier;
        self
    }

    pub(crate) fn with_realm(mut self, realm: Option<&HeaderValue>) -> Self {
        self.realm = realm.cloned();
        self
    }

    /// The kind of rejection.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// Why, for logs. Never send it to the client.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The carrier the offending credential came in, when known.
    pub fn carrier(&self) -> Option<&Carrier> {
        self.carrier.as_ref()
    }

    /// The scope that was missing, for `InsufficientScope`.
    pub fn required_scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The `Retry-After` delay, for `Unavailable`, `Throttled` and
    /// `TooManyConnections`.
    pub fn retry_after(&self) -> Option<Duration> {
        matches!(
            self.kind,
            RejectionKind::Unavailable
                | RejectionKind::Throttled
                | RejectionKind::TooManyConnections
        )
        .then_some(self.retry_after)
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 section 3), if this kind
    /// has one.
    pub fn www_authenticate(&self) -> Option<HeaderValue> {
        let error = match self.kind {
            RejectionKind::MissingCredential => None,
            RejectionKind::InvalidToken => Some("invalid_token"),
            RejectionKind::InvalidRequest => Some("invalid_request"),
            RejectionKind::InsufficientScope => Some("insufficient_scope"),
            _ => return None,
        };
        let scope = self
            .scope
            .as_deref()
            .filter(|s| self.kind == RejectionKind::InsufficientScope && is_scope_list(s));
        if self.realm.is_none() && scope.is_none() {
            return Some(HeaderValue::from_static(match error {
                None => "Bearer",
                Some("invalid_token") => "Bearer error=\"invalid_token\"",
                Some("invalid_request") => "Bearer error=\"invalid_request\"",
                Some(_) => "Bearer error=\"insufficient_scope\"",
            }));
        }
        let mut params: Vec<String> = Vec::with_capacity(3);
        if let Some(realm) = self.realm.as_ref().and_then(|r| r.to_str().ok()) {
            params.push(format!("realm=\"{realm}\""));
        }
        if let Some(error) = error {
            params.push(format!("error=\"{error}\""));
        }
        if let Some(scope) = scope {
            params.push(format!("scope=\"{scope}\""));
        }
        let value = if params.is_empty() {
            "Bearer".to_owned()
        } else {
            format!("Bearer {}", params.join(", "))
        };
        HeaderValue::from_str(&value).ok()
    }

    /// A response builder with the status, `WWW-Authenticate`, `Retry-After`
    /// and `Cache-Control: no-store` already set: add a body (and a content
    /// type) and it is a complete answer.
    pub fn response_builder(&self) -> http::response::Builder {
        let mut builder = Response::builder().status(self.status());
        if let Some(headers) = builder.headers_mut() {
            self.insert_headers(headers);
        }
        builder
    }

    /// The headers every answer to this rejection carries:
    /// `Cache-Control: no-store`, the challenge, and `Retry-After` in whole
    /// seconds (rounded up, at least 1) for `Unavailable`, `Throttled` and
    /// `TooManyConnections`.
    fn insert_headers(&self, headers: &mut HeaderMap) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.www_authenticate() {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if let Some(after) = self.retry_after() {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
    }
}

/// `scope` of RFC 6750: space-separated `%x21 / %x23-5B / %x5D-7E` tokens.
fn is_scope_list(s: &str) -> bool {
    !s.is_empty()
        && s.split(' ').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        })
}

/// Turns a [`Rejection`] into the response the client gets.
///
/// Implemented for closures `Fn(&Rejection) -> Response<B>`:
///
/// ```
/// use http::{header, Response};
/// use tower_ws_auth::{Rejection, RejectionHandler};
///
/// let json = |rejection: &Rejection| -> Response<String> {
///     rejection
///         .response_builder()
///         .header(header::CONTENT_TYPE, "application/json")
///         .body(format!(r#"{{"error":"{}"}}"#, rejection.kind().as_str()))
///         .unwrap_or_default()
/// };
/// fn takes<H: RejectionHandler<String>>(_: &H) {}
/// takes(&json);
/// ```
pub trait RejectionHandler<B>: Send + Sync + 'static {
    /// The response for `rejection`. Do not put
    /// [`Rejection::reason`] into it: it is for logs.
    fn respond(&self, rejection: &Rejection) -> Response<B>;
}

impl<F, B> RejectionHandler<B> for F
where
    F: Fn(&Rejection) -> Response<B> + Send + Sync + 'static,
{
    fn respond(&self, rejection: &Rejection) -> Response<B> {
        self(rejection)
    }
}

/// The default [`RejectionHandler`]: the status, challenge and headers of
/// [`Rejection::response_builder`] and a generic `text/plain` body, the
/// status's reason phrase, whatever the reason.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRejectionHandler;

impl<B> RejectionHandler<B> for DefaultRejectionHandler
where
    B: From<Bytes>,
{
    fn respond(&self, rejection: &Rejection) -> Response<B> {
        let body = match rejection.kind {
            RejectionKind::MissingCredential | RejectionKind::InvalidToken => "Unauthorized\n",
            RejectionKind::InvalidRequest => "Bad Request\n",
            RejectionKind::InsufficientScope
            | RejectionKind::Forbidden
            | RejectionKind::OriginRefused => "Forbidden\n",
            RejectionKind::CredentialTooLarge => "Request Header Fields Too Large\n",
            RejectionKind::Unavailable => "Service Unavailable\n",
            RejectionKind::Throttled | RejectionKind::TooManyConnections => "Too Many Requests\n",
        };
        // The headers of `response_builder`, without a builder: no
        // fallible steps on this path.
        let mut response = Response::new(B::from(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = rejection.status();
        let headers = response.headers_mut();
        rejection.insert_headers(headers);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let r = Rejection::new(RejectionKind::MissingCredential, "none");
        assert_eq!(r.www_authenticate().unwrap(), "Bearer");
        let r = Rejection::new(RejectionKind::InvalidToken, "bad sig");
        assert_eq!(
            r.www_authenticate().unwrap(),
            "Bearer error=\"invalid_token\""
        );
        let r = Rejection::from_auth_error(&AuthError::insufficient_scope("chat:write admin"))
            .with_realm(Some(&HeaderValue::from_static("chat")));
        assert_eq!(
            r.www_authenticate().unwrap(),
            "Bearer realm=\"chat\", error=\"insufficient_scope\", scope=\"chat:write admin\""
        );
        let r = Rejection::from_auth_error(&AuthError::insufficient_scope("bad\"scope"));
        assert_eq!(
            r.www_authenticate().unwrap(),
            "Bearer error=\"insufficient_scope\""
        );
        assert!(
            Rejection::new(RejectionKind::OriginRefused, "x")
                .www_authenticate()
                .is_none()
        );
    }

    #[test]
    fn default_response_matches_the_builder() {
        let errors = [
            AuthError::invalid("x"),
            AuthError::Malformed("x".into()),
            AuthError::insufficient_scope("chat:write"),
            AuthError::Forbidden("x".into()),
            AuthError::unavailable("x").with_retry_after(Duration::from_millis(1500)),
            AuthError::NotApplicable,
            AuthError::too_many_connections(Duration::from_secs(5)),
        ];
        let mut rejections: Vec<Rejection> =
            errors.iter().map(Rejection::from_auth_error).collect();
        for kind in [
            RejectionKind::MissingCredential,
            RejectionKind::OriginRefused,
            RejectionKind::CredentialTooLarge,
            RejectionKind::Throttled,
        ] {
            rejections.push(Rejection::new(kind, "x"));
        }
        let realm = HeaderValue::from_static("chat");
        for r in rejections.clone() {
            rejections.push(r.with_realm(Some(&realm)));
        }
        for r in &rejections {
            let direct: Response<Bytes> = DefaultRejectionHandler.respond(r);
            let built = r
                .response_builder()
                .header(CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Bytes::new())
                .unwrap();
            assert_eq!(direct.status(), built.status(), "{r:?}");
            let headers = |resp: &Response<Bytes>| -> Vec<(String, Vec<u8>)> {
                resp.headers()
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                    .collect()
            };
            assert_eq!(headers(&direct), headers(&built), "{r:?}");
        }
    }

    #[test]
    fn kinds_names_and_accessors() {
        for (kind, name) in [
            (RejectionKind::MissingCredential, "missing_credential"),
            (RejectionKind::InvalidRequest, "invalid_request"),
            (RejectionKind::InvalidToken, "invalid_token"),
            (RejectionKind::InsufficientScope, "insufficient_scope"),
            (RejectionKind::Forbidden, "forbidden"),
            (RejectionKind::OriginRefused, "origin_refused"),
            (RejectionKind::CredentialTooLarge, "credential_too_large"),
            (RejectionKind::Unavailable, "unavailable"),
            (RejectionKind::Throttled, "throttled"),
            (RejectionKind::TooManyConnections, "too_many_connections"),
        ] {
            assert_eq!(kind.as_str(), name);
        }
        let r = Rejection::from_auth_error(&AuthError::insufficient_scope("chat:write"))
            .with_carrier(Some(Carrier::Cookie));
        assert_eq!(r.carrier(), Some(&Carrier::Cookie));
        assert_eq!(r.required_scope(), Some("chat:write"));
        assert_eq!(r.reason(), "insufficient scope");
        assert_eq!(r.retry_after(), None);
        assert_eq!(
            format!("{r:?}"),
            "Rejection { kind: InsufficientScope, reason: \"insufficient scope\", \
             carrier: Some(Cookie), scope: Some(\"chat:write\"), retry_after: 1s }"
        );
    }

    #[test]
    fn realm_without_scope_and_whole_second_retry_after() {
        let realm = HeaderValue::from_static("chat");
        let r = Rejection::new(RejectionKind::InvalidRequest, "x").with_realm(Some(&realm));
        assert_eq!(
            r.www_authenticate().unwrap(),
            "Bearer realm=\"chat\", error=\"invalid_request\""
        );
        // Whole seconds are not rounded up; the default is 1 s.
        for (after, header) in [(None, "1"), (Some(Duration::from_secs(2)), "2")] {
            let mut error = AuthError::unavailable("down");
            if let Some(after) = after {
                error = error.with_retry_after(after);
            }
            let resp: Response<Bytes> =
                DefaultRejectionHandler.respond(&Rejection::from_auth_error(&error));
            assert_eq!(resp.headers()[RETRY_AFTER], header, "{after:?}");
        }
    }

    #[test]
    fn default_response_is_generic() {
        let r = Rejection::from_auth_error(&AuthError::invalid("secret detail"));
        let resp: Response<Bytes> = DefaultRejectionHandler.respond(&r);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.body(), &Bytes::from_static(b"Unauthorized\n"));
        assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
        let r = Rejection::from_auth_error(
            &AuthError::unavailable("store down").with_retry_after(Duration::from_millis(2500)),
        );
        let resp: Response<Bytes> = DefaultRejectionHandler.respond(&r);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[RETRY_AFTER], "3");
    }
}
