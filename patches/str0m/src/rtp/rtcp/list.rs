use std::fmt;
use std::ops::Index;

/// List containing max 31 items.
///
/// Held on the heap: an `Rtcp` is as large as its largest variant, and with
/// 31 items inline a sender report made every RTCP value ~1 KB, in queues
/// that keep their capacity for the life of the connection.
#[derive(Clone, PartialEq, Eq)]
pub struct ReportList<T>(Vec<T>);

const MAX: usize = 31;

impl<T> ReportList<T> {
    pub(crate) fn new() -> Self {
        ReportList::default()
    }

    /// Number of elements in the list.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn push(&mut self, v: T) {
        assert!(self.0.len() < MAX, "ReportList holds at most 31 items");
        self.0.push(v);
    }

    /// Get element at position.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.0.get(i)
    }

    /// Iterator over the elements in the list.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.into_iter()
    }

    /// Tells if the list contains zero elements.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn lists_from_iter(iterator: impl IntoIterator<Item = T>) -> Vec<Self> {
        let mut result = vec![];
        let mut current = Self::default();

        for (i, item) in iterator.into_iter().enumerate() {
            if i % MAX == 0 && i != 0 {
                result.push(current);
                current = Self::default();
            }

            current.push(item);
        }

        if !current.is_empty() {
            result.push(current);
        }

        result
    }

    pub(crate) fn is_full(&self) -> bool {
        self.0.len() == MAX
    }
}

impl<T: private::WordSized> ReportList<T> {
    pub(crate) fn append_all_possible(&mut self, other: &mut Self, mut words_left: usize) -> usize {
        // Max number we can move.
        let max = (MAX - self.0.len()).min(other.0.len());

        // The number of items, from the front of other, that fit.
        let mut n = 0;
        for item in &other.0[..max] {
            let item_size = item.word_size();
            if words_left < item_size {
                break;
            }
            words_left -= item_size;
            n += 1;
        }

        // Move them over; what remains in other shifts down.
        self.0.extend(other.0.drain(..n));

        // return number of appended items.
        n
    }
}

pub(crate) mod private {
    pub trait WordSized {
        fn word_size(&self) -> usize;
    }
}

impl<T> Index<usize> for ReportList<T> {
    type Output = T;

    fn index(&self, index: usize) -> &Self::Output {
        &self.0[index]
    }
}

impl<T> Default for ReportList<T> {
    fn default() -> Self {
        // No allocation until the first push.
        ReportList(Vec::new())
    }
}

impl<'a, T> IntoIterator for &'a ReportList<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        Iter(self.0.iter())
    }
}

impl<T> IntoIterator for ReportList<T> {
    type Item = T;
    type IntoIter = IterOwned<T>;

    fn into_iter(self) -> Self::IntoIter {
        IterOwned(self.0.into_iter())
    }
}

pub struct Iter<'a, T>(std::slice::Iter<'a, T>);

pub struct IterOwned<T>(std::vec::IntoIter<T>);

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl<T> Iterator for IterOwned<T> {
    type Item = T;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl<T> From<T> for ReportList<T> {
    fn from(t: T) -> Self {
        let mut l = ReportList::default();
        l.push(t);
        l
    }
}

impl<T: fmt::Debug> fmt::Debug for ReportList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[")?;
        let len = self.len();
        for (i, s) in self.0.iter().enumerate() {
            if i == len - 1 {
                write!(f, "{s:?}")?;
            } else {
                write!(f, "{s:?},")?;
            }
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod test {
    use super::ReportList;

    #[test]
    fn test_lists_from_iter() {
        let lists = ReportList::lists_from_iter(0..66);

        assert_eq!(lists.len(), 3);
        assert_eq!(lists[0].len(), 31);
        assert_eq!(lists[1].len(), 31);
        assert_eq!(lists[2].len(), 4);
    }

    #[test]
    fn test_max_length_iter() {
        let list = {
            let mut list = ReportList::new();
            for i in 1..=31 {
                list.push(i);
            }

            list
        };
        let sum: u64 = list.iter().sum();

        assert_eq!(sum, 496);
    }

    #[test]
    fn an_rtcp_value_stays_small_whatever_its_lists_hold() {
        // With the 31 items inline a sender report made every `Rtcp` 1,040
        // bytes, and str0m's RTCP queues keep their capacity.
        assert!(std::mem::size_of::<crate::rtp_::Rtcp>() <= 128);
        assert!(std::mem::size_of::<ReportList<crate::rtp_::ReceptionReport>>() <= 24);
    }

    #[derive(Debug, PartialEq)]
    struct Words(usize);

    impl super::private::WordSized for Words {
        fn word_size(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn append_all_possible_moves_what_fits_and_shifts_down_the_rest() {
        let mut to = ReportList::new();
        to.push(Words(1));
        let mut from = ReportList::new();
        for w in [2, 3, 4, 1] {
            from.push(Words(w));
        }
        // Room for 2 + 3 words: the 4 does not fit, and the 1 behind it
        // waits its turn (order is kept).
        assert_eq!(to.append_all_possible(&mut from, 6), 2);
        assert_eq!(to.iter().map(|w| w.0).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(from.iter().map(|w| w.0).collect::<Vec<_>>(), [4, 1]);
        assert_eq!(from[0], Words(4));
        assert_eq!(from.get(2), None);

        // Never past 31 items, whatever the words left.
        let mut full = ReportList::new();
        for _ in 0..30 {
            full.push(Words(1));
        }
        assert_eq!(full.append_all_possible(&mut from, 100), 1);
        assert!(full.is_full());
        assert_eq!(from.len(), 1);
    }

    #[test]
    fn test_max_length_into_iter() {
        let list = {
            let mut list = ReportList::new();
            for i in 1..=31 {
                list.push(i);
            }

            list
        };
        let sum: u64 = list.into_iter().sum();

        assert_eq!(sum, 496);
    }
}
