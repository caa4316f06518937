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

    /// The names, in the order they were added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + Clone {
        (0..self.ends.len()).map(|index| {
            let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
            &self.text[start..self.ends[index]]
        })
    }
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
        assert_eq!(Usernames::new().iter().count(), 0);
    }
}
