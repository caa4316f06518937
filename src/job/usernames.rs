//! A long list of usernames held compactly: their bytes one after another in one string, and
//! where each ends. A million names take about 20 MB this way instead of about 56 MB as
//! separate strings (a heap block and a 24-byte header each), which keeps a start on a large
//! Prosody domain within its memory bound (invariant 4a).

/// Usernames in the order they were added, and once sorted ([`Usernames::sorted`]) the
/// byte order of them, for pages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Usernames {
    text: String,
    ends: Vec<usize>,
    /// Indexes of the names in byte order, each name once; empty until sorted.
    order: Vec<usize>,
}

impl Usernames {
    pub fn new() -> Self {
        Usernames::default()
    }

    /// Adds a name (a sorted list is no longer sorted).
    pub fn push(&mut self, name: &str) {
        self.text.push_str(name);
        self.ends.push(self.text.len());
        self.order.clear();
    }

    /// The name added last.
    pub fn last(&self) -> Option<&str> {
        self.len().checked_sub(1).map(|index| self.get(index))
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The name at `index`, in the order they were added.
    fn get(&self, index: usize) -> &str {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.text[start..self.ends[index]]
    }

    /// The same names, with their byte order for [`Usernames::page`] (the order of a listed
    /// snapshot's pages) and each once.
    /// The order is kept beside the names, not as a sorted copy of them: half the memory.
    pub fn sorted(mut self) -> Usernames {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_unstable_by(|&a, &b| self.get(a).cmp(self.get(b)));
        order.dedup_by(|later, earlier| self.get(*later) == self.get(*earlier));
        if order.len() < self.len() {
            // Rebuilt without the repeats, so that every name is written once.
            let mut kept = vec![false; self.len()];
            for &index in &order {
                kept[index] = true;
            }
            let mut unique = Usernames::new();
            for index in (0..self.len()).filter(|&index| kept[index]) {
                unique.push(self.get(index));
            }
            return unique.sorted();
        }
        self.order = order;
        self
    }

    /// Of sorted names ([`Usernames::sorted`]): the first `limit` in byte order after
    /// `after` (after the empty name with `None`), as a job store's listed snapshot pages them.
    pub fn page(&self, after: Option<&str>, limit: usize) -> Vec<String> {
        let after = after.unwrap_or("");
        let first = partition(self.order.len(), |rank| self.get(self.order[rank]) <= after);
        self.order[first..self.order.len().min(first.saturating_add(limit))]
            .iter()
            .map(|&index| self.get(index).to_owned())
            .collect()
    }

    /// The names, in the order they were added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + Clone {
        (0..self.ends.len()).map(|index| self.get(index))
    }
}

/// The first index of `0..len` for which `before` is false, `before` being true for a prefix.
fn partition(len: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0, len);
    while low < high {
        let middle = low + (high - low) / 2;
        if before(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

impl<'a> FromIterator<&'a str> for Usernames {
    fn from_iter<I: IntoIterator<Item = &'a str>>(names: I) -> Self {
        let mut usernames = Usernames::new();
        for name in names {
            usernames.push(name);
        }
        usernames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_back_as_added() {
        let names = ["alice", "", "bob", "élodie", "alice"];
        let usernames: Usernames = names.iter().copied().collect();
        assert_eq!(usernames.len(), 5);
        assert_eq!(usernames.iter().collect::<Vec<_>>(), names);
        assert!(Usernames::new().is_empty());
        assert_eq!(usernames.last(), Some("alice"));
        assert_eq!(Usernames::new().last(), None);
        let sorted = usernames.sorted();
        // Each name once; pages in byte order.
        let mut kept: Vec<&str> = sorted.iter().collect();
        kept.sort_unstable();
        assert_eq!(kept, ["", "alice", "bob", "élodie"]);
        assert_eq!(sorted.len(), 4);
        // The empty name is never paged, as the job store's pages start after ''.
        assert_eq!(sorted.page(None, 2), ["alice", "bob"]);
        assert_eq!(sorted.page(Some(""), 2), ["alice", "bob"]);
        assert_eq!(sorted.page(Some("alicf"), 5), ["bob", "élodie"]);
        assert_eq!(sorted.page(Some("élodie"), 5), Vec::<String>::new());
        assert_eq!(sorted.page(Some("a"), 0), Vec::<String>::new());
        assert_eq!(Usernames::new().iter().count(), 0);
    }
}
