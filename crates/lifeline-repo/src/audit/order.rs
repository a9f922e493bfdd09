//! The order of a trail: every record after the records it links to, ties by (time, id).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use super::name::Name;

/// Order `nodes` (a name and its links each) topologically. Links to names not among the nodes
/// are ignored. Returns the indices in order, and the indices caught in cycles (which hash links
/// cannot form; only crafted names can).
pub(crate) fn topological(nodes: &[(Name, &[Name])]) -> (Vec<usize>, Vec<usize>) {
    let index: HashMap<Name, usize> = nodes.iter().enumerate().map(|(i, n)| (n.0, i)).collect();
    let mut waiting = vec![0usize; nodes.len()];
    let mut followers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, (_, links)) in nodes.iter().enumerate() {
        let before: BTreeSet<usize> = links.iter().filter_map(|l| index.get(l).copied()).collect();
        waiting[i] = before.len();
        for b in before {
            followers[b].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<(Name, usize)>> = waiting
        .iter()
        .enumerate()
        .filter(|(_, w)| **w == 0)
        .map(|(i, _)| Reverse((nodes[i].0, i)))
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(Reverse((_, i))) = ready.pop() {
        order.push(i);
        for &f in &followers[i] {
            waiting[f] -= 1;
            if waiting[f] == 0 {
                ready.push(Reverse((nodes[f].0, f)));
            }
        }
    }
    let cyclic = (0..nodes.len()).filter(|i| waiting[*i] > 0).collect();
    (order, cyclic)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};

    use super::*;
    use crate::Id;

    fn name(seconds: i64, id: u8) -> Name {
        Name {
            time: DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(seconds),
            id: Id([id; 32]),
        }
    }

    #[test]
    fn links_come_first_then_time_then_id() {
        // `late` has the earliest time but links to `b`: it must follow `b` all the same.
        let (a, b, c, late) = (name(10, 1), name(20, 2), name(20, 1), name(5, 9));
        let nodes: Vec<(Name, &[Name])> = vec![
            (late, std::slice::from_ref(&b)),
            (b, std::slice::from_ref(&a)),
            (c, std::slice::from_ref(&a)),
            (a, &[]),
        ];
        let (order, cyclic) = topological(&nodes);
        assert!(cyclic.is_empty());
        let names: Vec<Name> = order.iter().map(|i| nodes[*i].0).collect();
        assert_eq!(names, vec![a, c, b, late]);
    }

    #[test]
    fn cycles_are_returned() {
        let (a, b) = (name(1, 1), name(2, 2));
        let nodes: Vec<(Name, &[Name])> =
            vec![(a, std::slice::from_ref(&b)), (b, std::slice::from_ref(&a))];
        let (order, cyclic) = topological(&nodes);
        assert!(order.is_empty());
        assert_eq!(cyclic, vec![0, 1]);
    }
}
