//! "Origin (cross-site WebSocket hijacking)": browsers attach cookies to a
//! handshake whatever page opened it, so cookie credentials need the
//! Origin check.

use std::time::Duration;

use http::StatusCode;
use tower_ws_auth::{
    ConfigError, OriginPolicy, WsAuthLayer,
    session::{MemorySessionStore, SessionCookie},
};

use super::common::{Calls, origin_policy, tokens};
use super::session_common::Counting;
use super::{
    EVIL, Headers, INVALID_REQUEST, SITE, Server, assert_refusal, bearer, cookie_pair, session_auth,
};

const ALICE: (&str, &str) = ("cookie", "session=alice-session");

async fn cookie_server(calls: &Calls, policy: OriginPolicy) -> Server {
    Server::start(
        WsAuthLayer::new(tokens(calls))
            .bearer_header()
            .cookie("session", policy)
            .unwrap(),
    )
    .await
}

/// "Enabling a cookie credential without an Origin policy is an error when
/// the layer is built."
///
/// `cookie(name, policy)` cannot be called without a policy; reading the
/// `Cookie` header through the bare-header carrier instead is a
/// `ConfigError` when the layer is built, an allow-list that does not parse is a `ConfigError`
/// (never an allow-all), and an empty policy refuses every origin.
#[tokio::test]
async fn cookie_credential_without_an_origin_policy_is_an_error_when_the_layer_is_built() {
    for name in ["cookie", "Cookie", "COOKIE"] {
        let built = WsAuthLayer::new(tokens(&Calls::default())).header(name);
        assert!(
            matches!(built, Err(ConfigError::InvalidSetting { .. })),
            "header({name:?}) built a layer reading cookies without an Origin policy"
        );
    }
    for origin in [
        "",
        "*",
        "null",
        "https://*",
        "app.example.test",
        "https://app.example.test/path",
        "https://user@app.example.test",
        "https://*.*.example.test",
        "https://app.example.test:0",
    ] {
        assert!(
            OriginPolicy::from_origins([origin]).is_err(),
            "the allow-list entry {origin:?} was accepted"
        );
    }

    let calls = Calls::default();
    let server = cookie_server(&calls, OriginPolicy::new()).await;
    for (case, origin) in [
        ("the site", Some(SITE)),
        ("another site", Some(EVIL)),
        ("null", Some("null")),
        ("none", None),
    ] {
        let mut headers = vec![ALICE];
        headers.extend(origin.map(|o| ("origin", o)));
        let case = format!("empty policy, Origin {case}");
        let refused = server.refused("/ws", &headers, &case).await;
        assert_refusal(&refused, StatusCode::FORBIDDEN, None, &case);
    }
    assert_eq!(
        calls.get(),
        0,
        "a cookie reached the authenticator through an empty policy"
    );
    server.assert_reached(0, "empty policy");
}

/// "Origins are parsed and compared as scheme + host + port exactly, after
/// normalising case and default ports. No substring or suffix matching;
/// subdomains only through an explicit wildcard entry. `null` is refused
/// unless explicitly allowed. Several Origin headers: 400."
#[tokio::test]
async fn origins_are_compared_exactly_as_scheme_host_and_port() {
    let calls = Calls::default();
    let server = cookie_server(&calls, origin_policy()).await;
    let refused_origins = [
        (
            "suffix of the allowed host",
            "https://app.example.com.evil.test",
        ),
        (
            "substring of the allowed host",
            "https://evilapp.example.com",
        ),
        ("lookalike host", "https://app-example.com"),
        ("other scheme", "http://app.example.com"),
        ("other scheme, same default port", "wss://app.example.com"),
        ("other port", "https://app.example.com:8443"),
        (
            "subdomain without a wildcard entry",
            "https://eu.app.example.com",
        ),
        ("the wildcard's own domain", "https://tenants.example.com"),
        (
            "suffix of the wildcard domain",
            "https://eviltenants.example.com",
        ),
        ("other port on localhost", "http://localhost:3001"),
        ("localhost on the default port", "http://localhost"),
        ("trailing slash", "https://app.example.com/"),
        ("trailing dot", "https://app.example.com."),
        ("userinfo", "https://app.example.com@evil.test"),
        ("null", "null"),
        ("not an origin", "app.example.com"),
        ("empty", ""),
    ];
    for (case, origin) in refused_origins {
        let refused = server
            .refused("/ws", &[ALICE, ("origin", origin)], case)
            .await;
        assert_refusal(&refused, StatusCode::FORBIDDEN, None, case);
    }
    for (case, origins) in [
        (
            "two Origin headers, both allowed",
            ["https://app.example.com", "https://app.example.com"],
        ),
        (
            "two Origin headers, one foreign",
            ["https://app.example.com", "https://evil.test"],
        ),
    ] {
        let headers = [ALICE, ("origin", origins[0]), ("origin", origins[1])];
        let refused = server.refused("/ws", &headers, case).await;
        assert_refusal(&refused, StatusCode::BAD_REQUEST, INVALID_REQUEST, case);
    }
    assert_eq!(calls.get(), 0, "a refused Origin reached the authenticator");
    server.assert_reached(0, "origin comparison");

    let allowed = [
        ("exact", "https://app.example.com"),
        ("other case", "HTTPS://App.Example.COM"),
        ("explicit default port", "https://app.example.com:443"),
        ("wildcard subdomain", "https://eu.tenants.example.com"),
        (
            "wildcard, deeper subdomain",
            "https://a.b.tenants.example.com",
        ),
        ("explicit port", "http://localhost:3000"),
    ];
    for (case, origin) in allowed {
        assert_eq!(
            server
                .subject("/ws", &[ALICE, ("origin", origin)], case)
                .await,
            "alice",
            "{case}"
        );
    }
    server.assert_reached(allowed.len(), "origin comparison");

    // `null` only when the policy says so.
    let with_null = cookie_server(&calls, origin_policy().allow_null(true)).await;
    let subject = with_null
        .subject("/ws", &[ALICE, ("origin", "null")], "null allowed")
        .await;
    assert_eq!(subject, "alice");
}

/// "A cookie-authenticated upgrade with no Origin header is refused by
/// default (403), configurable for non-browser clients."
#[tokio::test]
async fn cookie_upgrade_without_origin_is_403_by_default() {
    let calls = Calls::default();
    let server = cookie_server(&calls, origin_policy()).await;
    let refused = server
        .refused("/ws", &[ALICE], "no Origin, default policy")
        .await;
    assert_refusal(
        &refused,
        StatusCode::FORBIDDEN,
        None,
        "no Origin, default policy",
    );
    assert_eq!(calls.get(), 0);
    server.assert_reached(0, "missing Origin");
    // The rule is about cookies: a bearer token is not ambient.
    let subject = server
        .subject(
            "/ws",
            &[("authorization", "Bearer bob-token")],
            "bearer without Origin",
        )
        .await;
    assert_eq!(subject, "bob");

    let lenient = cookie_server(&calls, origin_policy().allow_missing(true)).await;
    let subject = lenient
        .subject(
            "/ws",
            &[ALICE],
            "no Origin, allowed for non-browser clients",
        )
        .await;
    assert_eq!(subject, "alice");
    let case = "foreign Origin, missing ones allowed";
    let refused = lenient
        .refused("/ws", &[ALICE, ("origin", EVIL)], case)
        .await;
    assert_refusal(&refused, StatusCode::FORBIDDEN, None, case);
    lenient.assert_reached(1, "missing Origin");
}

/// "A refused Origin is 403, before the authenticator runs."
#[tokio::test]
async fn refused_origin_is_403_before_the_authenticator_runs() {
    // A live session: the store is never asked for a foreign page.
    let store = Counting::new(MemorySessionStore::new(Duration::from_secs(600)));
    let cookie = SessionCookie::new("session").unwrap();
    let session = cookie_pair(&cookie.issue(&store.inner.create("alice".to_owned()).unwrap()));
    let sessions = Server::start(
        WsAuthLayer::new(session_auth(store.clone(), cookie))
            .cookie("session", OriginPolicy::from_origins([SITE]).unwrap())
            .unwrap(),
    )
    .await;
    let refused = sessions
        .refused(
            "/ws",
            &[("cookie", &session), ("origin", EVIL)],
            "live session, foreign page",
        )
        .await;
    assert_refusal(
        &refused,
        StatusCode::FORBIDDEN,
        None,
        "live session, foreign page",
    );
    assert_eq!(
        store.loads(),
        0,
        "the session store was asked for a refused Origin"
    );

    // A layer-wide policy: every upgrade, whatever carries the credential.
    let calls = Calls::default();
    let layer = WsAuthLayer::new(tokens(&calls))
        .bearer_header()
        .query_param("token")
        .unwrap()
        .cookie("session", OriginPolicy::from_origins([SITE]).unwrap())
        .unwrap()
        .origin_policy(OriginPolicy::from_origins([SITE]).unwrap());
    let server = Server::start(layer).await;
    let alice = bearer("alice-token");
    let cases: [(&str, &str, Headers); 4] = [
        (
            "valid bearer token",
            "/ws",
            &[("authorization", &alice), ("origin", EVIL)],
        ),
        (
            "valid query token",
            "/ws?token=alice-token",
            &[("origin", EVIL)],
        ),
        ("valid cookie", "/ws", &[ALICE, ("origin", EVIL)]),
        ("no credential at all", "/ws", &[("origin", EVIL)]),
    ];
    for (case, path, headers) in cases {
        let refused = server.refused(path, headers, case).await;
        assert_refusal(&refused, StatusCode::FORBIDDEN, None, case);
    }
    assert_eq!(calls.get(), 0, "the authenticator ran for a refused Origin");
    server.assert_reached(0, "refused Origin");
    sessions.assert_reached(0, "refused Origin");

    // From the allowed origin the same credentials work.
    sessions
        .subject(
            "/ws",
            &[("cookie", &session), ("origin", SITE)],
            "live session, the site",
        )
        .await;
    assert_eq!(store.loads(), 1);
    server
        .subject(
            "/ws",
            &[("authorization", &alice), ("origin", SITE)],
            "bearer, the site",
        )
        .await;
    assert_eq!(calls.get(), 1);
}
