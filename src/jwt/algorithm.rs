//! [`JwtAlgorithm`]: the signature algorithms a key can be pinned to.

use std::fmt;

/// A JWS signature algorithm (RFC 7518, RFC 8037) that a verification key
/// is pinned to.
///
/// A token's `alg` header only chooses among the keys you configured: it is
/// looked up by its exact, case-sensitive name, and a token whose `alg`
/// differs from its key's algorithm is refused. `none` is not an algorithm
/// here, in any spelling.
///
/// ```
/// use tower_ws_auth::JwtAlgorithm;
///
/// assert_eq!(JwtAlgorithm::from_name("ES256"), Some(JwtAlgorithm::ES256));
/// assert_eq!(JwtAlgorithm::from_name("none"), None);
/// assert_eq!(JwtAlgorithm::from_name("hs256"), None);
/// assert_eq!(JwtAlgorithm::EdDSA.to_string(), "EdDSA");
/// ```
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256; the secret needs at least 32 bytes.
    HS256,
    /// HMAC with SHA-384; the secret needs at least 48 bytes.
    HS384,
    /// HMAC with SHA-512; the secret needs at least 64 bytes.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// EdDSA on Ed25519 (RFC 8037).
    EdDSA,
}

/// Every algorithm, in a fixed order (the bit order of [`AlgSet`]).
pub(crate) const ALL: [JwtAlgorithm; 12] = [
    JwtAlgorithm::HS256,
    JwtAlgorithm::HS384,
    JwtAlgorithm::HS512,
    JwtAlgorithm::RS256,
    JwtAlgorithm::RS384,
    JwtAlgorithm::RS512,
    JwtAlgorithm::PS256,
    JwtAlgorithm::PS384,
    JwtAlgorithm::PS512,
    JwtAlgorithm::ES256,
    JwtAlgorithm::ES384,
    JwtAlgorithm::EdDSA,
];

/// The family of an algorithm: what kind of key it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl JwtAlgorithm {
    /// The algorithm's registered name, as in a JOSE header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The algorithm registered under `name`, compared exactly
    /// (case-sensitive, no trimming). `None` for `none` and every name not
    /// supported here.
    pub fn from_name(name: &str) -> Option<Self> {
        ALL.into_iter().find(|alg| alg.as_str() == name)
    }

    /// `true` for the HMAC algorithms, whose key is a shared secret.
    pub fn is_symmetric(self) -> bool {
        self.family() == Family::Hmac
    }

    pub(crate) fn family(self) -> Family {
        match self {
            Self::HS256 | Self::HS384 | Self::HS512 => Family::Hmac,
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                Family::Rsa
            }
            Self::ES256 | Self::ES384 => Family::Ec,
            Self::EdDSA => Family::Ed,
        }
    }

    /// The smallest HMAC secret, in bytes: the hash output size.
    pub(crate) fn min_hmac_secret(self) -> Option<usize> {
        match self {
            Self::HS256 => Some(32),
            Self::HS384 => Some(48),
            Self::HS512 => Some(64),
            _ => None,
        }
    }

    /// The signature size in bytes for algorithms whose signatures have a
    /// fixed size (RSA signatures are as long as the modulus).
    pub(crate) fn fixed_signature_len(self) -> Option<usize> {
        match self {
            Self::HS256 => Some(32),
            Self::HS384 => Some(48),
            Self::HS512 | Self::ES256 | Self::EdDSA => Some(64),
            Self::ES384 => Some(96),
            _ => None,
        }
    }

    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            Self::HS256 => A::HS256,
            Self::HS384 => A::HS384,
            Self::HS512 => A::HS512,
            Self::RS256 => A::RS256,
            Self::RS384 => A::RS384,
            Self::RS512 => A::RS512,
            Self::PS256 => A::PS256,
            Self::PS384 => A::PS384,
            Self::PS512 => A::PS512,
            Self::ES256 => A::ES256,
            Self::ES384 => A::ES384,
            Self::EdDSA => A::EdDSA,
        }
    }

    fn bit(self) -> u16 {
        let index = ALL.iter().position(|a| *a == self).unwrap_or(0);
        1 << index
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of algorithms, as a bit mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AlgSet(u16);

impl AlgSet {
    pub(crate) fn insert(&mut self, alg: JwtAlgorithm) {
        self.0 |= alg.bit();
    }

    pub(crate) fn contains(self, alg: JwtAlgorithm) -> bool {
        self.0 & alg.bit() != 0
    }

    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = JwtAlgorithm> {
        ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl FromIterator<JwtAlgorithm> for AlgSet {
    fn from_iter<I: IntoIterator<Item = JwtAlgorithm>>(iter: I) -> Self {
        let mut set = Self::default();
        for alg in iter {
            set.insert(alg);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_exact() {
        for alg in ALL {
            assert_eq!(JwtAlgorithm::from_name(alg.as_str()), Some(alg));
            assert!(
                alg.to_jsonwebtoken()
                    .family()
                    .algorithms()
                    .contains(&alg.to_jsonwebtoken())
            );
        }
        for bad in [
            "none", "None", "NONE", "nOnE", "", "hs256", "HS256 ", " HS256", "ES512", "Ed25519",
        ] {
            assert_eq!(JwtAlgorithm::from_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn alg_set() {
        let set: AlgSet = [JwtAlgorithm::RS256, JwtAlgorithm::EdDSA]
            .into_iter()
            .collect();
        assert!(set.contains(JwtAlgorithm::RS256));
        assert!(set.contains(JwtAlgorithm::EdDSA));
        assert!(!set.contains(JwtAlgorithm::HS256));
        assert_eq!(set.iter().count(), 2);
        assert!(AlgSet::default().is_empty());
    }
}
