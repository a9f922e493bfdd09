//! The behaviour every storage backend must show. Each backend's tests call [`run`] with a fresh,
//! empty instance, so local disk, S3 and any wrapper are held to one definition.

use std::time::{Duration, SystemTime};

use super::Storage;
use crate::error::Error;

/// How far a store's clock may stand from the test machine's; the same allowance the prune protocol
/// makes between two objects (format.md §1).
const CLOCK_ALLOWANCE: Duration = Duration::from_secs(5);

/// Run every conformance check against an empty storage. Panics (test failure) on the first violation.
pub fn run(storage: &dyn Storage) {
    put_then_get(storage);
    put_is_create_only(storage);
    missing_objects(storage);
    ranges(storage);
    listing(storage);
    delete_is_idempotent(storage);
    empty_and_large_objects(storage);
    concurrent_puts_of_one_key(storage);
    storage_times(storage);
    many_keys_under_one_prefix(storage);
    replace_overwrites(storage);
}

fn put_then_get(s: &dyn Storage) {
    assert!(
        s.put("conf/a", b"hello").expect("put"),
        "first put must create"
    );
    assert_eq!(s.get("conf/a").expect("get"), b"hello");
    let info = s
        .stat("conf/a")
        .expect("stat")
        .expect("stat finds the object");
    assert_eq!(info.size, 5);
}

fn put_is_create_only(s: &dyn Storage) {
    assert!(s.put("conf/once", b"first").expect("put"));
    assert!(!s
        .put("conf/once", b"second")
        .expect("second put reports existing"));
    assert_eq!(
        s.get("conf/once").expect("get"),
        b"first",
        "an object is never rewritten"
    );
}

fn missing_objects(s: &dyn Storage) {
    assert!(matches!(
        s.get("conf/absent"),
        Err(Error::ObjectMissing { .. })
    ));
    assert!(matches!(
        s.get_range("conf/absent", 0, 1),
        Err(Error::ObjectMissing { .. })
    ));
    assert!(s.stat("conf/absent").expect("stat").is_none());
}

fn ranges(s: &dyn Storage) {
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    s.put("conf/range", &data).expect("put");
    assert_eq!(
        s.get_range("conf/range", 0, 10).expect("range"),
        &data[..10]
    );
    assert_eq!(
        s.get_range("conf/range", 9_990, 10).expect("tail range"),
        &data[9_990..]
    );
    assert_eq!(
        s.get_range("conf/range", 1234, 4321).expect("middle range"),
        &data[1234..5555]
    );
    assert!(
        s.get_range("conf/range", 9_995, 10).is_err(),
        "a range past the end must fail, not return short data"
    );
}

fn listing(s: &dyn Storage) {
    for key in ["list/x/1", "list/x/2", "list/y/3", "listing-other"] {
        s.put(key, key.as_bytes()).expect("put");
    }
    let mut keys: Vec<String> = s
        .list("list/")
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["list/x/1", "list/x/2", "list/y/3"]);
    let sized = s.list("list/x/").expect("list");
    assert_eq!(sized.len(), 2);
    assert!(sized.iter().all(|o| o.size == 8));
    assert!(s.list("nothing-here/").expect("list").is_empty());
}

fn delete_is_idempotent(s: &dyn Storage) {
    s.put("conf/del", b"x").expect("put");
    s.delete("conf/del").expect("delete");
    assert!(s.stat("conf/del").expect("stat").is_none());
    s.delete("conf/del")
        .expect("deleting an absent object is fine");
    assert!(s
        .put("conf/del", b"y")
        .expect("put after delete creates again"));
}

fn empty_and_large_objects(s: &dyn Storage) {
    s.put("conf/empty", b"").expect("put empty");
    assert_eq!(s.get("conf/empty").expect("get empty"), b"");
    let big: Vec<u8> = (0..24 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    s.put("conf/big", &big).expect("put big");
    assert_eq!(s.get("conf/big").expect("get big"), big);
}

/// Racing writers of one key write the same bytes (every key but `config` names its content), so a
/// store need not arbitrate atomically (Garage ignores `If-None-Match`): every racer must succeed, at
/// least one must report the creation, and the object must hold those bytes.
fn concurrent_puts_of_one_key(s: &dyn Storage) {
    let created = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| s.put("conf/race", b"same bytes").expect("racing put")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .filter(|created| *created)
            .count()
    });
    assert!(created >= 1, "one of the racing writers creates the object");
    assert_eq!(s.get("conf/race").expect("get"), b"same bytes");
}

/// Listings and stat carry the store's modification time: close to now, and later for an object written
/// later (S3 reports whole seconds through HEAD, hence the pause).
fn storage_times(s: &dyn Storage) {
    let before = SystemTime::now();
    s.put("times/first", b"1").expect("put");
    std::thread::sleep(Duration::from_millis(1100));
    s.put("times/second", b"2").expect("put");
    let after = SystemTime::now();
    let listed = s.list("times/").expect("list");
    assert_eq!(listed.len(), 2);
    let time_of = |key: &str| {
        listed
            .iter()
            .find(|o| o.key == key)
            .unwrap_or_else(|| panic!("{key} listed"))
            .modified
    };
    for o in &listed {
        assert!(
            o.modified + CLOCK_ALLOWANCE >= before && o.modified <= after + CLOCK_ALLOWANCE,
            "{} lists a modification time {:?} far from the write ({:?} .. {:?})",
            o.key,
            o.modified,
            before,
            after
        );
    }
    assert!(
        time_of("times/second") > time_of("times/first"),
        "an object written a second later lists a later time"
    );
    let stat = s.stat("times/second").expect("stat").expect("exists");
    let gap = stat
        .modified
        .duration_since(time_of("times/second"))
        .unwrap_or_else(|e| e.duration());
    assert!(
        gap < Duration::from_secs(1),
        "stat and list agree on the time to the second: {gap:?}"
    );
}

/// More keys under one prefix than one S3 listing page holds (1,000): the listing must follow pages.
fn many_keys_under_one_prefix(s: &dyn Storage) {
    const KEYS: usize = 2_100;
    std::thread::scope(|scope| {
        for worker in 0..16 {
            scope.spawn(move || {
                for i in (worker..KEYS).step_by(16) {
                    s.put(&format!("many/{i:05}"), i.to_string().as_bytes())
                        .expect("put");
                }
            });
        }
    });
    let mut keys: Vec<String> = s
        .list("many/")
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    let expected: Vec<String> = (0..KEYS).map(|i| format!("many/{i:05}")).collect();
    assert_eq!(keys.len(), KEYS, "every key is listed once");
    assert_eq!(keys, expected);
}

/// `replace` (only ever used for `config`) overwrites an existing object and creates an absent one;
/// either way the object then reads back whole, is listed once and has the new size.
fn replace_overwrites(s: &dyn Storage) {
    assert!(s.put("replace/existing", b"the old contents").expect("put"));
    s.replace("replace/existing", b"new")
        .expect("replace an existing object");
    assert_eq!(s.get("replace/existing").expect("get"), b"new");
    assert_eq!(
        s.stat("replace/existing")
            .expect("stat")
            .expect("exists")
            .size,
        3
    );
    // A ranged read may keep a handle open (local disk): it must not outlive the replacement.
    assert_eq!(
        s.get_range("replace/existing", 0, 3).expect("range"),
        b"new"
    );
    s.replace("replace/existing", b"newer still")
        .expect("replace it again");
    assert_eq!(s.get("replace/existing").expect("get"), b"newer still");
    assert_eq!(
        s.get_range("replace/existing", 6, 5)
            .expect("range of the new contents"),
        b"still"
    );

    s.replace("replace/absent/config", b"created by replace")
        .expect("replace an absent object");
    assert_eq!(
        s.get("replace/absent/config").expect("get"),
        b"created by replace"
    );
    let mut keys: Vec<String> = s
        .list("replace/")
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["replace/absent/config", "replace/existing"]);
    assert!(
        !s.put("replace/existing", b"x").expect("put"),
        "a replaced object exists for put-if-absent"
    );
}
