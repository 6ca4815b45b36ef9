#![doc = include_str!("../../docs/tickets.md")]

mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "axum")]
mod route;

use std::fmt;
use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::ORIGIN;
use http::request::Parts;
use sha2::{Digest, Sha256};

use crate::authenticator::Authenticator;
use crate::credential::{Carrier, Credential};
use crate::error::{AuthError, ConfigError};
use crate::identity::Identity;
use crate::origin::OriginPolicy;

use memory::MemoryStore;

/// What every ticket starts with: a ticket is told apart from a JWT or an
/// API key without a store lookup, and secret scanners can recognise one.
pub const TICKET_PREFIX: &str = "wst_";

/// Random bytes in a ticket (256 bits from the operating system's RNG).
const TICKET_BYTES: usize = 32;

/// Base64url characters of [`TICKET_BYTES`] random bytes, without padding.
const ENCODED_LEN: usize = 43;

/// The default lifetime of a ticket.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// The longest lifetime [`Tickets::ttl`] accepts.
pub const MAX_TTL: Duration = Duration::from_secs(300);

/// The digest a ticket is stored under: a dump of the store holds no
/// ticket a client could present.
type Key = [u8; 32];

fn key_of(ticket: &str) -> Key {
    Sha256::digest(ticket.as_bytes()).into()
}

/// A freshly minted ticket: the opaque secret to hand to the client, and
/// how long it stays redeemable.
///
/// Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct Ticket {
    secret: String,
    expires_in: Duration,
}

impl Ticket {
    /// The ticket itself (`wst_` and 43 base64url characters). Send it to
    /// the client that asked for it and nowhere else (no logs).
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    /// How long the ticket stays redeemable from the moment it was minted.
    pub fn expires_in(&self) -> Duration {
        self.expires_in
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("secret", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Where tickets are kept until they are redeemed or expire.
#[derive(Clone)]
enum Store {
    Memory(MemoryStore),
    #[cfg(feature = "redis")]
    Redis(redis::RedisStore),
}

/// The ticket issuer and, as an [`Authenticator`], the ticket redeemer.
///
/// [`issue`](Self::issue) mints a ticket bound to an [`Identity`] (the one
/// the minting request was authenticated as); the layer then authenticates
/// an upgrade carrying that ticket as that identity, once: redemption
/// removes the ticket atomically, so of two handshakes presenting one
/// ticket exactly one succeeds. An unknown, used or expired ticket is 401
/// `invalid_token`. The identity keeps its expiry, so a guarded socket
/// (`SessionGuard`, feature `socket`) still closes with 4002 when the
/// credential the ticket was minted from expires.
///
/// As an authenticator it only handles credentials that start with
/// [`TICKET_PREFIX`] and come from the query or the subprotocol carrier;
/// anything else is [`AuthError::NotApplicable`], so it goes first in an
/// [`or`](Authenticator::or) chain. Clones share the store.
///
/// ```
/// use std::num::NonZeroUsize;
/// use tower_ws_auth::{Authenticator, AuthMethod, Identity, WsAuthLayer, ticket::Tickets};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let tickets = Tickets::in_memory(NonZeroUsize::new(10_000).unwrap());
/// # let jwt = tower_ws_auth::authenticate_fn(|_, _| async { Err(tower_ws_auth::AuthError::NotApplicable) });
/// // Upgrades: a ticket in `?ticket=`, or a JWT in the `Authorization` header.
/// let layer = WsAuthLayer::new(tickets.clone().or(jwt))
///     .bearer_header()
///     .query_param("ticket")?;
///
/// // In the minting endpoint, authenticated some other way:
/// let ticket = tickets.issue(&Identity::new("alice", AuthMethod::Session)).await?;
/// assert!(ticket.expose_secret().starts_with("wst_"));
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tickets {
    store: Store,
    ttl: Duration,
    origins: Option<OriginPolicy>,
}

impl fmt::Debug for Tickets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = match &self.store {
            Store::Memory(_) => "memory",
            #[cfg(feature = "redis")]
            Store::Redis(_) => "redis",
        };
        f.debug_struct("Tickets")
            .field("store", &store)
            .field("ttl", &self.ttl)
            .field("origins", &self.origins)
            .finish()
    }
}

impl Tickets {
    /// Tickets kept in this process's memory, at most `capacity` at once.
    ///
    /// Expired tickets are evicted as new ones are minted. When `capacity`
    /// unexpired, unredeemed tickets exist, [`issue`](Self::issue) fails
    /// with [`AuthError::Unavailable`] (503) until some are redeemed or
    /// expire; rate-limit the minting endpoint to keep that from happening.
    /// Only this process can redeem them: behind a load balancer, use
    /// [`redis`](Self::redis) (feature `redis`).
    pub fn in_memory(capacity: NonZeroUsize) -> Self {
        Self::with_store(Store::Memory(MemoryStore::new(capacity)))
    }

    fn with_store(store: Store) -> Self {
        Self {
            store,
            ttl: DEFAULT_TTL,
            origins: None,
        }
    }

    /// Sets how long a ticket stays redeemable (default 30 s, at most
    /// [`MAX_TTL`]). A ticket is meant to be used at once by the page that
    /// asked for it: keep this short.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] for less than one second or more
    /// than [`MAX_TTL`].
    pub fn ttl(mut self, ttl: Duration) -> Result<Self, ConfigError> {
        if ttl < Duration::from_secs(1) {
            return Err(ConfigError::setting(
                "ticket ttl",
                "shorter than one second",
            ));
        }
        if ttl > MAX_TTL {
            return Err(ConfigError::setting(
                "ticket ttl",
                "longer than 300 seconds",
            ));
        }
        self.ttl = ttl;
        Ok(self)
    }

    /// Checks the `Origin` of requests that send one against `policy`: an
    /// upgrade redeeming a ticket from another origin is 403 (and its
    /// ticket is not spent), and so is minting from another origin with
    /// [`mint_route`](Self::mint_route). Requests without an `Origin`
    /// (non-browser clients) are not affected, except the minting of a
    /// ticket for a session identity (a cookie: ambient, so a missing
    /// Origin is refused there).
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.origins = Some(policy);
        self
    }

    /// The lifetime of the tickets this issuer mints.
    pub fn ttl_value(&self) -> Duration {
        self.ttl
    }

    /// Mints a ticket for `identity`, valid once for the configured TTL.
    ///
    /// The ticket holds 256 bits from the operating system's RNG; only its
    /// SHA-256 digest is stored.
    ///
    /// # Errors
    ///
    /// [`AuthError::Invalid`] if `identity` has already expired;
    /// [`AuthError::Unavailable`] if the RNG or the store fails (a full
    /// memory store, Redis down or slow).
    pub async fn issue(&self, identity: &Identity) -> Result<Ticket, AuthError> {
        if identity.is_expired_at(SystemTime::now()) {
            return Err(AuthError::invalid("no ticket for an expired identity"));
        }
        let mut random = [0u8; TICKET_BYTES];
        getrandom::getrandom(&mut random)
            .map_err(|_| AuthError::unavailable("the OS random number generator failed"))?;
        let mut secret = String::with_capacity(TICKET_PREFIX.len() + ENCODED_LEN);
        secret.push_str(TICKET_PREFIX);
        URL_SAFE_NO_PAD.encode_string(random, &mut secret);
        let key = key_of(&secret);
        match &self.store {
            Store::Memory(store) => store.insert(key, identity.clone(), self.ttl)?,
            #[cfg(feature = "redis")]
            Store::Redis(store) => store.insert(key, identity, self.ttl).await?,
        }
        Ok(Ticket {
            secret,
            expires_in: self.ttl,
        })
    }

    /// Redeems `ticket`: the identity it was minted for, and the ticket is
    /// gone. `None` for a ticket that is unknown, used or expired.
    async fn redeem(&self, ticket: &str) -> Result<Option<Identity>, AuthError> {
        let key = key_of(ticket);
        match &self.store {
            Store::Memory(store) => Ok(store.take(&key)),
            #[cfg(feature = "redis")]
            Store::Redis(store) => store.take(&key).await,
        }
    }

    /// `Err` if the request has an `Origin` the policy refuses.
    fn check_origin(&self, headers: &http::HeaderMap, required: bool) -> Result<(), AuthError> {
        match &self.origins {
            Some(policy)
                if (required || headers.contains_key(ORIGIN))
                    && !policy.allows_headers(headers) =>
            {
                Err(AuthError::forbidden("origin not allowed for tickets"))
            }
            _ => Ok(()),
        }
    }
}

/// `true` for `wst_` and 43 base64url characters.
fn is_well_formed(ticket: &str) -> bool {
    ticket.strip_prefix(TICKET_PREFIX).is_some_and(|rest| {
        rest.len() == ENCODED_LEN
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

impl Authenticator for Tickets {
    fn name(&self) -> &'static str {
        "ticket"
    }

    async fn authenticate(
        &self,
        credential: &Credential,
        request: &Parts,
    ) -> Result<Identity, AuthError> {
        if !matches!(credential.carrier(), Carrier::Query | Carrier::Subprotocol) {
            return Err(AuthError::NotApplicable);
        }
        let secret = credential.expose_secret();
        if !secret.starts_with(TICKET_PREFIX) {
            return Err(AuthError::NotApplicable);
        }
        if !is_well_formed(secret) {
            return Err(AuthError::invalid("malformed ticket"));
        }
        self.check_origin(&request.headers, false)?;
        match self.redeem(secret).await? {
            Some(identity) if identity.is_expired_at(SystemTime::now()) => Err(AuthError::invalid(
                "the identity the ticket was minted for has expired",
            )),
            Some(identity) => Ok(identity),
            None => Err(AuthError::invalid("unknown, used or expired ticket")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;

    fn parts() -> Parts {
        http::Request::new(()).into_parts().0
    }

    #[tokio::test]
    async fn redeems_once() {
        let tickets = Tickets::in_memory(NonZeroUsize::new(4).unwrap());
        let ticket = tickets
            .issue(&Identity::new("alice", AuthMethod::Jwt))
            .await
            .unwrap();
        assert!(is_well_formed(ticket.expose_secret()));
        assert!(!format!("{ticket:?}").contains(ticket.expose_secret()));
        let credential = Credential::new(Carrier::Query, ticket.expose_secret());
        let identity = tickets.authenticate(&credential, &parts()).await.unwrap();
        assert_eq!(identity.subject(), "alice");
        assert!(matches!(
            tickets.authenticate(&credential, &parts()).await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn leaves_other_credentials_alone() {
        let tickets = Tickets::in_memory(NonZeroUsize::new(4).unwrap());
        for credential in [
            Credential::new(Carrier::Query, "eyJhbGciOi"),
            Credential::new(Carrier::Bearer, format!("wst_{}", "a".repeat(43))),
            Credential::new(Carrier::Cookie, format!("wst_{}", "a".repeat(43))),
        ] {
            assert!(
                tickets
                    .authenticate(&credential, &parts())
                    .await
                    .unwrap_err()
                    .is_not_applicable()
            );
        }
        for bad in ["wst_", "wst_short", &format!("wst_{}!", "a".repeat(42))] {
            let credential = Credential::new(Carrier::Query, bad);
            assert!(matches!(
                tickets.authenticate(&credential, &parts()).await,
                Err(AuthError::Invalid(_))
            ));
        }
    }

    #[test]
    fn ttl_is_capped() {
        let tickets = Tickets::in_memory(NonZeroUsize::new(1).unwrap());
        assert!(tickets.clone().ttl(Duration::from_millis(999)).is_err());
        assert!(tickets.clone().ttl(Duration::from_secs(301)).is_err());
        assert_eq!(
            tickets.ttl(MAX_TTL).unwrap().ttl_value(),
            Duration::from_secs(300)
        );
    }

    #[tokio::test]
    async fn refuses_expired_identities() {
        let tickets = Tickets::in_memory(NonZeroUsize::new(1).unwrap());
        let expired = Identity::builder("x", AuthMethod::Jwt)
            .expires_at(SystemTime::now() - Duration::from_secs(1))
            .build();
        assert!(matches!(
            tickets.issue(&expired).await,
            Err(AuthError::Invalid(_))
        ));
    }
}
