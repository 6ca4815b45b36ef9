//! Origin checks (cross-site WebSocket hijacking), end to end: one test per
//! rule of SECURITY.md's "Origin" section.

mod common;

use common::*;
use http::StatusCode;
use tower_ws_auth::{MissingOrigin, OriginPolicy, WsAuthLayer};

async fn cookie_server(calls: &Calls, policy: OriginPolicy) -> std::net::SocketAddr {
    let layer = WsAuthLayer::new(tokens(calls))
        .bearer_header()
        .cookie("session", policy);
    serve(app(layer)).await
}

const COOKIE: (&str, &str) = ("cookie", "session=alice-session");

#[tokio::test]
async fn allowed_origins_connect_after_normalisation() {
    let addr = cookie_server(&Calls::default(), origin_policy()).await;
    for origin in [
        "https://app.example.com",
        "HTTPS://App.Example.COM",
        "https://app.example.com:443",
        "https://eu.tenants.example.com",
        "https://a.b.tenants.example.com",
        "http://localhost:3000",
    ] {
        let (_, seen, _) = connect_ok(addr, "/ws", &[COOKIE, ("origin", origin)]).await;
        assert_eq!(seen["subject"], "alice", "{origin}");
    }
}

#[tokio::test]
async fn foreign_and_lookalike_origins_are_403_before_the_authenticator() {
    let calls = Calls::default();
    let addr = cookie_server(&calls, origin_policy()).await;
    for origin in [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "https://evilapp.example.com",
        "https://app-example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://tenants.example.com",
        "https://eviltenants.example.com",
        "http://localhost:3001",
        "http://localhost",
        "null",
        "https://app.example.com/",
        "not an origin",
    ] {
        let refused = connect(addr, "/ws", &[COOKIE, ("origin", origin)])
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{origin}");
        assert_eq!(refused.challenge(), None);
        assert_eq!(refused.body, "Forbidden\n");
    }
    assert_eq!(
        calls.get(),
        0,
        "the authenticator must not run for a refused Origin"
    );
}

#[tokio::test]
async fn cookie_without_origin_is_403_by_default() {
    let calls = Calls::default();
    let addr = cookie_server(&calls, origin_policy()).await;
    let refused = connect(addr, "/ws", &[COOKIE]).await.unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(calls.get(), 0);

    // Configurable for non-browser clients.
    let addr = cookie_server(&calls, origin_policy().missing_origin(MissingOrigin::Allow)).await;
    let (_, seen, _) = connect_ok(addr, "/ws", &[COOKIE]).await;
    assert_eq!(seen["subject"], "alice");
}

#[tokio::test]
async fn null_origin_only_when_allowed() {
    let addr = cookie_server(&Calls::default(), origin_policy().allow_null(true)).await;
    let (_, seen, _) = connect_ok(addr, "/ws", &[COOKIE, ("origin", "null")]).await;
    assert_eq!(seen["subject"], "alice");
}

#[tokio::test]
async fn several_origin_headers_are_400() {
    let calls = Calls::default();
    let addr = cookie_server(&calls, origin_policy()).await;
    let refused = connect(
        addr,
        "/ws",
        &[
            COOKIE,
            ("origin", "https://app.example.com"),
            ("origin", "https://app.example.com"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn cookie_policy_does_not_block_other_carriers() {
    // Bearer tokens are not ambient: no Origin rule applies to them unless
    // `origin_policy` says so.
    let addr = cookie_server(&Calls::default(), origin_policy()).await;
    let (_, seen, _) = connect_ok(
        addr,
        "/ws",
        &[
            ("authorization", "Bearer bob-token"),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(seen["subject"], "bob");
}

#[tokio::test]
async fn layer_wide_policy_checks_every_upgrade() {
    let calls = Calls::default();
    let layer = WsAuthLayer::new(tokens(&calls))
        .bearer_header()
        .origin_policy(origin_policy());
    let addr = serve(app(layer)).await;
    let refused = connect(
        addr,
        "/ws",
        &[
            ("authorization", "Bearer bob-token"),
            ("origin", "https://evil.example"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // A refused Origin is 403 even when no credential came at all.
    let refused = connect(addr, "/ws", &[("origin", "https://evil.example")])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let (_, seen, _) = connect_ok(
        addr,
        "/ws",
        &[
            ("authorization", "Bearer bob-token"),
            ("origin", "https://app.example.com"),
        ],
    )
    .await;
    assert_eq!(seen["subject"], "bob");
    assert_eq!(calls.get(), 1);
}

/// The grammar of a serialized origin's port and IP-literal host, for
/// allow-list entries and request headers alike: the port is decimal with
/// no sign and no leading zero (`:+443`, `:0443`, `:000443` never equal
/// `:443`), up to five digits (`:44300` is a port); an IP literal is a
/// non-empty bracketed run of hex digits, `:` and `.`, with balanced
/// brackets, and takes the scheme's default port.
#[tokio::test]
async fn ports_and_ip_literals_follow_the_serialized_origin_grammar() {
    let policy = OriginPolicy::from_origins([
        "https://app.example.com",
        "https://app.example.com:44300",
        "http://[::1]",
        "https://[::ffff:127.0.0.1]",
    ])
    .unwrap();
    let calls = Calls::default();
    let addr = cookie_server(&calls, policy).await;
    let allowed = [
        "https://app.example.com:44300",
        "http://[::1]",
        "http://[::1]:80",
        "https://[::FFFF:127.0.0.1]:443",
    ];
    for origin in allowed {
        let (_, seen, _) = connect_ok(addr, "/ws", &[COOKIE, ("origin", origin)]).await;
        assert_eq!(seen["subject"], "alice", "{origin}");
    }
    for origin in [
        "https://app.example.com:+443",
        "https://app.example.com:-443",
        "https://app.example.com:0443",
        "https://app.example.com:000443",
        "https://app.example.com:044300",
        "https://app.example.com:443000",
        "https://app.example.com:44301",
        "http://[::1]:8080",
        "http://[::1]:080",
        "http://[::2]",
        "https://[::ffff:127.0.0.2]",
        "https://[]",
        "https://ab]",
        "https://[ab",
        "https://[ab.example.org",
        "https://[::g]",
        "http://[::1",
        "http://::1]",
    ] {
        let refused = connect(addr, "/ws", &[COOKIE, ("origin", origin)])
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{origin}");
    }
    assert_eq!(
        calls.get(),
        allowed.len(),
        "refusals never reach the authenticator"
    );

    // Entries follow the same grammar.
    for bad in [
        "https://app.example.com:+443",
        "https://app.example.com:0443",
        "https://app.example.com:000443",
        "https://app.example.com:443000",
        "https://[]",
        "https://ab]",
        "https://[ab",
        "https://[ab.example.org",
        "https://[::g]",
        "https://[::1",
    ] {
        assert!(OriginPolicy::from_origins([bad]).is_err(), "{bad}");
    }
    // Schemes: a letter, then letters, digits, `+`, `-`, `.`; ports 1 to 65535.
    for bad in [
        "h_ttp://x.example:1",
        "1ab://x.example:1",
        "://x.example:1",
        "https://x.example:",
        "https://x.example:65536",
        "https://x.example:0",
    ] {
        assert!(OriginPolicy::from_origins([bad]).is_err(), "{bad}");
    }
    for good in [
        "git+ssh.v-2://x.example:22",
        "https://x.example:1",
        "https://x.example:65535",
        "http://[::1]:8080",
    ] {
        assert!(OriginPolicy::from_origins([good]).is_ok(), "{good}");
    }
}

/// Origins are read up to 1024 bytes: an allowed origin of exactly 1024
/// bytes connects; one byte more is refused as an entry and as a header.
#[tokio::test]
async fn the_origin_cap_is_1024_bytes() {
    // `http://[` + zeros + `::1]`: an IP literal of any length the cap allows.
    let of_len = |len: usize| format!("http://[{}::1]", "0".repeat(len - 12));
    let (at_cap, over) = (of_len(1024), of_len(1025));
    assert_eq!((at_cap.len(), over.len()), (1024, 1025));
    assert!(OriginPolicy::from_origins([over.as_str()]).is_err());
    let calls = Calls::default();
    let policy = OriginPolicy::from_origins([at_cap.as_str(), "https://app.example.com"]).unwrap();
    let addr = cookie_server(&calls, policy).await;
    let (_, seen, _) = connect_ok(addr, "/ws", &[COOKIE, ("origin", &at_cap)]).await;
    assert_eq!(seen["subject"], "alice");
    let refused = connect(addr, "/ws", &[COOKIE, ("origin", &over)])
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(calls.get(), 1);
}

/// A policy's `Debug` output names its normalised entries (for logs of the
/// configuration), with the default ports made explicit.
#[test]
fn debug_shows_the_normalised_entries() {
    let policy = OriginPolicy::from_origins([
        "HTTPS://App.Example.com",
        "https://*.tenants.example.com:8443",
    ])
    .unwrap()
    .allow_null(true);
    let shown = format!("{policy:?}");
    for part in [
        "https://app.example.com:443",
        "https://tenants.example.com:8443",
        "allow_null: true",
        "missing: Reject",
    ] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
}
