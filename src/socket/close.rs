//! WebSocket close codes used after the handshake, in one place.

/// `true` for a code an endpoint may send in a close frame: 1000-1003,
/// 1007-1014 and 3000-4999. Never 1004, 1005, 1006 or 1015 (reserved or
/// meaningful only locally).
pub fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// `reason` cut to at most 123 bytes (the limit of a close frame) at a
/// character boundary.
///
/// ```
/// use tower_ws_auth::close_reason;
///
/// assert_eq!(close_reason("session expired"), "session expired");
/// assert_eq!(close_reason(&"é".repeat(100)).len(), 122);
/// ```
pub fn close_reason(reason: &str) -> &str {
    if reason.len() <= 123 {
        return reason;
    }
    let mut end = 123;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.get(..end).unwrap_or_default()
}

/// The close codes sent after the handshake.
///
/// | situation | default | `graphql_ws()` | npm `graphql-ws` client on it |
/// |---|---|---|---|
/// | unauthorized: invalid credential, message before auth | 4001 | 4403 | retries |
/// | malformed auth message | 4001 | 4400 | stops (fatal) |
/// | session expired | 4002 | 4401 | stops (fatal) |
/// | forbidden: refresh for another subject, missing scope | 4003 | 4403 | retries |
/// | revoked | 4003 | 4403 | retries |
/// | auth timeout | 4008 | 4408 | retries |
/// | auth message too big | 1009 | 1009 | stops (fatal) |
/// | too many connections awaiting auth | 1013 | 4429 | stops (fatal) |
/// | verifier backend unavailable | 1013 | 1013 | retries |
///
/// The graphql-ws preset follows the reference server of the npm
/// `graphql-ws` library: a refused `connection_init` (its `onConnect`
/// returning `false`) is 4403, a malformed message 4400, no
/// `connection_init` in time 4408. Its client treats 4400, 4401, 4406,
/// 4409, 4429, 4500 and every 1xxx code but 1000, 1001, 1005, 1006, 1012,
/// 1013 and 1014 as fatal and stops at once; it retries 4403, 4408, 1013
/// and the others up to its `retryAttempts`. So
/// an expired session closes with 4401: the client stops instead of
/// retrying with the expired token (get a fresh one and connect again);
/// a refused token is refused with 4403 on every retry.
///
/// ```
/// use tower_ws_auth::CloseCodes;
///
/// // Revoked clients reconnect and re-authenticate instead of giving up.
/// let codes = CloseCodes::default().revoked(1001);
/// assert_eq!(codes.expired_code(), 4002);
/// assert_eq!(CloseCodes::graphql_ws().expired_code(), 4401);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCodes {
    unauthorized: u16,
    malformed: u16,
    expired: u16,
    forbidden: u16,
    revoked: u16,
    timeout: u16,
    too_big: u16,
    too_many: u16,
    unavailable: u16,
}

impl Default for CloseCodes {
    fn default() -> Self {
        Self {
            unauthorized: 4001,
            malformed: 4001,
            expired: 4002,
            forbidden: 4003,
            revoked: 4003,
            timeout: 4008,
            too_big: 1009,
            too_many: 1013,
            unavailable: 1013,
        }
    }
}

macro_rules! code {
    ($field:ident, $getter:ident, $what:literal) => {
        #[doc = concat!("Sets the code for ", $what, ".")]
        ///
        /// # Panics
        ///
        /// If the code may not be sent (see [`is_sendable_close_code`]).
        #[must_use]
        pub fn $field(mut self, code: u16) -> Self {
            assert!(
                is_sendable_close_code(code),
                "close code {code} may not be sent"
            );
            self.$field = code;
            self
        }

        #[doc = concat!("The code for ", $what, ".")]
        pub fn $getter(&self) -> u16 {
            self.$field
        }
    };
}

impl CloseCodes {
    /// The codes of the graphql-ws protocol (`graphql-transport-ws`).
    pub fn graphql_ws() -> Self {
        Self {
            unauthorized: 4403,
            malformed: 4400,
            expired: 4401,
            forbidden: 4403,
            revoked: 4403,
            timeout: 4408,
            too_big: 1009,
            too_many: 4429,
            unavailable: 1013,
        }
    }

    code!(
        unauthorized,
        unauthorized_code,
        "an invalid credential or a message before authentication"
    );
    code!(
        malformed,
        malformed_code,
        "a malformed authentication message"
    );
    code!(expired, expired_code, "an expired session");
    code!(
        forbidden,
        forbidden_code,
        "a forbidden refresh or a missing scope"
    );
    code!(revoked, revoked_code, "a revoked session");
    code!(
        timeout,
        timeout_code,
        "no authentication message before the deadline"
    );
    code!(
        too_big,
        too_big_code,
        "an authentication message over the size cap"
    );
    code!(
        too_many,
        too_many_code,
        "too many connections awaiting authentication"
    );
    code!(
        unavailable,
        unavailable_code,
        "a verifier backend that is down"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_codes_are_never_sendable() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(!is_sendable_close_code(code), "{code}");
        }
        let all = [CloseCodes::default(), CloseCodes::graphql_ws()];
        for codes in all {
            for code in [
                codes.unauthorized,
                codes.malformed,
                codes.expired,
                codes.forbidden,
                codes.revoked,
                codes.timeout,
                codes.too_big,
                codes.too_many,
                codes.unavailable,
            ] {
                assert!(is_sendable_close_code(code));
            }
        }
    }

    #[test]
    #[should_panic(expected = "may not be sent")]
    fn refuses_reserved_codes() {
        let _ = CloseCodes::default().revoked(1006);
    }

    #[test]
    fn reasons_are_cut_at_char_boundaries() {
        let long = "ü".repeat(200);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123);
        assert!(long.starts_with(cut));
    }
}
