//! Envelope scheme 2 (format.md §5): objects a `backup` credential seals to an epoch's X25519
//! public key. The writer's ephemeral key pair lives for one object and its secret is dropped, so
//! the writer cannot open what it wrote.

use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::error::{Error, Result};

pub fn public_of(secret: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

fn subkey(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
    type_byte: u8,
) -> [u8; 32] {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(recipient);
    let mut info = b"lifeline/v2/sealed-to/".to_vec();
    info.push(type_byte);
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&salt), shared)
        .expand(&info, &mut out)
        // 32 bytes is far below HKDF-SHA256's limit of 255 blocks.
        .unwrap_or_else(|_| panic!("HKDF refused a 32-byte output"));
    out
}

/// For a new object: the ephemeral public key (the header's salt field) and the subkey.
pub fn seal_to(recipient: &[u8; 32], type_byte: u8) -> Result<([u8; 32], [u8; 32])> {
    let ephemeral = StaticSecret::from(rand::random::<[u8; 32]>());
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&PublicKey::from(*recipient));
    if !shared.was_contributory() {
        return Err(Error::Format(
            "the epoch's public key is a low-order point: the key object is damaged".into(),
        ));
    }
    Ok((
        ephemeral_public,
        subkey(shared.as_bytes(), &ephemeral_public, recipient, type_byte),
    ))
}

/// For a stored object: the subkey from the recipient's secret and the header's ephemeral key.
pub fn open_from(
    secret: &[u8; 32],
    ephemeral: &[u8; 32],
    type_byte: u8,
    key: &str,
) -> Result<[u8; 32]> {
    let secret = StaticSecret::from(*secret);
    let recipient = PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&PublicKey::from(*ephemeral));
    if !shared.was_contributory() {
        return Err(Error::corrupt(
            key,
            "its ephemeral key is a low-order point",
        ));
    }
    Ok(subkey(shared.as_bytes(), ephemeral, &recipient, type_byte))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_recipient_derives_the_writers_subkey_and_nobody_else_does() {
        let secret: [u8; 32] = rand::random();
        let (ephemeral, key) = seal_to(&public_of(&secret), 3).unwrap();
        assert_eq!(open_from(&secret, &ephemeral, 3, "x").unwrap(), key);
        assert_ne!(open_from(&rand::random(), &ephemeral, 3, "x").unwrap(), key);
        assert_ne!(
            open_from(&secret, &ephemeral, 2, "x").unwrap(),
            key,
            "type is bound"
        );
    }

    #[test]
    fn a_low_order_ephemeral_key_is_refused() {
        assert!(open_from(&rand::random(), &[0u8; 32], 3, "x").is_err());
    }
}
