//! k-way merge of sorted cursors with a loser tree: one comparison per
//! level (log2 k) for each record, half of what a binary heap needs.
//!
//! ```text
//! cursor 0 ─┐
//! cursor 1 ─┼─ matches (order, then cursor index) ──► tree[0]: the winner ──peek/pop──► caller
//! cursor k ─┘        tree[1..k]: the loser of each match; leaf i sits at k + i
//! ```

use std::cmp::Ordering;
use std::io;

/// A sorted stream of records read one at a time; the current record is
/// read through the cursor's own accessors.
pub trait SortedCursor {
    /// Moves to the next record; false at the end (and not called again).
    ///
    /// # Errors
    /// The record cannot be read.
    fn advance(&mut self) -> io::Result<bool>;
}

/// The order of two cursors' current records. Closures
/// `Fn(&C, &C) -> Ordering` are orders.
pub trait Order<C> {
    /// Compares the current records of `a` and `b`.
    fn cmp(&self, a: &C, b: &C) -> Ordering;
}

impl<C, F: Fn(&C, &C) -> Ordering> Order<C> for F {
    #[inline(always)]
    fn cmp(&self, a: &C, b: &C) -> Ordering {
        self(a, b)
    }
}

/// Merges sorted cursors into one order. Records the order calls equal come
/// out in the order of their cursors, so the merge is stable and its output
/// does not depend on how it is computed.
pub struct Merge<C, O> {
    leaves: Vec<Leaf<C>>,
    /// tree[0]: the winner; tree[1..k]: the loser of each match.
    tree: Vec<usize>,
    order: O,
}

/// A cursor and whether it still holds a record.
struct Leaf<C> {
    cursor: C,
    live: bool,
}

impl<C: SortedCursor, O: Order<C>> Merge<C, O> {
    /// Moves every cursor to its first record and plays the first tournament.
    ///
    /// # Errors
    /// A cursor's first record cannot be read.
    pub fn new(cursors: Vec<C>, order: O) -> io::Result<Self> {
        let mut leaves = Vec::with_capacity(cursors.len());
        for mut cursor in cursors {
            let live = cursor.advance()?;
            leaves.push(Leaf { cursor, live });
        }
        let k = leaves.len();
        let mut m = Merge { leaves, tree: vec![0; k.max(1)], order };
        if k > 0 {
            m.tree[0] = m.build(1);
        }
        Ok(m)
    }

    /// Whether cursor `a`'s record comes before cursor `b`'s (exhausted cursors last).
    #[inline(always)]
    fn before(&self, a: usize, b: usize) -> bool {
        let (x, y) = (&self.leaves[a], &self.leaves[b]);
        if x.live && y.live {
            match self.order.cmp(&x.cursor, &y.cursor) {
                Ordering::Less => true,
                Ordering::Greater => false,
                Ordering::Equal => a < b,
            }
        } else {
            x.live
        }
    }

    /// Plays the matches below `node`; returns their winner.
    fn build(&mut self, node: usize) -> usize {
        let k = self.leaves.len();
        if node >= k {
            return node - k;
        }
        let l = self.build(2 * node);
        let r = self.build(2 * node + 1);
        if self.before(l, r) {
            self.tree[node] = r;
            l
        } else {
            self.tree[node] = l;
            r
        }
    }

    /// Index of the cursor holding the smallest record left.
    #[inline(always)]
    pub fn peek_index(&self) -> Option<usize> {
        let top = self.tree[0];
        match self.leaves.get(top) {
            Some(leaf) if leaf.live => Some(top),
            _ => None,
        }
    }

    /// The cursor holding the smallest record left.
    #[inline(always)]
    pub fn peek(&self) -> Option<&C> {
        match self.leaves.get(self.tree[0]) {
            Some(leaf) if leaf.live => Some(&leaf.cursor),
            _ => None,
        }
    }

    /// Moves past the smallest record and replays the matches on the way
    /// from its leaf (at k + its index) to the root.
    ///
    /// # Errors
    /// Its cursor cannot read the next record.
    pub fn pop(&mut self) -> io::Result<()> {
        let top = self.tree[0];
        match self.leaves.get_mut(top) {
            Some(leaf) if leaf.live => leaf.live = leaf.cursor.advance()?,
            _ => return Ok(()),
        }
        let mut winner = top;
        let mut node = (top + self.leaves.len()) / 2;
        while node >= 1 {
            let loser = self.tree[node];
            if self.before(loser, winner) {
                self.tree[node] = winner;
                winner = loser;
            }
            node /= 2;
        }
        self.tree[0] = winner;
        Ok(())
    }

    /// Cursor `i`, in the order they were given.
    pub fn cursor(&self, i: usize) -> &C {
        &self.leaves[i].cursor
    }
}
