//! Keys and encryption: the keyring, key slots and the sealed-object envelope (format.md §3, §5).

pub(crate) mod aead;
mod envelope;
mod keyring;
mod keyslot;
mod sealed_to;

pub use envelope::{
    open_object, open_object_of, seal_object, Header, ObjectType, Sealer, HEADER_LEN,
    TRAILER_COUNTER,
};
pub use keyring::{fresh_tag, Epoch, Keyring, Role, RoleKeys};
pub use keyslot::{KdfParams, KeySlot, Kms, KmsWrap, Opened, Secret};
