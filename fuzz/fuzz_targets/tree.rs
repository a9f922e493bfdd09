//! Tree blobs (format.md §8): CBOR, decoded after decryption and decompression.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeline_repo::tree::{ContentRef, Node, NodeType, Tree};
use lifeline_repo::Id;

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| {
            let mut file = Node::file(b"a\nfile".to_vec(), 12, vec![ContentRef(Id([9; 32]), 0, 12)], 1);
            file.changed_while_read = true;
            let mut dir = Node::file(b"dir".to_vec(), 0, vec![], -5);
            dir.node_type = NodeType::Dir;
            dir.size = None;
            dir.content = None;
            dir.subtree = Some(Id([8; 32]));
            let mut link = Node::file(vec![0xff, 0xfe], 0, vec![], 7);
            link.node_type = NodeType::Symlink;
            link.content = None;
            link.target = Some(b"../target".to_vec());
            let mut dev = Node::file(b"null".to_vec(), 0, vec![], 7);
            dev.node_type = NodeType::Chardev;
            dev.rdev = Some(0x103);
            vec![
                Tree { nodes: vec![file, dir, link, dev] }.encode(),
                Tree::default().encode(),
            ]
        });
    },
    |data: &[u8]| {
        let id = Id([0; 32]);
        if let Ok(tree) = Tree::decode(data, &id) {
            let mut sorted = tree.clone();
            sorted.nodes.sort_by(|a, b| a.name.cmp(&b.name));
            let again = Tree::decode(&tree.encode(), &id).expect("a decoded tree encodes and decodes");
            assert_eq!(again, sorted);
            for node in &again.nodes {
                let _ = again.find(&node.name);
            }
        }
    }
);
