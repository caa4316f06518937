//! A long list of usernames held compactly: their bytes one after another in one string, and
//! where each ends. A million names take about 20 MB this way instead of about 56 MB as
//! separate strings (a heap block and a 24-byte header each), which keeps a start on a large
//! Prosody domain within its memory bound (invariant 4a).

/// Usernames in the order they were added.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Usernames {
    text: String,
    ends: Vec<usize>,
}

impl Usernames {
    pub fn new() -> Self {
        Usernames::default()
    }

    pub fn push(&mut self, name: &str) {
        self.text.push_str(name);
        self.ends.push(self.text.len());
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

    /// The same names in byte order, each once: the order of a listed snapshot's pages.
    pub fn sorted(self) -> Usernames {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_unstable_by(|&a, &b| self.get(a).cmp(self.get(b)));
        order.dedup_by(|a, b| self.get(*a) == self.get(*b));
        let mut sorted = Usernames {
            text: String::with_capacity(self.text.len()),
            ends: Vec::with_capacity(order.len()),
        };
        for index in order {
            sorted.push(self.get(index));
        }
        sorted
    }

    /// Of names in byte order ([`Usernames::sorted`]): the first `limit` after `after` (after
    /// the empty name with `None`), as a job store's listed snapshot pages them.
    pub fn page(&self, after: Option<&str>, limit: usize) -> Vec<String> {
        let after = after.unwrap_or("");
        let first = partition(self.len(), |index| self.get(index) <= after);
        (first..self.len().min(first.saturating_add(limit)))
            .map(|index| self.get(index).to_owned())
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
        let sorted = usernames.sorted();
        assert_eq!(
            sorted.iter().collect::<Vec<_>>(),
            ["", "alice", "bob", "élodie"]
        );
        // The empty name is never paged, as the job store's pages start after ''.
        assert_eq!(sorted.page(None, 2), ["alice", "bob"]);
        assert_eq!(sorted.page(Some(""), 2), ["alice", "bob"]);
        assert_eq!(sorted.page(Some("alicf"), 5), ["bob", "élodie"]);
        assert_eq!(sorted.page(Some("élodie"), 5), Vec::<String>::new());
        assert_eq!(sorted.page(Some("a"), 0), Vec::<String>::new());
        assert_eq!(Usernames::new().iter().count(), 0);
    }
}
