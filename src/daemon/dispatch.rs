//! How a daemon's request threads take work (a new connection, or the next
//! request on a kept one) from the epoll they share.
//!
//! If every idle thread waited in the epoll, each request arriving while
//! another is being served would wake a thread only for it to queue for the
//! GIL: two wake-ups per request, and a crowd handing the GIL round. So at
//! most one idle thread, the listener, waits in the epoll, and only while
//! nothing is being served. While requests are being served, the other idle
//! threads are *held* here, and a serving thread takes the next waiting
//! request itself when it is done (no wake-up, no GIL hand-over). One held
//! thread, the sentinel, looks every `SENTINEL_TICK` for a request still
//! waiting (every serving thread in a long request) and takes it, so that
//! `threads=` requests still run at once.

use crate::apache::poll::Epoll;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How long a request may wait for a thread while all serving threads are busy.
const SENTINEL_TICK: Duration = Duration::from_millis(2);
/// The sentinel stands down after this many ticks with nothing served (a lull
/// between requests under load is shorter).
const SENTINEL_IDLE_TICKS: u32 = 25;
/// How long a thread waits in one go before it looks at the stop flag again.
const IDLE_WAIT_MS: i32 = 1000;
const HELD_WAIT: Duration = Duration::from_secs(5);

pub struct Dispatcher {
    pub epoll: Epoll,
    state: Mutex<State>,
    wake_held: Condvar,
}

#[derive(Default)]
struct State {
    listening: bool,
    sentinel: bool,
    /// Threads waiting on `wake_held`.
    held: usize,
}

impl Dispatcher {
    pub fn new(epoll: Epoll) -> Dispatcher {
        Dispatcher {
            epoll,
            state: Mutex::new(State::default()),
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
            let busy = serving.load(Ordering::Acquire) > 0;
            if busy {
                if let Some(token) = self.epoll.wait_one(0) {
                    return Some(self.taken(token));
                }
            }
            let mut state = self.state.lock();
            if !busy && !state.listening {
                state.listening = true;
                drop(state);
                let token = self.epoll.wait_one(IDLE_WAIT_MS);
                self.state.lock().listening = false;
                if let Some(token) = token {
                    return Some(self.taken(token));
                }
            } else if busy && !state.sentinel {
                state.sentinel = true;
                drop(state);
                let token = self.watch(serving, stopping);
                self.state.lock().sentinel = false;
                if let Some(token) = token {
                    return Some(self.taken(token));
                }
            } else {
                state.held += 1;
                self.wake_held.wait_for(&mut state, HELD_WAIT);
                state.held -= 1;
            }
        }
    }

    /// Work was taken: if more may come while nobody watches, wake a held
    /// thread to take the watch (it takes waiting work first).
    fn taken(&self, token: u64) -> u64 {
        let state = self.state.lock();
        if state.held > 0 && !state.sentinel && !state.listening {
            self.wake_held.notify_one();
        }
        token
    }

    /// The sentinel: a request left waiting, or None once nothing has been
    /// served for a while (or the daemon stops).
    fn watch(&self, serving: &AtomicUsize, stopping: &AtomicBool) -> Option<u64> {
        let mut idle_ticks = 0;
        while idle_ticks < SENTINEL_IDLE_TICKS && !stopping.load(Ordering::Acquire) {
            std::thread::sleep(SENTINEL_TICK);
            if let Some(token) = self.epoll.wait_one(0) {
                return Some(token);
            }
            idle_ticks = if serving.load(Ordering::Acquire) == 0 {
                idle_ticks + 1
            } else {
                0
            };
        }
        None
    }

    /// Wakes held threads (the daemon is stopping).
    pub fn stop(&self) {
        self.wake_held.notify_all();
    }
}
