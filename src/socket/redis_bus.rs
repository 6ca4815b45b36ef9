//! [`RedisBus`]: revocations over Redis pub/sub.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::clients::SubscriberClient;
use fred::prelude::{
    ClientLike, EventInterface, KeysInterface, LuaInterface, PubsubInterface, SortedSetsInterface,
};
use fred::types::config::{Config, ReconnectPolicy};
use fred::types::sorted_sets::Ordering;
use fred::types::{Builder, SetOptions, Value};
use tokio::sync::{broadcast, mpsc, watch};

use super::revocation::{BusError, Revocation, RevocationBus};
use crate::authenticator::BoxFuture;

/// The default channel.
const DEFAULT_CHANNEL: &str = "tower-ws-auth:revocations";
/// The sorted set of active revocations: the channel's name and this.
const ACTIVE_SUFFIX: &str = ":active";
/// At most this many active revocations are loaded (the default number of
/// records a `Revocations` keeps).
const MAX_ACTIVE: i64 = 65_536;
/// How often the subscription's connection is checked (PING).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The sorted sets of a subject's connection leases: the channel's name,
/// this, and the subject.
const CAP_INFIX: &str = ":cap:";
/// Takes a lease if fewer than `max` unexpired ones are held: KEYS[1] the
/// subject's leases; ARGV now (ms), max, until (ms), lease, TTL (ms).
const ACQUIRE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
";

/// Takes a lease, removing the oldest ones (their ids sort by creation
/// time) while `max` or more unexpired ones are held, and telling their
/// instances on the channel, all in one step: KEYS[1] the subject's leases;
/// ARGV now (ms), max, until (ms), lease, TTL (ms), channel, and the
/// message's text before and after the lease (JSON-encoded here). Returns
/// the leases removed.
const DISPLACE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local removed = {}
local held = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(held)
local count = #held
for _, oldest in ipairs(held) do
  if count < tonumber(ARGV[2]) then break end
  redis.call('ZREM', KEYS[1], oldest)
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. cjson.encode(oldest) .. ARGV[8])
  table.insert(removed, oldest)
  count = count - 1
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return removed
";

/// How many received revocations may wait to be applied (fred's default,
/// 32, lost most of a burst of 125 revocations on the receiving instances:
/// benches/scale.rs); the same as [`LocalBus`](super::LocalBus).
const BROADCAST_CAPACITY: usize = 1024;

/// A [`RevocationBus`] over Redis pub/sub (with the fred client): every
/// instance connected to the same Redis (and channel) sees every
/// revocation.
///
/// Every revocation is also kept in Redis, in a sorted set by expiry (the
/// channel's name followed by `:active`), until nothing it matches can be
/// valid: [`Revocations::with_bus`](super::Revocations::with_bus) loads it at
/// start, and again after every reconnection, so a revocation made while an
/// instance was cut off holds there as soon as it is back. Publishing adds
/// to the set first, then publishes, and drops the expired entries; it gives
/// up after two seconds.
///
/// The connections reconnect on their own after Redis restarts (retrying
/// every 100 ms) and the subscription is renewed. Up to 1,024 received
/// revocations wait to be applied; past that (a burst larger than that,
/// arriving faster than the instance applies them) the excess is dropped,
/// and the instance reloads the active revocations from Redis as after a
/// reconnection (upgrades get 503 meanwhile), so none stays missed. The subscription's
/// connection is also checked every second (PING, two seconds to answer).
/// From the moment it drops or stops answering until the subscription is
/// back and the active revocations are loaded again, the link is down
/// ([`RevocationBus::link`]): [`Revocations::is_synced`](super::Revocations::is_synced)
/// is `false` and [`Revocations::revocable`](super::Revocations::revocable)
/// refuses every upgrade with `503` (fail closed). Live sockets stay open
/// meanwhile; a revocation missed while cut off closes them once the
/// instance has caught up.
///
/// With [`Revocations::max_connections_per_subject`](super::Revocations::max_connections_per_subject),
/// the cap holds across instances: each live socket holds a lease in
/// `<channel>:cap:<subject>` (a sorted set by expiry, checked and added to
/// by one Lua script), renewed by its instance and given back when it ends;
/// the leases of an instance that died lapse after
/// [`lease_ttl`](super::Revocations::lease_ttl). With
/// [`OverCap::CloseOldest`](super::OverCap::CloseOldest), a second Lua script
/// takes the lease at the cap by removing the oldest one (lease ids begin
/// with their creation time) and publishes a
/// [`Revocation::Displaced`] naming it on the channel, in the same atomic
/// step; the instance holding it closes its socket (an older instance
/// ignores the message).
///
/// ```no_run
/// use tower_ws_auth::socket::Revocations;
/// use tower_ws_auth::socket::RedisBus;
///
/// # async fn run() -> Result<(), tower_ws_auth::socket::BusError> {
/// let registry = Revocations::with_bus(RedisBus::connect("redis://127.0.0.1:6379").await?).await?;
/// registry.revoke_subject("alice").await?; // closes alice's sockets on every instance
/// # Ok(()) }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub struct RedisBus {
    publisher: fred::clients::Client,
    subscriber: SubscriberClient,
    channel: String,
    timeout: Duration,
    link: Arc<watch::Sender<bool>>,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Connects to the Redis at `url` (`redis://host:port/db`, credentials
    /// in the URL if needed).
    ///
    /// # Errors
    ///
    /// If the URL is invalid or Redis cannot be reached within two seconds.
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        let timeout = Duration::from_secs(2);
        let config = Config::from_url(url).map_err(BusError::new)?;
        let mut builder = Builder::from_config(config);
        builder.set_policy(ReconnectPolicy::new_constant(0, 100));
        builder.with_connection_config(|c| c.connection_timeout = timeout);
        builder.with_performance_config(|c| c.broadcast_channel_capacity = BROADCAST_CAPACITY);
        let publisher = builder.build().map_err(BusError::new)?;
        let subscriber = builder.build_subscriber_client().map_err(BusError::new)?;
        for client in [&publisher as &dyn Init, &subscriber as &dyn Init] {
            match tokio::time::timeout(timeout, client.start()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(BusError::new("timed out connecting to Redis")),
            }
        }
        Ok(Self {
            publisher,
            subscriber,
            channel: DEFAULT_CHANNEL.to_owned(),
            timeout,
            link: Arc::new(watch::channel(true).0),
        })
    }

    /// The sorted set of the active revocations.
    fn active_key(&self) -> String {
        format!("{}{ACTIVE_SUFFIX}", self.channel)
    }

    /// The sorted set of `subject`'s connection leases.
    fn cap_key(&self, subject: &str) -> String {
        format!("{}{CAP_INFIX}{subject}", self.channel)
    }

    /// Runs `work` within the bus's timeout.
    async fn timed<T>(
        &self,
        what: &'static str,
        work: impl std::future::Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, BusError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(BusError::new(error)),
            Err(_) => Err(BusError::new(what)),
        }
    }

    /// Uses `channel` instead of `tower-ws-auth:revocations` (to keep several
    /// applications on one Redis apart); the active revocations are kept in
    /// `<channel>:active`.
    #[must_use]
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }
}

/// Starts a fred client; a trait so both client kinds go through one loop.
trait Init: Sync {
    fn start(&self) -> BoxFuture<'_, Result<(), BusError>>;
}

impl<C: ClientLike + Sync> Init for C {
    fn start(&self) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move { self.init().await.map(drop).map_err(BusError::new) })
    }
}

/// Seconds since the Unix epoch, as a sorted-set score.
fn score(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Milliseconds since the Unix epoch.
fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Subscribes (again) and waits until Redis has the subscription (the reply
/// to a PING sent after it).
async fn confirm_subscription(
    subscriber: &SubscriberClient,
    channel: &str,
    timeout: Duration,
) -> Result<(), BusError> {
    tokio::time::timeout(timeout, subscriber.subscribe(channel))
        .await
        .map_err(|_| BusError::new("timed out subscribing to Redis"))?
        .map_err(BusError::new)?;
    // fred answers SUBSCRIBE when it queues the command, before Redis has
    // seen it: a revocation published right after this returned could reach
    // Redis first and be missed. Redis answers a connection's commands in
    // order, so the reply to a PING sent after the SUBSCRIBE means the
    // subscription is in place.
    tokio::time::timeout(timeout, subscriber.ping::<Value>(None))
        .await
        .map_err(|_| BusError::new("timed out confirming the Redis subscription"))?
        .map_err(BusError::new)?;
    Ok(())
}

/// Keeps `link` up to date: down on a connection error or a failed
/// heartbeat, up again once the subscription is confirmed again. Ends when
/// the bus is dropped.
async fn watch_link(
    subscriber: SubscriberClient,
    channel: String,
    timeout: Duration,
    link: Weak<watch::Sender<bool>>,
) {
    let mut errors = subscriber.error_rx();
    let mut reconnects = subscriber.reconnect_rx();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let set = |up: bool| {
        let Some(link) = link.upgrade() else {
            return false;
        };
        link.send_if_modified(|state| std::mem::replace(state, up) != up);
        true
    };
    loop {
        let healthy = tokio::select! {
            error = errors.recv() => {
                if matches!(error, Err(broadcast::error::RecvError::Closed)) {
                    return;
                }
                false
            }
            reconnect = reconnects.recv() => {
                if matches!(reconnect, Err(broadcast::error::RecvError::Closed)) {
                    return;
                }
                // Down until the subscription is confirmed again.
                if !set(false) {
                    return;
                }
                confirm_subscription(&subscriber, &channel, timeout).await.is_ok()
            }
            _ = heartbeat.tick() => {
                let Some(up) = link.upgrade().map(|l| *l.borrow()) else { return };
                let ping = tokio::time::timeout(timeout, subscriber.ping::<Value>(None)).await;
                match ping {
                    Ok(Ok(_)) if up => true,
                    // Back after a failure: subscribe again before trusting it.
                    Ok(Ok(_)) => confirm_subscription(&subscriber, &channel, timeout).await.is_ok(),
                    _ => false,
                }
            }
        };
        if !set(healthy) {
            return;
        }
    }
}

impl RevocationBus for RedisBus {
    fn publish<'a>(&'a self, revocation: &'a Revocation) -> BoxFuture<'a, Result<(), BusError>> {
        // Kept as long as a `Revocations` keeps it by default.
        let until = SystemTime::now() + Duration::from_secs(24 * 60 * 60);
        self.publish_until(revocation, until)
    }

    fn publish_until<'a>(
        &'a self,
        revocation: &'a Revocation,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let payload = serde_json::to_string(revocation).map_err(BusError::new)?;
            if matches!(revocation, Revocation::Displaced { .. }) {
                // Meant for the instances connected now; nothing to keep.
                return self
                    .timed(
                        "timed out publishing to Redis",
                        self.publisher
                            .publish::<Value, _, _>(&self.channel, payload.as_str()),
                    )
                    .await
                    .map(drop);
            }
            let key = self.active_key();
            let work = async {
                // Stored first: an instance that misses the message finds
                // it when it catches up.
                self.publisher
                    .zadd::<Value, _, _>(
                        &key,
                        None,
                        Some(Ordering::GreaterThan),
                        false,
                        false,
                        (score(until), payload.as_str()),
                    )
                    .await?;
                self.publisher
                    .publish::<Value, _, _>(&self.channel, payload.as_str())
                    .await?;
                self.publisher
                    .zremrangebyscore::<Value, _, _, _>(&key, "-inf", score(SystemTime::now()))
                    .await?;
                Ok::<_, fred::error::Error>(())
            };
            match tokio::time::timeout(self.timeout, work).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(BusError::new(error)),
                Err(_) => Err(BusError::new("timed out publishing to Redis")),
            }
        })
    }

    fn active(&self) -> BoxFuture<'_, Result<Vec<(Revocation, SystemTime)>, BusError>> {
        Box::pin(async move {
            let read = self.publisher.zrangebyscore::<Vec<Value>, _, _, _>(
                self.active_key(),
                score(SystemTime::now()),
                "+inf",
                true,
                Some((0, MAX_ACTIVE)),
            );
            let values = tokio::time::timeout(self.timeout, read)
                .await
                .map_err(|_| BusError::new("timed out reading the active revocations"))?
                .map_err(BusError::new)?;
            // RESP2 answers member, score, member, score...; RESP3 pairs.
            let mut flat = Vec::with_capacity(values.len());
            for value in values {
                match value {
                    Value::Array(pair) => flat.extend(pair),
                    other => flat.push(other),
                }
            }
            let mut active = Vec::with_capacity(flat.len() / 2);
            for pair in flat.chunks_exact(2) {
                let [member, score] = pair else { continue };
                let Some(text) = member.as_str() else {
                    continue;
                };
                let Some(until) = score
                    .as_f64()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .and_then(|d| UNIX_EPOCH.checked_add(d))
                else {
                    continue;
                };
                match serde_json::from_str::<Revocation>(&text) {
                    Ok(revocation) => active.push((revocation, until)),
                    Err(_) => {
                        tracing::warn!(target: "tower_ws_auth", "ignored an unreadable active revocation");
                    }
                }
            }
            Ok(active)
        })
    }

    fn link(&self) -> Option<watch::Receiver<bool>> {
        Some(self.link.subscribe())
    }

    fn shares_leases(&self) -> bool {
        true
    }

    fn acquire_lease<'a>(
        &'a self,
        subject: &'a str,
        lease: &'a str,
        max: usize,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, BusError>> {
        Box::pin(async move {
            let now = SystemTime::now();
            let ttl = until.duration_since(now).unwrap_or_default();
            let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
            let max = i64::try_from(max).unwrap_or(i64::MAX);
            let args: Vec<Value> = vec![
                millis(now).into(),
                max.into(),
                millis(until).into(),
                lease.into(),
                ttl.into(),
            ];
            let taken: i64 = self
                .timed(
                    "timed out taking a connection lease",
                    self.publisher.eval(ACQUIRE, self.cap_key(subject), args),
                )
                .await?;
            Ok(taken == 1)
        })
    }

    fn acquire_lease_displacing<'a>(
        &'a self,
        subject: &'a str,
        lease: &'a str,
        max: usize,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<Vec<String>, BusError>> {
        Box::pin(async move {
            let now = SystemTime::now();
            let ttl = until.duration_since(now).unwrap_or_default();
            let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
            let max = i64::try_from(max).unwrap_or(i64::MAX);
            // The message is `Revocation::Displaced`'s wire format.
            let subject_json = serde_json::to_string(subject).map_err(BusError::new)?;
            let head =
                format!(r#"{{"kind":"displaced","value":{{"subject":{subject_json},"lease":"#);
            let args: Vec<Value> = vec![
                millis(now).into(),
                max.into(),
                millis(until).into(),
                lease.into(),
                ttl.into(),
                self.channel.as_str().into(),
                head.into(),
                "}}".into(),
            ];
            let removed: Vec<String> = self
                .timed(
                    "timed out taking a connection lease",
                    self.publisher.eval(DISPLACE, self.cap_key(subject), args),
                )
                .await?;
            Ok(removed)
        })
    }

    fn release_lease<'a>(
        &'a self,
        subject: &'a str,
        lease: &'a str,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            self.timed(
                "timed out giving a connection lease back",
                self.publisher
                    .zrem::<Value, _, _>(self.cap_key(subject), lease),
            )
            .await
            .map(drop)
        })
    }

    fn renew_leases<'a>(
        &'a self,
        leases: &'a [(String, String)],
        until: SystemTime,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let ttl = until.duration_since(SystemTime::now()).unwrap_or_default();
            let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
            let until = millis(until) as f64;
            let pipeline = self.publisher.pipeline();
            let mut subjects = std::collections::HashSet::new();
            for (subject, lease) in leases {
                let key = self.cap_key(subject);
                // Only leases still there: one that lapsed is not taken again.
                let _: Value = pipeline
                    .zadd(
                        &key,
                        Some(SetOptions::XX),
                        None,
                        false,
                        false,
                        (until, lease.as_str()),
                    )
                    .await
                    .map_err(BusError::new)?;
                if subjects.insert(subject.as_str()) {
                    let _: Value = pipeline
                        .pexpire(&key, ttl, None)
                        .await
                        .map_err(BusError::new)?;
                }
            }
            self.timed(
                "timed out renewing the connection leases",
                pipeline.all::<Value>(),
            )
            .await
            .map(drop)
        })
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<mpsc::Receiver<Revocation>, BusError>> {
        Box::pin(async move {
            let mut messages = self.subscriber.message_rx();
            confirm_subscription(&self.subscriber, &self.channel, self.timeout).await?;
            // Renews the subscription after every reconnection, and tells
            // when messages may have been missed.
            tokio::spawn(watch_link(
                self.subscriber.clone(),
                self.channel.clone(),
                self.timeout,
                Arc::downgrade(&self.link),
            ));
            let (tx, rx) = mpsc::channel(256);
            let channel = self.channel.clone();
            let link = Arc::downgrade(&self.link);
            tokio::spawn(async move {
                loop {
                    match messages.recv().await {
                        Ok(message) => {
                            if &*message.channel != channel.as_str() {
                                continue;
                            }
                            let Some(text) = message.value.as_str() else {
                                continue;
                            };
                            match serde_json::from_str::<Revocation>(&text) {
                                Ok(revocation) => {
                                    if tx.send(revocation).await.is_err() {
                                        return;
                                    }
                                }
                                Err(_) => {
                                    tracing::warn!(target: "tower_ws_auth", "ignored an unreadable message on the revocation channel");
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(target: "tower_ws_auth", missed, "revocation bus lagged: catching up from Redis");
                            // Revocations were dropped: a change of the link
                            // makes `Revocations` reload the active ones.
                            if let Some(link) = link.upgrade() {
                                link.send_modify(|_| {});
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
            Ok(rx)
        })
    }
}
