//! The check of the request head: everything decided before the
//! authenticator runs, as a pure function of the request.

use http::{HeaderValue, Request};

use crate::credential::{Carrier, CarrierError, Credential, Limits, Source, Traces, extract};
use crate::origin::{OriginPolicy, OriginVerdict};
use crate::rejection::{Rejection, RejectionKind};
use crate::upgrade::is_websocket_upgrade;

/// The layer's configuration, shared by every service it builds.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The carriers, in order; `[Bearer]` until one is configured.
    pub(super) sources: Vec<Source>,
    /// `sources` is still the default and goes at the first carrier added.
    pub(super) default_sources: bool,
    pub(super) cookie_origin: Option<OriginPolicy>,
    pub(super) origin: Option<OriginPolicy>,
    pub(super) protect_all: bool,
    pub(super) reject_conflicts: bool,
    pub(super) limits: Limits,
    pub(super) realm: Option<HeaderValue>,
    pub(super) throttle: Option<crate::throttle::FailedAuthLimit>,
    pub(super) audit: Option<crate::audit::AuditHook>,
    /// The handles of the layer's metrics (nothing without the feature).
    pub(super) metrics: crate::observe::Metrics,
    #[cfg(feature = "close-rejections")]
    pub(super) close: Option<super::CloseRejections>,
}

impl Config {
    /// The default configuration of a layer whose authenticator is named
    /// `authenticator` ([`Authenticator::name`](crate::Authenticator::name)).
    pub(super) fn new(authenticator: &'static str) -> Self {
        Self {
            sources: vec![Source::Bearer],
            default_sources: true,
            cookie_origin: None,
            origin: None,
            protect_all: false,
            reject_conflicts: false,
            limits: Limits::default(),
            realm: None,
            throttle: None,
            audit: None,
            metrics: crate::observe::Metrics::new(authenticator),
            #[cfg(feature = "close-rejections")]
            close: None,
        }
    }
}

/// Whether, and how, a request asks for a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upgrade {
    /// Not an upgrade.
    No,
    /// HTTP/1.1 `Upgrade: websocket`.
    Http1,
    /// HTTP/2 extended CONNECT (its upgrade response is a 2xx).
    Http2,
}

/// What the request head decides.
#[derive(Debug)]
pub(crate) enum Outcome<'a> {
    /// Not an upgrade, and only upgrades are protected: the request passes
    /// through untouched.
    PassThrough,
    /// Refused before the authenticator runs.
    Reject(Box<Rejection>, Upgrade),
    /// Authenticate a credential.
    Authenticate(Candidate<'a>),
}

/// A request to authenticate.
#[derive(Debug)]
pub(crate) struct Candidate<'a> {
    /// The credential of the carrier that won.
    pub(super) credential: Credential,
    /// What the carriers left of it in the request, to remove first.
    pub(super) traces: Traces<'a>,
    pub(super) upgrade: Upgrade,
}

impl Config {
    /// Checks the head of `request`, in this order: upgrade detection, every
    /// configured carrier (a malformed one is 400, an oversized one 431),
    /// the `Origin` policies (on upgrades: 403), then whether any carrier
    /// held a credential (401).
    pub(crate) fn check<B>(&self, request: &Request<B>) -> Outcome<'_> {
        let upgrade = match is_websocket_upgrade(request) {
            false if !self.protect_all => return Outcome::PassThrough,
            false => Upgrade::No,
            true if request.version() >= http::Version::HTTP_2 => Upgrade::Http2,
            true => Upgrade::Http1,
        };
        let extracted = match extract(
            &self.sources,
            request.headers(),
            request.uri(),
            self.limits,
            upgrade != Upgrade::No,
            self.reject_conflicts,
        ) {
            Ok(extracted) => extracted,
            Err((error, carrier)) => {
                return Outcome::Reject(carrier_rejection(error, carrier), upgrade);
            }
        };
        let carrier = extracted.credential.as_ref().map(Credential::carrier);
        if upgrade != Upgrade::No {
            let cookie_origin = match carrier {
                Some(Carrier::Cookie) => self.cookie_origin.as_ref(),
                _ => None,
            };
            for policy in [self.origin.as_ref(), cookie_origin].into_iter().flatten() {
                if let Some(rejection) = origin_rejection(policy.check(request.headers()), carrier)
                {
                    return Outcome::Reject(rejection, upgrade);
                }
            }
        }
        match extracted.credential {
            Some(credential) => Outcome::Authenticate(Candidate {
                credential,
                traces: extracted.traces,
                upgrade,
            }),
            None => Outcome::Reject(
                Box::new(Rejection::new(
                    RejectionKind::MissingCredential,
                    "no credential in any configured carrier",
                )),
                upgrade,
            ),
        }
    }
}

/// The rejection for a carrier that could not be read.
pub(super) fn carrier_rejection(error: CarrierError, carrier: Option<Carrier>) -> Box<Rejection> {
    let rejection = match error {
        CarrierError::Malformed(reason) => Rejection::new(RejectionKind::InvalidRequest, reason),
        CarrierError::TooLarge => Rejection::new(
            RejectionKind::CredentialTooLarge,
            "credential or header over its size cap",
        ),
    };
    Box::new(rejection.with_carrier(carrier))
}

fn origin_rejection(verdict: OriginVerdict, carrier: Option<&Carrier>) -> Option<Box<Rejection>> {
    let rejection = match verdict {
        OriginVerdict::Allowed => return None,
        OriginVerdict::Refused(reason) => Rejection::new(RejectionKind::OriginRefused, reason),
        OriginVerdict::Malformed => {
            Rejection::new(RejectionKind::InvalidRequest, "several Origin headers")
        }
    };
    Some(Box::new(rejection.with_carrier(carrier.cloned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade() -> http::request::Builder {
        Request::builder()
            .uri("/ws")
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
    }

    fn config(sources: Vec<Source>) -> Config {
        Config {
            sources,
            default_sources: false,
            ..Config::new("custom")
        }
    }

    #[test]
    fn outcomes() {
        let bearer = config(vec![Source::Bearer]);
        let plain = Request::new(());
        assert!(matches!(bearer.check(&plain), Outcome::PassThrough));
        let missing = upgrade().body(()).unwrap();
        assert!(matches!(
            bearer.check(&missing),
            Outcome::Reject(r, _) if r.kind() == RejectionKind::MissingCredential
        ));
        let malformed = upgrade()
            .header("authorization", "Basic x")
            .body(())
            .unwrap();
        assert!(matches!(
            bearer.check(&malformed),
            Outcome::Reject(r, _) if r.kind() == RejectionKind::InvalidRequest
        ));
        let good = upgrade()
            .header("authorization", "Bearer t")
            .body(())
            .unwrap();
        assert!(matches!(
            bearer.check(&good),
            Outcome::Authenticate(c) if c.credential.expose_secret() == "t" && c.upgrade == Upgrade::Http1
        ));
    }

    #[test]
    fn the_origin_is_checked_on_upgrades_only_whatever_the_carrier() {
        let mut policy = config(vec![Source::Bearer]);
        policy.origin = Some(OriginPolicy::from_origins(["https://app.example"]).unwrap());
        policy.protect_all = true;
        let foreign = |b: http::request::Builder| {
            b.header("authorization", "Bearer t")
                .header("origin", "https://evil.example")
                .body(())
                .unwrap()
        };
        assert!(matches!(
            policy.check(&foreign(upgrade())),
            Outcome::Reject(r, _) if r.kind() == RejectionKind::OriginRefused
        ));
        assert!(matches!(
            policy.check(&foreign(Request::builder())),
            Outcome::Authenticate(_)
        ));
    }
}
