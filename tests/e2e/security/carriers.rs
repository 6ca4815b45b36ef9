//! "Credential carriers": where the credential travels, and what a broken,
//! hostile or oversized carrier gets.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::StatusCode;
use jsonwebtoken::Algorithm;
use serde_json::json;
use tower_ws_auth::session::cookie::Key;
use tower_ws_auth::{
    AuthError, AuthMethod, Authenticator, Carrier, Identity, OriginPolicy, Rejection,
    SubprotocolCarrier, WsAuthLayer,
    api_key::{ApiKeyAuthenticator, ApiKeyDigest, MemoryApiKeys},
    authenticate_fn,
    jwt::JwtAuthenticator,
    session::{MemorySessionStore, SessionCookie},
};

use super::common::{Calls, UPGRADE_HEADERS, http_request, offer, tokens};
use super::jwt_common::{self, HS256_SECRET, claims, sign, sign_raw};
use super::session_common::LogCapture;
use super::{
    Headers, INVALID_REQUEST, INVALID_TOKEN, OwnedHeaders, SITE, Server, assert_refusal, bearer,
    borrowed, cookie_pair, every_carrier, session_auth,
};

/// "No credential: 401 with `WWW-Authenticate: Bearer` and no `error`
/// parameter."
#[tokio::test]
async fn no_credential_is_401_with_bare_bearer_challenge() {
    let calls = Calls::default();
    let server = Server::start(every_carrier(&calls)).await;
    let cases: [(&str, &str, Headers); 5] = [
        ("nothing at all", "/ws", &[]),
        (
            "only other cookies",
            "/ws",
            &[("cookie", "theme=dark; lang=en"), ("origin", SITE)],
        ),
        (
            "a protocol list without a credential entry",
            "/ws",
            &[("sec-websocket-protocol", "chat, graphql-ws")],
        ),
        (
            "a query without the credential parameter",
            "/ws?room=1&tokens=x",
            &[],
        ),
        ("unrelated headers", "/ws", &[("x-api-keys", "alice-token")]),
    ];
    for (case, path, headers) in cases {
        let refused = server.refused(path, headers, case).await;
        assert_refusal(&refused, StatusCode::UNAUTHORIZED, Some("Bearer"), case);
    }
    assert_eq!(calls.get(), 0, "the authenticator ran without a credential");
    server.assert_reached(0, "no credential");
}

/// "Malformed carrier (empty bearer, wrong scheme, two tokens, two
/// Authorization headers, repeated query parameter): 400
/// `error="invalid_request"` (or 401). The Bearer scheme is
/// case-insensitive."
#[tokio::test]
async fn malformed_carrier_is_400_invalid_request() {
    let calls = Calls::default();
    let server = Server::start(every_carrier(&calls)).await;
    let cases: [(&str, &str, Headers); 14] = [
        ("empty bearer", "/ws", &[("authorization", "Bearer ")]),
        (
            "scheme without a token",
            "/ws",
            &[("authorization", "Bearer")],
        ),
        (
            "wrong scheme: Basic",
            "/ws",
            &[("authorization", "Basic YWxpY2U6cGFzcw==")],
        ),
        (
            "wrong scheme: Token",
            "/ws",
            &[("authorization", "Token alice-token")],
        ),
        (
            "two tokens",
            "/ws",
            &[("authorization", "Bearer alice-token bob-token")],
        ),
        (
            "two comma-separated credentials",
            "/ws",
            &[("authorization", "Bearer alice-token, Bearer bob-token")],
        ),
        (
            "two Authorization headers, same token",
            "/ws",
            &[
                ("authorization", "Bearer alice-token"),
                ("authorization", "Bearer alice-token"),
            ],
        ),
        (
            "two Authorization headers, different tokens",
            "/ws",
            &[
                ("authorization", "Bearer alice-token"),
                ("authorization", "Bearer bob-token"),
            ],
        ),
        (
            "repeated query parameter, same value",
            "/ws?token=alice-token&token=alice-token",
            &[],
        ),
        (
            "repeated query parameter, different values",
            "/ws?token=alice-token&token=bob-token",
            &[],
        ),
        ("empty query parameter", "/ws?token=", &[]),
        (
            "a bearer token outside the token68 grammar",
            "/ws",
            &[("authorization", "Bearer {\"json\":1}")],
        ),
        (
            "a bare-header credential with a space",
            "/ws",
            &[("x-api-key", "two words")],
        ),
        (
            "the credential cookie twice, different values",
            "/ws",
            &[
                ("cookie", "session=alice-session; session=bob-token"),
                ("origin", SITE),
            ],
        ),
    ];
    for (case, path, headers) in cases {
        let refused = server.refused(path, headers, case).await;
        assert_refusal(&refused, StatusCode::BAD_REQUEST, INVALID_REQUEST, case);
    }
    assert_eq!(
        calls.get(),
        0,
        "a malformed carrier reached the authenticator"
    );
    server.assert_reached(0, "malformed carrier");

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let value = format!("{scheme} alice-token");
        let subject = server
            .subject(
                "/ws",
                &[("authorization", &value)],
                &format!("scheme {scheme}"),
            )
            .await;
        assert_eq!(subject, "alice", "scheme {scheme}");
    }
    server.assert_reached(4, "malformed carrier");
}

/// "Invalid, forged, expired or revoked credential: 401
/// `error="invalid_token"`, with the same body whatever the reason."
#[tokio::test]
async fn invalid_forged_expired_or_revoked_credential_is_401_invalid_token() {
    jwt_common::init();
    // JWTs and API keys on the bearer carrier, cookie sessions on the cookie.
    let mut keys = MemoryApiKeys::new();
    keys.insert(
        "sk_live_service_key_1",
        Identity::new("billing", AuthMethod::ApiKey),
    );
    keys.insert(
        "sk_live_revoked_key_2",
        Identity::new("billing", AuthMethod::ApiKey),
    );
    assert!(keys.remove_digest(&ApiKeyDigest::of("sk_live_revoked_key_2")));
    let store = MemorySessionStore::new(Duration::from_secs(600));
    let cookie = SessionCookie::new("session")
        .unwrap()
        .signed(Key::generate());
    let jwt = JwtAuthenticator::hs256(HS256_SECRET).unwrap();
    let auth = session_auth(store.clone(), cookie.clone())
        .for_carriers([Carrier::Cookie])
        .or(jwt.or(ApiKeyAuthenticator::new(keys)));
    let layer = WsAuthLayer::new(auth)
        .bearer_header()
        .cookie("session", OriginPolicy::from_origins([SITE]).unwrap())
        .unwrap();
    let server = Server::start(layer).await;

    let good_jwt = sign(Algorithm::HS256, None, &claims("alice"));
    let forged_key =
        jsonwebtoken::EncodingKey::from_secret(b"an-attacker-secret-of-32-bytes-at-least");
    let forged = sign_raw(
        &json!({"alg": "HS256"}),
        &claims("alice"),
        &forged_key,
        Algorithm::HS256,
    );
    let header = good_jwt.split('.').next().unwrap();
    let signature = good_jwt.rsplit('.').next().unwrap();
    let swapped = format!(
        "{header}.{}.{signature}",
        jwt_common::b64(claims("admin").to_string())
    );
    let mut old = claims("alice");
    old["exp"] = json!(jwt_common::now() - 600);
    let expired = sign(Algorithm::HS256, None, &old);
    let live = cookie_pair(&cookie.issue(&store.create("alice".to_owned()).unwrap()));
    let logged_out = store.create("alice".to_owned()).unwrap();
    store.delete(&logged_out);
    let logged_out = cookie_pair(&cookie.issue(&logged_out));
    let short = store
        .create_with_ttl("alice".to_owned(), Duration::from_millis(1))
        .unwrap();
    let timed_out = cookie_pair(&cookie.issue(&short));
    let other_key = SessionCookie::new("session")
        .unwrap()
        .signed(Key::generate());
    let foreign = cookie_pair(&other_key.issue(&store.create("alice".to_owned()).unwrap()));
    tokio::time::sleep(Duration::from_millis(20)).await;

    let bad = |token: &str| vec![("authorization".to_owned(), bearer(token))];
    let by_cookie = |pair: &str| {
        vec![
            ("cookie".to_owned(), pair.to_owned()),
            ("origin".to_owned(), SITE.to_owned()),
        ]
    };
    let cases: Vec<(&str, OwnedHeaders)> = vec![
        (
            "invalid: an unknown opaque key",
            bad("sk_live_never_issued"),
        ),
        (
            "invalid: a JWT without exp",
            bad(&sign(Algorithm::HS256, None, &json!({"sub": "alice"}))),
        ),
        ("forged: a JWT signed with another secret", bad(&forged)),
        ("forged: a JWT whose payload was swapped", bad(&swapped)),
        (
            "forged: a session cookie signed with another key",
            by_cookie(&foreign),
        ),
        ("expired: a JWT past its exp", bad(&expired)),
        (
            "expired: a session past its lifetime",
            by_cookie(&timed_out),
        ),
        (
            "revoked: an API key removed from the store",
            bad("sk_live_revoked_key_2"),
        ),
        (
            "revoked: a session deleted at logout",
            by_cookie(&logged_out),
        ),
    ];
    for (case, headers) in &cases {
        let headers = borrowed(headers);
        let refused = server.refused("/ws", &headers, case).await;
        // One body for every reason: `assert_refusal` checks it is the generic one.
        assert_refusal(&refused, StatusCode::UNAUTHORIZED, INVALID_TOKEN, case);
    }
    server.assert_reached(0, "invalid credentials");

    // The same server lets the genuine credentials through.
    for (case, headers) in [
        ("a valid JWT", bad(&good_jwt)),
        ("a valid API key", bad("sk_live_service_key_1")),
        ("a live session", by_cookie(&live)),
    ] {
        server.upgraded("/ws", &borrowed(&headers), case).await;
    }
    server.assert_reached(3, "invalid credentials");
}

/// "Valid but not allowed (scope, role): 403 `error="insufficient_scope"`."
#[tokio::test]
async fn valid_but_not_allowed_is_403_insufficient_scope() {
    jwt_common::init();
    let jwt = |scope_claim: &str, required: &str| {
        JwtAuthenticator::hs256(HS256_SECRET)
            .unwrap()
            .scope_claims([scope_claim])
            .required_scope(required)
    };
    let scopes = Server::start(WsAuthLayer::new(jwt("scope", "chat:write"))).await;
    let roles = Server::start(WsAuthLayer::new(jwt("roles", "admin"))).await;
    let calls = Calls::default();
    let custom = Server::start(WsAuthLayer::new(tokens(&calls))).await;
    let with = |claim: &str, value: serde_json::Value| {
        let mut c = claims("reader");
        c[claim] = value;
        sign(Algorithm::HS256, None, &c)
    };
    let cases = [
        (
            "scope: only chat:read",
            &scopes,
            with("scope", json!("chat:read")),
            "chat:write",
        ),
        (
            "scope: none at all",
            &scopes,
            sign(Algorithm::HS256, None, &claims("reader")),
            "chat:write",
        ),
        (
            "scope: a prefix of the needed one",
            &scopes,
            with("scope", json!("chat")),
            "chat:write",
        ),
        (
            "role: ops, not admin",
            &roles,
            with("roles", json!(["ops"])),
            "admin",
        ),
        (
            "role: admin in the wrong case",
            &roles,
            with("roles", json!(["ADMIN"])),
            "admin",
        ),
        (
            "a custom authenticator's refusal",
            &custom,
            "readonly-token".to_owned(),
            "chat:write",
        ),
    ];
    for (case, server, token, needed) in &cases {
        let refused = server
            .refused("/ws", &[("authorization", &bearer(token))], case)
            .await;
        let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{needed}\"");
        assert_refusal(&refused, StatusCode::FORBIDDEN, Some(&challenge), case);
    }
    assert_eq!(calls.get(), 1, "the custom authenticator decides the scope");
    // With the scope or role, the same servers upgrade.
    let token = with("scope", json!("chat:read chat:write"));
    scopes
        .subject(
            "/ws",
            &[("authorization", &bearer(&token))],
            "scope granted",
        )
        .await;
    let token = with("roles", json!(["ops", "admin"]));
    roles
        .subject("/ws", &[("authorization", &bearer(&token))], "role granted")
        .await;
    for (server, expected) in [(&scopes, 1), (&roles, 1), (&custom, 0)] {
        server.assert_reached(expected, "insufficient scope");
    }
}

/// "Two carriers with different credentials in one request: 400, or one
/// documented precedence; never "whichever is valid wins"."
#[tokio::test]
async fn two_different_credentials_are_400_or_follow_the_documented_precedence() {
    // The documented default: the carrier configured first decides.
    let calls = Calls::default();
    let server = Server::start(every_carrier(&calls)).await;
    let bob_offer = offer("bob-token");
    let decided: [(&str, &str, Headers, &str); 3] = [
        (
            "bearer before query",
            "/ws?token=bob-token",
            &[("authorization", "Bearer alice-token")],
            "alice",
        ),
        (
            "subprotocol before cookie",
            "/ws",
            &[
                ("sec-websocket-protocol", &bob_offer),
                ("cookie", "session=alice-session"),
                ("origin", SITE),
            ],
            "bob",
        ),
        (
            "header before query",
            "/ws?token=alice-token",
            &[("x-api-key", "bob-token")],
            "bob",
        ),
    ];
    for (case, path, headers, subject) in decided {
        assert_eq!(server.subject(path, headers, case).await, subject, "{case}");
    }
    // An invalid first carrier is final, whatever a later one holds.
    let first_invalid: [(&str, &str, Headers); 2] = [
        (
            "invalid bearer, valid cookie, valid query",
            "/ws?token=alice-token",
            &[
                ("authorization", "Bearer nonsense"),
                ("cookie", "session=alice-session"),
                ("origin", SITE),
            ],
        ),
        (
            "invalid header, valid query",
            "/ws?token=alice-token",
            &[("x-api-key", "nonsense")],
        ),
    ];
    for (case, path, headers) in first_invalid {
        let refused = server.refused(path, headers, case).await;
        assert_refusal(&refused, StatusCode::UNAUTHORIZED, INVALID_TOKEN, case);
    }
    server.assert_reached(3, "precedence");

    // The order is the configuration's, not the request's or the validity's.
    let query_first = WsAuthLayer::new(tokens(&calls))
        .query_param("token")
        .unwrap()
        .bearer_header();
    let server = Server::start(query_first).await;
    let subject = server
        .subject(
            "/ws?token=bob-token",
            &[("authorization", "Bearer alice-token")],
            "query configured first",
        )
        .await;
    assert_eq!(subject, "bob");
    let refused = server
        .refused(
            "/ws?token=nonsense",
            &[("authorization", "Bearer alice-token")],
            "invalid query first",
        )
        .await;
    assert_refusal(
        &refused,
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
        "invalid query first",
    );

    // Or refused outright, before the authenticator.
    let strict_calls = Calls::default();
    let strict =
        Server::start(every_carrier(&strict_calls).reject_conflicting_credentials(true)).await;
    let conflicts: [(&str, &str, Headers); 3] = [
        (
            "bearer and query",
            "/ws?token=bob-token",
            &[("authorization", "Bearer alice-token")],
        ),
        (
            "bearer and cookie",
            "/ws",
            &[
                ("authorization", "Bearer alice-token"),
                ("cookie", "session=bob-token"),
                ("origin", SITE),
            ],
        ),
        (
            "header and subprotocol",
            "/ws",
            &[
                ("x-api-key", "alice-token"),
                ("sec-websocket-protocol", &bob_offer),
            ],
        ),
    ];
    for (case, path, headers) in conflicts {
        let refused = strict.refused(path, headers, case).await;
        assert_refusal(&refused, StatusCode::BAD_REQUEST, INVALID_REQUEST, case);
    }
    assert_eq!(
        strict_calls.get(),
        0,
        "a conflict reached the authenticator"
    );
    // The same credential twice is no conflict.
    let subject = strict
        .subject(
            "/ws?token=alice-token",
            &[("authorization", "Bearer alice-token")],
            "same credential twice",
        )
        .await;
    assert_eq!(subject, "alice");
    strict.assert_reached(1, "conflicting credentials");
}

/// "Oversized credentials and headers: capped before any decoding or
/// allocation proportional to the input; parsing is linear-time. 431 (or
/// 401)."
///
/// Each carrier gets a credential, and a pathological header or query
/// holding none, of 4 KiB and of 60 KiB (a request target over 64 KiB is
/// not an HTTP request at all). Under the default caps (8 KiB per
/// credential, 16 KiB per header) the 4 KiB inputs are parsed (401) and the
/// 60 KiB ones are 431 without the authenticator. With the caps raised to
/// 1 MiB every input is parsed, up to 200 KiB, each in well under a second
/// where a quadratic parser would need minutes.
#[tokio::test]
async fn oversized_credentials_and_headers_are_431_before_decoding_and_parsed_in_linear_time() {
    let calls = Calls::default();
    let capped = Server::start(every_carrier(&calls)).await;
    let raised = Server::start(
        every_carrier(&Calls::default())
            .max_credential_bytes((1 << 20).try_into().unwrap())
            .max_header_bytes((1 << 20).try_into().unwrap()),
    )
    .await;
    let runs = [
        ("default caps", &capped, 4, StatusCode::UNAUTHORIZED),
        (
            "default caps",
            &capped,
            60,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
        ("caps raised", &raised, 4, StatusCode::UNAUTHORIZED),
        ("caps raised", &raised, 60, StatusCode::UNAUTHORIZED),
        ("caps raised", &raised, 200, StatusCode::UNAUTHORIZED),
    ];
    for (caps, server, kib, status) in runs {
        for (what, path, headers) in oversized_inputs(kib * 1024) {
            if path.len() > 61 * 1024 {
                continue;
            }
            let case = format!("{what}, {kib} KiB, {caps}");
            let before = calls.get();
            let started = Instant::now();
            let refused = server.refused(&path, &borrowed(&headers), &case).await;
            let elapsed = started.elapsed();
            if status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE {
                assert_refusal(&refused, status, None, &case);
                assert_eq!(calls.get(), before, "{case}: the authenticator ran");
            } else {
                assert_eq!(refused.status, status, "{case}: {refused:?}");
            }
            assert!(
                elapsed < Duration::from_secs(1),
                "{case}: answered in {elapsed:?}"
            );
        }
    }
    capped.assert_reached(0, "oversized input");
    raised.assert_reached(0, "oversized input");
}

/// A carrier's input of about `size` bytes: what it is, the path, the headers.
fn oversized_inputs(size: usize) -> Vec<(&'static str, String, OwnedHeaders)> {
    let h = |name: &str, value: String| vec![(name.to_owned(), value)];
    let credential = "a".repeat(size);
    let ws = || "/ws".to_owned();
    vec![
        (
            "bearer token",
            ws(),
            h("authorization", bearer(&credential)),
        ),
        ("x-api-key value", ws(), h("x-api-key", credential.clone())),
        (
            "session cookie",
            ws(),
            vec![
                ("cookie".into(), format!("session={credential}")),
                ("origin".into(), SITE.into()),
            ],
        ),
        (
            "subprotocol credential entry",
            ws(),
            h("sec-websocket-protocol", offer(&credential)),
        ),
        ("query parameter", format!("/ws?token={credential}"), vec![]),
        (
            "cookie header of many other cookies",
            ws(),
            h("cookie", "a=b; ".repeat(size / 5)),
        ),
        (
            "protocol list of many entries",
            ws(),
            h(
                "sec-websocket-protocol",
                format!("{}x", "chat, ".repeat(size / 6)),
            ),
        ),
        (
            "query of many empty pairs",
            format!("/ws?{}x=1", "a&".repeat(size / 2)),
            vec![],
        ),
        (
            "bearer padded with spaces",
            ws(),
            h("authorization", format!("Bearer{}x", " ".repeat(size))),
        ),
    ]
}

/// "Sec-WebSocket-Protocol carrier: merge every header line; exactly one
/// credential entry (two: 400); the credential is base64url without
/// padding and valid UTF-8 after decoding; a companion (non-credential)
/// protocol is required (none: 400); the credential entry is stripped
/// before the inner service sees the request; the 101 echoes exactly one
/// protocol the client offered and never the credential."
#[tokio::test]
async fn subprotocol_carrier_takes_one_credential_beside_a_companion_and_never_echoes_it() {
    let calls = Calls::default();
    let server = Server::start(WsAuthLayer::new(tokens(&calls)).subprotocol_token()).await;
    let carrier = SubprotocolCarrier::new();
    let alice = carrier.encode("alice-token");
    let bob = carrier.encode("bob-token");

    // Accepted: the handler sees the list without the credential, the 101
    // carries one offered protocol.
    let accepted = [
        (
            "credential last",
            "/ws",
            format!("chat, {alice}"),
            "chat",
            "chat",
        ),
        (
            "credential first, two companions",
            "/ws",
            format!("{alice}, graphql-ws, chat"),
            "graphql-ws, chat",
            "graphql-ws",
        ),
        (
            "handler selects a protocol",
            "/ws/select",
            format!("graphql-ws, chat, {alice}"),
            "graphql-ws, chat",
            "chat",
        ),
    ];
    for (case, path, offered, handler_saw, echoed) in &accepted {
        let (_, seen, response) = server
            .upgraded(path, &[("sec-websocket-protocol", offered)], case)
            .await;
        assert_eq!(
            seen["protocols"], *handler_saw,
            "{case}: the handler saw the credential entry"
        );
        let lines: Vec<_> = response
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .collect();
        assert_eq!(
            lines,
            [*echoed],
            "{case}: the 101 must echo exactly one offered protocol"
        );
    }
    // Every header line is merged: the credential on one line, the companion on another.
    let mut headers = UPGRADE_HEADERS.to_vec();
    headers.extend([
        ("sec-websocket-protocol", alice.as_str()),
        ("sec-websocket-protocol", "chat"),
    ]);
    let (status, response, _) = http_request(server.addr, "/ws", &headers).await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS, "lines merged");
    let lines: Vec<_> = response.get_all("sec-websocket-protocol").iter().collect();
    assert_eq!(lines, ["chat"], "lines merged");
    server.assert_reached(accepted.len() + 1, "subprotocol carrier");

    // An inner service that echoes every protocol it saw still yields one
    // offered protocol, never the credential it never saw.
    let echo_all = tower::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
        let offered = request.headers().get("sec-websocket-protocol").cloned();
        let mut response = http::Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Body::empty())
            .unwrap();
        if let Some(offered) = offered {
            response
                .headers_mut()
                .insert("sec-websocket-protocol", offered);
        }
        Ok::<_, std::convert::Infallible>(response)
    });
    let layer = WsAuthLayer::new(tokens(&calls)).subprotocol_token();
    let addr =
        super::common::serve_hyper(tower::ServiceBuilder::new().layer(layer).service(echo_all))
            .await;
    let mut headers = UPGRADE_HEADERS.to_vec();
    let offered = format!("graphql-ws, {alice}, chat");
    headers.push(("sec-websocket-protocol", &offered));
    let (status, response, _) = http_request(addr, "/ws", &headers).await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    let lines: Vec<_> = response.get_all("sec-websocket-protocol").iter().collect();
    assert_eq!(
        lines,
        ["graphql-ws"],
        "an inner service echoing the whole list"
    );

    // Refused, before the authenticator.
    let before = calls.get();
    let padded = format!("chat, {}=", carrier.encode("alice-tokens"));
    let two = format!("chat, {alice}, {bob}");
    let two_lines = format!("chat, {bob}");
    let cases: [(&str, Vec<(&str, &str)>); 7] = [
        (
            "two credential entries",
            vec![("sec-websocket-protocol", &two)],
        ),
        (
            "two credential entries on two lines",
            vec![
                ("sec-websocket-protocol", &alice),
                ("sec-websocket-protocol", &two_lines),
            ],
        ),
        (
            "no companion protocol",
            vec![("sec-websocket-protocol", &alice)],
        ),
        (
            "empty credential",
            vec![("sec-websocket-protocol", "chat, base64url.bearer.")],
        ),
        (
            "not base64url",
            vec![("sec-websocket-protocol", "chat, base64url.bearer.a+b/c")],
        ),
        (
            "base64url with padding",
            vec![("sec-websocket-protocol", &padded)],
        ),
        (
            "not UTF-8 once decoded",
            vec![("sec-websocket-protocol", "chat, base64url.bearer._w")],
        ),
    ];
    for (case, headers) in &cases {
        let refused = server.refused("/ws", headers, case).await;
        assert_refusal(&refused, StatusCode::BAD_REQUEST, INVALID_REQUEST, case);
    }
    assert_eq!(
        calls.get(),
        before,
        "a broken offer reached the authenticator"
    );
    server.assert_reached(accepted.len() + 1, "subprotocol carrier");
}

/// "Query carrier: off unless enabled; when on, the token never appears in
/// logs, tracing fields, errors or `Debug` output."
#[tokio::test]
async fn query_carrier_is_off_unless_enabled_and_its_token_is_never_logged() {
    // Off: a token in the query is not a credential.
    let calls = Calls::default();
    for (case, layer) in [
        ("no carrier configured", WsAuthLayer::new(tokens(&calls))),
        (
            "bearer and subprotocol only",
            WsAuthLayer::new(tokens(&calls))
                .bearer_header()
                .subprotocol_token(),
        ),
    ] {
        let server = Server::start(layer).await;
        for path in ["/ws?token=alice-token", "/ws?access_token=alice-token"] {
            let refused = server.refused(path, &[], case).await;
            assert_refusal(&refused, StatusCode::UNAUTHORIZED, Some("Bearer"), case);
        }
        server.assert_reached(0, case);
    }
    assert_eq!(
        calls.get(),
        0,
        "a query parameter was read without the carrier"
    );

    // On: everything the crate writes down is captured and searched.
    let logs = LogCapture::start();
    let written = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = written.clone();
    let auth = authenticate_fn(move |credential, request| {
        // What an authenticator can see: Debug of the credential and of the
        // request (whose URI no longer holds the query credential).
        record
            .lock()
            .unwrap()
            .push(format!("{credential:?} {request:?}"));
        let outcome = match credential.expose_secret() {
            "sekrit-query-0" => Ok(Identity::new("alice", AuthMethod::Custom("test"))),
            // Not a query token: the request's Debug output shows its header.
            "bob-bearer" => Ok(Identity::new("bob", AuthMethod::Custom("test"))),
            _ => Err(AuthError::invalid("unknown token")),
        };
        async move { outcome }
    });
    let record = written.clone();
    let layer = WsAuthLayer::new(auth)
        .bearer_header()
        .query_param("token")
        .unwrap()
        .rejection_handler(move |rejection: &Rejection| {
            record
                .lock()
                .unwrap()
                .push(format!("{rejection:?} {}", rejection.reason()));
            rejection
                .response_builder()
                .body(Body::from(format!("{}\n", rejection.kind().as_str())))
                .unwrap_or_default()
        });
    written.lock().unwrap().push(format!("{layer:?}"));
    let server = Server::start(layer).await;

    let secrets = [
        "sekrit-query-0",
        "sekrit-query-1",
        "sekrit-query-2",
        "sekrit-query-3",
        "sekrit-query-4",
    ];
    let (_, seen, _) = server
        .upgraded("/ws?room=9&token=sekrit-query-0&x=y", &[], "valid token")
        .await;
    assert_eq!(
        seen["query"], "room=9&x=y",
        "the inner service's URI holds the token"
    );
    let refusals = [
        (
            "invalid token",
            "/ws?token=sekrit-query-1&room=9",
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "percent-encoded",
            "/ws?token=sekrit%2Dquery%2D2",
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "repeated",
            "/ws?token=sekrit-query-4&token=sekrit-query-4",
            vec![],
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (case, path, headers, status) in &refusals {
        let refused = server.refused(path, headers, case).await;
        assert_eq!(refused.status, *status, "{case}");
        for secret in secrets {
            assert!(
                !refused.body.contains(secret),
                "{case}: {secret} in the body"
            );
            for (name, value) in &refused.headers {
                let value = value.to_str().unwrap_or_default();
                assert!(!value.contains(secret), "{case}: {secret} in {name}");
            }
        }
    }
    // The bearer wins, and the query credential is still taken out.
    let (_, seen, _) = server
        .upgraded(
            "/ws?token=sekrit-query-3",
            &[("authorization", "Bearer bob-bearer")],
            "bearer wins",
        )
        .await;
    assert_eq!(
        seen["query"],
        serde_json::Value::Null,
        "bearer wins: the query kept its token"
    );
    server.assert_reached(2, "query carrier");

    let logs = logs.text();
    assert!(
        logs.contains("request reached the routes"),
        "the inner tracing was not captured:\n{logs}"
    );
    assert!(
        logs.contains("carrier=\"query\""),
        "the decisions were not captured:\n{logs}"
    );
    let written = written.lock().unwrap().join("\n");
    assert!(
        written.contains("Credential") && written.contains("Rejection"),
        "{written}"
    );
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
        assert!(
            !written.contains(secret),
            "{secret} in Debug output or errors:\n{written}"
        );
    }
    // The crate's own events never record a query string.
    let own = logs.lines().filter(|line| line.contains(" tower_ws_auth:"));
    assert!(
        own.clone().count() >= 5 && own.clone().all(|line| !line.contains("room=9")),
        "{logs}"
    );
}

/// "Identity travels only in request extensions: headers a client sends
/// (`X-User-Id`, `X-Forwarded-User`, ...) never become an identity."
#[tokio::test]
async fn identity_travels_only_in_request_extensions_never_in_client_headers() {
    let calls = Calls::default();
    let server = Server::start(every_carrier(&calls)).await;
    let spoofed = [
        ("x-user-id", "admin"),
        ("x-forwarded-user", "admin"),
        ("x-remote-user", "admin"),
        ("remote-user", "admin"),
        ("x-auth-request-user", "admin"),
        ("x-authenticated-userid", "admin"),
        ("x-identity", "{\"subject\":\"admin\"}"),
    ];
    let refused = server
        .refused("/ws", &spoofed, "identity headers alone")
        .await;
    assert_refusal(
        &refused,
        StatusCode::UNAUTHORIZED,
        Some("Bearer"),
        "identity headers alone",
    );
    let mut with_bad = spoofed.to_vec();
    with_bad.push(("authorization", "Bearer nonsense"));
    let refused = server
        .refused("/ws", &with_bad, "identity headers and an invalid token")
        .await;
    assert_refusal(
        &refused,
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
        "identity headers and an invalid token",
    );
    server.assert_reached(0, "identity headers");

    let mut with_bob = spoofed.to_vec();
    with_bob.push(("authorization", "Bearer bob-token"));
    let subject = server
        .subject("/ws", &with_bob, "identity headers beside bob's token")
        .await;
    assert_eq!(subject, "bob");

    // Plain requests pass through the layer unauthenticated: the
    // extractors still find no identity.
    let (status, body) = super::common::http_get(server.addr, "/plain/required", &spoofed).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "required identity: {body}"
    );
    let (status, body) = super::common::http_get(server.addr, "/plain", &spoofed).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello anonymous"));
    assert_eq!(calls.get(), 2);
}
