//! The layer as a tower service: readiness, the service that was polled
//! ready is the one called, and the hyper upgrade handle survives.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::*;
use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_ws_auth::{Identity, WsAuthLayer};

fn upgrade(token: Option<&str>) -> Request<()> {
    let mut builder = Request::builder()
        .uri("/ws")
        .header("connection", "upgrade")
        .header("upgrade", "websocket");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(()).unwrap()
}

#[tokio::test]
async fn readiness_of_the_inner_service_is_respected() {
    // ConcurrencyLimit hands out its permit in poll_ready and panics if a
    // clone that was never polled ready is called: the layer must call the
    // very instance that was polled.
    let mut service = ServiceBuilder::new()
        .layer(WsAuthLayer::new(tokens(&Calls::default())).bearer_header())
        .concurrency_limit(1)
        .service_fn(|request: Request<()>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let subject = request
                .extensions()
                .get::<Identity>()
                .map(|i| i.subject().to_owned());
            Ok::<_, Infallible>(Response::new(http_body_util::Full::from(
                subject.unwrap_or_default(),
            )))
        });

    let first = service
        .ready()
        .await
        .unwrap()
        .call(upgrade(Some("alice-token")));
    // The only permit is held by `first`: the layer reports not ready.
    assert!(service.ready().now_or_never().is_none());
    let response = first.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, "alice");
    // Released: ready again, and a rejection does not consume the inner call.
    let rejected = service
        .ready()
        .await
        .unwrap()
        .call(upgrade(None))
        .await
        .unwrap();
    assert_eq!(rejected.status(), StatusCode::UNAUTHORIZED);
    let again = service
        .ready()
        .await
        .unwrap()
        .call(upgrade(Some("bob-token")))
        .await
        .unwrap();
    assert_eq!(body_text(again).await, "bob");
}

async fn body_text(response: Response<http_body_util::Full<bytes::Bytes>>) -> String {
    use http_body_util::BodyExt;
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}
