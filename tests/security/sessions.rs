//! "Sessions and API keys": the secrets behind cookies and service
//! credentials, and the stores that hold them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use tower_ws_auth::cookie::Key;
use tower_ws_auth::{
    ApiKeyAuthenticator, ApiKeyDigest, ApiKeyStore, AuthError, AuthMethod, Identity, MemoryApiKeys,
    MemorySessionStore, OriginPolicy, SessionCookie, SessionId, SessionRecord, SessionStore,
    WsAuthLayer,
};

use crate::session_common::{Counting, tamper};
use crate::{INVALID_TOKEN, SITE, Server, assert_refusal, bearer, cookie_pair, session_auth};

/// An API key store over [`MemoryApiKeys`] that records what it is asked.
#[derive(Clone)]
struct RecordingKeys {
    keys: MemoryApiKeys,
    asked: Arc<Mutex<Vec<ApiKeyDigest>>>,
}

impl ApiKeyStore for RecordingKeys {
    async fn lookup(&self, digest: &ApiKeyDigest) -> Result<Option<Identity>, AuthError> {
        self.asked.lock().unwrap().push(*digest);
        self.keys.lookup(digest).await
    }
}

fn cookie_layer<A: tower_ws_auth::Authenticator>(
    auth: A,
    cookie: &SessionCookie,
) -> WsAuthLayer<A> {
    WsAuthLayer::new(auth).cookie(cookie.name(), OriginPolicy::from_origins([SITE]).unwrap())
}

/// "Session ids and API keys are compared in constant time or looked up by
/// a hash; keys are stored hashed."
///
/// Timing is not measured (it cannot be, reliably, on a shared machine);
/// what is checked is the structure that makes it hold: an API key store
/// is only ever given the SHA-256 digest of the presented key and can be
/// filled from digests alone, near misses are refused, and sessions are
/// named by the digest of their id, never by the id.
#[tokio::test]
async fn session_ids_and_api_keys_are_looked_up_by_hash_and_stored_hashed() {
    const KEY: &str = "sk_live_4f9c2a7e1b3d5f60a8c4";
    // The store holds the digest as a database would, in hex, never the key.
    let mut keys = MemoryApiKeys::new();
    let stored = ApiKeyDigest::of(KEY).to_hex();
    keys.insert_digest(
        ApiKeyDigest::from_hex(&stored).unwrap(),
        Identity::new("billing", AuthMethod::ApiKey),
    );
    assert!(!format!("{keys:?}").contains(KEY));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let store = RecordingKeys {
        keys,
        asked: asked.clone(),
    };
    let api = Server::start(
        WsAuthLayer::new(ApiKeyAuthenticator::new(store))
            .bearer_header()
            .header("x-api-key"),
    )
    .await;

    let near_misses = [
        ("last character changed", "sk_live_4f9c2a7e1b3d5f60a8c5"),
        ("first character changed", "tk_live_4f9c2a7e1b3d5f60a8c4"),
        ("one character short", "sk_live_4f9c2a7e1b3d5f60a8c"),
        ("one character more", "sk_live_4f9c2a7e1b3d5f60a8c4a"),
        ("other case", "SK_LIVE_4F9C2A7E1B3D5F60A8C4"),
        ("its digest instead of the key", stored.as_str()),
    ];
    for (case, presented) in near_misses {
        for (carrier, header) in [
            ("bearer", ("authorization", bearer(presented))),
            ("x-api-key", ("x-api-key", presented.to_owned())),
        ] {
            let case = format!("{case}, {carrier}");
            let refused = api.refused("/ws", &[(header.0, &header.1)], &case).await;
            assert_refusal(&refused, StatusCode::UNAUTHORIZED, INVALID_TOKEN, &case);
        }
    }
    api.assert_reached(0, "API key near misses");
    assert_eq!(
        api.subject("/ws", &[("x-api-key", KEY)], "the key").await,
        "billing"
    );
    let presented: Vec<ApiKeyDigest> = near_misses
        .iter()
        .flat_map(|(_, key)| [ApiKeyDigest::of(key); 2])
        .chain([ApiKeyDigest::of(KEY)])
        .collect();
    assert_eq!(
        *asked.lock().unwrap(),
        presented,
        "the store was asked for something else than the digest of the presented key"
    );

    // Sessions: the identity names a session by the digest of its id.
    let sessions = MemorySessionStore::new(Duration::from_secs(600));
    let cookie = SessionCookie::new("sid");
    let id = sessions.create("alice".to_owned()).unwrap();
    let secret = id.expose_secret().to_owned();
    assert!(!format!("{sessions:?}").contains(&secret));
    let server = Server::start(cookie_layer(
        session_auth(sessions, cookie.clone()),
        &cookie,
    ))
    .await;
    let pair = cookie_pair(&cookie.issue(&id));
    let (_, seen, _) = server
        .upgraded("/ws", &[("cookie", &pair), ("origin", SITE)], "the session")
        .await;
    assert_eq!(seen["subject"], "alice");
    assert_eq!(
        seen["session_id"],
        id.digest().to_string(),
        "the identity does not name the session by its digest"
    );
    assert!(!pair.contains(&id.digest().to_string()));
    let mut near_ids = vec![("one character short", secret[..secret.len() - 1].to_owned())];
    for position in [0, secret.len() / 2, secret.len() - 1] {
        let changed = tamper(&format!("sid={secret}"), position);
        near_ids.push(("one character changed", changed["sid=".len()..].to_owned()));
    }
    near_ids.push(("its digest instead of the id", id.digest().to_string()));
    for (case, near) in &near_ids {
        assert!(
            SessionId::parse(near).is_some(),
            "{case}: not even a session id"
        );
        let refused = server
            .refused(
                "/ws",
                &[("cookie", &format!("sid={near}")), ("origin", SITE)],
                case,
            )
            .await;
        assert_refusal(&refused, StatusCode::UNAUTHORIZED, INVALID_TOKEN, case);
    }
    server.assert_reached(1, "session near misses");
}

/// A session store whose database is down.
#[derive(Clone)]
struct DownStore(Option<Duration>);

impl SessionStore for DownStore {
    type Data = String;

    async fn load(&self, _id: &SessionId) -> Result<Option<SessionRecord<String>>, AuthError> {
        let error = AuthError::backend(
            "session database unreachable",
            std::io::Error::other("connection refused"),
        );
        Err(match self.0 {
            Some(after) => error.with_retry_after(after),
            None => error,
        })
    }
}

/// "A session store error is 503, never 401 and never 101."
#[tokio::test]
async fn session_store_error_is_503_never_401_and_never_101() {
    let key = Key::generate();
    let cookies = [
        ("plain cookie", SessionCookie::new("session")),
        (
            "signed cookie",
            SessionCookie::new("session").signed(key.clone()),
        ),
        ("private cookie", SessionCookie::new("session").private(key)),
    ];
    for (retry_after, expected) in [(Some(Duration::from_secs(7)), Some(7)), (None, None)] {
        for (case, cookie) in &cookies {
            let store = Counting::new(DownStore(retry_after));
            let server = Server::start(cookie_layer(
                session_auth(store.clone(), cookie.clone()),
                cookie,
            ))
            .await;
            let pair = cookie_pair(&cookie.issue(&SessionId::generate().unwrap()));
            let case = format!("{case}, Retry-After {retry_after:?}");
            let refused = server
                .refused("/ws", &[("cookie", &pair), ("origin", SITE)], &case)
                .await;
            assert_refusal(&refused, StatusCode::SERVICE_UNAVAILABLE, None, &case);
            let after: u64 = refused.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            match expected {
                Some(seconds) => assert_eq!(after, seconds, "{case}"),
                None => assert!(after >= 1, "{case}: Retry-After {after}"),
            }
            assert_eq!(store.loads(), 1, "{case}: the store was not asked");
            server.assert_reached(0, &case);
        }
    }
}

/// "Signed or private cookies are verified before the store is touched."
#[tokio::test]
async fn signed_or_private_cookies_are_verified_before_the_store_is_touched() {
    let key = Key::generate();
    let signed = SessionCookie::new("session").signed(key.clone());
    let private = SessionCookie::new("session").private(key.clone());
    for (kind, cookie, other_kind) in [
        ("signed", &signed, &private),
        ("private", &private, &signed),
    ] {
        let store = Counting::new(MemorySessionStore::new(Duration::from_secs(600)));
        let server = Server::start(cookie_layer(
            session_auth(store.clone(), cookie.clone()),
            cookie,
        ))
        .await;
        let id = store.inner.create("alice".to_owned()).unwrap();
        let genuine = cookie_pair(&cookie.issue(&id));
        let value_len = genuine.len() - "session=".len();
        let mut cases: Vec<(String, String)> = [0, 5, value_len / 2, value_len - 1]
            .into_iter()
            .map(|position| {
                (
                    format!("tampered at {position} from the end"),
                    tamper(&genuine, position),
                )
            })
            .collect();
        let other_key = SessionCookie::new("session").signed(Key::generate());
        cases.push((
            "sealed with another key".into(),
            cookie_pair(&other_key.issue(&id)),
        ));
        cases.push((
            "the bare session id".into(),
            format!("session={}", id.expose_secret()),
        ));
        cases.push((
            "protected the other way".into(),
            cookie_pair(&other_kind.issue(&id)),
        ));
        for (case, pair) in &cases {
            let case = format!("{kind}: {case}");
            assert_ne!(*pair, genuine, "{case}");
            let refused = server
                .refused("/ws", &[("cookie", pair), ("origin", SITE)], &case)
                .await;
            assert_refusal(&refused, StatusCode::UNAUTHORIZED, INVALID_TOKEN, &case);
        }
        assert_eq!(
            store.loads(),
            0,
            "{kind}: the store was asked for a cookie that does not verify"
        );
        server.assert_reached(0, kind);

        let subject = server
            .subject("/ws", &[("cookie", &genuine), ("origin", SITE)], kind)
            .await;
        assert_eq!(subject, "alice");
        assert_eq!(store.loads(), 1, "{kind}");
    }
}
