//! axum extractors for [`Identity`].

use ::axum::extract::{FromRequestParts, OptionalFromRequestParts};
use ::axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::identity::Identity;
use crate::layer::PassedThrough;

/// Why the [`Identity`] extractor failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityRejection {
    /// The request went through a [`WsAuthLayer`](crate::WsAuthLayer) that
    /// did not authenticate it (it was not an upgrade request): 401.
    #[error("request is not authenticated")]
    NotAuthenticated,
    /// No [`WsAuthLayer`](crate::WsAuthLayer) saw the request: a
    /// configuration mistake, answered with 500.
    #[error(
        "no WsAuthLayer in front of this handler: add `.layer(WsAuthLayer::new(..))` to the route"
    )]
    LayerMissing,
}

impl IntoResponse for IdentityRejection {
    fn into_response(self) -> Response {
        match self {
            Self::NotAuthenticated => (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response(),
            Self::LayerMissing => {
                tracing::error!(target: "tower_ws_auth", "{self}");
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n").into_response()
            }
        }
    }
}

/// Reads the [`Identity`] the layer inserted. Works beside axum's
/// `WebSocketUpgrade` in any order.
///
/// ```
/// use axum::{extract::ws::WebSocketUpgrade, response::Response};
/// use tower_ws_auth::Identity;
///
/// async fn ws_handler(ws: WebSocketUpgrade, identity: Identity) -> Response {
///     ws.on_upgrade(move |_socket| async move {
///         tracing::info!(user = identity.subject(), "connected");
///     })
/// }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = IdentityRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Identity>() {
            Some(identity) => Ok(identity.clone()),
            None if parts.extensions.get::<PassedThrough>().is_some() => {
                Err(IdentityRejection::NotAuthenticated)
            }
            None => Err(IdentityRejection::LayerMissing),
        }
    }
}

/// `Option<Identity>`: `None` when the request was not authenticated.
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<S: Send + Sync> OptionalFromRequestParts<S> for Identity {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Identity>().cloned())
    }
}
