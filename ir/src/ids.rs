//! Typed ids and the arenas they index. Ids are never renumbered inside a pipeline.

use std::fmt;
use std::marker::PhantomData;

/// An id that indexes an [`Arena`].
pub trait EntityId: Copy + Eq + Ord + std::hash::Hash + fmt::Debug {
    /// Makes the id of the `index`-th entry.
    fn new(index: usize) -> Self;
    /// The position of the entry in its arena.
    fn index(self) -> usize;
}

macro_rules! entity_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u32);

        impl EntityId for $name {
            fn new(index: usize) -> Self {
                Self(u32::try_from(index).expect("arena holds more than u32::MAX entries"))
            }
            fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

entity_id!(
    /// A node (one operator application) of a [`crate::Graph`]; printed `n3`.
    NodeId,
    "n"
);
entity_id!(
    /// A value (tensor) of a [`crate::Graph`]; printed `v7`.
    ValueId,
    "v"
);
entity_id!(
    /// A symbolic dimension such as `batch` or `seq`; printed `s0`.
    SymId,
    "s"
);

/// A growable vector indexed by a typed id.
#[derive(Clone, Debug, PartialEq)]
pub struct Arena<K, V> {
    items: Vec<V>,
    _key: PhantomData<K>,
}

impl<K: EntityId, V> Default for Arena<K, V> {
    fn default() -> Self {
        Self { items: Vec::new(), _key: PhantomData }
    }
}

impl<K: EntityId, V> Arena<K, V> {
    /// Appends an entry and returns its id.
    pub fn push(&mut self, value: V) -> K {
        let id = K::new(self.items.len());
        self.items.push(value);
        id
    }
    /// The entry behind `id`, if the id belongs to this arena.
    pub fn get(&self, id: K) -> Option<&V> {
        self.items.get(id.index())
    }
    /// Mutable access to the entry behind `id`.
    pub fn get_mut(&mut self, id: K) -> Option<&mut V> {
        self.items.get_mut(id.index())
    }
    /// Number of entries ever pushed.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// Ids and entries in id order.
    pub fn iter(&self) -> impl Iterator<Item = (K, &V)> {
        self.items.iter().enumerate().map(|(i, v)| (K::new(i), v))
    }
    /// All ids in order.
    pub fn ids(&self) -> impl Iterator<Item = K> {
        (0..self.items.len()).map(K::new)
    }
}

impl<K: EntityId, V> std::ops::Index<K> for Arena<K, V> {
    type Output = V;
    fn index(&self, id: K) -> &V {
        &self.items[id.index()]
    }
}

impl<K: EntityId, V> std::ops::IndexMut<K> for Arena<K, V> {
    fn index_mut(&mut self, id: K) -> &mut V {
        &mut self.items[id.index()]
    }
}
