//! A vector of slots with a free list: stable `u32` ids without per-insert
//! allocation once grown.

/// Slots addressed by `u32` ids that stay valid until removed.
#[derive(Debug, Clone)]
pub struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// An empty slab with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        Slab {
            slots: Vec::with_capacity(n),
            free: Vec::with_capacity(n),
            len: 0,
        }
    }
    /// Makes room for `n` more entries without reallocating.
    pub fn reserve(&mut self, n: usize) {
        let spare = self.free.len();
        self.slots.reserve(n.saturating_sub(spare));
    }
    /// Stores `v` and returns its id.
    pub fn insert(&mut self, v: T) -> u32 {
        self.len += 1;
        if let Some(id) = self.free.pop() {
            self.slots[id as usize] = Some(v);
            id
        } else {
            self.slots.push(Some(v));
            (self.slots.len() - 1) as u32
        }
    }
    /// Removes and returns the entry `id`.
    pub fn remove(&mut self, id: u32) -> Option<T> {
        let v = self.slots.get_mut(id as usize)?.take();
        if v.is_some() {
            self.free.push(id);
            self.len -= 1;
        }
        v
    }
    #[inline]
    pub fn get(&self, id: u32) -> Option<&T> {
        self.slots.get(id as usize)?.as_ref()
    }
    #[inline]
    pub fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.slots.get_mut(id as usize)?.as_mut()
    }
    /// Number of slots (live or free): ids are below this.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Shrinks the slab to `n` slots (not below the live entries): every
    /// entry with an id at or above `n` moves to a free id below it. Returns
    /// the (old, new) id of each entry moved; nothing happens (and nothing
    /// is returned) when the slab has `n` slots or fewer.
    pub fn compact(&mut self, n: usize) -> Vec<(u32, u32)> {
        let n = n.max(self.len);
        if n >= self.slots.len() {
            return Vec::new();
        }
        // Free ids below `n`, the lowest last (taken first); there are at
        // least as many as live entries above `n` because `n >= len`.
        let mut low: Vec<u32> = (0..n)
            .rev()
            .filter(|&i| self.slots[i].is_none())
            .map(|i| i as u32)
            .collect();
        let mut moves = Vec::new();
        for old in n..self.slots.len() {
            let Some(v) = self.slots[old].take() else {
                continue;
            };
            let Some(new) = low.pop() else {
                // Cannot happen (see above); keep the entry where it was.
                self.slots[old] = Some(v);
                break;
            };
            self.slots[new as usize] = Some(v);
            moves.push((old as u32, new));
        }
        // Drop the empty tail (all of it past `n` unless the impossible
        // happened) and rebuild the free list from what is empty now.
        let keep = self
            .slots
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| i + 1)
            .max(n.min(self.slots.len()));
        self.slots.truncate(keep);
        self.slots.shrink_to_fit();
        self.free = (0..self.slots.len())
            .rev()
            .filter(|&i| self.slots[i].is_none())
            .map(|i| i as u32)
            .collect();
        moves
    }

    /// Live entries with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|v| (i as u32, v)))
    }
    /// Live entries from slot `start` on, with their ids (a listing in
    /// chunks resumes where the last one stopped).
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = (u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .skip(start)
            .filter_map(|(i, s)| s.as_ref().map(|v| (i as u32, v)))
    }
    /// Live entries with their ids, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut T)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().map(|v| (i as u32, v)))
    }
}

impl<T> std::ops::Index<u32> for Slab<T> {
    type Output = T;
    #[inline]
    fn index(&self, id: u32) -> &T {
        self.get(id)
            .expect("slab id refers to a live entry (engine invariant)")
    }
}

impl<T> std::ops::IndexMut<u32> for Slab<T> {
    #[inline]
    fn index_mut(&mut self, id: u32) -> &mut T {
        self.get_mut(id)
            .expect("slab id refers to a live entry (engine invariant)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ids_are_reused_after_remove() {
        let mut s = Slab::default();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None);
        let c = s.insert("c");
        assert_eq!(c, a);
        assert_eq!(s[b], "b");
        assert_eq!(s.len(), 2);
        assert_eq!(s.iter().count(), 2);
    }

    #[test]
    fn compact_moves_high_entries_down_and_keeps_the_free_list_true() {
        let mut s = Slab::default();
        let ids: Vec<u32> = (0..100).map(|i| s.insert(i)).collect();
        for &id in &ids {
            if id % 10 != 3 {
                s.remove(id);
            }
        }
        // Live: 3, 13, …, 93 (10 entries).
        let moves = s.compact(20);
        assert_eq!(s.capacity(), 20);
        assert_eq!(s.len(), 10);
        let mut seen: Vec<i32> = s.iter().map(|(_, &v)| v).collect();
        seen.sort();
        assert_eq!(seen, (0..10).map(|k| k * 10 + 3).collect::<Vec<_>>());
        for (old, new) in moves {
            assert!(old >= 20 && new < 20);
            assert_eq!(s[new] as u32, old);
        }
        // The free list names exactly the empty slots: ten inserts fill
        // them without growing, the eleventh grows.
        for v in 1000..1010 {
            s.insert(v);
        }
        assert_eq!(s.capacity(), 20);
        assert_eq!(s.insert(2000), 20);
        // Nothing to do when the slab is already small enough.
        assert!(s.compact(64).is_empty());
    }
}
