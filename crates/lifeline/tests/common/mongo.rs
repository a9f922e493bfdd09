//! Real MongoDB-protocol servers for the end-to-end tests of the mongodb source: FerretDB 1.24 on
//! SQLite, built by `scripts/mongo.sh install` and started by `scripts/mongo.sh start DIR` on a free
//! loopback port (scripts/test.sh installs it). Without it the tests fail: they never skip. Each
//! server has a directory of its own and is stopped when dropped.

use std::path::PathBuf;
use std::process::Command;

use mongodb::bson::{doc, Document};
use mongodb::sync::{Client, Database};
use tempfile::TempDir;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mongo.sh")
}

pub struct Server {
    pub uri: String,
    pub dir: TempDir,
    pub client: Client,
}

impl Server {
    #[track_caller]
    pub fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("run scripts/mongo.sh");
        assert!(
            out.status.success(),
            "FerretDB did not start (install it with `scripts/mongo.sh install`; scripts/test.sh does): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = String::from_utf8_lossy(&out.stdout);
        let uri = env
            .lines()
            .find_map(|l| l.strip_prefix("export MONGODB_URI="))
            .unwrap_or_else(|| panic!("scripts/mongo.sh start printed no MONGODB_URI: {env}"))
            .trim_matches('\'')
            .to_string();
        let client = Client::with_uri_str(&uri).expect("a client");
        Server { uri, dir, client }
    }

    pub fn db(&self, name: &str) -> Database {
        self.client.database(name)
    }

    /// `{count: coll}` on `db`.
    pub fn count(&self, db: &str, coll: &str) -> u64 {
        let n = self
            .db(db)
            .run_command(doc! { "count": coll })
            .run()
            .expect("count");
        n.get_i32("n")
            .map(|n| n as u64)
            .or_else(|_| n.get_i64("n").map(|n| n as u64))
            .expect("a count")
    }

    /// The index names of `db.coll`, sorted.
    pub fn index_names(&self, db: &str, coll: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .db(db)
            .collection::<Document>(coll)
            .list_index_names()
            .run()
            .expect("listIndexes");
        names.sort();
        names
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
