//! HS256 test tokens, as the examples' `JwtAuthenticator::hs256` expects
//! them (`sub` and `exp`).
//!
//! Not declared in `common/mod.rs` (other test binaries do not need it):
//! include it with `#[path = "common/hs256.rs"] mod hs256;`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An HS256 JWT for `subject` signed with `secret`, valid for `ttl`.
pub fn token(secret: &str, subject: &str, ttl: Duration) -> String {
    // Both jsonwebtoken backends are compiled in under --all-features: pick one.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({ "sub": subject, "exp": now + ttl.as_secs() });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}
