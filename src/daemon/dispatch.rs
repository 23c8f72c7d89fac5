//! How a daemon's request threads take work (a new connection, or the next
//! request on a kept one) from the epoll they share.
//!
//! If every idle thread waited in the epoll, each request arriving while
//! another is being served would wake a thread only for it to queue for the
//! GIL: two wake-ups per request, and a crowd handing the GIL round. So
//! while some thread is serving, idle threads are *held* here instead, and a
//! serving thread takes the next waiting request itself when it is done
//! (no wake-up, no GIL hand-over). One held thread, the sentinel, looks
//! every `SENTINEL_TICK` for a request still waiting (every serving thread
//! in a long request) and takes it, so `threads=` requests still run at once.

use crate::apache::poll::Epoll;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How long a request may wait for a thread while all serving threads are busy.
const SENTINEL_TICK: Duration = Duration::from_millis(2);
/// How long a thread sleeps in one wait before it looks at the stop flag again.
const IDLE_WAIT_MS: i32 = 1000;

pub struct Dispatcher {
    pub epoll: Epoll,
    held: Mutex<Held>,
    wake_held: Condvar,
}

#[derive(Default)]
struct Held {
    /// Threads waiting on `wake_held`.
    count: usize,
    sentinel: bool,
}

impl Dispatcher {
    pub fn new(epoll: Epoll) -> Dispatcher {
        Dispatcher {
            epoll,
            held: Mutex::new(Held::default()),
            wake_held: Condvar::new(),
        }
    }

    /// The next ready token, or None after a timeout or when stopping.
    /// `serving`: threads serving a request now.
    pub fn next(&self, serving: &AtomicUsize, stopping: &AtomicBool) -> Option<u64> {
        loop {
            if stopping.load(Ordering::Acquire) {
                return None;
            }
            if serving.load(Ordering::Acquire) == 0 {
                return self.epoll.wait_one(IDLE_WAIT_MS);
            }
            if let Some(token) = self.epoll.wait_one(0) {
                return Some(token);
            }
            let mut held = self.held.lock();
            if held.sentinel {
                held.count += 1;
                self.wake_held
                    .wait_for(&mut held, Duration::from_millis(IDLE_WAIT_MS as u64));
                held.count -= 1;
                drop(held);
                // Woken because the sentinel took a request: take the next
                // one if it waits too, and pass the watch on.
                if let Some(token) = self.epoll.wait_one(0) {
                    self.wake_one_held();
                    return Some(token);
                }
                continue;
            }
            held.sentinel = true;
            drop(held);
            let token = self.watch(serving, stopping);
            let mut held = self.held.lock();
            held.sentinel = false;
            if token.is_some() {
                // Another held thread takes the watch.
                drop(held);
                self.wake_one_held();
                return token;
            }
            if held.count > 0 {
                // Nobody serving (or stopping): all go back to the epoll.
                self.wake_held.notify_all();
            }
        }
    }

    /// The sentinel: a request left waiting, or None once nobody is serving.
    fn watch(&self, serving: &AtomicUsize, stopping: &AtomicBool) -> Option<u64> {
        loop {
            std::thread::sleep(SENTINEL_TICK);
            if let Some(token) = self.epoll.wait_one(0) {
                return Some(token);
            }
            if stopping.load(Ordering::Acquire) || serving.load(Ordering::Acquire) == 0 {
                return None;
            }
        }
    }

    /// Wakes a held thread if nobody is on watch.
    fn wake_one_held(&self) {
        let held = self.held.lock();
        if !held.sentinel && held.count > 0 {
            self.wake_held.notify_one();
        }
    }

    /// Wakes held threads (the daemon is stopping).
    pub fn stop(&self) {
        self.wake_held.notify_all();
    }
}
