//! AES-256-GCM with a random nonce, for the few small objects sealed once under a long-lived key
//! (key slots, key objects). Random 96-bit nonces are safe here because each key seals a handful of
//! objects; bulk data uses the envelope's counter nonces instead (format.md §5).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

/// Seals `plain` under `key`, bound to `aad`; returns the fresh nonce and the ciphertext with its tag.
/// AES-GCM encryption fails only for inputs of gigabytes, which nothing sealed here approaches.
pub fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Option<([u8; 12], Vec<u8>)> {
    let nonce: [u8; 12] = rand::random();
    let sealed = Aes256Gcm::new(key.into())
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        .ok()?;
    Some((nonce, sealed))
}

/// Opens what [`seal`] sealed; `None` when the key, nonce or `aad` is not the one it was sealed
/// with or a byte was changed (callers know which error that means to them).
pub fn open(key: &[u8; 32], nonce: &[u8], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if nonce.len() != 12 {
        return None;
    }
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
}
