//! A list whose copies share storage: a node's child list and its slots.
//!
//! Every write to a node makes a new version of its packet, and a version
//! that changes the children (an insert, a bundle, an unbundle voiding one
//! slot) copies the list. A flat copy of n entries touches n reference
//! counts, one cache line each: inserting n children one transaction each
//! cost O(n²) (issue 12). Short lists, what nearly every node has, stay one
//! flat inline vector (a copy is a small memcpy). A long list is cut into
//! shared chunks of `CHUNK` entries: a copy clones the chunk pointers only
//! (n / `CHUNK` counts) and a write copies the one chunk it lands in.

use smallvec::SmallVec;
use std::ops::{Index, IndexMut};
use std::sync::Arc;

/// Lists up to this long stay flat.
const FLAT_MAX: usize = 64;
/// Entries per shared chunk of a long list (a power of two: index by shift).
const CHUNK: usize = 64;

type Chunk<T> = SmallVec<[T; CHUNK]>;

/// The storage of a short list: a `SmallVec` where most lists fit inline
/// (slots), a `Vec` where the list is behind its own `Arc` anyway (node
/// lists: no inline/heap branch on every access).
pub(crate) trait Flat<T>:
    Default + Clone + std::ops::Deref<Target = [T]> + std::ops::DerefMut + IntoIterator<Item = T>
{
    fn push(&mut self, x: T);
    fn remove(&mut self, i: usize) -> T;
}

impl<T: Clone> Flat<T> for Vec<T> {
    #[inline]
    fn push(&mut self, x: T) {
        Vec::push(self, x);
    }
    fn remove(&mut self, i: usize) -> T {
        Vec::remove(self, i)
    }
}

impl<T: Clone> Flat<T> for SmallVec<[T; 8]> {
    #[inline]
    fn push(&mut self, x: T) {
        SmallVec::push(self, x);
    }
    fn remove(&mut self, i: usize) -> T {
        SmallVec::remove(self, i)
    }
}

/// A list of `T`, flat when short, in shared chunks when long.
///
/// The shape is a function of the length alone: flat exactly when the
/// length is at most `FLAT_MAX`, and a long list's chunks are full but the
/// last. Two lists of one length are therefore cut at the same places,
/// which `zip_slices` relies on (a node list and its slots).
#[derive(Clone)]
pub(crate) enum Chunked<T, F = SmallVec<[T; 8]>> {
    Flat(F),
    /// Every chunk but the last holds exactly `CHUNK` entries; none is
    /// empty.
    Long {
        len: usize,
        chunks: Vec<Arc<Chunk<T>>>,
    },
}

impl<T, F: Default> Default for Chunked<T, F> {
    fn default() -> Self {
        Chunked::Flat(F::default())
    }
}

impl<T: Clone, F: Flat<T>> Chunked<T, F> {
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self {
            Chunked::Flat(v) => v.len(),
            Chunked::Long { len, .. } => *len,
        }
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        match self {
            Chunked::Flat(v) => v.get(i),
            Chunked::Long { len, chunks } => (i < *len).then(|| &chunks[i / CHUNK][i % CHUNK]),
        }
    }

    /// Entry `i`, uniquely owned: its chunk is copied if shared.
    #[inline]
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        match self {
            Chunked::Flat(v) => v.get_mut(i),
            Chunked::Long { .. } => self.long_at_mut(i),
        }
    }

    /// `get_mut` on a long list, out of line (see `position_long`).
    #[inline(never)]
    fn long_at_mut(&mut self, i: usize) -> Option<&mut T> {
        match self {
            Chunked::Long { len, chunks } if i < *len => {
                Some(&mut Arc::make_mut(&mut chunks[i / CHUNK])[i % CHUNK])
            }
            _ => None,
        }
    }

    /// Appends `x`; a flat list that outgrows `FLAT_MAX` is chunked.
    pub(crate) fn push(&mut self, x: T) {
        match self {
            Chunked::Flat(v) if v.len() < FLAT_MAX => v.push(x),
            Chunked::Flat(v) => {
                let mut long = Self::long_from(std::mem::take(v).into_iter());
                long.push(x);
                *self = long;
            }
            Chunked::Long { len, chunks } => {
                match chunks.last_mut() {
                    Some(last) if last.len() < CHUNK => Arc::make_mut(last).push(x),
                    _ => {
                        let mut c = Chunk::new();
                        c.push(x);
                        chunks.push(Arc::new(c));
                    }
                }
                *len += 1;
            }
        }
    }

    /// Removes entry `i` (linear: the entries after it move down).
    pub(crate) fn remove(&mut self, i: usize) -> T {
        if let Chunked::Flat(v) = self {
            return v.remove(i);
        }
        let mut all: Vec<T> = self.iter().cloned().collect();
        let x = all.remove(i);
        *self = all.into_iter().collect();
        x
    }

    pub(crate) fn swap(&mut self, i: usize, j: usize) {
        if let Chunked::Flat(v) = self {
            v.swap(i, j);
            return;
        }
        if i != j {
            let a = self[i].clone();
            let b = std::mem::replace(&mut self[j], a);
            self[i] = b;
        }
    }

    /// The entries from position `from` on, as the slices they are stored
    /// in: loops over them run at slice speed.
    pub(crate) fn slices_from(&self, from: usize) -> Slices<'_, T> {
        match self {
            Chunked::Flat(v) => Slices {
                first: Some(v.get(from..).unwrap_or(&[])),
                rest: [].iter(),
            },
            Chunked::Long { len, chunks } => {
                if from >= *len {
                    return Slices {
                        first: None,
                        rest: [].iter(),
                    };
                }
                Slices {
                    first: Some(&chunks[from / CHUNK][from % CHUNK..]),
                    rest: chunks[from / CHUNK + 1..].iter(),
                }
            }
        }
    }

    /// Position of the first entry from `from` on that satisfies `pred`.
    #[inline]
    pub(crate) fn position_from(&self, from: usize, pred: impl FnMut(&T) -> bool) -> Option<usize> {
        match self {
            Chunked::Flat(v) => v.get(from..)?.iter().position(pred).map(|k| from + k),
            Chunked::Long { .. } => self.position_long(from, pred),
        }
    }

    /// `position_from` on a long list, out of line: the flat case, every
    /// lookup in a small node, stays small enough to inline.
    #[inline(never)]
    fn position_long(&self, from: usize, mut pred: impl FnMut(&T) -> bool) -> Option<usize> {
        let mut at = from;
        for s in self.slices_from(from) {
            if let Some(k) = s.iter().position(&mut pred) {
                return Some(at + k);
            }
            at += s.len();
        }
        None
    }

    /// The entries in order.
    #[inline]
    pub(crate) fn iter(&self) -> Iter<'_, T> {
        self.iter_from(0)
    }

    /// The entries from position `from` on.
    pub(crate) fn iter_from(&self, from: usize) -> Iter<'_, T> {
        let Slices { first, rest } = self.slices_from(from);
        Iter {
            cur: first.unwrap_or(&[]).iter(),
            rest,
        }
    }

    /// Entry `i` of a long list; the panic is out of line, so this stays
    /// small where it is inlined.
    #[inline]
    fn long_at(&self, i: usize) -> &T {
        match self {
            Chunked::Long { len, chunks } if i < *len => &chunks[i / CHUNK][i % CHUNK],
            _ => out_of_range(i, self.len()),
        }
    }

    fn long_from(items: impl Iterator<Item = T>) -> Self {
        let mut chunks: Vec<Arc<Chunk<T>>> = Vec::new();
        let mut len = 0;
        let mut cur = Chunk::new();
        for x in items {
            cur.push(x);
            len += 1;
            if cur.len() == CHUNK {
                chunks.push(Arc::new(std::mem::take(&mut cur)));
            }
        }
        if !cur.is_empty() {
            chunks.push(Arc::new(cur));
        }
        Chunked::Long { len, chunks }
    }
}

impl<T: Clone, F: Flat<T>> FromIterator<T> for Chunked<T, F> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut flat = F::default();
        let mut items = items.into_iter();
        for x in items.by_ref() {
            flat.push(x);
            if flat.len() > FLAT_MAX {
                return Self::long_from(flat.into_iter().chain(items));
            }
        }
        Chunked::Flat(flat)
    }
}

impl<T: Clone, F: Flat<T>> Index<usize> for Chunked<T, F> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        match self {
            Chunked::Flat(v) => &v[i],
            Chunked::Long { .. } => self.long_at(i),
        }
    }
}

impl<T: Clone, F: Flat<T>> IndexMut<usize> for Chunked<T, F> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        let len = self.len();
        self.get_mut(i)
            .unwrap_or_else(|| panic!("index {i} out of a list of {len}"))
    }
}

#[cold]
#[inline(never)]
fn out_of_range(i: usize, len: usize) -> ! {
    panic!("index {i} out of a list of {len}")
}

/// The pairs of two lists of one length (a node list and its slots),
/// slice by slice: both are cut at the same places (see [`Chunked`]).
pub(crate) fn zip_slices<'a, A: Clone, B: Clone, FA: Flat<A>, FB: Flat<B>>(
    a: &'a Chunked<A, FA>,
    b: &'a Chunked<B, FB>,
) -> impl Iterator<Item = (&'a [A], &'a [B])> {
    assert_eq!(a.len(), b.len(), "zip_slices: lists of one length");
    a.slices_from(0).zip(b.slices_from(0)).map(|(x, y)| {
        debug_assert_eq!(x.len(), y.len());
        (x, y)
    })
}

/// The storage slices of a [`Chunked`] list, in order.
pub(crate) struct Slices<'a, T> {
    first: Option<&'a [T]>,
    rest: std::slice::Iter<'a, Arc<Chunk<T>>>,
}

impl<'a, T> Iterator for Slices<'a, T> {
    type Item = &'a [T];
    #[inline]
    fn next(&mut self) -> Option<&'a [T]> {
        self.first
            .take()
            .or_else(|| self.rest.next().map(|c| &c[..]))
    }
}

/// Iterator over a [`Chunked`] list.
#[derive(Clone)]
pub(crate) struct Iter<'a, T> {
    cur: std::slice::Iter<'a, T>,
    rest: std::slice::Iter<'a, Arc<Chunk<T>>>,
}

impl<T> Default for Iter<'_, T> {
    /// No entries.
    fn default() -> Self {
        Iter {
            cur: [].iter(),
            rest: [].iter(),
        }
    }
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    #[inline]
    fn next(&mut self) -> Option<&'a T> {
        loop {
            if let Some(x) = self.cur.next() {
                return Some(x);
            }
            self.cur = self.rest.next()?.iter();
        }
    }

    /// Exact: every chunk after the current one is full but the last.
    fn size_hint(&self) -> (usize, Option<usize>) {
        let rest = self.rest.as_slice();
        let n = self.cur.len()
            + rest
                .split_last()
                .map_or(0, |(last, full)| full.len() * CHUNK + last.len());
        (n, Some(n))
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn check(list: &Chunked<u32>, model: &[u32]) {
        assert_eq!(list.len(), model.len());
        assert_eq!(list.iter().copied().collect::<Vec<_>>(), model);
        for from in [
            0,
            1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            model.len(),
            model.len() + 3,
        ] {
            let tail: Vec<u32> = list.iter_from(from).copied().collect();
            assert_eq!(tail, model.get(from..).unwrap_or(&[]), "from {from}");
            assert_eq!(list.iter_from(from).len(), tail.len());
        }
        for (i, x) in model.iter().enumerate() {
            assert_eq!(list[i], *x);
            assert_eq!(list.get(i), Some(x));
        }
        assert_eq!(list.get(model.len()), None);
        let mut copy = list.clone();
        assert!(copy.get_mut(model.len()).is_none());
        assert!(copy.get_mut(model.len() + CHUNK).is_none());
        for from in [0, 3, CHUNK + 1, model.len()] {
            let flat: Vec<u32> = list.slices_from(from).flatten().copied().collect();
            assert_eq!(flat, model.get(from..).unwrap_or(&[]));
            let want = model
                .iter()
                .skip(from)
                .position(|x| x % 7 == 3)
                .map(|k| k + from);
            assert_eq!(list.position_from(from, |x| x % 7 == 3), want);
        }
        let other: Chunked<u32> = model.iter().map(|x| x + 1).collect();
        let pairs: Vec<(u32, u32)> = zip_slices(list, &other)
            .flat_map(|(a, b)| a.iter().copied().zip(b.iter().copied()))
            .collect();
        assert_eq!(pairs, model.iter().map(|&x| (x, x + 1)).collect::<Vec<_>>());
        assert_eq!(
            matches!(list, Chunked::Flat(_)),
            model.len() <= FLAT_MAX,
            "flat exactly when short (the shape is a function of the length)"
        );
        if let Chunked::Long { chunks, .. } = list {
            let (last, full) = chunks.split_last().expect("a long list has chunks");
            assert!(full.iter().all(|c| c.len() == CHUNK));
            assert!(!last.is_empty() && last.len() <= CHUNK);
        }
    }

    /// Every operation agrees with a `Vec`, across the flat → chunked
    /// boundary and at chunk edges; a copy is not changed by writes to
    /// the original.
    #[test]
    fn agrees_with_a_vec() {
        let mut list = Chunked::default();
        let mut model = Vec::new();
        for x in 0..(3 * CHUNK as u32 + 7) {
            list.push(x);
            model.push(x);
            check(&list, &model);
        }
        assert!(matches!(list, Chunked::Long { .. }));
        let copy = list.clone();
        let frozen = model.clone();
        list[5] = 1000;
        model[5] = 1000;
        list.swap(0, CHUNK + 3);
        model.swap(0, CHUNK + 3);
        assert_eq!(list.remove(CHUNK), model.remove(CHUNK));
        *list.get_mut(2 * CHUNK).unwrap() = 7;
        model[2 * CHUNK] = 7;
        check(&list, &model);
        check(&copy, &frozen);
        while model.len() > 3 {
            assert_eq!(list.remove(1), model.remove(1));
            check(&list, &model);
        }
        check(&list, &model);
        assert!(matches!(list, Chunked::Flat(_)), "short again: flat");
        for n in [0, 1, FLAT_MAX - 1, FLAT_MAX, FLAT_MAX + 1, 200] {
            let collected: Chunked<u32> = (0..n as u32).collect();
            check(&collected, &(0..n as u32).collect::<Vec<_>>());
        }
    }

    /// A copy of a long list shares its chunks, and a write copies only the
    /// chunk it lands in.
    #[test]
    fn a_copy_shares_its_chunks() {
        let list: Chunked<u32> = (0..10 * CHUNK as u32).collect();
        let mut copy = list.clone();
        copy[3 * CHUNK + 1] = 0;
        copy.push(1);
        let (Chunked::Long { chunks: a, .. }, Chunked::Long { chunks: b, .. }) = (&list, &copy)
        else {
            panic!("long lists are chunked");
        };
        let shared = a.iter().zip(b).filter(|(x, y)| Arc::ptr_eq(x, y)).count();
        assert_eq!(shared, 9, "only the written chunk was copied");
        assert_eq!(list[3 * CHUNK + 1], 3 * CHUNK as u32 + 1);
    }
}
