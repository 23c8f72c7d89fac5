//! The environ of a REQUEST_HEAD as one encoded block (`bytes key, bytes
//! value` repeated) instead of two vectors per item: building and decoding
//! it allocates once, and the daemon reads items as slices.

use super::frame::Pair;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct PairBlock {
    data: Vec<u8>,
    count: u32,
}

impl PairBlock {
    pub fn new() -> PairBlock {
        PairBlock::default()
    }

    /// Room for `bytes` of encoded items before the first reallocation.
    pub fn with_capacity(bytes: usize) -> PairBlock {
        PairBlock {
            data: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// Appends one item (each part shorter than 4 GiB).
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        for part in [key, value] {
            self.data.extend_from_slice(&(part.len() as u32).to_be_bytes());
            self.data.extend_from_slice(part);
        }
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The items in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let mut rest = self.data.as_slice();
        let mut part = move || {
            let (len, tail) = rest.split_at(4);
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let (part, tail) = tail.split_at(len);
            rest = tail;
            part
        };
        (0..self.count).map(move |_| (part(), part()))
    }

    /// The encoded items, without the count.
    pub(super) fn encoded(&self) -> &[u8] {
        &self.data
    }

    /// Adopts `count` items already checked to be well formed in `data`.
    pub(super) fn from_encoded(data: &[u8], count: u32) -> PairBlock {
        PairBlock {
            data: data.to_vec(),
            count,
        }
    }
}

impl From<Vec<Pair>> for PairBlock {
    fn from(pairs: Vec<Pair>) -> PairBlock {
        let mut block = PairBlock::new();
        for (k, v) in &pairs {
            block.push(k, v);
        }
        block
    }
}

impl std::fmt::Debug for PairBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_back_in_order() {
        let mut block = PairBlock::new();
        block.push(b"A", b"");
        block.push(b"", b"\x00\xff");
        block.push(b"KEY", b"value");
        let items: Vec<_> = block.iter().collect();
        assert_eq!(
            items,
            vec![
                (&b"A"[..], &b""[..]),
                (&b""[..], &b"\x00\xff"[..]),
                (&b"KEY"[..], &b"value"[..])
            ]
        );
        assert_eq!(block.len(), 3);
        assert_eq!(
            block,
            PairBlock::from(vec![
                (b"A".to_vec(), vec![]),
                (vec![], vec![0, 0xff]),
                (b"KEY".to_vec(), b"value".to_vec())
            ])
        );
    }
}
