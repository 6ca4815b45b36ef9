//! The axum minting endpoint.

use ::axum::body::Body;
use ::axum::response::Response;
use ::axum::routing::MethodRouter;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::Tickets;
use crate::error::AuthError;
use crate::identity::{AuthMethod, Identity};
use crate::rejection::Rejection;

#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl Tickets {
    /// A `POST` route that mints a ticket for the request's [`Identity`].
    ///
    /// Put a [`WsAuthLayer`](crate::WsAuthLayer) with
    /// [`protect_all_requests(true)`](crate::WsAuthLayer::protect_all_requests)
    /// in front of it (the layer of the WebSocket route works, minus the
    /// ticket carrier itself): the request is authenticated by the same
    /// authenticators as the upgrade. It answers 200 with
    /// `{"ticket":"wst_...","expires_in":30}` (`expires_in` in whole
    /// seconds) and `Cache-Control: no-store`; the refusals of
    /// [`issue`](Self::issue) as the layer would answer them (401, 503 with
    /// `Retry-After`), with the same generic bodies.
    ///
    /// With an [`origin_policy`](Self::origin_policy), a request from an
    /// origin it refuses is 403; so is a request without `Origin` minting
    /// for a session identity ([`AuthMethod::Session`], whose cookie a
    /// browser attaches to any site's requests).
    ///
    /// ```
    /// use std::num::NonZeroUsize;
    /// use axum::Router;
    /// use tower_ws_auth::{Authenticator, WsAuthLayer, ticket::Tickets};
    ///
    /// # fn run(jwt: impl Authenticator + Clone) -> Result<(), tower_ws_auth::ConfigError> {
    /// let tickets = Tickets::in_memory(NonZeroUsize::new(10_000).unwrap());
    /// let mint = WsAuthLayer::new(jwt.clone()).bearer_header().protect_all_requests(true);
    /// let ws = WsAuthLayer::new(tickets.clone().or(jwt)).bearer_header().query_param("ticket")?;
    /// let app: Router = Router::new()
    ///     .route("/ws-ticket", tickets.mint_route().layer(mint));
    /// # let _ = (app, ws); Ok(()) }
    /// ```
    pub fn mint_route<S>(&self) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let tickets = self.clone();
        ::axum::routing::post(move |identity: Identity, headers: HeaderMap| {
            let tickets = tickets.clone();
            async move { tickets.mint_response(&identity, &headers).await }
        })
    }

    /// The answer of [`mint_route`](Self::mint_route) for `identity`, for
    /// an endpoint written by hand (`headers`: the request's, for the
    /// Origin check).
    pub async fn mint_response(&self, identity: &Identity, headers: &HeaderMap) -> Response {
        let minted = match self.check_origin(headers, identity.method() == AuthMethod::Session) {
            Ok(()) => self.issue(identity).await,
            Err(refused) => Err(refused),
        };
        match minted {
            Ok(ticket) => {
                let body = serde_json::json!({
                    "ticket": ticket.expose_secret(),
                    "expires_in": ticket.expires_in().as_secs(),
                })
                .to_string();
                let mut response = Response::new(Body::from(body));
                let headers = response.headers_mut();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(error) => refusal(&error),
        }
    }
}

fn refusal(error: &AuthError) -> Response {
    let rejection = Rejection::from_auth_error(error);
    tracing::debug!(target: "tower_ws_auth", reason = rejection.reason(), "ticket not minted");
    let body = match rejection.status() {
        StatusCode::UNAUTHORIZED => "Unauthorized\n",
        StatusCode::FORBIDDEN => "Forbidden\n",
        StatusCode::SERVICE_UNAVAILABLE => "Service Unavailable\n",
        _ => "Bad Request\n",
    };
    rejection
        .response_builder()
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(body))
        .unwrap_or_default()
}
