//! Credentials and the carriers that bring them: `Authorization: Bearer`, a
//! custom header, the `Sec-WebSocket-Protocol` list, a cookie and (opt-in) a
//! query parameter.
//!
//! The parsers here see raw network bytes. Each one checks the size of what
//! it reads before it decodes or copies anything, runs in time linear in its
//! input and returns a [`CarrierError`] rather than panicking.
//!
//! Reference oracles. Three parsers here were rewritten for speed, and one
//! was replaced by the cookie crate; the straightforward versions they
//! replaced stay in the unit tests, each a function named `reference*`
//! and checked against the real parser by a proptest `same_as_reference`
//! (same results, same refusal reasons). They are test oracles only, never
//! compiled into the crate:
//!
//! - `bearer.rs`: `reference` (the `Authorization: Bearer` parser);
//! - `query.rs`: `reference_parse` and `reference_strip` (the query
//!   carrier);
//! - `subprotocol.rs`: `reference` (the `Sec-WebSocket-Protocol` list);
//! - `cookie.rs`: `reference` (the hand-written cookie reader, on the
//!   ASCII lines it handled correctly).

mod bearer;
mod cookie;
mod query;
mod subprotocol;

use std::fmt;

use http::request::Parts;
use http::{HeaderMap, HeaderName, Uri};

use bearer::{parse_bearer, parse_header};
use query::parse_query;
use subprotocol::{ParsedProtocols, parse_protocols};

pub(crate) use cookie::{is_cookie_name, parse_cookie};
pub(crate) use subprotocol::Echo;
pub use subprotocol::SubprotocolCarrier;
#[cfg(feature = "close-rejections")]
pub(crate) use subprotocol::echo_for_refusal;

/// Where a [`Credential`] came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Carrier {
    /// `Authorization: Bearer <token>` (RFC 6750 section 2.1).
    Bearer,
    /// A header holding the bare credential, such as `X-Api-Key`.
    Header(HeaderName),
    /// A `base64url.bearer.<token>` entry in `Sec-WebSocket-Protocol`.
    Subprotocol,
    /// A cookie.
    Cookie,
    /// A query parameter (opt-in; redacted from the request the handler sees).
    Query,
    /// A WebSocket message on an accepted socket: first-message
    /// authentication or an in-band refresh.
    Message,
}

impl Carrier {
    /// A short name for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Header(_) => "header",
            Self::Subprotocol => "subprotocol",
            Self::Cookie => "cookie",
            Self::Query => "query",
            Self::Message => "message",
        }
    }

    /// `true` for carriers a browser attaches on its own (cookies), which
    /// are open to cross-site WebSocket hijacking without an Origin check.
    pub fn is_ambient(&self) -> bool {
        matches!(self, Self::Cookie)
    }
}

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(name) => write!(f, "header:{name}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A secret presented by a client, with the [`Carrier`] it came in.
///
/// Its `Debug` output never shows the secret; read it with
/// [`expose_secret`](Self::expose_secret) where it is verified and nowhere
/// else.
///
/// ```
/// use tower_ws_auth::{Carrier, Credential};
///
/// let credential = Credential::new(Carrier::Bearer, "eyJhbGciOi...");
/// assert_eq!(credential.expose_secret(), "eyJhbGciOi...");
/// assert!(!format!("{credential:?}").contains("eyJ"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    carrier: Carrier,
    // A `String`, not a `Box<str>`: a decoded secret moves in without the
    // reallocation that shrinking its buffer would cost.
    secret: String,
}

impl Credential {
    /// A credential carried by `carrier`.
    pub fn new(carrier: Carrier, secret: impl Into<String>) -> Self {
        Self {
            carrier,
            secret: secret.into(),
        }
    }

    /// Where the credential came from.
    pub fn carrier(&self) -> &Carrier {
        &self.carrier
    }

    /// The secret itself.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("carrier", &self.carrier)
            .field(
                "secret",
                &format_args!("<redacted {} bytes>", self.secret.len()),
            )
            .finish()
    }
}

/// Why a carrier could not be read. Mapped to 400 (`Malformed`) or 431
/// (`TooLarge`) before the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CarrierError {
    /// The carrier is present but broken; the reason is for logs.
    Malformed(&'static str),
    /// The carrier or the credential in it is over its size cap.
    TooLarge,
}

/// Size caps applied before any decoding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest credential, in bytes as carried (before any decoding).
    pub(crate) max_credential: usize,
    /// Largest header (all lines of it together) or query string read.
    pub(crate) max_header: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_credential: 8 * 1024,
            max_header: 16 * 1024,
        }
    }
}

/// One configured carrier.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Bearer,
    Header(HeaderName),
    Subprotocol(SubprotocolCarrier),
    Cookie(Box<str>),
    Query(Box<str>),
}

/// What the configured sources found in a request.
#[derive(Debug, Default)]
pub(crate) struct Extracted<'a> {
    /// The credential that wins by precedence.
    pub(crate) credential: Option<Credential>,
    /// What the carriers leave in the request.
    pub(crate) traces: Traces<'a>,
}

/// What carriers leave of a credential in the request, to remove before the
/// authenticator and the inner service see it, and what the response must
/// then echo.
#[derive(Debug, Default)]
pub(crate) struct Traces<'a> {
    /// The parsed `Sec-WebSocket-Protocol` list when it held a credential
    /// entry (whichever carrier won): the request header is replaced by the
    /// list without it and the response must echo one of the others.
    protocols: Option<Box<ParsedProtocols>>,
    /// The query parameters that carried a credential (usually one; none
    /// allocates nothing).
    query_params: Vec<&'a str>,
}

impl Traces<'_> {
    /// Removes the credential subprotocol entry and the credential query
    /// parameter from the request head.
    pub(crate) fn remove_from(&self, parts: &mut Parts) -> Result<(), (CarrierError, Carrier)> {
        if let Some(protocols) = &self.protocols {
            protocols.strip_from(&mut parts.headers);
        }
        for name in &self.query_params {
            query::strip_from(&mut parts.uri, name).map_err(|e| (e, Carrier::Query))?;
        }
        Ok(())
    }

    /// What the response to the upgrade must echo, if the subprotocol list
    /// held a credential; `h2` for an HTTP/2 extended CONNECT.
    pub(crate) fn into_echo(self, h2: bool) -> Option<Echo> {
        self.protocols.map(|protocols| Echo::new(protocols, h2))
    }
}

/// Runs every configured source over the request head, in order.
///
/// Every source is parsed even after one has produced a credential, so a
/// malformed carrier is always a 400 and a credential entry in the
/// subprotocol list is always stripped. With `reject_conflicts`, two
/// sources carrying different secrets are a 400; otherwise the first source
/// in configuration order wins.
///
/// Only the winning credential is copied out of the request; later carriers
/// are parsed and validated in place (and compared in place when conflicts
/// are refused).
pub(crate) fn extract<'a>(
    sources: &'a [Source],
    headers: &HeaderMap,
    uri: &Uri,
    limits: Limits,
    upgrade: bool,
    reject_conflicts: bool,
) -> Result<Extracted<'a>, (CarrierError, Option<Carrier>)> {
    let mut out = Extracted::default();
    for source in sources {
        // A borrowed secret, or one the carrier had to decode.
        let found: Option<(Carrier, Secret<'_>)> = match source {
            Source::Bearer => parse_bearer(headers, limits)
                .map_err(|e| (e, Some(Carrier::Bearer)))?
                .map(|s| (Carrier::Bearer, Secret::Borrowed(s))),
            Source::Header(name) => {
                match parse_header(headers, name, limits)
                    .map_err(|e| (e, Some(Carrier::Header(name.clone()))))?
                {
                    // The carrier (and its header name) is only built for
                    // the credential that is kept, or for an error.
                    Some(s) if out.credential.is_none() || reject_conflicts => {
                        Some((Carrier::Header(name.clone()), Secret::Borrowed(s)))
                    }
                    _ => None,
                }
            }
            Source::Subprotocol(config) => {
                if !upgrade {
                    continue;
                }
                match parse_protocols(headers, config, limits)
                    .map_err(|e| (e, Some(Carrier::Subprotocol)))?
                {
                    Some(mut parsed) => {
                        let secret = parsed.take_credential();
                        out.traces.protocols = Some(Box::new(parsed));
                        secret.map(|s| (Carrier::Subprotocol, Secret::Owned(s)))
                    }
                    None => None,
                }
            }
            Source::Cookie(name) => parse_cookie(headers, name, limits)
                .map_err(|e| (e, Some(Carrier::Cookie)))?
                .map(|s| (Carrier::Cookie, Secret::Borrowed(s))),
            Source::Query(name) => {
                let found = parse_query(uri.query(), name, limits)
                    .map_err(|e| (e, Some(Carrier::Query)))?;
                if found.is_some() {
                    out.traces.query_params.push(name);
                }
                found.map(|s| (Carrier::Query, Secret::from(s)))
            }
        };
        let Some((carrier, secret)) = found else {
            continue;
        };
        match &out.credential {
            None => {
                out.credential = Some(Credential {
                    carrier,
                    secret: secret.into_owned(),
                });
            }
            Some(first) => {
                if reject_conflicts && first.secret != secret.as_str() {
                    return Err((
                        CarrierError::Malformed("two carriers hold different credentials"),
                        Some(carrier),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// A secret as a carrier found it: a slice of the request, or a decoded copy.
enum Secret<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl<'a> From<std::borrow::Cow<'a, str>> for Secret<'a> {
    fn from(cow: std::borrow::Cow<'a, str>) -> Self {
        match cow {
            std::borrow::Cow::Borrowed(s) => Self::Borrowed(s),
            std::borrow::Cow::Owned(s) => Self::Owned(s),
        }
    }
}

impl Secret<'_> {
    fn as_str(&self) -> &str {
        match self {
            Self::Borrowed(s) => s,
            Self::Owned(s) => s,
        }
    }

    fn into_owned(self) -> String {
        match self {
            Self::Borrowed(s) => s.to_owned(),
            Self::Owned(s) => s,
        }
    }
}

/// `true` if `pred` holds for every byte of `bytes`. Checked sixteen bytes
/// at a time without branches inside a block, which the compiler turns into
/// vector instructions: the parsers run this over credentials of hundreds
/// of bytes on every upgrade. Stops at the first block that fails.
#[inline]
pub(crate) fn all_bytes(bytes: &[u8], pred: impl Fn(u8) -> bool) -> bool {
    let mut blocks = bytes.chunks_exact(16);
    for block in blocks.by_ref() {
        if block.iter().fold(0u8, |bad, &b| bad | u8::from(!pred(b))) != 0 {
            return false;
        }
    }
    blocks
        .remainder()
        .iter()
        .fold(0u8, |bad, &b| bad | u8::from(!pred(b)))
        == 0
}

/// `true` if `s` holds a control character (Unicode general category Cc:
/// U+0000-U+001F, U+007F-U+009F). An ASCII string is checked a byte at a
/// time without branches; others char by char.
fn has_control(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.is_ascii() {
        !all_bytes(bytes, |b| (b >= 0x20) & (b != 0x7f))
    } else {
        s.chars().any(char::is_control)
    }
}

/// `true` for a visible ASCII byte other than space (`%x21-7E`).
pub(crate) fn is_vchar(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// `tchar` of RFC 9110, the characters a token (a subprotocol name, a
/// cookie name) may hold:
/// `ALPHA / DIGIT / "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" /
/// "." / "^" / "_" / "`" / "|" / "~"`. Branch-free, so the loop over a long
/// entry (the credential) vectorises.
pub(crate) fn is_tchar(b: u8) -> bool {
    (b.wrapping_sub(b'0') < 10)
        // `| 0x20` lower-cases letters and maps no other byte onto one.
        | ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b == b'!')
        // `#` `$` `%` `&` `'`
        | (b.wrapping_sub(b'#') < 5)
        | (b == b'*')
        | (b == b'+')
        | (b == b'-')
        | (b == b'.')
        // `^` `_` `` ` ``
        | (b.wrapping_sub(b'^') < 3)
        | (b == b'|')
        | (b == b'~')
}

/// `true` for a non-empty RFC 9110 `token`: `tchar`s only.
pub(crate) fn is_token(s: &[u8]) -> bool {
    // No early exit, no branch: vectorised.
    !s.is_empty() && all_bytes(s, is_tchar)
}
