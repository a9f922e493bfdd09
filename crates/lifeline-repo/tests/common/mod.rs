//! Helpers shared by the repository's integration tests.

/// Deterministic pseudo-random bytes (xorshift): incompressible, and the same for a seed.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
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
