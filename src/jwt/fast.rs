//! Signature checks with keys parsed once, straight on aws-lc-rs.
//!
//! jsonwebtoken's `crypto::verify` builds a verifier for every token: it
//! copies the key, parses it again (for RSA that is several microseconds)
//! and decodes the signature into a new vector. When jsonwebtoken's
//! process-wide provider is aws-lc-rs (the one this crate installs with the
//! `jwt` feature, or the same one installed by the application), checking
//! with aws-lc-rs directly, with the key parsed when the [`JwtKey`] was
//! built, gives exactly the answer jsonwebtoken would: same algorithms
//! (mapped as jsonwebtoken maps them), same key bytes, same base64 engine.
//! When the application installed another provider, or a key does not
//! parse here, verification goes through jsonwebtoken as before.
//!
//! [`JwtKey`]: super::JwtKey

use std::sync::OnceLock;

use aws_lc_rs::{hmac, signature};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, DecodingKeyKind};

use super::algorithm::JwtAlgorithm;
use super::compact::MAX_SIGNATURE_CHARS;

/// Set once, when the crypto provider is installed.
static ENABLED: OnceLock<bool> = OnceLock::new();

/// Records whether jsonwebtoken's provider is aws-lc-rs' default one.
pub(crate) fn set_enabled(enabled: bool) {
    let _ = ENABLED.set(enabled);
}

fn enabled() -> bool {
    ENABLED.get().copied().unwrap_or(false)
}

/// A verification key parsed once.
#[derive(Clone)]
pub(crate) enum PreparedKey {
    /// Boxed: aws-lc-rs' HMAC key holds its precomputed context inline.
    Hmac(Box<hmac::Key>),
    Public(signature::ParsedPublicKey),
}

impl PreparedKey {
    /// The key jsonwebtoken's aws-lc-rs verifier for `alg` would build
    /// from `key` on every call; `None` when it would refuse the key (the
    /// slow path then gives jsonwebtoken's own answer).
    pub(crate) fn new(alg: JwtAlgorithm, key: &DecodingKey) -> Option<Self> {
        use JwtAlgorithm as A;
        if key.family() != alg.to_jsonwebtoken().family() {
            return None;
        }
        let hmac_alg = match alg {
            A::HS256 => Some(hmac::HMAC_SHA256),
            A::HS384 => Some(hmac::HMAC_SHA384),
            A::HS512 => Some(hmac::HMAC_SHA512),
            _ => None,
        };
        if let Some(hmac_alg) = hmac_alg {
            return match key.kind() {
                DecodingKeyKind::SecretOrDer(secret) => {
                    Some(Self::Hmac(Box::new(hmac::Key::new(hmac_alg, secret))))
                }
                DecodingKeyKind::RsaModulusExponent { .. } => None,
            };
        }
        let rsa: Option<&'static signature::RsaParameters> = match alg {
            A::RS256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
            A::RS384 => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
            A::RS512 => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
            A::PS256 => Some(&signature::RSA_PSS_2048_8192_SHA256),
            A::PS384 => Some(&signature::RSA_PSS_2048_8192_SHA384),
            A::PS512 => Some(&signature::RSA_PSS_2048_8192_SHA512),
            _ => None,
        };
        let verification: &'static dyn signature::VerificationAlgorithm = match (alg, rsa) {
            (_, Some(params)) => {
                if let DecodingKeyKind::RsaModulusExponent { n, e } = key.kind() {
                    let components = signature::RsaPublicKeyComponents {
                        n: n.as_slice(),
                        e: e.as_slice(),
                    };
                    return components
                        .to_parsed_public_key(params)
                        .ok()
                        .map(Self::Public);
                }
                params
            }
            (A::ES256, None) => &signature::ECDSA_P256_SHA256_FIXED,
            (A::ES384, None) => &signature::ECDSA_P384_SHA384_FIXED,
            (A::EdDSA, None) => &signature::ED25519,
            _ => return None,
        };
        match key.kind() {
            DecodingKeyKind::SecretOrDer(der) => signature::ParsedPublicKey::new(verification, der)
                .ok()
                .map(Self::Public),
            DecodingKeyKind::RsaModulusExponent { .. } => None,
        }
    }

    /// `Some(verified)` when this path applies, `None` to go through
    /// jsonwebtoken. `Some(Err(()))` when the signature is not base64url.
    pub(crate) fn verify(&self, message: &[u8], signature_b64: &str) -> Option<Result<bool, ()>> {
        if !enabled() || signature_b64.len() > MAX_SIGNATURE_CHARS {
            return None;
        }
        // Decoded on the stack, in a buffer no larger than needed (zeroing
        // a kilobyte for a 32-byte HMAC would cost more than the HMAC).
        let estimate = base64::decoded_len_estimate(signature_b64.len());
        if estimate <= 96 {
            self.verify_in::<96>(message, signature_b64)
        } else if estimate <= 512 {
            self.verify_in::<512>(message, signature_b64)
        } else {
            self.verify_in::<{ base64_decoded_len_estimate(MAX_SIGNATURE_CHARS) }>(
                message,
                signature_b64,
            )
        }
    }

    fn verify_in<const N: usize>(
        &self,
        message: &[u8],
        signature_b64: &str,
    ) -> Option<Result<bool, ()>> {
        let mut buffer = [0u8; N];
        let Ok(len) = URL_SAFE_NO_PAD.decode_slice(signature_b64, &mut buffer) else {
            return Some(Err(()));
        };
        let signature = buffer.get(..len)?;
        Some(Ok(match self {
            Self::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Self::Public(key) => key.verify_sig(message, signature).is_ok(),
        }))
    }
}

/// `base64::decoded_len_estimate`, usable in a constant.
const fn base64_decoded_len_estimate(chars: usize) -> usize {
    chars.div_ceil(4) * 3
}
