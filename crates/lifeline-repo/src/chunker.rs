//! Content-defined chunking: FastCDC 2020 with a gear table derived from a repository secret, so chunk
//! boundaries do not fingerprint the content (format.md §4).

use std::io::{self, Read};

use fastcdc::v2020::{cut_gear, MASKS};

/// Chunk sizes per kind of source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkProfile {
    /// File trees: many files, most of them small.
    Files,
    /// Streams and large images (`--stdin`, database files).
    Stream,
}

impl ChunkProfile {
    fn sizes(self) -> (usize, usize, usize) {
        match self {
            ChunkProfile::Files => (256 << 10, 1 << 20, 4 << 20),
            ChunkProfile::Stream => (512 << 10, 2 << 20, 8 << 20),
        }
    }

    pub fn max_size(self) -> usize {
        self.sizes().2
    }

    pub fn min_size(self) -> usize {
        self.sizes().0
    }
}

pub struct Chunker {
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    min: usize,
    avg: usize,
    max: usize,
    masks: [u64; 4],
}

impl Chunker {
    pub fn new(gear_key: &[u8; 32], profile: ChunkProfile) -> Self {
        let mut xof = blake3::Hasher::new_keyed(gear_key)
            .update(b"lifeline gear v1")
            .finalize_xof();
        let mut bytes = [0u8; 2048];
        xof.fill(&mut bytes);
        let mut gear = Box::new([0u64; 256]);
        let mut gear_ls = Box::new([0u64; 256]);
        for (i, word) in bytes.chunks_exact(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            gear[i] = u64::from_le_bytes(w);
            gear_ls[i] = gear[i] << 1;
        }
        let (min, avg, max) = profile.sizes();
        // Normalization level 1: a stricter mask below the average size, a looser one above.
        let bits = avg.ilog2() as usize;
        let (mask_s, mask_l) = (MASKS[bits + 1], MASKS[bits - 1]);
        Chunker {
            gear,
            gear_ls,
            min,
            avg,
            max,
            masks: [mask_s, mask_l, mask_s << 1, mask_l << 1],
        }
    }

    /// Length of the next chunk at the start of `data`. `data` must hold at least `max` bytes unless it is
    /// the end of the stream.
    pub fn cut(&self, data: &[u8]) -> usize {
        let [ms, ml, ms_ls, ml_ls] = self.masks;
        let (_, len) = cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            ms,
            ml,
            ms_ls,
            ml_ls,
            &self.gear,
            &self.gear_ls,
        );
        len
    }

    /// Split a reader into chunks, holding at most two maximum-size chunks in memory.
    pub fn stream<R: Read>(&self, reader: R) -> ChunkStream<'_, R> {
        ChunkStream {
            chunker: self,
            reader,
            buf: Vec::new(),
            start: 0,
            eof: false,
        }
    }
}

pub struct ChunkStream<'c, R> {
    chunker: &'c Chunker,
    reader: R,
    buf: Vec<u8>,
    start: usize,
    eof: bool,
}

impl<R: Read> ChunkStream<'_, R> {
    fn fill(&mut self) -> io::Result<()> {
        let max = self.chunker.max;
        if self.buf.len() - self.start >= max || self.eof {
            return Ok(());
        }
        self.buf.drain(..self.start);
        self.start = 0;
        // `read_to_end` grows the buffer only as data arrives: a small file never costs a
        // zero-filled buffer of twice the maximum chunk size.
        let want = (2 * max - self.buf.len()) as u64;
        let got = (&mut self.reader).take(want).read_to_end(&mut self.buf)?;
        if (got as u64) < want {
            self.eof = true;
        }
        Ok(())
    }

    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.fill()?;
        let rest = &self.buf[self.start..];
        if rest.is_empty() {
            return Ok(None);
        }
        let len = self.chunker.cut(rest);
        let chunk = rest[..len].to_vec();
        self.start += len;
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn cuts(chunker: &Chunker, bytes: &[u8]) -> Vec<usize> {
        let mut stream = chunker.stream(bytes);
        let mut lens = Vec::new();
        while let Some(c) = stream.next_chunk().expect("in-memory read") {
            lens.push(c.len());
        }
        lens
    }

    #[test]
    fn chunks_concatenate_to_input_and_respect_bounds() {
        let c = Chunker::new(&[7; 32], ChunkProfile::Files);
        let bytes = data(20 << 20, 3);
        let lens = cuts(&c, &bytes);
        assert_eq!(lens.iter().sum::<usize>(), bytes.len());
        let (min, _, max) = ChunkProfile::Files.sizes();
        for &l in &lens[..lens.len() - 1] {
            assert!((min..=max).contains(&l), "chunk of {l} bytes out of bounds");
        }
        assert!(
            lens.len() > 5,
            "20 MiB of random data makes several ~1 MiB chunks"
        );
    }

    #[test]
    fn boundaries_depend_on_the_key() {
        let bytes = data(16 << 20, 9);
        let a = cuts(&Chunker::new(&[1; 32], ChunkProfile::Files), &bytes);
        let b = cuts(&Chunker::new(&[2; 32], ChunkProfile::Files), &bytes);
        assert_ne!(a, b, "another key must cut elsewhere");
    }

    #[test]
    fn an_insertion_only_changes_nearby_chunks() {
        let c = Chunker::new(&[5; 32], ChunkProfile::Files);
        let bytes = data(24 << 20, 11);
        let mut edited = bytes.clone();
        edited.splice(10 << 20..10 << 20, [1u8, 2, 3]);
        let ids = |b: &[u8]| -> Vec<blake3::Hash> {
            let mut s = c.stream(b);
            std::iter::from_fn(|| s.next_chunk().expect("read"))
                .map(|c| blake3::hash(&c))
                .collect()
        };
        let (a, b) = (ids(&bytes), ids(&edited));
        let shared = a.iter().filter(|h| b.contains(h)).count();
        assert!(
            shared + 3 >= a.len(),
            "only chunks near the edit change ({shared} of {})",
            a.len()
        );
    }
}
