//! [`JwtAlgorithm`]: the signature algorithms a key can be pinned to, a
//! name over [`jsonwebtoken::Algorithm`] (which maps it to its primitive).

use std::fmt;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

/// A JWS signature algorithm (RFC 7518, RFC 8037) that a verification key
/// is pinned to.
///
/// A token's `alg` header only chooses among the keys you configured: it is
/// looked up by its exact, case-sensitive name, and a token whose `alg`
/// differs from its key's algorithm is refused. `none` is not an algorithm
/// here, in any spelling. Each value wraps the [`jsonwebtoken::Algorithm`]
/// that verifies it ([`to_jsonwebtoken`](Self::to_jsonwebtoken)).
///
/// ```
/// use tower_ws_auth::JwtAlgorithm;
///
/// assert_eq!(JwtAlgorithm::from_name("ES256"), Some(JwtAlgorithm::ES256));
/// assert_eq!(JwtAlgorithm::from_name("none"), None);
/// assert_eq!(JwtAlgorithm::from_name("hs256"), None);
/// assert_eq!(JwtAlgorithm::EdDSA.to_string(), "EdDSA");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct JwtAlgorithm {
    alg: Algorithm,
    name: &'static str,
}

macro_rules! algorithms {
    ($($name:ident: $doc:literal,)*) => {
        #[allow(non_upper_case_globals)] // the registered names (`EdDSA`)
        impl JwtAlgorithm {
            $(#[doc = $doc] pub const $name: Self = Self { alg: Algorithm::$name, name: stringify!($name) };)*
        }
        /// Every algorithm, in a fixed order (the bit order of [`AlgSet`]).
        pub(crate) const ALL: &[JwtAlgorithm] = &[$(JwtAlgorithm::$name),*];
    };
}

algorithms! {
    HS256: "HMAC with SHA-256; the secret needs at least 32 bytes.",
    HS384: "HMAC with SHA-384; the secret needs at least 48 bytes.",
    HS512: "HMAC with SHA-512; the secret needs at least 64 bytes.",
    RS256: "RSASSA-PKCS1-v1_5 with SHA-256.",
    RS384: "RSASSA-PKCS1-v1_5 with SHA-384.",
    RS512: "RSASSA-PKCS1-v1_5 with SHA-512.",
    PS256: "RSASSA-PSS with SHA-256.",
    PS384: "RSASSA-PSS with SHA-384.",
    PS512: "RSASSA-PSS with SHA-512.",
    ES256: "ECDSA on P-256 with SHA-256.",
    ES384: "ECDSA on P-384 with SHA-384.",
    EdDSA: "EdDSA on Ed25519 (RFC 8037).",
}

impl JwtAlgorithm {
    /// The algorithm's registered name, as in a JOSE header.
    pub fn as_str(self) -> &'static str {
        self.name
    }

    /// The algorithm registered under `name`, compared exactly
    /// (case-sensitive, no trimming). `None` for `none` and every name not
    /// supported here.
    pub fn from_name(name: &str) -> Option<Self> {
        ALL.iter().copied().find(|alg| alg.name == name)
    }

    /// The jsonwebtoken algorithm that verifies it.
    pub fn to_jsonwebtoken(self) -> Algorithm {
        self.alg
    }

    /// The algorithm wrapping `alg`: every one jsonwebtoken supports.
    pub(crate) fn from_jsonwebtoken(alg: Algorithm) -> Option<Self> {
        ALL.iter().copied().find(|a| a.alg == alg)
    }

    /// `true` for the HMAC algorithms, whose key is a shared secret.
    pub fn is_symmetric(self) -> bool {
        self.family() == AlgorithmFamily::Hmac
    }

    pub(crate) fn family(self) -> AlgorithmFamily {
        self.alg.family()
    }

    /// The smallest HMAC secret, in bytes: the hash output size (RFC 7518
    /// section 3.2).
    pub(crate) fn min_hmac_secret(self) -> Option<usize> {
        match self.alg {
            Algorithm::HS256 => Some(32),
            Algorithm::HS384 => Some(48),
            Algorithm::HS512 => Some(64),
            _ => None,
        }
    }

    fn bit(self) -> u16 {
        1 << ALL.iter().position(|a| *a == self).unwrap_or(0)
    }
}

impl fmt::Debug for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// A set of algorithms, as a bit mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AlgSet(u16);

impl AlgSet {
    pub(crate) fn contains(self, alg: JwtAlgorithm) -> bool {
        self.0 & alg.bit() != 0
    }

    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = JwtAlgorithm> {
        ALL.iter().copied().filter(move |a| self.contains(*a))
    }
}

impl FromIterator<JwtAlgorithm> for AlgSet {
    fn from_iter<I: IntoIterator<Item = JwtAlgorithm>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |set, alg| set | alg.bit()))
    }
}
