//! The S3 backend against a real S3-compatible store (Garage, started by scripts/test.sh). Without the
//! store's variables these tests fail: a backend that was never exercised must not look green.

use lifeline_repo::storage::{conformance, S3Settings, S3Storage, Storage};

fn bucket() -> String {
    match (
        std::env::var("LIFELINE_TEST_BUCKET"),
        std::env::var("AWS_ENDPOINT_URL"),
    ) {
        (Ok(bucket), Ok(_)) => bucket,
        _ => panic!(
            "S3 tests need a running store: run them through scripts/test.sh, or start one with \
             `scripts/garage.sh start DIR` and `source DIR/env`"
        ),
    }
}

fn fresh(name: &str) -> S3Storage {
    let url = format!("s3://{}/{name}-{:016x}", bucket(), rand_suffix());
    S3Storage::open(&url, &S3Settings::default()).expect("open S3 storage")
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()) << 32
}

#[test]
fn s3_storage_passes_the_conformance_suite() {
    conformance::run(&fresh("conformance"));
}

#[test]
fn large_objects_go_up_in_parts_and_come_back_whole() {
    let s = fresh("multipart");
    let big: Vec<u8> = (0..(80u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    assert!(s.put("data/big", &big).expect("multipart put"));
    assert_eq!(
        s.stat("data/big").expect("stat").expect("exists").size,
        big.len() as u64
    );
    assert_eq!(
        s.get_range("data/big", 70 << 20, 1000).expect("range"),
        &big[70 << 20..(70 << 20) + 1000]
    );
    assert!(
        !s.put("data/big", b"other").expect("second put"),
        "create-only for multipart too"
    );
}

#[test]
fn a_missing_bucket_fails_fast_and_says_so() {
    bucket();
    let s =
        S3Storage::open("s3://no-such-bucket-lifeline/x", &S3Settings::default()).expect("open");
    let started = std::time::Instant::now();
    let err = s.put("k", b"v").expect_err("no bucket");
    assert!(
        started.elapsed().as_secs() < 20,
        "permanent errors are not retried for long"
    );
    let text = err.to_string();
    assert!(text.contains("no-such-bucket-lifeline"), "{text}");
}
