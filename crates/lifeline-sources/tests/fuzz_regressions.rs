//! Inputs the fuzz targets (fuzz/, scripts/fuzz.sh) found crashing, kept as tests: each must give
//! an error, never a panic.

use lifeline_sources::postgres::wal::WalName;

/// `fuzz/fuzz_targets/wal.rs`: a 24-byte name whose multi-byte character straddles byte 16 made
/// `WalName::parse` slice inside a character and panic; it must be refused like any other bad name.
#[test]
fn wal_name_with_a_multibyte_character_across_a_field_boundary_is_refused() {
    // The fuzzer's input, less its first byte (which picks the segment size).
    let name = std::str::from_utf8(b"000010010000[r\xe2\x97\x9f\n0ryFup").expect("UTF-8");
    assert_eq!(name.len(), 24);
    assert!(WalName::parse(name).is_err());
    // A character across byte 16 of a `.partial` and a `.backup` name, and across byte 8.
    let stem = "000000010000000\u{e9}0000000";
    assert_eq!(stem.len(), 24);
    assert!(WalName::parse(stem).is_err());
    assert!(WalName::parse(&format!("{stem}.partial")).is_err());
    assert!(WalName::parse(&format!("{stem}.00000028.backup")).is_err());
    assert!(WalName::parse("0000000\u{e9}00000000000000000").is_err());
}

/// A ustar header with its checksum filled in, after `edit` sets the fields a test needs.
fn tar_header(name: &[u8], edit: impl FnOnce(&mut [u8; 512])) -> [u8; 512] {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name);
    header[100..107].copy_from_slice(b"0000600");
    header[124..135].copy_from_slice(b"00000000000");
    header[136..147].copy_from_slice(b"00000000000");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    edit(&mut header);
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    header
}

/// `tar_tree::store` of `stream` into a fresh repository, keeping `keep`.
fn store_tar(
    stream: &[u8],
    keep: &[&str],
) -> lifeline_sources::postgres::Result<lifeline_sources::postgres::tar_tree::Stored> {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = std::sync::Arc::new(lifeline_repo::storage::LocalStorage::new(dir.path()));
    let repo = lifeline_repo::Repository::init(storage, b"pw", 1 << 20).expect("init");
    let writer = lifeline_repo::Writer::new(&repo, None, 1).expect("writer");
    let stored = lifeline_sources::postgres::tar_tree::store(
        &writer,
        stream,
        keep,
        &lifeline_sources::Quiet,
    );
    writer.close();
    stored
}

/// `fuzz/fuzz_targets/pg_tar.rs`: a tar header whose mtime (a GNU base-256 field can state any
/// u64) times 10^9 overflows i64 made `tar_tree::store` panic ("attempt to multiply with
/// overflow") in builds with overflow checks, and store a wrapped time in others. The entry is
/// stored with a saturated time instead.
#[test]
fn tar_entry_with_an_mtime_beyond_i64_nanoseconds_is_stored_without_overflow() {
    // One file entry, mtime 2^62 seconds in base-256 (first byte 0x80, then big-endian).
    let header = tar_header(b"file", |h| {
        h[124..135].copy_from_slice(b"00000000003");
        h[136..148].fill(0);
        h[136] = 0x80;
        h[136 + 4..148].copy_from_slice(&(1u64 << 62).to_be_bytes());
    });
    let mut stream = header.to_vec();
    let mut body = [0u8; 512];
    body[..3].copy_from_slice(b"abc");
    stream.extend_from_slice(&body);
    stream.extend_from_slice(&[0u8; 1024]);
    let stored = store_tar(&stream, &[]).expect("stored");
    assert_eq!(stored.summary.files, 1);
}

/// `fuzz/artifacts/pg_tar/crash-412e4231…` (long run of 2026-12-03): a kept file (`backup_manifest`)
/// whose header claims a size near 2^64 made `Vec::with_capacity` panic ("capacity overflow").
#[test]
fn kept_tar_entry_claiming_an_enormous_size_is_refused_without_a_capacity_overflow() {
    // One file entry named backup_manifest whose size (base-256) is 2^63 - 1 bytes.
    let header = tar_header(b"backup_manifest", |h| {
        h[124..136].fill(0);
        h[124] = 0x80;
        h[124 + 4..136].copy_from_slice(&(u64::MAX >> 1).to_be_bytes());
    });
    let mut stream = header.to_vec();
    stream.extend_from_slice(b"{}");
    let err = store_tar(&stream, &["backup_manifest"])
        .err()
        .expect("a stream that ends early is refused");
    assert!(
        err.to_string().contains("backup_manifest ends after 2"),
        "{err}"
    );
}
