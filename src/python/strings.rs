//! Objects made once per interpreter and reused by every request: environ
//! keys and constant values. An environ then creates (and hashes) only the
//! per-request values; a cached `str` also keeps its hash.

use super::object::{Gil, Obj, PyResult};
use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// Distinct strings kept per interpreter; beyond this (e.g. a client sending
/// random header names) new ones are made per request and not kept.
const MAX_STRINGS: usize = 1024;

#[derive(Default)]
pub struct Cache {
    strings: Mutex<Strings>,
    /// Named constants (tuples and the like).
    constants: Mutex<HashMap<&'static str, usize>>,
}

#[derive(Default)]
struct Strings {
    /// latin-1 bytes → owned `str` (address of a reference the cache holds).
    by_bytes: HashMap<Box<[u8]>, usize, QuickHash>,
    /// The keys of the last environ, in order. Requests through the same
    /// configuration bring the same keys in the same order, so the n-th key
    /// is first compared with the n-th of the last environ: no hash, no probe.
    last_order: Vec<(Box<[u8]>, usize)>,
}

impl Strings {
    /// The cached `str` for `bytes` (made and kept if new and there is
    /// room), and whether the cache holds it.
    fn get<'py>(&mut self, gil: Gil<'py>, bytes: &[u8]) -> PyResult<(Obj<'py>, bool)> {
        if let Some(&ptr) = self.by_bytes.get(bytes) {
            // SAFETY: attached; the cache owns a reference for the interpreter's lifetime.
            return Ok((unsafe { Obj::from_borrowed(gil, ptr as *mut _) }, true));
        }
        let s = gil.str_latin1(bytes)?;
        if self.by_bytes.len() >= MAX_STRINGS {
            return Ok((s, false));
        }
        // Interned, a key is the very object of the application's literals
        // (`environ["HTTP_HOST"]` then matches by identity, no compare) and
        // an attribute name is served by CPython's type attribute cache.
        let s = gil.intern(s)?;
        self.by_bytes.insert(bytes.into(), s.clone().into_ptr() as usize);
        Ok((s, true))
    }
}

/// The cache locked for building one environ (see `Cache::environ_keys`).
pub struct EnvironKeys<'c> {
    strings: MutexGuard<'c, Strings>,
    next: usize,
}

impl EnvironKeys<'_> {
    /// The `str` for `bytes` decoded as latin-1, for the next key (or
    /// constant value) of the environ in order.
    pub fn str<'py>(&mut self, gil: Gil<'py>, bytes: &[u8]) -> PyResult<Obj<'py>> {
        let n = self.next;
        self.next += 1;
        if let Some((last, ptr)) = self.strings.last_order.get(n) {
            if **last == *bytes {
                // SAFETY: attached; `last_order` holds only strings the cache owns.
                return Ok(unsafe { Obj::from_borrowed(gil, *ptr as *mut _) });
            }
        }
        let (s, kept) = self.strings.get(gil, bytes)?;
        if kept {
            let entry = (bytes.into(), s.as_ptr() as usize);
            let order = &mut self.strings.last_order;
            if n < order.len() {
                order[n] = entry;
            } else if n == order.len() && n < MAX_STRINGS {
                order.push(entry);
            }
        }
        Ok(s)
    }
}

impl Cache {
    /// The `str` for `bytes` decoded as latin-1.
    pub fn str<'py>(&self, gil: Gil<'py>, bytes: &[u8]) -> PyResult<Obj<'py>> {
        self.strings.lock().get(gil, bytes).map(|(s, _)| s)
    }

    /// The cache, locked once for the many look-ups of one environ (only
    /// the thread holding the GIL builds one, so nobody waits).
    pub fn environ_keys(&self) -> EnvironKeys<'_> {
        EnvironKeys {
            strings: self.strings.lock(),
            next: 0,
        }
    }

    /// The constant called `name`, made by `make` the first time.
    pub fn constant<'py>(
        &self,
        gil: Gil<'py>,
        name: &'static str,
        make: impl FnOnce() -> PyResult<Obj<'py>>,
    ) -> PyResult<Obj<'py>> {
        let mut constants = self.constants.lock();
        if let Some(&ptr) = constants.get(name) {
            // SAFETY: attached; the cache owns a reference for the interpreter's lifetime.
            return Ok(unsafe { Obj::from_borrowed(gil, ptr as *mut _) });
        }
        let obj = make()?;
        constants.insert(name, obj.clone().into_ptr() as usize);
        Ok(obj)
    }
}

/// A multiply-rotate hash over 8-byte words (the idea of rustc's FxHash),
/// seeded per cache: SipHash was a visible part of building an environ, and
/// the keys are short. The table is bounded (MAX_STRINGS), so crafted
/// collisions can cost a client no more than a scan of it.
#[derive(Clone)]
struct QuickHash(u64);

impl Default for QuickHash {
    fn default() -> Self {
        QuickHash(std::collections::hash_map::RandomState::new().hash_one(0u8))
    }
}

impl BuildHasher for QuickHash {
    type Hasher = QuickHasher;
    fn build_hasher(&self) -> QuickHasher {
        QuickHasher(self.0)
    }
}

struct QuickHasher(u64);

impl QuickHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for QuickHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(tail));
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::QuickHash;
    use std::hash::BuildHasher;

    #[test]
    fn quick_hash_tells_short_keys_apart() {
        let h = QuickHash::default();
        let keys: [&[u8]; 6] = [b"", b"A", b"HTTP_HOST", b"HTTP_HOST\0", b"HTTP_HOSTS", b"12345678"];
        let hashes: Vec<u64> = keys.iter().map(|k| h.hash_one(k)).collect();
        for (i, a) in hashes.iter().enumerate() {
            assert_eq!(*a, h.hash_one(keys[i]));
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
