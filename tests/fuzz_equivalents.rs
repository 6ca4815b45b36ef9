//! The fuzz targets' properties (`tests/fuzz_checks`), run on stable under
//! proptest: each target gets random bytes and inputs built from its
//! grammar (so the interesting paths are reached without a coverage-guided
//! fuzzer), and every input a fuzzer ever crashed on, kept in
//! `tests/fuzz_regressions/<target>/`, is replayed.

mod fuzz_checks;

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fuzz_checks::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// `pieces` joined into lines.
fn joined(pieces: Vec<String>) -> Vec<u8> {
    pieces.join("\n").into_bytes()
}

/// `data` after a first byte that picks the target's mode.
fn with_mode(data: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), data).prop_map(|(mode, data)| {
        let mut input = vec![mode];
        input.extend_from_slice(&data);
        input
    })
}

/// Random bytes, biased towards the printable ASCII of headers.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..256),
        vec(prop_oneof![32u8..127, Just(b'\n'), Just(b'\t')], 0..256),
    ]
}

fn good_entry() -> String {
    format!("base64url.bearer.{}", URL_SAFE_NO_PAD.encode(GOOD))
}

fn authorization_line() -> impl Strategy<Value = String> {
    (
        select(vec![
            "Bearer", "bearer", "BEARER", "BeArEr", "Basic", "Bearer:", "", " Bearer",
        ]),
        select(vec!["", " ", "  ", "\t"]),
        prop_oneof![
            Just(GOOD.to_owned()),
            "[A-Za-z0-9._~+/-]{1,12}=*",
            "[A-Za-z0-9._~+/=\\- ,\"]{0,16}",
        ],
        select(vec!["", " ", "\t", " extra"]),
    )
        .prop_map(|(scheme, gap, token, tail)| format!("{scheme}{gap}{token}{tail}"))
}

fn protocol_line() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            Just(good_entry()),
            Just("chat".to_owned()),
            Just("graphql-ws".to_owned()),
            Just("base64url.bearer.".to_owned()),
            "base64url\\.bearer\\.[A-Za-z0-9_=+/-]{0,12}",
            "[a-z!#.]{0,6}",
            Just(" ".to_owned()),
        ],
        0..4,
    )
    .prop_map(|elements| elements.join(","))
}

fn origin_value() -> impl Strategy<Value = String> {
    (
        select(vec!["https", "HTTPS", "http", "ws", "wss", "ftp", ""]),
        select(vec!["://", ":/", "//"]),
        select(vec![
            "app.example",
            "APP.EXAMPLE",
            "app.example.evil",
            "evilapp.example",
            "localhost",
            "x.tenant.example",
            "a.b.tenant.example",
            "tenant.example",
            ".tenant.example",
            "x..tenant.example",
            "[::1]",
            "",
        ]),
        select(vec![
            "", ":443", ":8080", ":80", ":0", ":00443", ":65536", ":", ":x",
            // Signed, zero-padded and over-long ports: never the listed port.
            ":+443", ":-443", ":+8080", ":0443", ":08080", ":000443", ":0008080", ":4430", ":44300",
            ": 443", ":443 ",
        ]),
        select(vec!["", "/", "/path", "?q", "@evil"]),
    )
        .prop_map(|(scheme, sep, host, port, tail)| format!("{scheme}{sep}{host}{port}{tail}"))
}

fn cookie_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        origin_value().prop_map(|o| format!("o:{o}")),
        Just(format!("o:{APP_ORIGIN}")),
        vec(
            (
                select(vec![
                    "session", "Session", " session", "session ", "other", ""
                ]),
                select(vec!["=", " = ", "", "=="]),
                prop_oneof![
                    Just(GOOD.to_owned()),
                    Just(format!("\"{GOOD}\"")),
                    Just(String::new()),
                    "[ -~]{0,10}",
                ],
            )
                .prop_map(|(name, eq, value)| format!("{name}{eq}{value}")),
            0..4,
        )
        .prop_map(|pairs| pairs.join("; ")),
    ]
}

fn query_string() -> impl Strategy<Value = String> {
    vec(
        (
            select(vec![
                "access_token",
                "access%5Ftoken",
                "access%5ftoken",
                "access_token+",
                "Access_token",
                "a",
                "",
            ]),
            select(vec!["=", "", "=="]),
            prop_oneof![
                Just(GOOD.to_owned()),
                Just("good%2Dtoken".to_owned()),
                Just("good-token%0a".to_owned()),
                Just("+".to_owned()),
                "[A-Za-z0-9%+._~-]{0,10}",
            ],
        )
            .prop_map(|(k, eq, v)| format!("{k}{eq}{v}")),
        0..5,
    )
    .prop_map(|pairs| pairs.join("&"))
}

fn first_message_input() -> impl Strategy<Value = Vec<u8>> {
    vec(
        (
            0u8..6,
            prop_oneof![
                Just(String::new()),
                Just(GOOD.to_owned()),
                Just(r#""token":"good-token""#.to_owned()),
                Just(r#""token":5"#.to_owned()),
                Just(r#""token":"""#.to_owned()),
                "[ -~]{0,120}",
            ],
        ),
        0..5,
    )
    .prop_map(|messages| {
        let mut out = Vec::new();
        for (tag, body) in messages {
            let body = body.as_bytes();
            let len = u8::try_from(body.len()).unwrap_or(u8::MAX);
            out.push(tag);
            out.push(len);
            out.extend_from_slice(body.get(..usize::from(len)).unwrap_or(body));
        }
        out
    })
}

fn jwt_input() -> impl Strategy<Value = Vec<u8>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = select(vec![
        r#"{"alg":"HS256","typ":"JWT"}"#.to_owned(),
        r#"{"alg":"HS256"}"#.to_owned(),
        r#"{"alg":"none"}"#.to_owned(),
        r#"{"alg":"hs256"}"#.to_owned(),
        r#"{"alg":"RS256"}"#.to_owned(),
        r#"{"alg":"HS256","jwk":{"kty":"oct","k":"AA"}}"#.to_owned(),
        r#"{"alg":"HS256","crit":["exp"]}"#.to_owned(),
        r#"{"alg":"HS256","kid":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#.to_owned(),
        r#"["alg","HS256"]"#.to_owned(),
        "not json".to_owned(),
    ]);
    let exp = select(vec![
        format!(r#""exp":{}"#, now + 600),
        format!(r#""exp":{}"#, now - 600),
        format!(r#""exp":"{}""#, now + 600),
        format!(r#""exp":{}.5"#, now + 600),
        r#""exp":null"#.to_owned(),
        String::new(),
    ]);
    let nbf = select(vec![
        format!(r#""nbf":{}"#, now - 60),
        format!(r#""nbf":{}"#, now + 600),
        r#""nbf":"0""#.to_owned(),
        String::new(),
    ]);
    let aud = select(vec![
        format!(r#""aud":"{JWT_AUDIENCE}""#),
        format!(r#""aud":["other","{JWT_AUDIENCE}"]"#),
        r#""aud":"other""#.to_owned(),
        r#""aud":5"#.to_owned(),
        String::new(),
    ]);
    let iss = select(vec![
        format!(r#""iss":"{JWT_ISSUER}""#),
        r#""iss":"https://evil.example""#.to_owned(),
        r#""iss":["x"]"#.to_owned(),
        String::new(),
    ]);
    let sub = select(vec![
        r#""sub":"alice""#.to_owned(),
        r#""sub":7"#.to_owned(),
        String::new(),
    ]);
    let signed = (header, exp, nbf, aud, iss, sub).prop_map(|(header, exp, nbf, aud, iss, sub)| {
        let claims: Vec<String> = [exp, nbf, aud, iss, sub]
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect();
        let mut out = vec![1u8];
        out.extend_from_slice(header.as_bytes());
        out.push(0);
        out.extend_from_slice(format!("{{{}}}", claims.join(",")).as_bytes());
        out
    });
    let raw = prop_oneof![
        "[A-Za-z0-9_.=-]{0,80}",
        Just("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.".to_owned()),
        Just("a.b.c.d.e".to_owned()),
    ]
    .prop_map(|token| {
        let mut out = vec![0u8];
        out.extend_from_slice(token.as_bytes());
        out
    });
    prop_oneof![signed, raw]
}

fn upgrade_line() -> impl Strategy<Value = String> {
    select(vec![
        "upgrade: websocket",
        "Upgrade: WebSocket",
        "upgrade: h2c, websocket",
        "upgrade: websocketx",
        "upgrade:  websocket ",
        "upgrade: web socket",
        "connection: upgrade",
        "connection: keep-alive, Upgrade",
        ":protocol: websocket",
        ":protocol: WEBSOCKET",
        ":protocol: webtransport",
        "authorization: Bearer good-token",
        "authorization: Bearer bad-token",
        "sec-websocket-version: 13",
    ])
    .prop_map(str::to_owned)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn authorization_holds(data in prop_oneof![bytes(), vec(authorization_line(), 0..3).prop_map(joined)]) {
        authorization(&data);
    }

    #[test]
    fn subprotocol_holds(data in with_mode(prop_oneof![bytes(), vec(protocol_line(), 0..3).prop_map(joined)])) {
        subprotocol(&data);
    }

    #[test]
    fn cookie_holds(data in prop_oneof![bytes(), vec(cookie_piece(), 0..4).prop_map(joined)]) {
        cookie(&data);
    }

    #[test]
    fn query_holds(data in prop_oneof![bytes(), query_string().prop_map(String::into_bytes)]) {
        query(&data);
    }

    #[test]
    fn origin_holds(data in with_mode(prop_oneof![bytes(), vec(origin_value(), 0..3).prop_map(joined)])) {
        origin(&data);
    }

    #[test]
    fn first_message_holds(data in prop_oneof![bytes(), first_message_input()]) {
        first_message(&data);
    }

    #[test]
    fn jwt_holds(data in prop_oneof![bytes(), jwt_input()]) {
        jwt(&data);
    }

    #[test]
    fn upgrade_holds(data in with_mode(prop_oneof![bytes(), vec(upgrade_line(), 0..5).prop_map(joined)])) {
        upgrade(&data);
    }
}

/// The properties hold on inputs that reach their accepting paths (so the
/// checks above are not vacuous).
#[test]
fn good_inputs_are_accepted() {
    assert!(authorization(format!("Bearer {GOOD}").as_bytes()));
    assert!(!authorization(b"Bearer bad-token"));
    assert!(subprotocol(b"\x01chat"));
    assert!(!subprotocol(b"\x01"), "no companion protocol");
    assert!(cookie(format!("o:{APP_ORIGIN}\nsession={GOOD}").as_bytes()));
    assert!(!cookie(
        format!("o:https://evil.example\nsession={GOOD}").as_bytes()
    ));
    assert!(query(format!("a=1&access_token={GOOD}&b=2").as_bytes()));
    assert!(!query(
        format!("access_token={GOOD}&access_token={GOOD}").as_bytes()
    ));
    assert!(origin(b"\x00https://x.tenant.example"));
    assert!(!origin(b"\x00https://tenant.example"));
    assert!(first_message(&[4, 0]));
    assert!(
        first_message(&[2, 0, 4, 0, 0, 3, b'h', b'i', b'!']),
        "a ping first"
    );
    assert!(
        !first_message(&[0, 2, b'h', b'i', 4, 0]),
        "an application message first"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut token = vec![1u8];
    token.extend_from_slice(br#"{"alg":"HS256"}"#);
    token.push(0);
    token.extend_from_slice(
        format!(
            r#"{{"sub":"alice","exp":{},"aud":"{JWT_AUDIENCE}","iss":"{JWT_ISSUER}"}}"#,
            now + 60
        )
        .as_bytes(),
    );
    assert!(jwt(&token));
    assert!(!jwt(b"\x00eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."));
    assert!(upgrade(
        b"\x00upgrade: websocket\nauthorization: Bearer good-token"
    ));
    assert!(!upgrade(
        b"\x00upgrade: websocket\nauthorization: Bearer bad-token"
    ));
    assert!(upgrade(b"\x02"), "a plain POST passes through");
}

/// Every crash a fuzzer found, replayed.
#[test]
fn fuzz_regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(name)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            let data = std::fs::read(&path).expect("a regression input");
            println!("replaying {}", path.display());
            target(&data);
            replayed += 1;
        }
    }
    println!("{replayed} fuzz regressions replayed");
}
