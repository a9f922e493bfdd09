//! A blob or object plaintext: one compression byte, then the bytes (format.md §5).

use std::cell::RefCell;

use crate::error::{Error, Result};

pub(crate) const RAW: u8 = 0;
pub(crate) const ZSTD: u8 = 1;

thread_local! {
    // A zstd context holds megabytes of tables; making one per chunk dominated system time.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with_borrow_mut(|slot| {
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot {
            Some((_, c)) => c.compress(raw),
            None => unreachable!("the compressor was just created"),
        }
    })
}

fn decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot {
            Some(d) => d.decompress(data, capacity),
            None => unreachable!("the decompressor was just created"),
        }
    })
}

/// Compress with zstd at `level`; keep the raw bytes where compression does not shrink them.
pub fn encode(raw: &[u8], level: i32) -> Vec<u8> {
    if let Ok(compressed) = compress(raw, level) {
        if compressed.len() < raw.len() {
            let mut out = Vec::with_capacity(compressed.len() + 1);
            out.push(ZSTD);
            out.extend_from_slice(&compressed);
            return out;
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 1);
    out.push(RAW);
    out.extend_from_slice(raw);
    out
}

/// The compression byte of an encoded payload.
pub fn compression(payload: &[u8]) -> u8 {
    payload.first().copied().unwrap_or(RAW)
}

/// Decode a payload whose raw length is known (blobs) or bounded by `capacity`.
pub fn decode(payload: &[u8], capacity: usize, key: &str) -> Result<Vec<u8>> {
    match payload.split_first() {
        Some((&RAW, rest)) => Ok(rest.to_vec()),
        Some((&ZSTD, rest)) => {
            decompress(rest, capacity).map_err(|e| Error::corrupt(key, format!("zstd: {e}")))
        }
        Some((other, _)) => Err(Error::corrupt(key, format!("unknown compression {other}"))),
        None => Err(Error::corrupt(key, "empty payload")),
    }
}

/// The largest size a frame header is trusted to state (a named object holds a WAL segment: at most
/// 1 GiB).
const MAX_STATED_SIZE: u64 = 1 << 30;

/// Decode a payload of unknown size (indexes, snapshots, named objects).
pub fn decode_any(payload: &[u8], key: &str) -> Result<Vec<u8>> {
    match payload.split_first() {
        Some((&ZSTD, rest)) => match zstd::zstd_safe::get_frame_content_size(rest) {
            // A frame that states its size decompresses into one exact allocation.
            Ok(Some(size)) if size <= MAX_STATED_SIZE => {
                decode(payload, usize::try_from(size).unwrap_or(0), key)
            }
            _ => zstd::stream::decode_all(rest)
                .map_err(|e| Error::corrupt(key, format!("zstd: {e}"))),
        },
        _ => decode(payload, 0, key),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(raw in proptest::collection::vec(any::<u8>(), 0..5000), rep in 1usize..4) {
            let raw: Vec<u8> = raw.repeat(rep);
            let enc = super::encode(&raw, 3);
            prop_assert!(enc.len() <= raw.len() + 1);
            prop_assert_eq!(super::decode(&enc, raw.len(), "t").expect("decode"), raw.clone());
            prop_assert_eq!(super::decode_any(&enc, "t").expect("decode"), raw);
        }
    }
}
