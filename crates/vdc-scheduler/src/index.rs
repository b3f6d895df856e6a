//! Ordered sets of nodes by free capacity, for best-fit queries.
//!
//! A [`Forest`] holds many trees in one arena; a tree is its root handle,
//! kept by the caller (`NIL` when empty). Each entry is a [`Key`]: a node's
//! free CPU, free memory and index, ordered in that order, so the first
//! entry at or after `(cpu, memory, 0)` that also has `memory` free is the
//! best fit for an instance of that size. Entries with plenty of CPU but too
//! little memory would have to be skipped one by one in a plain ordered set;
//! here every subtree knows the most free memory found in it, so whole
//! subtrees are skipped and a query costs O(log n) whatever the pool looks
//! like.
//!
//! The trees are treaps: binary search trees kept balanced by a priority
//! per entry. Priorities come from hashing the handle, so the shape, like
//! everything else in the scheduler, is a pure function of the input (and
//! the answers do not depend on the shape at all).

/// No entry: an empty tree or a missing child.
pub(crate) const NIL: u32 = u32::MAX;

/// A node's place in a tree: free CPU, then free memory, then its index
/// (indices follow node names, so ties go to the first name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub cpu: u64,
    pub mem: u64,
    pub node: u32,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: Key,
    /// The most free memory of any entry in this subtree.
    max_mem: u64,
    prio: u32,
    left: u32,
    right: u32,
}

/// An arena of treap entries shared by many trees.
#[derive(Debug, Default)]
pub(crate) struct Forest {
    entries: Vec<Entry>,
    /// Released handles, reused before the arena grows.
    spare: Vec<u32>,
}

impl Forest {
    /// A new entry, in no tree yet.
    pub(crate) fn alloc(&mut self, key: Key) -> u32 {
        if let Some(h) = self.spare.pop() {
            let e = &mut self.entries[h as usize];
            e.key = key;
            e.max_mem = key.mem;
            e.left = NIL;
            e.right = NIL;
            return h;
        }
        // Entries are nodes times label sets: far below 2^32.
        let h = self.entries.len() as u32;
        self.entries.push(Entry {
            key,
            max_mem: key.mem,
            prio: priority(h),
            left: NIL,
            right: NIL,
        });
        h
    }

    /// Gives back an entry that is in no tree.
    pub(crate) fn release(&mut self, h: u32) {
        self.spare.push(h);
    }

    pub(crate) fn key(&self, h: u32) -> Key {
        self.entries[h as usize].key
    }

    /// Changes the key of an entry that is in no tree.
    pub(crate) fn set_key(&mut self, h: u32, key: Key) {
        let e = &mut self.entries[h as usize];
        e.key = key;
        e.max_mem = key.mem;
        e.left = NIL;
        e.right = NIL;
    }

    /// Adds entry `h` (in no tree) to the tree at `root`.
    pub(crate) fn insert(&mut self, root: &mut u32, h: u32) {
        let e = &mut self.entries[h as usize];
        e.left = NIL;
        e.right = NIL;
        e.max_mem = e.key.mem;
        *root = self.insert_at(*root, h);
    }

    /// Takes entry `h` out of the tree at `root`, which holds it.
    pub(crate) fn remove(&mut self, root: &mut u32, h: u32) {
        let key = self.key(h);
        *root = self.remove_at(*root, key);
    }

    /// The first entry in key order at or after `lo` whose free memory is at
    /// least `min_mem`: with `lo = (cpu, min_mem, 0)`, the node that fits an
    /// instance of that size most tightly.
    pub(crate) fn first_fit(&self, t: u32, lo: Key, min_mem: u64) -> Option<u32> {
        if t == NIL {
            return None;
        }
        let e = &self.entries[t as usize];
        if e.max_mem < min_mem {
            return None;
        }
        if e.key < lo {
            return self.first_fit(e.right, lo, min_mem);
        }
        if let Some(found) = self.first_fit(e.left, lo, min_mem) {
            return Some(found);
        }
        if e.key.mem >= min_mem {
            return Some(t);
        }
        self.first_fit(e.right, lo, min_mem)
    }

    /// The roomiest entry: most free CPU, then most free memory, then the
    /// lowest index.
    pub(crate) fn largest(&self, t: u32) -> Option<Key> {
        if t == NIL {
            return None;
        }
        let mut last = t;
        while self.entries[last as usize].right != NIL {
            last = self.entries[last as usize].right;
        }
        let top = self.key(last);
        let lo = Key { node: 0, ..top };
        self.first_fit(t, lo, 0).map(|h| self.key(h))
    }

    fn pull(&mut self, t: u32) {
        let e = self.entries[t as usize];
        let mut max_mem = e.key.mem;
        if e.left != NIL {
            max_mem = max_mem.max(self.entries[e.left as usize].max_mem);
        }
        if e.right != NIL {
            max_mem = max_mem.max(self.entries[e.right as usize].max_mem);
        }
        self.entries[t as usize].max_mem = max_mem;
    }

    fn insert_at(&mut self, t: u32, h: u32) -> u32 {
        if t == NIL {
            return h;
        }
        let (key, prio) = {
            let e = &self.entries[h as usize];
            (e.key, e.prio)
        };
        let here = self.entries[t as usize];
        if prio > here.prio {
            let (left, right) = self.split(t, key);
            let e = &mut self.entries[h as usize];
            e.left = left;
            e.right = right;
            self.pull(h);
            return h;
        }
        if key < here.key {
            let left = self.insert_at(here.left, h);
            self.entries[t as usize].left = left;
        } else {
            let right = self.insert_at(here.right, h);
            self.entries[t as usize].right = right;
        }
        self.pull(t);
        t
    }

    /// Splits the tree at `t` into the entries below `key` and the rest.
    fn split(&mut self, t: u32, key: Key) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        let here = self.entries[t as usize];
        if here.key < key {
            let (mid, right) = self.split(here.right, key);
            self.entries[t as usize].right = mid;
            self.pull(t);
            (t, right)
        } else {
            let (left, mid) = self.split(here.left, key);
            self.entries[t as usize].left = mid;
            self.pull(t);
            (left, t)
        }
    }

    /// Joins two trees, every key of `a` below every key of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.entries[a as usize].prio > self.entries[b as usize].prio {
            let right = self.merge(self.entries[a as usize].right, b);
            self.entries[a as usize].right = right;
            self.pull(a);
            a
        } else {
            let left = self.merge(a, self.entries[b as usize].left);
            self.entries[b as usize].left = left;
            self.pull(b);
            b
        }
    }

    fn remove_at(&mut self, t: u32, key: Key) -> u32 {
        if t == NIL {
            return NIL;
        }
        let here = self.entries[t as usize];
        if key == here.key {
            return self.merge(here.left, here.right);
        }
        if key < here.key {
            let left = self.remove_at(here.left, key);
            self.entries[t as usize].left = left;
        } else {
            let right = self.remove_at(here.right, key);
            self.entries[t as usize].right = right;
        }
        self.pull(t);
        t
    }
}

/// A well-mixed priority for handle `h` (splitmix64's finalizer).
fn priority(h: u32) -> u32 {
    let mut z = u64::from(h).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a sorted vector: inserts, removals, best-fit and largest
        /// queries agree.
        #[test]
        fn agrees_with_a_sorted_vec(
            ops in prop::collection::vec((0u8..4, 0u64..50, 0u64..50, 0u32..40), 1..300),
        ) {
            let mut forest = Forest::default();
            let mut root = NIL;
            let mut model: Vec<(Key, u32)> = Vec::new();
            for (op, cpu, mem, node) in ops {
                match op {
                    0 | 1 => {
                        if model.iter().any(|(k, _)| k.node == node) {
                            continue;
                        }
                        let key = Key { cpu, mem, node };
                        let h = forest.alloc(key);
                        forest.insert(&mut root, h);
                        model.push((key, h));
                        model.sort();
                    }
                    2 => {
                        if let Some(i) = model.iter().position(|(k, _)| k.node == node) {
                            let (_, h) = model.remove(i);
                            forest.remove(&mut root, h);
                            forest.release(h);
                        }
                    }
                    _ => {
                        let lo = Key { cpu, mem, node: 0 };
                        let want = model.iter().find(|(k, _)| *k >= lo && k.mem >= mem).map(|(k, _)| *k);
                        prop_assert_eq!(forest.first_fit(root, lo, mem).map(|h| forest.key(h)), want);
                        let largest = model.iter().map(|(k, _)| *k)
                            .max_by_key(|k| (k.cpu, k.mem, std::cmp::Reverse(k.node)));
                        prop_assert_eq!(forest.largest(root), largest);
                    }
                }
            }
        }
    }
}
