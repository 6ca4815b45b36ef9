//! Credentials and the carriers that bring them: `Authorization: Bearer`, a
//! custom header, the `Sec-WebSocket-Protocol` list, a cookie and (opt-in) a
//! query parameter.
//!
//! The parsers here see raw network bytes. Each one checks the size of what
//! it reads before it decodes or copies anything, runs in time linear in its
//! input and returns a [`CarrierError`] rather than panicking.

mod bearer;
mod cookie;
mod query;
mod subprotocol;

use std::fmt;

use http::HeaderName;
use http::request::Parts;

pub(crate) use bearer::{parse_bearer, parse_header};
pub(crate) use cookie::{is_cookie_name, parse_cookie};
pub(crate) use query::{parse_query, strip_query_param};
pub use subprotocol::SubprotocolCarrier;
pub(crate) use subprotocol::{ParsedProtocols, parse_protocols};

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
    secret: Box<str>,
}

impl Credential {
    /// A credential carried by `carrier`.
    pub fn new(carrier: Carrier, secret: impl Into<String>) -> Self {
        Self {
            carrier,
            secret: secret.into().into_boxed_str(),
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
pub(crate) struct Extracted {
    /// The credential that wins by precedence.
    pub(crate) credential: Option<Credential>,
    /// The parsed `Sec-WebSocket-Protocol` list when it held a credential
    /// entry: the request header must be replaced by the stripped list and
    /// the response must echo the selected protocol.
    pub(crate) protocols: Option<ParsedProtocols>,
    /// The query parameter that carried a credential, to strip from the URI.
    pub(crate) query_param: Option<Box<str>>,
}

/// Runs every configured source over `parts`, in order.
///
/// Every source is parsed even after one has produced a credential, so a
/// malformed carrier is always a 400 and a credential entry in the
/// subprotocol list is always stripped. With `reject_conflicts`, two
/// sources carrying different secrets are a 400; otherwise the first source
/// in configuration order wins.
pub(crate) fn extract(
    sources: &[Source],
    parts: &Parts,
    limits: Limits,
    upgrade: bool,
    reject_conflicts: bool,
) -> Result<Extracted, (CarrierError, Option<Carrier>)> {
    let mut out = Extracted::default();
    for source in sources {
        let found: Option<(Carrier, Box<str>)> = match source {
            Source::Bearer => parse_bearer(&parts.headers, limits)
                .map_err(|e| (e, Some(Carrier::Bearer)))?
                .map(|s| (Carrier::Bearer, s.into())),
            Source::Header(name) => parse_header(&parts.headers, name, limits)
                .map_err(|e| (e, Some(Carrier::Header(name.clone()))))?
                .map(|s| (Carrier::Header(name.clone()), s.into())),
            Source::Subprotocol(config) => {
                if !upgrade {
                    continue;
                }
                match parse_protocols(&parts.headers, config, limits)
                    .map_err(|e| (e, Some(Carrier::Subprotocol)))?
                {
                    Some(mut parsed) => {
                        let secret = parsed.take_credential();
                        out.protocols = Some(parsed);
                        secret.map(|s| (Carrier::Subprotocol, s))
                    }
                    None => None,
                }
            }
            Source::Cookie(name) => parse_cookie(&parts.headers, name, limits)
                .map_err(|e| (e, Some(Carrier::Cookie)))?
                .map(|s| (Carrier::Cookie, s.into())),
            Source::Query(name) => {
                let found = parse_query(parts.uri.query(), name, limits)
                    .map_err(|e| (e, Some(Carrier::Query)))?;
                if found.is_some() {
                    out.query_param = Some(name.clone());
                }
                found.map(|s| (Carrier::Query, s.into_boxed_str()))
            }
        };
        let Some((carrier, secret)) = found else {
            continue;
        };
        match &out.credential {
            None => {
                out.credential = Some(Credential { carrier, secret });
            }
            Some(first) => {
                if reject_conflicts && *first.secret != *secret {
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

/// `true` for a visible ASCII byte other than space (`%x21-7E`).
pub(crate) fn is_vchar(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}
