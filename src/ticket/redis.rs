//! The Redis ticket store: `SET NX PX` to mint, `GETDEL` to redeem.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fred::interfaces::KeysInterface;
use fred::types::{Expiration, SetOptions, Value};
use serde::{Deserialize, Serialize};

use super::{Key, Store, Tickets};
use crate::error::AuthError;
use crate::identity::{AuthMethod, Identity};

/// The prefix of every ticket key; the rest is the base64url SHA-256 of
/// the ticket.
const KEY_PREFIX: &str = "tower-ws-auth:ticket:";

/// How long one Redis command may take before minting or redeeming
/// answers 503.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Longest record read back: a record is written by this crate, so a
/// larger one is not ours.
const MAX_RECORD: usize = 64 * 1024;

#[derive(Clone)]
pub(super) struct RedisStore {
    client: fred::clients::Client,
}

/// The identity as stored: everything but the typed claims, which do not
/// cross processes.
#[derive(Serialize, Deserialize)]
struct Record {
    sub: String,
    method: String,
    /// The identity's expiry, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

impl Record {
    fn of(identity: &Identity) -> Self {
        Self {
            sub: identity.subject().to_owned(),
            method: identity.method().to_string(),
            exp_ms: identity.expires_at().map(|at| {
                at.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
            scopes: identity.scopes().map(str::to_owned).collect(),
            sid: identity.session_id().map(str::to_owned),
            jti: identity.token_id().map(str::to_owned),
        }
    }

    fn into_identity(self) -> Identity {
        let method = match self.method.as_str() {
            "jwt" => AuthMethod::Jwt,
            "session" => AuthMethod::Session,
            "api_key" => AuthMethod::ApiKey,
            _ => AuthMethod::Custom("ticket"),
        };
        let mut builder = Identity::builder(self.sub, method).scopes(self.scopes);
        if let Some(ms) = self.exp_ms {
            builder = builder.expires_at(
                UNIX_EPOCH
                    .checked_add(Duration::from_millis(ms))
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            );
        }
        if let Some(sid) = self.sid {
            builder = builder.session_id(sid);
        }
        if let Some(jti) = self.jti {
            builder = builder.token_id(jti);
        }
        builder.build()
    }
}

fn redis_key(key: &Key) -> String {
    let mut out = String::with_capacity(KEY_PREFIX.len() + 43);
    out.push_str(KEY_PREFIX);
    URL_SAFE_NO_PAD.encode_string(key, &mut out);
    out
}

impl RedisStore {
    pub(super) async fn insert(
        &self,
        key: Key,
        identity: &Identity,
        ttl: Duration,
    ) -> Result<(), AuthError> {
        let record = serde_json::to_string(&Record::of(identity))
            .map_err(|e| AuthError::backend("ticket record", e))?;
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let set = self.client.set::<Value, _, _>(
            redis_key(&key),
            record,
            Some(Expiration::PX(ms)),
            Some(SetOptions::NX),
            false,
        );
        match tokio::time::timeout(TIMEOUT, set).await {
            Err(_) => Err(AuthError::unavailable("Redis timed out minting a ticket")),
            Ok(Err(e)) => Err(AuthError::backend("Redis refused a ticket", e)),
            // `NX` on a key that exists: a 256-bit collision, or a replay.
            Ok(Ok(Value::Null)) => Err(AuthError::unavailable("ticket collision")),
            Ok(Ok(_)) => Ok(()),
        }
    }

    pub(super) async fn take(&self, key: &Key) -> Result<Option<Identity>, AuthError> {
        let get = self.client.getdel::<Option<String>, _>(redis_key(key));
        let record = match tokio::time::timeout(TIMEOUT, get).await {
            Err(_) => return Err(AuthError::unavailable("Redis timed out redeeming a ticket")),
            Ok(Err(e)) => return Err(AuthError::backend("Redis refused a redemption", e)),
            Ok(Ok(record)) => record,
        };
        let Some(record) = record else {
            return Ok(None);
        };
        if record.len() > MAX_RECORD {
            return Err(AuthError::invalid("ticket record too large"));
        }
        let record: Record = serde_json::from_str(&record)
            .map_err(|_| AuthError::invalid("unreadable ticket record"))?;
        Ok(Some(record.into_identity()))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl Tickets {
    /// Tickets kept in Redis through `client` (a fred client the caller
    /// built and connected, with its own reconnection policy): any
    /// instance sharing that Redis redeems a ticket another one minted.
    ///
    /// A ticket is stored with `SET key record NX PX ttl` under
    /// `tower-ws-auth:ticket:<base64url SHA-256 of the ticket>` and
    /// redeemed with `GETDEL`, so one of two concurrent redemptions wins
    /// and Redis itself expires tickets nobody redeems. The record holds
    /// the identity's subject, method, expiry, scopes, session id and token
    /// id; typed claims (`Identity::claims`) are not carried over. A
    /// command that takes longer than two seconds, or fails, is 503.
    ///
    /// ```no_run
    /// use fred::prelude::*;
    /// use tower_ws_auth::ticket::Tickets;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = Builder::from_config(Config::from_url("redis://127.0.0.1:6379")?).build()?;
    /// client.init().await?;
    /// let tickets = Tickets::redis(client);
    /// # let _ = tickets; Ok(()) }
    /// ```
    pub fn redis(client: fred::clients::Client) -> Self {
        Self::with_store(Store::Redis(RedisStore { client }))
    }
}
