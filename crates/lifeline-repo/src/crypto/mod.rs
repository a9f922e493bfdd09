//! Keys and encryption: the keyring and its password-wrapped slots, and the sealed-object envelope.

mod envelope;
mod keyring;
mod keyslot;

pub use envelope::{
    open_object, seal_object, Header, ObjectType, Sealer, HEADER_LEN, TRAILER_COUNTER,
};
pub use keyring::{Epoch, Keyring};
pub use keyslot::{KdfParams, KeySlot, Secret};
