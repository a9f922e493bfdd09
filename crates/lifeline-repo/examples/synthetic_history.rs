//! Builds a repository with a long backup history for `bench/prune.sh`: a document store of
//! 64 × 64 directories holding two files each, backed up hourly, each backup changing 32 files.
//! Chunks are 256 random bytes, so a thousand snapshots reference over a million chunks in a few
//! hundred megabytes: the index and metadata load of a large repository without its terabyte of data.
//! Each snapshot writes its own packs and index file, as a backup does.
//!
//! Usage: synthetic_history REPO SNAPSHOTS PASSWORD_FILE   (REPO: a directory, or s3://BUCKET/PREFIX
//! with the AWS_* variables set)

use std::sync::Arc;

use lifeline_repo::pack::BlobKind;
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::storage::{LocalStorage, S3Settings, S3Storage, Storage};
use lifeline_repo::tree::{ContentRef, Node, NodeType, Tree};
use lifeline_repo::{Id, Repository, Writer, DEFAULT_COMPRESSION};

const TOP: usize = 64;
const LEAVES: usize = 64;
const FILES: usize = 2;
const CHUNKS: usize = 25;
const CHUNK: usize = 256;
const CHANGED_PER_SNAPSHOT: usize = 32;
/// 2026-10-01T00:00:00Z; snapshots follow hourly.
const FIRST: i64 = 1_790_812_800;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n.div_ceil(8))
            .flat_map(|_| self.next().to_le_bytes())
            .take(n)
            .collect()
    }
}

fn dir(name: &str, subtree: Id, mtime: i64) -> Node {
    let mut node = Node::file(name.as_bytes().to_vec(), 0, Vec::new(), mtime);
    node.node_type = NodeType::Dir;
    node.mode = 0o755;
    node.size = None;
    node.content = None;
    node.subtree = Some(subtree);
    node
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, location, count, password_file] = args.as_slice() else {
        return Err("usage: synthetic_history REPO SNAPSHOTS PASSWORD_FILE".into());
    };
    let count: usize = count.parse()?;
    let password = std::fs::read_to_string(password_file)?;
    let storage: Arc<dyn Storage> = if location.starts_with("s3://") {
        Arc::new(S3Storage::open(location, &S3Settings::default())?)
    } else {
        std::fs::create_dir_all(location)?;
        Arc::new(LocalStorage::new(location))
    };
    let repo = Repository::init(storage, password.trim().as_bytes(), 16 << 20)?;
    let writer = Writer::new(&repo, None, DEFAULT_COMPRESSION)?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut files: Vec<Vec<ContentRef>> = vec![Vec::new(); TOP * LEAVES * FILES];
    let mut leaves: Vec<Option<Id>> = vec![None; TOP * LEAVES];
    let mut tops: Vec<Option<Id>> = vec![None; TOP];
    let mut chunks = 0usize;
    for k in 0..count {
        let changed: Vec<usize> = if k == 0 {
            (0..files.len()).collect()
        } else {
            (0..CHANGED_PER_SNAPSHOT)
                .map(|_| (rng.next() % files.len() as u64) as usize)
                .collect()
        };
        let time = FIRST + 3600 * k as i64;
        let mtime = time * 1_000_000_000;
        for &f in &changed {
            files[f] = (0..CHUNKS)
                .map(|_| {
                    let data = rng.bytes(CHUNK);
                    writer
                        .add_blob(BlobKind::Data, &data)
                        .map(|id| ContentRef(id, 0, CHUNK as u64))
                })
                .collect::<lifeline_repo::Result<_>>()?;
            chunks += CHUNKS;
            leaves[f / FILES] = None;
            tops[f / FILES / LEAVES] = None;
        }
        for (t, top) in tops.iter_mut().enumerate() {
            if top.is_some() {
                continue;
            }
            let mut top_nodes = Vec::new();
            for l in 0..LEAVES {
                let leaf = t * LEAVES + l;
                let id = match leaves[leaf] {
                    Some(id) => id,
                    None => {
                        let nodes = (0..FILES)
                            .map(|i| {
                                let content = files[leaf * FILES + i].clone();
                                let name = format!("scan-{i}.pdf");
                                Node::file(
                                    name.into_bytes(),
                                    (CHUNKS * CHUNK) as u64,
                                    content,
                                    mtime,
                                )
                            })
                            .collect();
                        let id = writer.add_tree(Tree { nodes })?;
                        leaves[leaf] = Some(id);
                        id
                    }
                };
                top_nodes.push(dir(&format!("patient-{l:02}"), id, mtime));
            }
            *top = Some(writer.add_tree(Tree { nodes: top_nodes })?);
        }
        let clinics = tops
            .iter()
            .enumerate()
            .map(|(t, id)| dir(&format!("clinic-{t:02}"), id.unwrap_or(Id([0; 32])), mtime))
            .collect();
        let documents = writer.add_tree(Tree { nodes: clinics })?;
        let srv = writer.add_tree(Tree {
            nodes: vec![dir("documents", documents, mtime)],
        })?;
        let root = writer.add_tree(Tree {
            nodes: vec![dir("srv", srv, mtime)],
        })?;
        let packs = writer.finish_packs()?;
        if !packs.is_empty() {
            let bytes = lifeline_repo::index::seal(repo.keyring(), &packs)?;
            repo.storage()
                .put(&format!("index/{}", Id::of_stored(&bytes)), &bytes)?;
        }
        let mut snapshot = Snapshot::new("files", vec!["/srv/documents".into()], root);
        snapshot.time = chrono::DateTime::from_timestamp(time, 0)
            .ok_or("time out of range")?
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        snapshot.summary.files = files.len() as u64;
        snapshot.summary.bytes = (files.len() * CHUNKS * CHUNK) as u64;
        repo.save_snapshot(&snapshot)?;
    }
    writer.close();
    println!("{count} snapshots, {chunks} chunks");
    Ok(())
}
