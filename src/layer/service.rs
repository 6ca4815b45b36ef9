//! [`WsAuth`]: the service, acting on what the check of the request head
//! decided.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use tower_service::Service;
use tracing::Span;

use super::check::{Upgrade, carrier_rejection};
use super::future::{AuthFuture, ResponseFuture};
use super::{Config, Outcome, PassedThrough};
use crate::audit::AuditEvent;
use crate::authenticator::Authenticator;
use crate::credential::{Carrier, Credential};
use crate::error::AuthError;
use crate::rejection::{DefaultRejectionHandler, Rejection, RejectionHandler, RejectionKind};
use crate::throttle::{FailedAuthLimit, counts};

/// What every clone of a [`WsAuth`] shares.
struct Shared<A, H> {
    authenticator: Arc<A>,
    handler: Arc<H>,
    config: Arc<Config>,
}

/// The service [`WsAuthLayer`](crate::WsAuthLayer) wraps around an inner
/// service.
pub struct WsAuth<S, A, H = DefaultRejectionHandler> {
    inner: S,
    shared: Arc<Shared<A, H>>,
}

impl<S: Clone, A, H> Clone for WsAuth<S, A, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, A, H> fmt::Debug for WsAuth<S, A, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsAuth")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S, A, H> WsAuth<S, A, H> {
    pub(super) fn new(
        inner: S,
        authenticator: Arc<A>,
        handler: Arc<H>,
        config: Arc<Config>,
    ) -> Self {
        let shared = Arc::new(Shared {
            authenticator,
            handler,
            config,
        });
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, A, H, ReqB, ResB> Service<Request<ReqB>> for WsAuth<S, A, H>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    A: Authenticator,
    H: RejectionHandler<ResB>,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqB, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        let client = Client::of(&self.shared.config, &request);
        let candidate = match self.shared.config.check(&request) {
            Outcome::PassThrough => {
                request.extensions_mut().insert(PassedThrough);
                return ResponseFuture::inner(self.inner.call(request), None);
            }
            Outcome::Reject(rejection, upgrade) => {
                let (span, (mut parts, _)) = (auth_span(rejection.carrier()), request.into_parts());
                return self.refuse(client.judge(*rejection), &mut parts, upgrade, &span);
            }
            Outcome::Authenticate(candidate) => candidate,
        };
        let span = auth_span(Some(candidate.credential.carrier()));
        let ((mut parts, body), upgrade) = (request.into_parts(), candidate.upgrade);
        let refused = client.refused().or_else(|| {
            let (error, carrier) = candidate.traces.remove_from(&mut parts).err()?;
            Some(client.judge(*carrier_rejection(error, Some(carrier))))
        });
        if let Some(rejection) = refused {
            return self.refuse(rejection, &mut parts, upgrade, &span);
        }
        let (shared, credential) = (self.shared.clone(), candidate.credential);
        let auth = Shared::authenticate(shared, credential, parts, upgrade, client, span.clone());
        // The service polled ready runs once authenticated; a clone stays.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let echo = candidate.traces.into_echo(upgrade == Upgrade::Http2);
        ResponseFuture::authenticating(auth, inner, body, echo, span)
    }
}

/// The `ws_auth` span of one decision: `carrier` now, `outcome` and (once
/// authenticated) `subject` when known. Never the credential.
fn auth_span(carrier: Option<&Carrier>) -> Span {
    tracing::info_span!(
        target: "tower_ws_auth",
        "ws_auth",
        carrier = carrier.map_or("none", Carrier::as_str),
        outcome = tracing::field::Empty,
        subject = tracing::field::Empty,
    )
}

impl<S, A, H> WsAuth<S, A, H> {
    /// The answer to a refusal before the authenticator runs.
    fn refuse<ReqB, ResB>(
        &self,
        rejection: Rejection,
        parts: &mut Parts,
        upgrade: Upgrade,
        span: &Span,
    ) -> ResponseFuture<S, ReqB, ResB>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        H: RejectionHandler<ResB>,
    {
        let response = self.shared.reject(rejection, parts, upgrade, None, span);
        ResponseFuture::rejected(response)
    }
}

impl<A: Authenticator, H> Shared<A, H> {
    /// Runs the authenticator: the request head with the [`Identity`] in its
    /// extensions, or the rejection's response.
    ///
    /// [`Identity`]: crate::Identity
    fn authenticate<ResB>(
        this: Arc<Self>,
        credential: Credential,
        parts: Parts,
        upgrade: Upgrade,
        client: Client,
        span: Span,
    ) -> AuthFuture<ResB>
    where
        H: RejectionHandler<ResB>,
    {
        // Boxed once here, the request head (224 bytes) is not copied again
        // into the authentication future, into its heap allocation and back
        // out of it.
        let mut parts = Box::new(parts);
        Box::pin(async move {
            let timer = crate::observe::Timer::start();
            let verdict = this.authenticator.authenticate(&credential, &parts).await;
            let config = &this.config;
            config.metrics.authentication(timer);
            match verdict {
                Ok(identity) => {
                    config.metrics.upgrade(None, Some(credential.carrier()));
                    span.record("outcome", "accepted");
                    span.record("subject", identity.subject());
                    if let Some(hook) = &config.audit {
                        hook.call(&AuditEvent {
                            event: "upgrade",
                            outcome: "accepted",
                            reason: "none",
                            carrier: credential.carrier().as_str(),
                            subject: Some(identity.subject()),
                            peer: crate::audit::peer(&parts.extensions),
                        });
                    }
                    tracing::debug!(
                        target: "tower_ws_auth",
                        outcome = "accepted",
                        carrier = credential.carrier().as_str(),
                        subject = identity.subject(),
                        method = %identity.method(),
                        path = parts.uri.path(),
                        "request authenticated"
                    );
                    parts.extensions.insert(identity);
                    Ok(parts)
                }
                Err(error) => {
                    let rejection = Rejection::from_auth_error(&error)
                        .with_carrier(Some(credential.carrier().clone()));
                    let rejection = client.judge(rejection);
                    Err(this.reject(rejection, &mut parts, upgrade, Some(&error), &span))
                }
            }
        })
    }
}

/// The client address of an upgrade, when the layer throttles failed
/// authentications and the address is known.
struct Client(Option<(FailedAuthLimit, IpAddr)>);

impl Client {
    fn of<B>(config: &Config, request: &Request<B>) -> Self {
        Self(config.throttle.as_ref().and_then(|limit| {
            let address = limit.client_addr(request.headers(), request.extensions())?;
            Some((limit.clone(), address))
        }))
    }

    /// The `429` for an address over its limit.
    fn refused(&self) -> Option<Rejection> {
        let (limit, address) = self.0.as_ref()?;
        limit.blocked(*address).map(Rejection::throttled)
    }

    /// The answer to a refusal: `429` for an address over its limit,
    /// else `rejection`, counted as a failure if it is one.
    fn judge(&self, rejection: Rejection) -> Rejection {
        if let Some(throttled) = self.refused() {
            return throttled;
        }
        if let Some((limit, address)) = &self.0
            && counts(rejection.kind())
        {
            limit.record_failure(*address);
        }
        rejection
    }
}

impl<A, H> Shared<A, H> {
    /// Logs `rejection` and answers it: with the handler's response or, for
    /// a browser upgrade when the layer closes rejections, with a `101`
    /// followed by a Close frame.
    fn reject<ResB>(
        &self,
        rejection: Rejection,
        parts: &mut Parts,
        upgrade: Upgrade,
        source: Option<&AuthError>,
        span: &Span,
    ) -> Response<ResB>
    where
        H: RejectionHandler<ResB>,
    {
        let _entered = span.enter();
        span.record("outcome", "rejected");
        let rejection = rejection.with_realm(self.config.realm.as_ref());
        log_rejection(&rejection, parts.uri.path(), source);
        self.config
            .metrics
            .upgrade(Some(rejection.kind()), rejection.carrier());
        if let Some(hook) = &self.config.audit {
            hook.call(&AuditEvent {
                event: "upgrade",
                outcome: "rejected",
                reason: rejection.kind().as_str(),
                carrier: rejection.carrier().map_or("none", Carrier::as_str),
                subject: None,
                peer: crate::audit::peer(&parts.extensions),
            });
        }
        let response = self.handler.respond(&rejection);
        #[cfg(feature = "close-rejections")]
        if let Some(close) = &self.config.close {
            return close.answer(&rejection, parts, upgrade, &self.config, response);
        }
        #[cfg(not(feature = "close-rejections"))]
        let _ = upgrade;
        response
    }
}

fn log_rejection(rejection: &Rejection, path: &str, source: Option<&AuthError>) {
    let carrier = rejection.carrier().map(Carrier::as_str);
    if rejection.kind() == RejectionKind::Unavailable {
        let cause = source
            .and_then(|e| std::error::Error::source(e))
            .map(tracing::field::display);
        tracing::warn!(
            target: "tower_ws_auth",
            outcome = "rejected",
            status = rejection.status().as_u16(),
            kind = rejection.kind().as_str(),
            carrier,
            reason = rejection.reason(),
            cause,
            path,
            "authentication backend unavailable"
        );
    } else {
        tracing::debug!(
            target: "tower_ws_auth",
            outcome = "rejected",
            status = rejection.status().as_u16(),
            kind = rejection.kind().as_str(),
            carrier,
            reason = rejection.reason(),
            path,
            "request rejected"
        );
    }
}
