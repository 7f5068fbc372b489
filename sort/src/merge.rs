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
    fn cmp(&self, a: &C, b: &C) -> Ordering {
        self(a, b)
    }
}

/// Merges sorted cursors into one order. Records the order calls equal come
/// out in the order of their cursors, so the merge is stable and its output
/// does not depend on how it is computed.
pub struct Merge<C, O> {
    cursors: Vec<C>,
    live: Vec<bool>,
    tree: Vec<usize>,
    order: O,
}

impl<C: SortedCursor, O: Order<C>> Merge<C, O> {
    /// Moves every cursor to its first record and plays the first tournament.
    ///
    /// # Errors
    /// A cursor's first record cannot be read.
    pub fn new(mut cursors: Vec<C>, order: O) -> io::Result<Self> {
        let live = cursors.iter_mut().map(SortedCursor::advance).collect::<io::Result<Vec<bool>>>()?;
        let k = cursors.len();
        let mut m = Merge { cursors, live, tree: vec![0; k.max(1)], order };
        if k > 0 {
            m.tree[0] = m.build(1);
        }
        Ok(m)
    }

    /// Whether cursor `a`'s record comes before cursor `b`'s (exhausted cursors last).
    #[inline]
    fn before(&self, a: usize, b: usize) -> bool {
        match (self.live[a], self.live[b]) {
            (true, true) => self.order.cmp(&self.cursors[a], &self.cursors[b]).then(a.cmp(&b)) == Ordering::Less,
            (x, _) => x,
        }
    }

    /// Plays the matches below `node`; returns their winner.
    fn build(&mut self, node: usize) -> usize {
        let k = self.cursors.len();
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
    #[inline]
    pub fn peek_index(&self) -> Option<usize> {
        let top = self.tree[0];
        (self.live.get(top) == Some(&true)).then_some(top)
    }

    /// The cursor holding the smallest record left.
    #[inline]
    pub fn peek(&self) -> Option<&C> {
        self.peek_index().map(|i| &self.cursors[i])
    }

    /// Moves past the smallest record and replays the matches on the way
    /// from its leaf to the root.
    ///
    /// # Errors
    /// Its cursor cannot read the next record.
    pub fn pop(&mut self) -> io::Result<()> {
        let Some(top) = self.peek_index() else {
            return Ok(());
        };
        self.live[top] = self.cursors[top].advance()?;
        let k = self.cursors.len();
        let mut winner = top;
        let mut node = (top + k) / 2;
        while node >= 1 {
            if self.before(self.tree[node], winner) {
                std::mem::swap(&mut self.tree[node], &mut winner);
            }
            node /= 2;
        }
        self.tree[0] = winner;
        Ok(())
    }

    /// The cursors, in the order they were given.
    pub fn cursors(&self) -> &[C] {
        &self.cursors
    }
}
