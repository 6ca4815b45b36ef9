//! Recognising WebSocket upgrade requests.

use http::header::UPGRADE;
use http::{Method, Request, Version};

/// `true` if `value` is `websocket` in any case. Every byte of the token is
/// a letter, so `b | 0x20` (ASCII lower case for letters) matches exactly
/// the two cases of each letter and nothing else; branch-free.
fn is_websocket_token(value: &[u8]) -> bool {
    value.len() == 9
        && value
            .iter()
            .zip(b"websocket")
            .fold(true, |same, (&a, &b)| same & (a | 0x20 == b))
}

/// `true` if `list` (a comma-separated header value) holds `websocket`,
/// compared case-insensitively.
fn lists_websocket(list: &[u8]) -> bool {
    // The usual value is the token alone.
    is_websocket_token(list)
        || list
            .split(|&b| b == b',')
            .any(|item| is_websocket_token(item.trim_ascii()))
}

/// `true` if the request asks for a WebSocket:
///
/// * HTTP/1.x: any `Upgrade` header line lists `websocket`. `Connection:
///   upgrade` is deliberately not required: a request that names the
///   WebSocket protocol is authenticated even if it is malformed otherwise,
///   so no server quirk can turn an unauthenticated one into a socket.
/// * HTTP/2 and later: an extended CONNECT (RFC 8441) whose `:protocol` is
///   `websocket`. Without the `http2` feature the `:protocol` cannot be
///   read, and every CONNECT over HTTP/2 or later is treated as one.
pub(crate) fn is_websocket_upgrade<B>(request: &Request<B>) -> bool {
    if request.version() >= Version::HTTP_2 {
        return request.method() == Method::CONNECT && connect_protocol_is_websocket(request);
    }
    request
        .headers()
        .get_all(UPGRADE)
        .iter()
        .any(|v| lists_websocket(v.as_bytes()))
}

#[cfg(feature = "http2")]
fn connect_protocol_is_websocket<B>(request: &Request<B>) -> bool {
    request
        .extensions()
        .get::<hyper::ext::Protocol>()
        .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

#[cfg(not(feature = "http2"))]
fn connect_protocol_is_websocket<B>(_request: &Request<B>) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn detection_never_panics(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..6)) {
            let mut request = Request::new(());
            for line in &lines {
                if let Ok(value) = http::HeaderValue::from_bytes(line) {
                    request.headers_mut().append(UPGRADE, value);
                }
            }
            let expected = request
                .headers()
                .get_all(UPGRADE)
                .iter()
                .any(|v| String::from_utf8_lossy(v.as_bytes()).split(',').any(|t| t.trim_matches(|c: char| c.is_ascii_whitespace()).eq_ignore_ascii_case("websocket")));
            prop_assert_eq!(is_websocket_upgrade(&request), expected);
        }
    }

    fn h1(upgrade: &[&str]) -> Request<()> {
        let mut b = Request::builder().uri("/ws");
        for u in upgrade {
            b = b.header(UPGRADE, *u);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn http1_detection() {
        assert!(is_websocket_upgrade(&h1(&["websocket"])));
        assert!(is_websocket_upgrade(&h1(&["WebSocket"])));
        assert!(is_websocket_upgrade(&h1(&["h2c, WEBSOCKET"])));
        assert!(is_websocket_upgrade(&h1(&["h2c", " websocket "])));
        assert!(!is_websocket_upgrade(&h1(&[])));
        assert!(!is_websocket_upgrade(&h1(&["h2c"])));
        assert!(!is_websocket_upgrade(&h1(&["websocketx"])));
        // Nine bytes, one of them off: not `websocket`.
        for near in [
            "websockex",
            "xebsocket",
            "websocke ",
            "webs0cket",
            "websocke\t",
        ] {
            let mut request = h1(&[]);
            request.headers_mut().insert(
                UPGRADE,
                http::HeaderValue::from_bytes(near.as_bytes()).unwrap(),
            );
            assert!(!is_websocket_upgrade(&request), "{near:?}");
        }
    }

    #[test]
    fn http2_detection() {
        let plain = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("https://example.com/ws")
            .body(())
            .unwrap();
        assert_eq!(is_websocket_upgrade(&plain), cfg!(not(feature = "http2")));
        let get = Request::builder()
            .version(Version::HTTP_2)
            .header(UPGRADE, "websocket")
            .body(())
            .unwrap();
        assert!(!is_websocket_upgrade(&get));
        #[cfg(feature = "http2")]
        {
            let mut ws = Request::builder()
                .method(Method::CONNECT)
                .version(Version::HTTP_2)
                .uri("https://example.com/ws")
                .body(())
                .unwrap();
            ws.extensions_mut()
                .insert(hyper::ext::Protocol::from_static("websocket"));
            assert!(is_websocket_upgrade(&ws));
        }
    }
}
