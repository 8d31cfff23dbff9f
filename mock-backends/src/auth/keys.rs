//! Signing keys: the current key signs, every kept key verifies. Ed25519 keys come from the seeded
//! RNG (so a seed fixes the JWKS), rotate, and are published; the HS256 key is the configured
//! secret and neither rotates nor is published.

use std::collections::VecDeque;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{SigningKey, pkcs8::EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rand::{RngCore, rngs::SmallRng};

use super::AuthError;
use crate::config::JwtAlgorithm;

/// One key that verifies tokens, and signs them while current.
pub(crate) struct SigningKeyEntry {
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    /// The Ed25519 public key, base64url without padding (the JWK `x`); `None` for HS256.
    pub(crate) public_x: Option<String>,
}

/// The keys Auth signs and verifies with.
pub(crate) struct KeyRing {
    algorithm: JwtAlgorithm,
    /// Oldest first; the last is current.
    keys: VecDeque<SigningKeyEntry>,
    keys_max: usize,
    /// Number of the next key, for its `kid`.
    next_key_number: u64,
}

impl KeyRing {
    /// A ring with one current key.
    pub(crate) fn new(
        algorithm: JwtAlgorithm,
        hs256_secret: &str,
        keys_max: usize,
        rng: &mut SmallRng,
    ) -> Result<Self, AuthError> {
        let mut ring = Self {
            algorithm,
            keys: VecDeque::new(),
            keys_max: keys_max.max(1),
            next_key_number: 1,
        };
        match algorithm {
            JwtAlgorithm::EdDsa => {
                ring.rotate(rng)?;
            }
            JwtAlgorithm::Hs256 => ring.keys.push_back(SigningKeyEntry {
                kid: "hs256-1".to_owned(),
                encoding: EncodingKey::from_secret(hs256_secret.as_bytes()),
                decoding: DecodingKey::from_secret(hs256_secret.as_bytes()),
                public_x: None,
            }),
        }
        Ok(ring)
    }

    /// The jsonwebtoken algorithm tokens are signed with.
    pub(crate) fn algorithm(&self) -> Algorithm {
        match self.algorithm {
            JwtAlgorithm::EdDsa => Algorithm::EdDSA,
            JwtAlgorithm::Hs256 => Algorithm::HS256,
        }
    }

    /// The key new tokens are signed with.
    pub(crate) fn current(&self) -> &SigningKeyEntry {
        // Never empty: `new` adds a key and `rotate` removes only beyond `keys_max` (at least 1).
        self.keys.back().expect("key ring is never empty")
    }

    /// The key with ID `kid`, if still kept.
    pub(crate) fn find(&self, kid: &str) -> Option<&SigningKeyEntry> {
        self.keys.iter().find(|key| key.kid == kid)
    }

    /// Every kept key, oldest first.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &SigningKeyEntry> {
        self.keys.iter()
    }

    /// Makes a fresh Ed25519 key current and forgets the oldest beyond `keys_max`; returns the
    /// new `kid`.
    pub(crate) fn rotate(&mut self, rng: &mut SmallRng) -> Result<String, AuthError> {
        if self.algorithm != JwtAlgorithm::EdDsa {
            return Err(AuthError::RotationUnsupported);
        }
        let mut seed = [0_u8; 32];
        rng.fill_bytes(&mut seed);
        let signing_key = SigningKey::from_bytes(&seed);
        let der = signing_key
            .to_pkcs8_der()
            .map_err(|error| AuthError::KeyEncoding(error.to_string()))?;
        let public_x = URL_SAFE_NO_PAD.encode(signing_key.verifying_key().to_bytes());
        let kid = format!("ed25519-{}", self.next_key_number);
        self.next_key_number += 1;
        self.keys.push_back(SigningKeyEntry {
            kid: kid.clone(),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_components(&public_x)?,
            public_x: Some(public_x),
        });
        while self.keys.len() > self.keys_max {
            self.keys.pop_front();
        }
        Ok(kid)
    }
}
