//! [`ResponseFuture`]: authentication, then the inner service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;
use tracing::Span;

use crate::authenticator::BoxFuture;
use crate::credential::Echo;

/// The authentication of a request: its head with the identity inserted,
/// or the response to the rejection.
pub(super) type AuthFuture<ResB> = BoxFuture<'static, Result<Box<Parts>, Response<ResB>>>;

pin_project! {
    /// The response future of [`WsAuth`](crate::WsAuth).
    ///
    /// # Panics
    ///
    /// If polled again after it completed.
    pub struct ResponseFuture<S, ReqB, ResB>
    where
        S: Service<Request<ReqB>>,
    {
        #[pin]
        state: State<S, ReqB, ResB>,
        // The `ws_auth` span of an upgrade (disabled for requests passed
        // through), entered around every poll: the authenticator, then the
        // inner service.
        span: Span,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqB, ResB>
    where
        S: Service<Request<ReqB>>,
    {
        Authenticating {
            auth: AuthFuture<ResB>,
            // The service polled ready and the body, until authenticated.
            pending: Option<(S, ReqB)>,
            echo: Option<Echo>,
        },
        Inner {
            #[pin]
            future: S::Future,
            echo: Option<Echo>,
        },
        Rejected {
            response: Option<Response<ResB>>,
        },
    }
}

impl<S, ReqB, ResB> ResponseFuture<S, ReqB, ResB>
where
    S: Service<Request<ReqB>>,
{
    /// The inner service's response, with the echo rules applied if any.
    pub(super) fn inner(future: S::Future, echo: Option<Echo>) -> Self {
        Self {
            state: State::Inner { future, echo },
            span: Span::none(),
        }
    }

    /// A rejection, answered without calling the inner service.
    pub(super) fn rejected(response: Response<ResB>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
            span: Span::none(),
        }
    }

    /// Runs `auth`, then calls `inner` (the service that was polled ready)
    /// with the authenticated head and `body`.
    pub(super) fn authenticating(
        auth: AuthFuture<ResB>,
        inner: S,
        body: ReqB,
        echo: Option<Echo>,
        span: Span,
    ) -> Self {
        Self {
            state: State::Authenticating {
                auth,
                pending: Some((inner, body)),
                echo,
            },
            span,
        }
    }
}

impl<S, ReqB, ResB> Future for ResponseFuture<S, ReqB, ResB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            match this.state.as_mut().project() {
                StateProj::Authenticating {
                    auth,
                    pending,
                    echo,
                } => {
                    let parts = match ready!(auth.as_mut().poll(cx)) {
                        Ok(parts) => parts,
                        Err(response) => return Poll::Ready(Ok(response)),
                    };
                    let Some((mut inner, body)) = pending.take() else {
                        panic!("tower_ws_auth::ResponseFuture polled after completion");
                    };
                    let echo = echo.take();
                    let future = inner.call(Request::from_parts(*parts, body));
                    this.state.set(State::Inner { future, echo });
                }
                StateProj::Inner { future, echo } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(echo) = echo.as_ref() {
                        echo.apply(&mut response);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Rejected { response } => {
                    let Some(response) = response.take() else {
                        panic!("tower_ws_auth::ResponseFuture polled after completion");
                    };
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}
