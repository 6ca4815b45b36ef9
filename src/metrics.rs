//! The metrics this crate emits through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`): their names, and every value each label can
//! take.
//!
//! The names and the label values below are part of the semver contract:
//! a value is never built from the request (no subject, no path, no header
//! value), so the number of series is bounded by these lists. A new
//! rejection kind or close reason in a minor version adds a value to its
//! list; nothing is renamed or removed before a major version.
//!
#![doc = include_str!("../docs/metrics.md")]

/// Counter: every decision of the layer on a request it authenticates (an
/// upgrade, or any request with `protect_all_requests`). Labels:
/// `outcome` ([`OUTCOMES`]), `reason` ([`REASONS`]), `carrier` ([`CARRIERS`]).
pub const UPGRADES_TOTAL: &str = "tower_ws_auth_upgrades_total";

/// Histogram, in seconds: the time the authenticator took on a request's
/// credential, whatever its answer. Label: `authenticator`
/// ([`AUTHENTICATORS`]).
pub const AUTHENTICATION_SECONDS: &str = "tower_ws_auth_authentication_seconds";

/// Gauge: the guarded sockets ([`GuardedSocket`](crate::socket::GuardedSocket))
/// alive in the process. No labels.
pub const OPEN_CONNECTIONS: &str = "tower_ws_auth_open_connections";

/// Counter: the end of every guarded socket and of every first-message
/// authentication that failed. Label: `reason` ([`CLOSE_REASONS`]).
pub const CLOSES_TOTAL: &str = "tower_ws_auth_closes_total";

/// Counter: every fetch of a remote key set (`RemoteJwks`, feature `jwks`).
/// Label: `outcome` ([`JWKS_OUTCOMES`]).
pub const JWKS_REFRESHES_TOTAL: &str = "tower_ws_auth_jwks_refreshes_total";

/// Every metric name, in the order above.
pub const NAMES: [&str; 5] = [
    UPGRADES_TOTAL,
    AUTHENTICATION_SECONDS,
    OPEN_CONNECTIONS,
    CLOSES_TOTAL,
    JWKS_REFRESHES_TOTAL,
];

/// The `outcome` label of [`UPGRADES_TOTAL`].
pub const OUTCOMES: [&str; 2] = ["accepted", "rejected"];

/// The `reason` label of [`UPGRADES_TOTAL`]: `none` for an accepted
/// request, else [`RejectionKind::as_str`](crate::RejectionKind::as_str)
/// of the rejection.
pub const REASONS: [&str; 11] = [
    "none",
    "missing_credential",
    "invalid_request",
    "invalid_token",
    "insufficient_scope",
    "forbidden",
    "origin_refused",
    "credential_too_large",
    "unavailable",
    "throttled",
    "too_many_connections",
];

/// The `carrier` label of [`UPGRADES_TOTAL`]: `none` when no carrier held
/// a credential (or the rejection came first), else
/// [`Carrier::as_str`](crate::Carrier::as_str) (every custom header is
/// `header`).
pub const CARRIERS: [&str; 6] = ["none", "bearer", "header", "subprotocol", "cookie", "query"];

/// The `authenticator` label of [`AUTHENTICATION_SECONDS`]:
/// [`Authenticator::name`](crate::Authenticator::name) of the layer's
/// authenticator. `custom` is the default of the trait (closures, your own
/// authenticators), `or` a combination with [`Authenticator::or`](crate::Authenticator::or).
pub const AUTHENTICATORS: [&str; 7] = [
    "jwt",
    "session",
    "api_key",
    "ticket",
    "introspection",
    "or",
    "custom",
];

/// The `reason` label of [`CLOSES_TOTAL`].
///
/// For a guarded socket, [`EndReason::as_str`](crate::socket::EndReason::as_str):
/// `peer`, `expired`, `revoked`, `refresh_rejected`,
/// `refresh_other_subject`, `application` (closed by the application),
/// `too_big` (the peer sent a message over the socket's size limit; failed
/// with 1009), `error` (the socket failed, or another protocol error),
/// `replaced` (closed by
/// the per-subject cap's close-the-oldest policy), and `dropped` (dropped
/// while open, or taken back with `into_inner`).
///
/// For a failed first-message authentication: `auth_timeout`, `too_big`,
/// `not_auth_message`, `malformed_auth_message`, `auth_rejected`,
/// `too_many_pending`, and `peer` or `error` when the peer left or the
/// socket failed before authenticating.
pub const CLOSE_REASONS: [&str; 15] = [
    "peer",
    "expired",
    "revoked",
    "refresh_rejected",
    "refresh_other_subject",
    "application",
    "error",
    "replaced",
    "dropped",
    "auth_timeout",
    "too_big",
    "not_auth_message",
    "malformed_auth_message",
    "auth_rejected",
    "too_many_pending",
];

/// The `outcome` label of [`JWKS_REFRESHES_TOTAL`]: the fetch (discovery
/// included) succeeded, or failed and the cached keys were kept.
pub const JWKS_OUTCOMES: [&str; 2] = ["success", "failure"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Carrier, RejectionKind};

    // Exhaustive matches: a new kind, carrier or end reason does not
    // compile until it is listed here, and so in the documented lists.
    #[test]
    fn every_rejection_kind_is_a_documented_reason() {
        for kind in [
            RejectionKind::MissingCredential,
            RejectionKind::InvalidRequest,
            RejectionKind::InvalidToken,
            RejectionKind::InsufficientScope,
            RejectionKind::Forbidden,
            RejectionKind::OriginRefused,
            RejectionKind::CredentialTooLarge,
            RejectionKind::Unavailable,
            RejectionKind::Throttled,
            RejectionKind::TooManyConnections,
        ] {
            match kind {
                RejectionKind::MissingCredential
                | RejectionKind::InvalidRequest
                | RejectionKind::InvalidToken
                | RejectionKind::InsufficientScope
                | RejectionKind::Forbidden
                | RejectionKind::OriginRefused
                | RejectionKind::CredentialTooLarge
                | RejectionKind::Unavailable
                | RejectionKind::Throttled
                | RejectionKind::TooManyConnections => {}
            }
            assert!(REASONS.contains(&kind.as_str()), "{kind:?}");
            // The recording point's index of the kind is its place here.
            assert_eq!(
                REASONS[crate::observe::reason_index(Some(kind))],
                kind.as_str()
            );
        }
        assert_eq!(REASONS[crate::observe::reason_index(None)], "none");
        assert_eq!(REASONS.len(), 11, "none and the ten kinds");
    }

    #[test]
    fn every_carrier_of_an_upgrade_is_documented() {
        let header = Carrier::Header(http::HeaderName::from_static("x-api-key"));
        for carrier in [
            Carrier::Bearer,
            header,
            Carrier::Subprotocol,
            Carrier::Cookie,
            Carrier::Query,
        ] {
            match carrier {
                Carrier::Bearer
                | Carrier::Header(_)
                | Carrier::Subprotocol
                | Carrier::Cookie
                | Carrier::Query
                | Carrier::Message => {}
            }
            assert!(CARRIERS.contains(&carrier.as_str()), "{carrier:?}");
            assert_eq!(
                crate::observe::carrier_index(Some(&carrier)).map(|i| CARRIERS[i]),
                Some(carrier.as_str())
            );
        }
        let none = crate::observe::carrier_index(None);
        assert_eq!(none.map(|i| CARRIERS[i]), Some("none"));
        assert_eq!(crate::observe::carrier_index(Some(&Carrier::Message)), None);
    }

    #[cfg(feature = "socket")]
    #[test]
    fn every_end_is_a_documented_close_reason() {
        use crate::socket::{EndReason, FirstMessageError};
        for end in [
            EndReason::Expired,
            EndReason::Revoked,
            EndReason::RefreshForOtherSubject,
            EndReason::RefreshRejected,
            EndReason::PeerClosed,
            EndReason::Closed,
            EndReason::TooBig,
            EndReason::Error,
            EndReason::Replaced,
        ] {
            match end {
                EndReason::Expired
                | EndReason::Revoked
                | EndReason::RefreshForOtherSubject
                | EndReason::RefreshRejected
                | EndReason::PeerClosed
                | EndReason::Closed
                | EndReason::TooBig
                | EndReason::Error
                | EndReason::Replaced => {}
            }
            assert!(CLOSE_REASONS.contains(&end.as_str()), "{end:?}");
        }
        let socket_error = || crate::socket::SocketError::closed();
        for error in [
            FirstMessageError::Timeout,
            FirstMessageError::TooBig,
            FirstMessageError::NotAuthMessage,
            FirstMessageError::Malformed,
            FirstMessageError::Rejected(crate::AuthError::invalid("x")),
            FirstMessageError::TooManyPending,
            FirstMessageError::PeerClosed,
            FirstMessageError::Socket(socket_error()),
        ] {
            match &error {
                FirstMessageError::Timeout
                | FirstMessageError::TooBig
                | FirstMessageError::NotAuthMessage
                | FirstMessageError::Malformed
                | FirstMessageError::Rejected(_)
                | FirstMessageError::TooManyPending
                | FirstMessageError::PeerClosed
                | FirstMessageError::Socket(_) => {}
            }
            assert!(CLOSE_REASONS.contains(&error.close_reason()), "{error:?}");
        }
        assert!(CLOSE_REASONS.contains(&"dropped"));
    }
}
