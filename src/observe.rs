//! The recording points of the metrics listed in [`crate::metrics`]: the
//! rest of the crate calls these, and without the `metrics` feature they
//! are empty (no dependency, nothing recorded, nothing stored).
//!
//! With it, every key (name + labels) of the closed label set is built once
//! per process, its hash computed then, so recording one is a lookup in a
//! small table plus the recorder's own work: no allocation, no hashing of
//! labels per request. Handles are not cached: a recorder installed after
//! the first request (or a thread-local one, in tests) still gets every
//! metric.

#[cfg(feature = "metrics")]
// Without `socket` or `jwks`, some recording points have no caller.
#[allow(dead_code)]
mod imp {
    use std::borrow::Cow;
    use std::sync::LazyLock;
    use std::time::Instant;

    use metrics::{Key, Label, Level, Metadata};

    use crate::metrics::{
        AUTHENTICATION_SECONDS, AUTHENTICATORS, CARRIERS, CLOSE_REASONS, CLOSES_TOTAL,
        JWKS_OUTCOMES, JWKS_REFRESHES_TOTAL, OPEN_CONNECTIONS, OUTCOMES, REASONS, UPGRADES_TOTAL,
    };

    static METADATA: Metadata<'static> =
        Metadata::new("tower_ws_auth", Level::INFO, Some(module_path!()));

    static OPEN: Key = Key::from_static_name(OPEN_CONNECTIONS);

    /// One key per (reason, carrier): `reason` index times the number of
    /// carriers plus the carrier's index.
    static UPGRADES: LazyLock<Vec<Key>> = LazyLock::new(|| {
        let mut keys = Vec::with_capacity(REASONS.len() * CARRIERS.len());
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

    fn increment(key: &Key) {
        metrics::with_recorder(|r| r.register_counter(key, &METADATA)).increment(1);
    }

    pub(crate) fn upgrade(reason: Option<&'static str>, carrier: Option<&'static str>) {
        let (reason, carrier) = (reason.unwrap_or("none"), carrier.unwrap_or("none"));
        let index = position(&REASONS, reason)
            .zip(position(&CARRIERS, carrier))
            .map(|(r, c)| r * CARRIERS.len() + c);
        match index.and_then(|i| UPGRADES.get(i)) {
            Some(key) => increment(key),
            None => increment(&upgrade_key(reason, carrier)),
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

        pub(crate) fn record(self, authenticator: &'static str) {
            let seconds = self.0.elapsed().as_secs_f64();
            let key = lookup(&AUTHENTICATIONS, &AUTHENTICATORS, authenticator, || {
                key(AUTHENTICATION_SECONDS, "authenticator", authenticator)
            });
            metrics::with_recorder(|r| r.register_histogram(&key, &METADATA)).record(seconds);
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
    #[inline(always)]
    pub(crate) fn upgrade(_reason: Option<&'static str>, _carrier: Option<&'static str>) {}

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

        #[inline(always)]
        pub(crate) fn record(self, _authenticator: &'static str) {}
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
#[cfg(feature = "socket")]
pub(crate) use imp::{OpenSocket, close};
pub(crate) use imp::{Timer, upgrade};
