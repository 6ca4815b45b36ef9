//! Throttling of failed handshakes per client address:
//! [`FailedAuthLimit`], installed with
//! [`WsAuthLayer::failed_auth_limit`](crate::WsAuthLayer::failed_auth_limit).
//!
//! Past `limit` failed upgrades from one client address within a window,
//! every upgrade from that address is refused with `429 Too Many Requests`
//! and `Retry-After` (the rest of the window, in whole seconds) without
//! running the authenticator, so a password or token guesser, or a client
//! in a reconnect loop, does not reach the session store or the JWKS
//! endpoint with every attempt. Successes are not counted (and do not
//! reset the count). The window is fixed: it starts at the address's first
//! failure and ends `window` later, when the address starts afresh.
//!
//! What counts as a failure: a refusal for the credential (missing,
//! malformed, invalid, revoked, insufficient scope, forbidden, over its size
//! cap). Refusals that are not the client's doing (`503 Unavailable`) and
//! refused origins do not count.
//!
//! The client address is the connection's peer: axum's
//! `ConnectInfo<SocketAddr>` (serve with
//! `into_make_service_with_connect_info::<SocketAddr>()`), or a
//! [`PeerAddr`] that a hyper server inserts into each request's
//! extensions. Behind a reverse proxy, [`TrustedProxies`] says which peers'
//! `X-Forwarded-For` (or `Forwarded`) to believe; the header of any other
//! peer is ignored, so a client cannot pick its own address. A request
//! whose address is unknown (no peer address installed) is not throttled.
//! IPv6 addresses are counted by their /64 prefix (what one host usually
//! holds); IPv4-mapped IPv6 addresses as the IPv4 address.
//!
//! The table is per instance (each server instance counts the failures it
//! sees) and bounded: at most [`max_addresses`](FailedAuthLimit::max_addresses)
//! addresses (65,536 by default, about 100 bytes each). Windows that ended
//! are dropped first; when the table is still full, the address whose window
//! started first is forgotten (it starts afresh; a warning is logged), so a
//! flood of addresses costs memory up to the cap and no more.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{Extensions, HeaderMap};

use crate::error::ConfigError;
use crate::rejection::RejectionKind;

/// The peer address of a connection, for servers without axum's
/// `ConnectInfo`: insert it into each request's extensions (hyper's
/// `service_fn` knows the peer from `accept`).
///
/// ```
/// use tower_ws_auth::throttle::PeerAddr;
///
/// let peer: std::net::SocketAddr = "192.0.2.7:50000".parse().unwrap();
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(PeerAddr(peer));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Which header trusted proxies put the client address in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for="[2001:db8::1]:4711"` (RFC 7239).
    Forwarded,
}

/// The reverse proxies whose forwarding header is believed.
///
/// When the peer is one of them, the client address is read from the
/// header, right to left: each address that is itself a trusted proxy is
/// skipped, and the first one that is not is the client (what the
/// outermost trusted proxy saw). If every entry is trusted, the leftmost
/// is taken; if the header is missing or unreadable, the peer itself.
/// Any other peer's header is ignored.
///
/// ```
/// use tower_ws_auth::throttle::{ProxyHeader, TrustedProxies};
///
/// let proxies = TrustedProxies::new(["10.0.0.1".parse().unwrap()]).header(ProxyHeader::Forwarded);
/// # let _ = proxies;
/// ```
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    addresses: Vec<IpAddr>,
    header: ProxyHeader,
}

impl TrustedProxies {
    /// Trusts the proxies at `addresses` (exact addresses).
    pub fn new(addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        Self {
            addresses: addresses.into_iter().map(|a| a.to_canonical()).collect(),
            header: ProxyHeader::default(),
        }
    }

    /// Reads `header` instead of `X-Forwarded-For`.
    #[must_use]
    pub fn header(mut self, header: ProxyHeader) -> Self {
        self.header = header;
        self
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.addresses.contains(&address.to_canonical())
    }

    /// The client address of a request from `peer` with `headers`.
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut hops = Vec::new();
        let name = match self.header {
            ProxyHeader::XForwardedFor => "x-forwarded-for",
            ProxyHeader::Forwarded => "forwarded",
        };
        for value in headers.get_all(name) {
            let Ok(value) = value.to_str() else {
                return peer;
            };
            for element in value.split(',') {
                let address = match self.header {
                    ProxyHeader::XForwardedFor => parse_address(element.trim()),
                    ProxyHeader::Forwarded => forwarded_for(element),
                };
                match address {
                    Some(address) => hops.push(address),
                    // An unreadable or obfuscated hop: nothing left of it
                    // can be believed; the last readable hop is the client.
                    None => hops.clear(),
                }
            }
        }
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            client = hop;
            if !self.trusts(hop) {
                break;
            }
        }
        client
    }
}

/// An IP address, with or without a port (`192.0.2.1:80`, `[::1]:80`).
fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim_matches('"');
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address.ip());
    }
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse::<Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// The `for=` of one `Forwarded` element (`for=192.0.2.60;proto=http`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            parse_address(value.trim())
        } else {
            None
        }
    })
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64.
fn key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            for segment in segments.iter_mut().skip(4) {
                *segment = 0;
            }
            IpAddr::V6(Ipv6Addr::from(segments))
        }
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

struct Table {
    windows: HashMap<IpAddr, Window>,
    /// Keys in the order their windows started.
    order: VecDeque<(IpAddr, Instant)>,
}

/// A limit on failed handshakes per client address; see the [module
/// documentation](self).
///
/// ```
/// use std::time::Duration;
/// use tower_ws_auth::{authenticate_fn, AuthError, WsAuthLayer, throttle::FailedAuthLimit};
///
/// # fn main() -> Result<(), tower_ws_auth::ConfigError> {
/// let auth = authenticate_fn(|_, _| async { Err(AuthError::invalid("nobody")) });
/// let limit = FailedAuthLimit::new(100.try_into().unwrap(), Duration::from_secs(60))?;
/// let layer = WsAuthLayer::new(auth).failed_auth_limit(limit);
/// # let _ = layer;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FailedAuthLimit {
    inner: Arc<Inner>,
}

struct Inner {
    limit: u32,
    window: Duration,
    capacity: usize,
    proxies: TrustedProxies,
    table: Mutex<Table>,
}

impl fmt::Debug for FailedAuthLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailedAuthLimit")
            .field("limit", &self.inner.limit)
            .field("window", &self.inner.window)
            .field("max_addresses", &self.inner.capacity)
            .field("proxies", &self.inner.proxies)
            .finish_non_exhaustive()
    }
}

/// The default [`FailedAuthLimit::max_addresses`].
const DEFAULT_CAPACITY: usize = 65_536;

impl FailedAuthLimit {
    /// At most `limit` failed upgrades per client address per `window`.
    ///
    /// # Errors
    ///
    /// If `window` is zero.
    pub fn new(limit: NonZeroU32, window: Duration) -> Result<Self, ConfigError> {
        if window.is_zero() {
            return Err(ConfigError::setting(
                "FailedAuthLimit::new",
                "the window must not be zero",
            ));
        }
        Ok(Self::build(
            limit.get(),
            window,
            DEFAULT_CAPACITY,
            TrustedProxies::default(),
        ))
    }

    fn build(limit: u32, window: Duration, capacity: usize, proxies: TrustedProxies) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                window,
                capacity,
                proxies,
                table: Mutex::new(Table {
                    windows: HashMap::new(),
                    order: VecDeque::new(),
                }),
            }),
        }
    }

    /// Tracks at most `addresses` client addresses (default 65,536); see
    /// the [module documentation](self) for what happens at the cap.
    /// Starts with an empty table.
    #[must_use]
    pub fn max_addresses(self, addresses: NonZeroUsize) -> Self {
        let inner = &self.inner;
        Self::build(
            inner.limit,
            inner.window,
            addresses.get(),
            inner.proxies.clone(),
        )
    }

    /// Believes the forwarding header of these proxies; see
    /// [`TrustedProxies`]. Starts with an empty table.
    #[must_use]
    pub fn trust_proxies(self, proxies: TrustedProxies) -> Self {
        let inner = &self.inner;
        Self::build(inner.limit, inner.window, inner.capacity, proxies)
    }

    /// The client address of a request, as the limit counts it (before the
    /// IPv6 /64 grouping): the peer (axum's `ConnectInfo<SocketAddr>` or a
    /// [`PeerAddr`]), or what a trusted proxy forwarded. `None` if the
    /// request carries no peer address.
    pub fn client_addr(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        let peer = peer_addr(extensions)?;
        Some(self.inner.proxies.client(peer.ip(), headers))
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every critical section is a few map operations: a panic in one
        // cannot leave the table inconsistent.
        self.inner
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How long `address` is still refused, if it is.
    pub(crate) fn blocked(&self, address: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let table = self.table();
        let window = table.windows.get(&key(address))?;
        let end = window.start + self.inner.window;
        (window.failures >= self.inner.limit && now < end).then(|| end - now)
    }

    /// Counts a failed upgrade from `address`.
    pub(crate) fn record_failure(&self, address: IpAddr) {
        let now = Instant::now();
        let window_length = self.inner.window;
        let key = key(address);
        let mut table = self.table();
        let table = &mut *table;
        while let Some(&(old, start)) = table.order.front() {
            if start + window_length > now {
                break;
            }
            table.order.pop_front();
            if table.windows.get(&old).is_some_and(|w| w.start == start) {
                table.windows.remove(&old);
            }
        }
        if let Some(window) = table.windows.get_mut(&key) {
            window.failures = window.failures.saturating_add(1);
            return;
        }
        while table.windows.len() >= self.inner.capacity {
            let Some((old, start)) = table.order.pop_front() else {
                break;
            };
            if table.windows.get(&old).is_some_and(|w| w.start == start) {
                table.windows.remove(&old);
                tracing::warn!(target: "tower_ws_auth", "failed-authentication table full: the oldest address is forgotten early");
            }
        }
        table.windows.insert(
            key,
            Window {
                start: now,
                failures: 1,
            },
        );
        table.order.push_back((key, now));
    }

    /// The number of addresses tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().windows.len()
    }
}

/// `true` for the refusals that count as failed authentications.
pub(crate) fn counts(kind: RejectionKind) -> bool {
    matches!(
        kind,
        RejectionKind::MissingCredential
            | RejectionKind::InvalidRequest
            | RejectionKind::InvalidToken
            | RejectionKind::InsufficientScope
            | RejectionKind::Forbidden
            | RejectionKind::CredentialTooLarge
    )
}

/// The connection's peer: axum's `ConnectInfo`, else a [`PeerAddr`].
fn peer_addr(extensions: &Extensions) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(peer)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*peer);
    }
    extensions.get::<PeerAddr>().map(|p| p.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn counts_failures_per_window_and_address() {
        let limit = FailedAuthLimit::new(2.try_into().unwrap(), Duration::from_millis(80)).unwrap();
        let a = ip("192.0.2.1");
        limit.record_failure(a);
        assert!(limit.blocked(a).is_none());
        limit.record_failure(a);
        assert!(limit.blocked(a).is_some());
        assert!(limit.blocked(ip("192.0.2.2")).is_none());
        // One host's IPv6 addresses share a /64.
        limit.record_failure(ip("2001:db8::1"));
        limit.record_failure(ip("2001:db8::ffff:2"));
        assert!(limit.blocked(ip("2001:db8::3")).is_some());
        assert!(limit.blocked(ip("2001:db8:0:1::3")).is_none());
        std::thread::sleep(Duration::from_millis(90));
        assert!(limit.blocked(a).is_none());
        limit.record_failure(ip("192.0.2.9"));
        assert_eq!(limit.len(), 1, "ended windows are dropped");
        assert!(FailedAuthLimit::new(1.try_into().unwrap(), Duration::ZERO).is_err());
    }

    #[test]
    fn the_table_is_bounded() {
        let limit = FailedAuthLimit::new(1.try_into().unwrap(), Duration::from_secs(60))
            .unwrap()
            .max_addresses(3.try_into().unwrap());
        for i in 0..10u8 {
            limit.record_failure(IpAddr::from([198, 51, 100, i]));
        }
        assert_eq!(limit.len(), 3);
        // The oldest were forgotten, the newest are still refused.
        assert!(limit.blocked(IpAddr::from([198, 51, 100, 0])).is_none());
        assert!(limit.blocked(IpAddr::from([198, 51, 100, 9])).is_some());
    }

    #[test]
    fn trusted_proxies_and_forwarding_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
        headers.insert(
            "forwarded",
            r#"for=198.51.100.4;proto=https, for="[2001:db8::7]:4711""#
                .parse()
                .unwrap(),
        );
        let proxy = ip("10.0.0.1");
        let none = TrustedProxies::default();
        assert_eq!(none.client(proxy, &headers), proxy, "untrusted: ignored");
        let one = TrustedProxies::new([proxy]);
        assert_eq!(one.client(proxy, &headers), ip("10.0.0.2"));
        let two = TrustedProxies::new([proxy, ip("10.0.0.2")]);
        assert_eq!(two.client(proxy, &headers), ip("203.0.113.9"));
        assert_eq!(two.client(ip("192.0.2.5"), &headers), ip("192.0.2.5"));
        let rfc = TrustedProxies::new([proxy]).header(ProxyHeader::Forwarded);
        assert_eq!(rfc.client(proxy, &headers), ip("2001:db8::7"));
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(one.client(proxy, &headers), proxy);
    }
}
