//! The `Sec-WebSocket-Protocol` carrier.
//!
//! Browsers cannot set an `Authorization` header on a WebSocket, but they can
//! offer subprotocols. A client offers its real protocol (say `chat`) and,
//! beside it, one entry `base64url.bearer.<base64url(token), no padding>`.
//! The layer takes the token out, removes the entry from the request the
//! handler sees, and makes sure the `101` echoes exactly one protocol the
//! client offered, never the credential (browsers fail the connection
//! otherwise).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::SEC_WEBSOCKET_PROTOCOL;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::{CarrierError, Limits, has_control, is_token};
use crate::error::ConfigError;

/// Configuration of the `Sec-WebSocket-Protocol` carrier; pass it to
/// [`WsAuthLayer::subprotocol`](crate::WsAuthLayer::subprotocol).
///
/// ```
/// use tower_ws_auth::SubprotocolCarrier;
///
/// // Accept `base64url.bearer.<token>` next to `chat` or `chat.v2` only.
/// let carrier = SubprotocolCarrier::new().protocols(["chat.v2", "chat"])?;
/// assert_eq!(carrier.prefix_str(), "base64url.bearer.");
/// # Ok::<(), tower_ws_auth::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SubprotocolCarrier {
    prefix: Box<str>,
    protocols: Option<Box<[Box<str>]>>,
}

impl fmt::Debug for SubprotocolCarrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubprotocolCarrier")
            .field("prefix", &self.prefix)
            .field("protocols", &self.protocols)
            .finish()
    }
}

impl Default for SubprotocolCarrier {
    fn default() -> Self {
        Self::new()
    }
}

impl SubprotocolCarrier {
    /// The default credential prefix, `base64url.bearer.`.
    pub const DEFAULT_PREFIX: &'static str = "base64url.bearer.";

    /// The default carrier: prefix `base64url.bearer.`, any companion
    /// protocol accepted, the client's first one echoed.
    pub fn new() -> Self {
        Self {
            prefix: Self::DEFAULT_PREFIX.into(),
            protocols: None,
        }
    }

    /// Sets the prefix that marks the credential entry.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] if `prefix` is empty or is not a
    /// valid subprotocol token.
    pub fn prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        if !is_token(prefix.as_bytes()) {
            return Err(ConfigError::setting(
                "subprotocol prefix",
                "must be a non-empty token",
            ));
        }
        self.prefix = prefix.into();
        Ok(self)
    }

    /// The prefix that marks the credential entry.
    pub fn prefix_str(&self) -> &str {
        &self.prefix
    }

    /// Restricts the companion protocols to `protocols`. A request whose
    /// credential entry comes with none of them is refused (400); otherwise
    /// the first one the client offered that is in this list is echoed.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] if a protocol is not a valid token or
    /// starts with the prefix (set the [`prefix`](Self::prefix) first).
    pub fn protocols<I>(mut self, protocols: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let list: Box<[Box<str>]> = protocols
            .into_iter()
            .map(|p| p.into().into_boxed_str())
            .collect();
        if list
            .iter()
            .any(|p| !is_token(p.as_bytes()) || p.starts_with(&*self.prefix))
        {
            return Err(ConfigError::setting(
                "subprotocol",
                "must be a token that does not start with the credential prefix",
            ));
        }
        self.protocols = Some(list);
        Ok(self)
    }

    /// Encodes `token` as the entry a client offers:
    /// `<prefix><base64url(token), no padding>`.
    ///
    /// ```
    /// use tower_ws_auth::SubprotocolCarrier;
    ///
    /// let entry = SubprotocolCarrier::new().encode("a.b.c");
    /// assert_eq!(entry, "base64url.bearer.YS5iLmM");
    /// ```
    pub fn encode(&self, token: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + token.len() * 4 / 3 + 4);
        out.push_str(&self.prefix);
        URL_SAFE_NO_PAD.encode_string(token.as_bytes(), &mut out);
        out
    }
}

/// A `Sec-WebSocket-Protocol` list that held a credential entry.
#[derive(Debug)]
pub(crate) struct ParsedProtocols {
    credential: Option<String>,
    /// The list without the credential entry, for the request the handler sees.
    stripped: HeaderValue,
    /// The protocol the `101` must carry if the handler selects none, when
    /// it is not the whole of `stripped` (one companion, the usual case).
    selected: Option<HeaderValue>,
}

impl ParsedProtocols {
    pub(crate) fn take_credential(&mut self) -> Option<String> {
        self.credential.take()
    }

    /// The protocol the `101` must carry if the handler selects none.
    fn selected(&self) -> &HeaderValue {
        self.selected.as_ref().unwrap_or(&self.stripped)
    }

    /// `true` if `protocol` is one of the companions the client offered.
    fn offers(&self, protocol: &HeaderValue) -> bool {
        let wanted = protocol.as_bytes().trim_ascii();
        elements(self.stripped.as_bytes()).any(|p| p == wanted)
    }

    /// Replaces every `Sec-WebSocket-Protocol` line of a request by the
    /// list without the credential entry.
    pub(crate) fn strip_from(&self, headers: &mut HeaderMap) {
        let mut lines = headers.get_all(SEC_WEBSOCKET_PROTOCOL).iter();
        let one_line = lines.next().is_some() && lines.next().is_none();
        match headers.get_mut(SEC_WEBSOCKET_PROTOCOL) {
            // Replaced in place: `insert` would first make room for a new
            // entry, which can mean growing and rehashing the whole map.
            Some(value) if one_line => *value = self.stripped.clone(),
            // Replaces every line of the header.
            _ => {
                headers.insert(SEC_WEBSOCKET_PROTOCOL, self.stripped.clone());
            }
        }
    }
}

/// What the response to an upgrade whose credential came in the
/// subprotocol list must echo: exactly one protocol the client offered,
/// never the credential entry (browsers fail the connection otherwise).
#[derive(Debug)]
pub(crate) struct Echo {
    // Boxed: rare, and the layer's response future moves less without it.
    protocols: Box<ParsedProtocols>,
    h2: bool,
}

impl Echo {
    /// The echo rules for `protocols`, on an HTTP/2 (extended CONNECT)
    /// upgrade if `h2`.
    pub(crate) fn new(protocols: Box<ParsedProtocols>, h2: bool) -> Self {
        Self { protocols, h2 }
    }

    /// Makes a successful upgrade response carry exactly one protocol the
    /// client offered: the one the handler selected if the client offered
    /// it, otherwise the one the carrier selected. Other responses are left
    /// alone.
    pub(crate) fn apply<B>(&self, response: &mut Response<B>) {
        let upgraded = if self.h2 {
            response.status().is_success()
        } else {
            response.status() == StatusCode::SWITCHING_PROTOCOLS
        };
        if !upgraded {
            return;
        }
        let mut values = response.headers().get_all(SEC_WEBSOCKET_PROTOCOL).iter();
        let acceptable = match (values.next(), values.next()) {
            (Some(only), None) => self.protocols.offers(only),
            _ => false,
        };
        if !acceptable {
            // Replaces every line of the header.
            let headers = response.headers_mut();
            headers.insert(SEC_WEBSOCKET_PROTOCOL, self.protocols.selected().clone());
        }
    }
}

/// The non-empty, trimmed elements of a comma-separated list.
fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
}

/// Every `Sec-WebSocket-Protocol` line, if all of them together (with
/// their separators) are within `limits`.
fn capped_lines(
    headers: &HeaderMap,
    limits: Limits,
) -> Result<http::header::GetAll<'_, HeaderValue>, CarrierError> {
    let values = headers.get_all(SEC_WEBSOCKET_PROTOCOL);
    let mut total = 0usize;
    for v in values.iter() {
        total = total.saturating_add(v.len() + 2);
        if total > limits.max_header {
            return Err(CarrierError::TooLarge);
        }
    }
    Ok(values)
}

/// The protocol a `101` that only carries a refusal must echo: `Ok(None)`
/// when the client offered none, otherwise the first offered element that
/// is a token and not a credential entry (one starting with `prefix`).
/// `Err` when the client offered protocols but none of them can be echoed,
/// or the lists are over `limits`: such an upgrade cannot be completed.
#[cfg(feature = "close-rejections")]
pub(crate) fn echo_for_refusal(
    headers: &HeaderMap,
    prefix: Option<&str>,
    limits: Limits,
) -> Result<Option<HeaderValue>, CarrierError> {
    let values = capped_lines(headers, limits)?;
    let is_credential = |e: &[u8]| prefix.is_some_and(|p| e.starts_with(p.as_bytes()));
    let mut offered = false;
    for element in values.iter().flat_map(|v| elements(v.as_bytes())) {
        offered = true;
        if is_token(element) && !is_credential(element) {
            return HeaderValue::from_bytes(element)
                .map(Some)
                .map_err(|_| CarrierError::Malformed("subprotocol is not a valid header"));
        }
    }
    if offered {
        Err(CarrierError::Malformed(
            "no protocol beside the credential entry to echo",
        ))
    } else {
        Ok(None)
    }
}

/// Parses every `Sec-WebSocket-Protocol` line.
///
/// `Ok(None)` when no entry starts with the prefix: the header is left
/// alone. Otherwise the list is validated strictly: exactly one credential
/// entry, every element a token, at least one companion protocol (one from
/// the configured list if there is one), a base64url (no padding) credential
/// that decodes to UTF-8 without control characters.
///
/// One pass over the elements: the first error, in list order, is kept and
/// reported only if the list turns out to hold a credential entry.
pub(crate) fn parse_protocols(
    headers: &HeaderMap,
    config: &SubprotocolCarrier,
    limits: Limits,
) -> Result<Option<ParsedProtocols>, CarrierError> {
    let values = capped_lines(headers, limits)?;
    let prefix = config.prefix.as_bytes();
    let mut has_credential = false;
    let mut first_error: Option<CarrierError> = None;
    let mut encoded: Option<&[u8]> = None;
    // Companions: how many, their total length, the first one and the
    // selected one (the first the configured list allows, if any).
    let mut companions = 0usize;
    let mut companion_bytes = 0usize;
    let mut first: Option<&[u8]> = None;
    let mut selected: Option<&[u8]> = None;
    for element in values.iter().flat_map(|v| elements(v.as_bytes())) {
        let credential_entry = element.starts_with(prefix);
        has_credential |= credential_entry;
        if first_error.is_some() {
            continue;
        }
        if !is_token(element) {
            first_error = Some(CarrierError::Malformed("subprotocol entry is not a token"));
        } else if let Some(rest) = element.strip_prefix(prefix) {
            if encoded.replace(rest).is_some() {
                first_error = Some(CarrierError::Malformed(
                    "two credential entries in Sec-WebSocket-Protocol",
                ));
            }
        } else {
            companions += 1;
            companion_bytes += element.len();
            first.get_or_insert(element);
            if selected.is_none()
                && config
                    .protocols
                    .as_ref()
                    .is_none_or(|allowed| allowed.iter().any(|a| a.as_bytes() == element))
            {
                selected = Some(element);
            }
        }
    }
    if !has_credential {
        return Ok(None);
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    let encoded = encoded.ok_or(CarrierError::Malformed("credential entry vanished"))?;
    if encoded.len() > limits.max_credential {
        return Err(CarrierError::TooLarge);
    }
    if encoded.is_empty() {
        return Err(CarrierError::Malformed("empty subprotocol credential"));
    }
    let (Some(first), Some(selected)) = (first, selected) else {
        return Err(CarrierError::Malformed(
            "no acceptable companion protocol beside the credential entry",
        ));
    };

    // Decoded straight into the credential's buffer: no second copy.
    let mut decoded = vec![0u8; base64::decoded_len_estimate(encoded.len())];
    let len = URL_SAFE_NO_PAD
        .decode_slice(encoded, &mut decoded)
        .map_err(|_| {
            CarrierError::Malformed("subprotocol credential is not base64url without padding")
        })?;
    decoded.truncate(len);
    let credential = String::from_utf8(decoded)
        .map_err(|_| CarrierError::Malformed("subprotocol credential is not UTF-8"))?;
    if credential.is_empty() || has_control(&credential) {
        return Err(CarrierError::Malformed(
            "subprotocol credential holds control characters",
        ));
    }

    let invalid = |_| CarrierError::Malformed("subprotocol list is not a valid header");
    let (stripped, selected) = if companions == 1 {
        (HeaderValue::from_bytes(first).map_err(invalid)?, None)
    } else {
        let mut list = Vec::with_capacity(companion_bytes + 2 * (companions - 1));
        for (i, element) in values
            .iter()
            .flat_map(|v| elements(v.as_bytes()))
            .filter(|e| !e.starts_with(prefix))
            .enumerate()
        {
            if i > 0 {
                list.extend_from_slice(b", ");
            }
            list.extend_from_slice(element);
        }
        let stripped = HeaderValue::from_maybe_shared(Bytes::from(list)).map_err(invalid)?;
        let selected = HeaderValue::from_bytes(selected)
            .map_err(|_| CarrierError::Malformed("subprotocol is not a valid header"))?;
        (stripped, Some(selected))
    };
    Ok(Some(ParsedProtocols {
        credential: Some(credential),
        stripped,
        selected,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::is_tchar;
    use proptest::prelude::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    fn parse(lines: &[&str]) -> Result<Option<ParsedProtocols>, CarrierError> {
        parse_protocols(
            &headers(lines),
            &SubprotocolCarrier::new(),
            Limits::default(),
        )
    }

    #[test]
    fn tchar_set_is_rfc9110() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(b), expected, "{b:#04x}");
        }
    }

    #[test]
    fn extracts_and_strips() {
        let entry = SubprotocolCarrier::new().encode("header.payload.sig");
        let mut p = parse(&[&format!("chat, {entry}, other")]).unwrap().unwrap();
        assert_eq!(p.take_credential().as_deref(), Some("header.payload.sig"));
        assert_eq!(p.stripped, "chat, other");
        assert_eq!(p.selected(), "chat");
        assert!(p.offers(&HeaderValue::from_static("other")));
        assert!(!p.offers(&HeaderValue::from_static(&*Box::leak(
            entry.into_boxed_str()
        ))));
    }

    #[test]
    fn config_accessors_and_debug() {
        let config = SubprotocolCarrier::new().protocols(["chat"]).unwrap();
        assert_eq!(config.prefix_str(), SubprotocolCarrier::DEFAULT_PREFIX);
        assert_eq!(
            format!("{config:?}"),
            r#"SubprotocolCarrier { prefix: "base64url.bearer.", protocols: Some(["chat"]) }"#
        );
        assert_eq!(config.prefix("tok.").unwrap().prefix_str(), "tok.");
    }

    #[test]
    fn merges_header_lines() {
        let entry = SubprotocolCarrier::new().encode("tok");
        let mut p = parse(&[&entry, "chat"]).unwrap().unwrap();
        assert_eq!(p.take_credential().as_deref(), Some("tok"));
        assert_eq!(p.stripped, "chat");
        let twice = parse(&[&entry, &format!("chat, {entry}")]);
        assert!(matches!(twice, Err(CarrierError::Malformed(_))));
    }

    /// The handler sees one line, the list without the credential entry,
    /// wherever the entry was (the standard handlers read only the first
    /// line, so a leftover second line is invisible to the peer).
    #[test]
    fn strip_from_replaces_every_line() {
        let entry = SubprotocolCarrier::new().encode("tok");
        for lines in [
            vec![format!("chat, {entry}")],
            vec!["chat".to_owned(), entry.clone()],
            vec![entry.clone(), "chat".to_owned(), "v2".to_owned()],
        ] {
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let mut h = headers(&lines);
            let p = parse(&lines).unwrap().unwrap();
            p.strip_from(&mut h);
            let seen: Vec<_> = h.get_all(SEC_WEBSOCKET_PROTOCOL).iter().collect();
            assert_eq!(seen, [&p.stripped], "{lines:?}");
            assert!(!p.stripped.to_str().unwrap().contains("bearer"));
        }
    }

    #[test]
    fn leaves_lists_without_credential_alone() {
        assert!(parse(&["chat, superchat"]).unwrap().is_none());
        assert!(parse(&["not a token!"]).unwrap().is_none());
        assert!(parse(&[]).unwrap().is_none());
    }

    #[test]
    fn refuses_broken_entries() {
        let pad = "base64url.bearer.YWJj="; // '=' is not base64url-no-pad (and not a tchar issue)
        for lines in [
            vec!["base64url.bearer.dG9r"],       // no companion
            vec!["chat, base64url.bearer."],     // empty
            vec!["chat, base64url.bearer.***"],  // not base64url
            vec!["chat", pad],                   // padding
            vec!["chat, base64url.bearer.YWJ"],  // non-canonical trailing bits
            vec!["chat, base64url.bearer._w"],   // decodes to invalid UTF-8
            vec!["chat, base64url.bearer.AA"],   // decodes to a control character
            vec!["ch@t, base64url.bearer.dG9r"], // companion not a token
        ] {
            assert!(
                matches!(parse(&lines), Err(CarrierError::Malformed(_))),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn configured_protocols() {
        let config = SubprotocolCarrier::new().protocols(["v2", "v1"]).unwrap();
        let entry = config.encode("tok");
        let h = headers(&[&format!("x, v1, v2, {entry}")]);
        let p = parse_protocols(&h, &config, Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(p.selected(), "v1");
        let h = headers(&[&format!("x, {entry}")]);
        assert!(parse_protocols(&h, &config, Limits::default()).is_err());
    }

    #[test]
    fn custom_prefix() {
        let config = SubprotocolCarrier::new().prefix("access_token.").unwrap();
        let entry = config.encode("tok");
        assert!(entry.starts_with("access_token."));
        let h = headers(&[&format!("chat, {entry}")]);
        let mut p = parse_protocols(&h, &config, Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(p.take_credential().as_deref(), Some("tok"));
    }

    #[test]
    fn caps_sizes() {
        let limits = Limits::default();
        let big = SubprotocolCarrier::new().encode(&"a".repeat(limits.max_credential));
        assert_eq!(
            parse(&[&format!("chat, {big}")]).unwrap_err(),
            CarrierError::TooLarge
        );
        let line = "chat, ".repeat(limits.max_header / 6 + 1);
        assert_eq!(parse(&[&line]).unwrap_err(), CarrierError::TooLarge);
    }

    /// Credential, stripped list, selected protocol.
    type Outcome = Result<Option<(String, Vec<u8>, Vec<u8>)>, CarrierError>;

    /// The straightforward two-pass parser the one-pass one replaced: the
    /// oracle for `same_as_reference` (results and reasons must not change).
    fn reference(headers: &HeaderMap, config: &SubprotocolCarrier, limits: Limits) -> Outcome {
        let values = headers.get_all(SEC_WEBSOCKET_PROTOCOL);
        let mut total = 0usize;
        for v in values.iter() {
            total = total.saturating_add(v.len() + 2);
            if total > limits.max_header {
                return Err(CarrierError::TooLarge);
            }
        }
        let prefix = config.prefix.as_bytes();
        let has_credential = values
            .iter()
            .flat_map(|v| elements(v.as_bytes()))
            .any(|e| e.starts_with(prefix));
        if !has_credential {
            return Ok(None);
        }

        let mut encoded: Option<&[u8]> = None;
        let mut companions: Vec<&[u8]> = Vec::new();
        for element in values.iter().flat_map(|v| elements(v.as_bytes())) {
            if !is_token(element) {
                return Err(CarrierError::Malformed("subprotocol entry is not a token"));
            }
            if let Some(rest) = element.strip_prefix(prefix) {
                if encoded.replace(rest).is_some() {
                    return Err(CarrierError::Malformed(
                        "two credential entries in Sec-WebSocket-Protocol",
                    ));
                }
            } else {
                companions.push(element);
            }
        }
        let encoded = encoded.ok_or(CarrierError::Malformed("credential entry vanished"))?;
        if encoded.len() > limits.max_credential {
            return Err(CarrierError::TooLarge);
        }
        if encoded.is_empty() {
            return Err(CarrierError::Malformed("empty subprotocol credential"));
        }
        let selected = match &config.protocols {
            None => companions.first().copied(),
            Some(allowed) => companions
                .iter()
                .copied()
                .find(|c| allowed.iter().any(|a| a.as_bytes() == *c)),
        }
        .ok_or(CarrierError::Malformed(
            "no acceptable companion protocol beside the credential entry",
        ))?;

        let decoded = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| {
            CarrierError::Malformed("subprotocol credential is not base64url without padding")
        })?;
        let credential = String::from_utf8(decoded)
            .map_err(|_| CarrierError::Malformed("subprotocol credential is not UTF-8"))?;
        if credential.is_empty() || credential.chars().any(char::is_control) {
            return Err(CarrierError::Malformed(
                "subprotocol credential holds control characters",
            ));
        }

        let stripped = HeaderValue::from_bytes(&companions.join(&b", "[..]))
            .map_err(|_| CarrierError::Malformed("subprotocol list is not a valid header"))?;
        let selected = HeaderValue::from_bytes(selected)
            .map_err(|_| CarrierError::Malformed("subprotocol is not a valid header"))?;
        Ok(Some((
            credential,
            stripped.as_bytes().to_vec(),
            selected.as_bytes().to_vec(),
        )))
    }

    fn outcome(headers: &HeaderMap, config: &SubprotocolCarrier, limits: Limits) -> Outcome {
        parse_protocols(headers, config, limits).map(|parsed| {
            parsed.map(|mut p| {
                (
                    p.take_credential().unwrap(),
                    p.stripped.as_bytes().to_vec(),
                    p.selected().as_bytes().to_vec(),
                )
            })
        })
    }

    proptest! {
        #[test]
        fn never_panics(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..8)) {
            let mut h = HeaderMap::new();
            for l in &lines {
                if let Ok(v) = HeaderValue::from_bytes(l) {
                    h.append(SEC_WEBSOCKET_PROTOCOL, v);
                }
            }
            let limits = Limits::default();
            if let Ok(Some(mut p)) = parse_protocols(&h, &SubprotocolCarrier::new(), limits) {
                let c = p.take_credential().unwrap();
                prop_assert!(c.len() <= limits.max_credential);
                prop_assert!(!p.stripped.as_bytes().windows(17).any(|w| w == b"base64url.bearer."));
            }
        }

        #[test]
        fn same_as_reference(
            lines in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![
                        Just("chat".to_owned()),
                        Just("v1".to_owned()),
                        Just("v2".to_owned()),
                        Just("ch@t".to_owned()),
                        Just(String::new()),
                        Just("base64url.bearer.".to_owned()),
                        Just("base64url.bearer.dG9r".to_owned()),
                        Just("base64url.bearer.YWJj=".to_owned()),
                        Just("base64url.bearer.AA".to_owned()),
                        Just("base64url.bearer._w".to_owned()),
                        "base64url\\.bearer\\.[A-Za-z0-9_-]{0,12}",
                        "[ -~]{0,6}",
                    ],
                    0..5,
                ),
                0..4,
            ),
            restrict in any::<bool>(),
            cap in 1usize..24,
        ) {
            let mut h = HeaderMap::new();
            for line in &lines {
                if let Ok(v) = HeaderValue::from_str(&line.join(", ")) {
                    h.append(SEC_WEBSOCKET_PROTOCOL, v);
                }
            }
            let config = if restrict {
                SubprotocolCarrier::new().protocols(["v2", "v1"]).unwrap()
            } else {
                SubprotocolCarrier::new()
            };
            for limits in [Limits::default(), Limits { max_credential: cap, max_header: 64 }] {
                prop_assert_eq!(outcome(&h, &config, limits), reference(&h, &config, limits));
            }
        }

        #[test]
        fn round_trips(token in "[ -~]{1,300}", companion in "[a-z][a-z0-9.]{0,20}") {
            let entry = SubprotocolCarrier::new().encode(&token);
            let mut p = parse(&[&format!("{companion}, {entry}")]).unwrap().unwrap();
            let credential = p.take_credential();
            prop_assert_eq!(credential.as_deref(), Some(token.as_str()));
            prop_assert_eq!(p.selected().to_str().unwrap(), companion.as_str());
        }
    }
}
