//! The recording points of the metrics listed in [`crate::metrics`]: the
//! rest of the crate calls these, and without the `metrics` feature they
//! are empty (no dependency, nothing recorded, nothing stored).
//!
//! With it, every key (name + labels) of the closed label set is built once
//! per process, its hash computed then: no allocation, no hashing of labels
//! per request.
//!
//! The layer's metrics (one counter and one histogram per upgrade) go
//! through [`Metrics`], one per layer, which keeps the handles the
//! recorder hands out: registering a metric is a lookup in the recorder's
//! registry (with metrics-exporter-prometheus 0.18, that was 178 ns per
//! refused upgrade), recording through a kept handle the exporter's atomic
//! operations only (`benches/README.md` measures them). The handles belong to the
//! recorder they were registered with, so a layer keeps them only for one
//! recorder, the first (not zero-sized, so not the no-op recorder) that
//! records through it, normally the global one; under any other recorder
//! (a thread-local one in tests, or the global recorder once installed if
//! the layer first recorded into a thread-local one) the layer registers on
//! every call, as if nothing were kept. A recorder installed after the layer
//! was built, or after its first requests, still gets every metric.
//!
//! The socket side (a few metrics per connection, none per message)
//! registers on every call.

#[cfg(feature = "metrics")]
// Without `socket` or `jwks`, some recording points have no caller.
#[allow(dead_code)]
mod imp {
    use std::borrow::Cow;
    use std::fmt;
    use std::sync::{Arc, LazyLock, OnceLock};
    use std::time::Instant;

    use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder};

    use crate::credential::Carrier;
    use crate::metrics::{
        AUTHENTICATION_SECONDS, AUTHENTICATORS, CARRIERS, CLOSE_REASONS, CLOSES_TOTAL,
        JWKS_OUTCOMES, JWKS_REFRESHES_TOTAL, OPEN_CONNECTIONS, OUTCOMES, REASONS, UPGRADES_TOTAL,
    };
    use crate::rejection::RejectionKind;

    static METADATA: Metadata<'static> =
        Metadata::new("tower_ws_auth", Level::INFO, Some(module_path!()));

    static OPEN: Key = Key::from_static_name(OPEN_CONNECTIONS);

    /// The number of `tower_ws_auth_upgrades_total` series: one per
    /// (reason, carrier).
    const UPGRADE_SERIES: usize = REASONS.len() * CARRIERS.len();

    /// One key per (reason, carrier), at [`upgrade_index`].
    static UPGRADES: LazyLock<Vec<Key>> = LazyLock::new(|| {
        let mut keys = Vec::with_capacity(UPGRADE_SERIES);
        for reason in REASONS {
            for carrier in CARRIERS {
                keys.push(retained(upgrade_key(reason, carrier)));
            }
        }
        keys
    });

    static AUTHENTICATIONS: LazyLock<Vec<Key>> =
        LazyLock::new(|| keys(AUTHENTICATION_SECONDS, "authenticator", &AUTHENTICATORS));
    static CLOSES: LazyLock<Vec<Key>> =
        LazyLock::new(|| keys(CLOSES_TOTAL, "reason", &CLOSE_REASONS));
    static JWKS: LazyLock<Vec<Key>> =
        LazyLock::new(|| keys(JWKS_REFRESHES_TOTAL, "outcome", &JWKS_OUTCOMES));

    fn keys(name: &'static str, label: &'static str, values: &[&'static str]) -> Vec<Key> {
        values
            .iter()
            .map(|v| retained(key(name, label, v)))
            .collect()
    }

    /// `key` with its labels in a `'static` slice, leaked once per table
    /// entry (a fixed number per process): recorders retain keys
    /// (`Key::to_retained`) on every registration, which copies owned
    /// labels but not static ones.
    fn retained(key: Key) -> Key {
        let (name, labels) = key.into_parts();
        Key::from_static_labels(name, Vec::leak(labels))
    }

    fn key(name: &'static str, label: &'static str, value: &'static str) -> Key {
        Key::from_parts(name, vec![Label::from_static_parts(label, value)])
    }

    fn upgrade_key(reason: &'static str, carrier: &'static str) -> Key {
        let outcome = match reason {
            "none" => OUTCOMES[0],
            _ => OUTCOMES[1],
        };
        Key::from_parts(
            UPGRADES_TOTAL,
            vec![
                Label::from_static_parts("outcome", outcome),
                Label::from_static_parts("reason", reason),
                Label::from_static_parts("carrier", carrier),
            ],
        )
    }

    /// The index in [`REASONS`] of a decision's reason (`none` when
    /// accepted).
    pub(crate) fn reason_index(kind: Option<RejectionKind>) -> usize {
        match kind {
            None => 0,
            Some(RejectionKind::MissingCredential) => 1,
            Some(RejectionKind::InvalidRequest) => 2,
            Some(RejectionKind::InvalidToken) => 3,
            Some(RejectionKind::InsufficientScope) => 4,
            Some(RejectionKind::Forbidden) => 5,
            Some(RejectionKind::OriginRefused) => 6,
            Some(RejectionKind::CredentialTooLarge) => 7,
            Some(RejectionKind::Unavailable) => 8,
            Some(RejectionKind::Throttled) => 9,
            Some(RejectionKind::TooManyConnections) => 10,
        }
    }

    /// The index in [`CARRIERS`] of a decision's carrier; `None` for the
    /// message carrier, which no upgrade has.
    pub(crate) fn carrier_index(carrier: Option<&Carrier>) -> Option<usize> {
        match carrier {
            None => Some(0),
            Some(Carrier::Bearer) => Some(1),
            Some(Carrier::Header(_)) => Some(2),
            Some(Carrier::Subprotocol) => Some(3),
            Some(Carrier::Cookie) => Some(4),
            Some(Carrier::Query) => Some(5),
            Some(Carrier::Message) => None,
        }
    }

    fn upgrade_index(kind: Option<RejectionKind>, carrier: Option<&Carrier>) -> Option<usize> {
        carrier_index(carrier).map(|c| reason_index(kind) * CARRIERS.len() + c)
    }

    fn position(values: &[&str], value: &str) -> Option<usize> {
        values.iter().position(|v| *v == value)
    }

    /// The table's key for `value`, or (for a value missing from the
    /// documented list, which the crate's tests rule out for its own) a key
    /// built for this call.
    fn lookup<'a>(
        table: &'a [Key],
        values: &[&str],
        value: &'static str,
        build: impl FnOnce() -> Key,
    ) -> Cow<'a, Key> {
        match position(values, value).and_then(|i| table.get(i)) {
            Some(key) => Cow::Borrowed(key),
            None => Cow::Owned(build()),
        }
    }

    fn authentication_key(authenticator: &'static str) -> Cow<'static, Key> {
        lookup(&AUTHENTICATIONS, &AUTHENTICATORS, authenticator, || {
            key(AUTHENTICATION_SECONDS, "authenticator", authenticator)
        })
    }

    fn increment(key: &Key) {
        metrics::with_recorder(|r| r.register_counter(key, &METADATA)).increment(1);
    }

    /// `recorder`'s address, which identifies it while it lives; `None` for
    /// a zero-sized recorder (the no-op one), whose address says nothing.
    fn address(recorder: &dyn Recorder) -> Option<usize> {
        (size_of_val(recorder) != 0).then(|| (recorder as *const dyn Recorder).cast::<()>().addr())
    }

    /// The handles of one layer's metrics (see the module docs): kept for
    /// the first recorder that records through the layer, registered on
    /// every call under any other. Clones share them.
    #[derive(Clone)]
    pub(crate) struct Metrics(Arc<Handles>);

    struct Handles {
        /// The address of the recorder the handles belong to.
        recorder: OnceLock<usize>,
        /// At [`upgrade_index`].
        upgrades: [OnceLock<Counter>; UPGRADE_SERIES],
        /// The key of the histogram of the layer's authenticator.
        authenticator: Key,
        /// That histogram.
        authentication: OnceLock<Histogram>,
    }

    impl fmt::Debug for Metrics {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Metrics")
                .field("bound", &self.0.recorder.get().is_some())
                .finish()
        }
    }

    impl Handles {
        /// Whether handles registered with `recorder` are kept: it is the
        /// recorder the layer keeps handles for, or (the first time a
        /// recorder other than the no-op one records) becomes it.
        fn keeps(&self, recorder: &dyn Recorder) -> bool {
            address(recorder).is_some_and(|a| *self.recorder.get_or_init(|| a) == a)
        }
    }

    impl Metrics {
        /// The metrics of a layer whose authenticator is named
        /// `authenticator`: [`Authenticator::name`](crate::Authenticator::name),
        /// read once, when the layer is built.
        pub(crate) fn new(authenticator: &'static str) -> Self {
            Self(Arc::new(Handles {
                recorder: OnceLock::new(),
                upgrades: std::array::from_fn(|_| OnceLock::new()),
                authenticator: authentication_key(authenticator).into_owned(),
                authentication: OnceLock::new(),
            }))
        }

        /// Counts a decision of the layer: accepted (`kind` is `None`) or
        /// refused, with the carrier of its credential.
        pub(crate) fn upgrade(&self, kind: Option<RejectionKind>, carrier: Option<&Carrier>) {
            let Some((index, key)) =
                upgrade_index(kind, carrier).and_then(|i| Some((i, UPGRADES.get(i)?)))
            else {
                let reason = kind.map_or("none", RejectionKind::as_str);
                let carrier = carrier.map_or("none", Carrier::as_str);
                return increment(&upgrade_key(reason, carrier));
            };
            metrics::with_recorder(|r| match self.0.upgrades.get(index) {
                Some(slot) if self.0.keeps(r) => slot
                    .get_or_init(|| r.register_counter(key, &METADATA))
                    .increment(1),
                _ => r.register_counter(key, &METADATA).increment(1),
            });
        }

        /// Records the time since `timer` started in the histogram of the
        /// layer's authenticator.
        pub(crate) fn authentication(&self, timer: Timer) {
            let seconds = timer.0.elapsed().as_secs_f64();
            let handles = &*self.0;
            metrics::with_recorder(|r| match handles.keeps(r) {
                true => handles
                    .authentication
                    .get_or_init(|| r.register_histogram(&handles.authenticator, &METADATA))
                    .record(seconds),
                false => r
                    .register_histogram(&handles.authenticator, &METADATA)
                    .record(seconds),
            });
        }
    }

    pub(crate) fn close(reason: &'static str) {
        let key = lookup(&CLOSES, &CLOSE_REASONS, reason, || {
            key(CLOSES_TOTAL, "reason", reason)
        });
        increment(&key);
    }

    pub(crate) fn jwks_refresh(success: bool) {
        let key = match JWKS.get(usize::from(!success)) {
            Some(key) => Cow::Borrowed(key),
            None => Cow::Owned(key(JWKS_REFRESHES_TOTAL, "outcome", "failure")),
        };
        increment(&key);
    }

    /// The start of an authentication.
    pub(crate) struct Timer(Instant);

    impl Timer {
        pub(crate) fn start() -> Self {
            Self(Instant::now())
        }
    }

    /// A socket counted in the open-connections gauge while it lives; its
    /// end is counted once, by [`end`](Self::end) or, if it never ended, as
    /// `dropped` when dropped.
    pub(crate) struct OpenSocket {
        ended: bool,
    }

    impl OpenSocket {
        pub(crate) fn open() -> Self {
            metrics::with_recorder(|r| r.register_gauge(&OPEN, &METADATA)).increment(1.0);
            Self { ended: false }
        }

        pub(crate) fn end(&mut self, reason: &'static str) {
            if !std::mem::replace(&mut self.ended, true) {
                close(reason);
            }
        }
    }

    impl Drop for OpenSocket {
        fn drop(&mut self) {
            self.end("dropped");
            metrics::with_recorder(|r| r.register_gauge(&OPEN, &METADATA)).decrement(1.0);
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    use crate::credential::Carrier;
    use crate::rejection::RejectionKind;

    /// Nothing to keep without the feature.
    #[derive(Debug, Clone)]
    pub(crate) struct Metrics;

    impl Metrics {
        #[inline(always)]
        pub(crate) fn new(_authenticator: &'static str) -> Self {
            Self
        }

        #[inline(always)]
        pub(crate) fn upgrade(&self, _kind: Option<RejectionKind>, _carrier: Option<&Carrier>) {}

        #[inline(always)]
        pub(crate) fn authentication(&self, _timer: Timer) {}
    }

    #[cfg(feature = "socket")]
    #[inline(always)]
    pub(crate) fn close(_reason: &'static str) {}

    #[cfg(feature = "jwks")]
    #[inline(always)]
    pub(crate) fn jwks_refresh(_success: bool) {}

    pub(crate) struct Timer;

    impl Timer {
        #[inline(always)]
        pub(crate) fn start() -> Self {
            Self
        }
    }

    #[cfg(feature = "socket")]
    pub(crate) struct OpenSocket;

    #[cfg(feature = "socket")]
    impl OpenSocket {
        #[inline(always)]
        pub(crate) fn open() -> Self {
            Self
        }

        #[inline(always)]
        pub(crate) fn end(&mut self, _reason: &'static str) {}
    }
}

#[cfg(feature = "jwks")]
pub(crate) use imp::jwks_refresh;
pub(crate) use imp::{Metrics, Timer};
#[cfg(feature = "socket")]
pub(crate) use imp::{OpenSocket, close};
#[cfg(all(test, feature = "metrics"))]
pub(crate) use imp::{carrier_index, reason_index};
