//! The algorithms a key can be pinned to: jsonwebtoken's [`Algorithm`]
//! (every one it verifies; `none` is not among them), and a set of them.

use jsonwebtoken::{Algorithm, AlgorithmFamily};

/// Every algorithm, in a fixed order (the bit order of [`AlgSet`]).
pub(crate) const ALL: [Algorithm; 12] = {
    use Algorithm::*;
    [
        HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
};

/// The algorithm registered under `name` (a JOSE `alg`), compared exactly:
/// case-sensitive, no trimming, `None` for `none`.
pub(crate) fn from_name(name: &str) -> Option<Algorithm> {
    name.parse().ok()
}

/// `true` for the HMAC algorithms, whose key is a shared secret.
pub(crate) fn is_hmac(alg: &Algorithm) -> bool {
    alg.family() == AlgorithmFamily::Hmac
}

/// An HMAC algorithm's name and smallest secret, in bytes: the hash
/// output size (RFC 7518 section 3.2).
pub(crate) fn min_hmac_secret(alg: Algorithm) -> Option<(&'static str, usize)> {
    match alg {
        Algorithm::HS256 => Some(("HS256", 32)),
        Algorithm::HS384 => Some(("HS384", 48)),
        Algorithm::HS512 => Some(("HS512", 64)),
        _ => None,
    }
}

fn bit(alg: Algorithm) -> u16 {
    1 << ALL.iter().position(|a| *a == alg).unwrap_or(0)
}

/// A set of algorithms, as a bit mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AlgSet(u16);

impl AlgSet {
    pub(crate) fn contains(self, alg: Algorithm) -> bool {
        self.0 & bit(alg) != 0
    }

    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Algorithm> {
        ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl FromIterator<Algorithm> for AlgSet {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |set, alg| set | bit(alg)))
    }
}
