//! Verification keys: [`JwtKey`] (one key pinned to one algorithm) and
//! the key set tokens are matched against, with the JWK reader shared by
//! static configuration and remote JWKS. Keys are parsed by jsonwebtoken's
//! [`DecodingKey`] constructors; what is added here is the policy: the key
//! must fit the algorithm it is pinned to, HMAC secrets must be as long as
//! their hash, RSA moduli at least 2048 bits.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};

use super::algorithm::{self, AlgSet};
use super::compact::MAX_KID_BYTES;
use crate::error::ConfigError;

/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (what the crypto backends verify).
const MAX_RSA_BITS: usize = 8192;

/// A signature verification key, pinned to one [`Algorithm`], with an
/// optional key id (`kid`).
///
/// The key is parsed once, when it is built; a malformed key, a private key
/// where a public one belongs, a key that does not fit its algorithm, a
/// short HMAC secret or an RSA modulus under 2048 bits is a
/// [`ConfigError`].
///
/// ```
/// use tower_ws_auth::{jwt::{Algorithm, JwtKey}};
///
/// # fn main() -> Result<(), tower_ws_auth::ConfigError> {
/// let current = JwtKey::hmac(Algorithm::HS256, b"a-32-byte-or-longer-shared-secret!")?.with_kid("2024-06");
/// assert_eq!(current.algorithm(), Algorithm::HS256);
/// assert_eq!(current.kid(), Some("2024-06"));
///
/// assert!(JwtKey::hmac(Algorithm::HS256, b"too short").is_err());
///
/// let ed = JwtKey::from_jwk(r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#)?;
/// assert_eq!(ed.algorithm(), Algorithm::EdDSA);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct JwtKey {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<Box<str>>,
    pub(crate) key: DecodingKey,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn invalid(reason: &'static str) -> ConfigError {
    ConfigError::InvalidKey { reason }
}

/// The bit length of a big-endian unsigned integer.
fn bit_len(be: &[u8]) -> usize {
    let mut bytes = be.iter().skip_while(|b| **b == 0);
    match bytes.next() {
        Some(first) => (8 - first.leading_zeros() as usize) + 8 * bytes.count(),
        None => 0,
    }
}

/// The RSA modulus and exponent of `key`, read by jsonwebtoken's key
/// utilities (PKCS#1 DER) or kept from a JWK.
fn rsa_components(key: &DecodingKey) -> Option<(Vec<u8>, Vec<u8>)> {
    match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => Some((n.clone(), e.clone())),
        DecodingKeyKind::SecretOrDer(der) => {
            #[cfg(feature = "jwt")]
            let utils = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.key_utils;
            #[cfg(not(feature = "jwt"))]
            let utils = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.key_utils;
            (utils.rsa_pub_components_from_public_key)(der).ok()
        }
    }
}

/// The label of the first PEM block in `pem`, if any.
fn pem_label(pem: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = text.get(start..)?;
    rest.get(..rest.find("-----")?)
}

impl JwtKey {
    /// An HMAC secret for `alg` (HS256, HS384 or HS512).
    ///
    /// The secret must be at least as long as the hash output (32, 48 or 64
    /// bytes; RFC 7518 section 3.2). A PEM document is refused: using a
    /// public key as an HMAC secret is the classic algorithm-confusion
    /// mistake.
    pub fn hmac(alg: Algorithm, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        let Some((name, min_bytes)) = algorithm::min_hmac_secret(alg) else {
            return Err(ConfigError::InvalidJwtConfig {
                reason: "JwtKey::hmac needs HS256, HS384 or HS512",
            });
        };
        if secret.len() < min_bytes {
            return Err(ConfigError::WeakHmacSecret {
                algorithm: name,
                min_bytes,
            });
        }
        if secret.windows(10).any(|w| w == b"-----BEGIN") {
            return Err(invalid(
                "a PEM document is not an HMAC secret (algorithm confusion)",
            ));
        }
        Self::checked(alg, DecodingKey::from_secret(secret))
    }

    /// A public key in PEM form, pinned to `alg`.
    ///
    /// Accepted: `PUBLIC KEY` (SubjectPublicKeyInfo) for every asymmetric
    /// algorithm, and `RSA PUBLIC KEY` (PKCS#1) for RSA. The key type must
    /// fit `alg`: RSA for RS*/PS*, a P-256 key for ES256, P-384 for ES384,
    /// Ed25519 for EdDSA. Private keys and certificates are refused.
    pub fn from_pem(alg: Algorithm, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let pem = pem.as_ref();
        let family = alg.family();
        match pem_label(pem) {
            Some("PUBLIC KEY") => {}
            Some("RSA PUBLIC KEY") if family == AlgorithmFamily::Rsa => {}
            Some(label) if label.contains("PRIVATE") => {
                return Err(invalid("a private key was given: configure the public key"));
            }
            Some(_) => return Err(invalid("unsupported PEM type (expected PUBLIC KEY)")),
            None => return Err(invalid("not a PEM document")),
        }
        let key = match family {
            AlgorithmFamily::Hmac => {
                return Err(ConfigError::InvalidJwtConfig {
                    reason: "HMAC keys are secrets: use JwtKey::hmac",
                });
            }
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
        }
        .map_err(|_| invalid("the PEM key does not fit the algorithm"))?;
        Self::checked(alg, key)
    }

    /// A public key in DER form, pinned to `alg`: SubjectPublicKeyInfo for
    /// every asymmetric algorithm, or PKCS#1 `RSAPublicKey` for RSA. Read
    /// as the PEM document holding it, with the rules of
    /// [`from_pem`](Self::from_pem).
    pub fn from_der(alg: Algorithm, der: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let body = STANDARD.encode(der.as_ref());
        let pem = |label: &str| format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
        match Self::from_pem(alg, pem("PUBLIC KEY")) {
            Err(_) if alg.family() == AlgorithmFamily::Rsa => {
                Self::from_pem(alg, pem("RSA PUBLIC KEY")).map_err(|e| match e {
                    ConfigError::WeakRsaKey { .. } => e,
                    _ => invalid("the DER key does not fit the algorithm"),
                })
            }
            other => other,
        }
    }

    /// A key from a JSON Web Key (RFC 7517) document.
    ///
    /// `RSA`, `EC` (P-256, P-384), `OKP` (Ed25519) and `oct` (HMAC) keys are
    /// read; private members are ignored. The JWK's `alg` pins the key when
    /// present; otherwise it is inferred where unambiguous: `EC` from its
    /// curve, `OKP` is EdDSA, `RSA` is RS256. An `oct` key needs an `alg`.
    /// A key whose `use` is not `sig`, or whose `key_ops` lacks `verify`,
    /// is refused.
    pub fn from_jwk(jwk: &str) -> Result<Self, ConfigError> {
        let jwk: Jwk =
            serde_json::from_str(jwk).map_err(|_| invalid("not a JSON Web Key object"))?;
        key_of_jwk(&jwk, &JwkRules::STATIC).map_err(invalid)
    }

    /// Sets the key id (`kid`) tokens select this key by. At most 256 bytes
    /// (checked when the authenticator is built).
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into().into_boxed_str());
        self
    }

    /// The algorithm this key is pinned to.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Checks a key built by jsonwebtoken against the algorithm it is
    /// pinned to.
    fn checked(alg: Algorithm, key: DecodingKey) -> Result<Self, ConfigError> {
        if key.family() != alg.family() {
            return Err(invalid("the key does not fit the algorithm"));
        }
        let bytes = key.try_get_as_bytes().unwrap_or_default();
        match alg.family() {
            AlgorithmFamily::Rsa => {
                let (n, e) = rsa_components(&key).ok_or(invalid("unreadable RSA public key"))?;
                let bits = bit_len(&n);
                if bits < MIN_RSA_BITS {
                    return Err(ConfigError::WeakRsaKey { bits });
                }
                if bits > MAX_RSA_BITS || e.is_empty() || e.len() > 8 {
                    return Err(invalid(
                        "RSA modulus over 8192 bits or exponent out of range",
                    ));
                }
            }
            AlgorithmFamily::Ec => {
                let point = if alg == Algorithm::ES256 { 65 } else { 97 };
                if bytes.len() != point || bytes.first() != Some(&4) {
                    return Err(invalid("the EC key is not on the algorithm's curve"));
                }
            }
            AlgorithmFamily::Ed if bytes.len() != 32 => {
                return Err(invalid("not an Ed25519 public key"));
            }
            AlgorithmFamily::Ed | AlgorithmFamily::Hmac => {}
        }
        Ok(Self {
            alg,
            kid: None,
            key,
        })
    }
}

/// What a JWK source may contain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JwkRules {
    /// `oct` (HMAC) keys are allowed: only from local configuration, never
    /// from a remote key server.
    pub(crate) allow_symmetric: bool,
    /// The algorithm of an `RSA` key without `alg`.
    pub(crate) default_rsa: Algorithm,
}

impl JwkRules {
    pub(crate) const STATIC: Self = Self {
        allow_symmetric: true,
        default_rsa: Algorithm::RS256,
    };
}

/// The key a JWK describes (through [`DecodingKey::from_jwk`]), pinned by
/// the policy above, or why it is not usable.
fn key_of_jwk(jwk: &Jwk, rules: &JwkRules) -> Result<JwtKey, &'static str> {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return Err("JWK use is not sig");
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Err("JWK key_ops lacks verify");
    }
    if common
        .key_id
        .as_ref()
        .is_some_and(|k| k.len() > MAX_KID_BYTES)
    {
        return Err("JWK kid over 256 bytes");
    }
    let pinned = match common.key_algorithm {
        Some(alg) => Some(Algorithm::try_from(alg).map_err(|_| "JWK alg not supported")?),
        None => None,
    };
    let inferred = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => rules.default_rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Err("EC JWK curve not supported"),
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::OctetKey(_) if !rules.allow_symmetric => {
            return Err("symmetric JWK refused from a key server");
        }
        AlgorithmParameters::OctetKey(_) => pinned.ok_or("oct JWK without alg")?,
        _ => return Err("JWK kty or curve not supported"),
    };
    // The curve fixes EC and OKP keys; `alg` may only choose among RSA
    // algorithms or name the HMAC hash.
    let alg = match (pinned, &jwk.algorithm) {
        (Some(p), AlgorithmParameters::RSA(_)) => p,
        (Some(p), _) if p != inferred => return Err("JWK alg does not fit its key"),
        _ => inferred,
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "JWK members are not base64url")?;
    let key = if algorithm::is_hmac(&alg) {
        JwtKey::hmac(alg, key.try_get_as_bytes().unwrap_or_default())
    } else {
        JwtKey::checked(alg, key)
    }
    .map_err(|e| match e {
        ConfigError::WeakHmacSecret { .. } => "oct JWK secret shorter than its hash",
        ConfigError::WeakRsaKey { .. } => "RSA JWK under 2048 bits",
        _ => "JWK does not fit its algorithm",
    })?;
    Ok(JwtKey {
        kid: common.key_id.clone().map(String::into_boxed_str),
        ..key
    })
}

/// Parses a JWK Set document, keeping the usable keys and skipping the
/// others (unknown `kty`, `use` other than `sig`, unsupported curves, ...).
/// Returns the keys and the number skipped. At most `max_keys` are kept.
pub(crate) fn parse_jwk_set(
    json: &[u8],
    rules: &JwkRules,
    max_keys: usize,
) -> Result<(Vec<JwtKey>, usize), &'static str> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet = serde_json::from_slice(json).map_err(|_| "not a JWK Set document")?;
    let mut keys = Vec::new();
    let mut skipped = 0;
    for value in set.keys {
        if keys.len() >= max_keys {
            skipped += 1;
            continue;
        }
        match serde_json::from_value::<Jwk>(value)
            .map_err(|_| "malformed JWK")
            .and_then(|jwk| key_of_jwk(&jwk, rules))
        {
            Ok(key) => keys.push(key),
            Err(reason) => {
                skipped += 1;
                tracing::debug!(target: "tower_ws_auth", reason, "JWK skipped");
            }
        }
    }
    Ok((keys, skipped))
}

/// Why no key was found for a token whose `kid` names no key (and no key
/// without a `kid` fits): the one miss a key server refetch may mend.
pub(crate) const UNKNOWN_KID: &str = "unknown kid";

/// A set of keys, looked up by `kid` and algorithm.
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    keys: Vec<JwtKey>,
    algorithms: AlgSet,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.keys).finish()
    }
}

impl KeySet {
    /// A key set from configured keys: at least one, no two with the same
    /// `kid` and algorithm (or two kid-less keys of one algorithm), every
    /// `kid` within the cap.
    pub(crate) fn from_configured(keys: Vec<JwtKey>) -> Result<Self, ConfigError> {
        if keys.is_empty() {
            return Err(ConfigError::InvalidJwtConfig {
                reason: "no verification key",
            });
        }
        for (i, key) in keys.iter().enumerate() {
            if key.kid.as_ref().is_some_and(|k| k.len() > MAX_KID_BYTES) {
                return Err(invalid("kid over 256 bytes"));
            }
            if keys
                .iter()
                .skip(i + 1)
                .any(|other| other.kid == key.kid && other.alg == key.alg)
            {
                return Err(ConfigError::InvalidJwtConfig {
                    reason: "two keys with the same kid and algorithm",
                });
            }
        }
        Ok(Self::from_keys(keys))
    }

    /// A key set from a key server's answer; duplicates keep the first key.
    pub(crate) fn from_keys(keys: Vec<JwtKey>) -> Self {
        let algorithms = keys.iter().map(|k| k.alg).collect();
        Self { keys, algorithms }
    }

    pub(crate) fn algorithms(&self) -> AlgSet {
        self.algorithms
    }

    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token with `alg` and `kid`.
    ///
    /// With a `kid`: the key with that `kid` and algorithm; a key with that
    /// `kid` but another algorithm is a miss. When no key has
    /// that `kid`, a key configured without a `kid` is used if it is the
    /// only one for the algorithm. Without a `kid`: the only key for the
    /// algorithm.
    pub(crate) fn select(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<&JwtKey, &'static str> {
        let Some(kid) = kid else {
            return only(self.keys.iter().filter(|k| k.alg == alg));
        };
        let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
        if let Some(key) = named.clone().find(|k| k.alg == alg) {
            return Ok(key);
        }
        if named.next().is_some() {
            return Err("alg does not match the key's pinned algorithm");
        }
        only(self.keys.iter().filter(|k| k.kid.is_none() && k.alg == alg)).map_err(|_| UNKNOWN_KID)
    }
}

/// The one key of `keys`.
fn only<'k>(mut keys: impl Iterator<Item = &'k JwtKey>) -> Result<&'k JwtKey, &'static str> {
    match (keys.next(), keys.next()) {
        (Some(key), None) => Ok(key),
        (None, _) => Err("no key for the token's alg"),
        (Some(_), Some(_)) => Err("token without kid and several keys for its alg"),
    }
}
