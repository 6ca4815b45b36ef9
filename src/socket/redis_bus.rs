//! [`RedisBus`]: revocations over Redis pub/sub.

use std::fmt;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::{ClientLike, EventInterface, PubsubInterface};
use fred::types::config::{Config, ReconnectPolicy};
use fred::types::{Builder, Value};
use tokio::sync::{broadcast, mpsc};

use super::revocation::{BusError, Revocation, RevocationBus};
use crate::authenticator::BoxFuture;

/// The default channel.
const DEFAULT_CHANNEL: &str = "tower-ws-auth:revocations";

/// How many received revocations may wait to be applied (fred's default,
/// 32, lost most of a burst of 125 revocations on the receiving instances:
/// benches/scale.rs); the same as [`LocalBus`](super::LocalBus).
const BROADCAST_CAPACITY: usize = 1024;

/// A [`RevocationBus`] over Redis pub/sub (with the fred client): every
/// instance connected to the same Redis (and channel) sees every
/// revocation.
///
/// The connections reconnect on their own after Redis restarts (retrying
/// every 100 ms) and the subscription is renewed; revocations published
/// while Redis was down are lost, as pub/sub keeps nothing, but the
/// instance that revoked applied them to its own connections. Publishing
/// gives up after two seconds. Up to 1,024 received revocations wait to be
/// applied; past that (a burst larger than that, arriving faster than the
/// instance applies them) the excess is lost, with a warning.
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
        })
    }

    /// Uses `channel` instead of `tower-ws-auth:revocations` (to keep several
    /// applications on one Redis apart).
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

impl RevocationBus for RedisBus {
    fn publish<'a>(&'a self, revocation: &'a Revocation) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let payload = serde_json::to_string(revocation).map_err(BusError::new)?;
            match tokio::time::timeout(
                self.timeout,
                self.publisher
                    .publish::<Value, _, _>(&self.channel, payload),
            )
            .await
            {
                Ok(Ok(_receivers)) => Ok(()),
                Ok(Err(error)) => Err(BusError::new(error)),
                Err(_) => Err(BusError::new("timed out publishing to Redis")),
            }
        })
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<mpsc::Receiver<Revocation>, BusError>> {
        Box::pin(async move {
            let mut messages = self.subscriber.message_rx();
            // Renews the subscription after every reconnection.
            let _resubscribe = self.subscriber.manage_subscriptions();
            tokio::time::timeout(
                self.timeout,
                self.subscriber.subscribe(self.channel.as_str()),
            )
            .await
            .map_err(|_| BusError::new("timed out subscribing to Redis"))?
            .map_err(BusError::new)?;
            // fred answers SUBSCRIBE when it queues the command, before
            // Redis has seen it: a revocation published right after this
            // returned could reach Redis first and be missed. Redis answers
            // a connection's commands in order, so the reply to a PING sent
            // after the SUBSCRIBE means the subscription is in place.
            tokio::time::timeout(self.timeout, self.subscriber.ping::<Value>(None))
                .await
                .map_err(|_| BusError::new("timed out confirming the Redis subscription"))?
                .map_err(BusError::new)?;
            let (tx, rx) = mpsc::channel(256);
            let channel = self.channel.clone();
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
                            tracing::warn!(target: "tower_ws_auth", missed, "revocation bus lagged");
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
            Ok(rx)
        })
    }
}
