//! Origin checks (cross-site WebSocket hijacking), end to end: one test per
//! rule of SECURITY.md's "Origin" section.

use crate::common;

use common::*;
use http::StatusCode;
use tower_ws_auth::{OriginPolicy, WsAuthLayer};

async fn cookie_server(calls: &Calls, policy: OriginPolicy) -> std::net::SocketAddr {
    let layer = WsAuthLayer::new(tokens(calls))
        .bearer_header()
        .cookie("session", policy)
        .unwrap();
    serve(app(layer)).await
}

const COOKIE: (&str, &str) = ("cookie", "session=alice-session");

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
