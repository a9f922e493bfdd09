use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One generation of the data and metadata keys. Old epochs stay readable after rotation.
#[derive(Clone, Serialize, Deserialize)]
pub struct Epoch {
    pub epoch: u32,
    pub created: String,
    #[serde(with = "serde_bytes")]
    pub data_key: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub meta_key: [u8; 32],
}

/// Every secret of a repository (format.md §3.1). The dedup keys are separate from the sealing keys so a
/// write-only client can deduplicate without being able to read.
#[derive(Clone, Serialize, Deserialize)]
pub struct Keyring {
    pub repo_id: String,
    #[serde(with = "serde_bytes")]
    pub chunk_id_key: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub gear_key: [u8; 32],
    pub epochs: Vec<Epoch>,
}

impl Keyring {
    pub fn generate(repo_id: &str) -> Self {
        Keyring {
            repo_id: repo_id.to_string(),
            chunk_id_key: rand::random(),
            gear_key: rand::random(),
            epochs: vec![Epoch {
                epoch: 1,
                created: chrono::Utc::now().to_rfc3339(),
                data_key: rand::random(),
                meta_key: rand::random(),
            }],
        }
    }

    pub fn current_epoch(&self) -> u32 {
        self.epochs.iter().map(|e| e.epoch).max().unwrap_or(0)
    }

    pub fn epoch(&self, n: u32) -> Result<&Epoch> {
        self.epochs.iter().find(|e| e.epoch == n).ok_or_else(|| {
            Error::Format(format!(
                "key epoch {n} is not in this keyring (it was destroyed, or the object is foreign)"
            ))
        })
    }

    /// The keyed hash that names chunks and trees.
    pub fn chunk_id(&self, plaintext: &[u8]) -> crate::Id {
        crate::Id(*blake3::keyed_hash(&self.chunk_id_key, plaintext).as_bytes())
    }

    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).unwrap_or_else(|e| panic!("CBOR into a Vec: {e}"));
        out
    }

    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        ciborium::from_reader(bytes).map_err(|e| Error::Format(format!("keyring: {e}")))
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("repo_id", &self.repo_id)
            .field("epochs", &self.epochs.len())
            .finish_non_exhaustive()
    }
}
