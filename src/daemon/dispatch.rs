//! How a daemon's request threads take work (a new connection, or the next
//! request on a kept one) from the epoll they share.
//!
//! If every idle thread waited in the epoll, each request arriving while
//! others are being served would wake yet another thread only for it to
//! queue for the GIL: a crowd handing the GIL round, and a wake-up each. So
//! at most `EPOLL_WAITERS` threads wait in the epoll (they take the requests
//! and come back for more, as a daemon with that many threads would) and
//! the other idle threads are *held* here. Held threads are needed only
//! when every thread that waited in the epoll is in a long request: then one
//! held thread, the sentinel, looks every `SENTINEL_TICK` for a request
//! still waiting and takes it, so that `threads=` requests still run at once.

use crate::apache::poll::Epoll;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Threads waiting in the epoll at most: enough to keep both sides of a
/// request (Python, and the socket I/O around it) busy on a few cores.
const EPOLL_WAITERS: usize = 3;
/// How long a request may wait for a thread while those in the epoll are all busy.
const SENTINEL_TICK: Duration = Duration::from_millis(2);
/// The sentinel stands down after this many ticks with a thread back in
/// the epoll (a moment of it under load is shorter).
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
    /// Threads in the epoll.
    in_epoll: usize,
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
    pub fn next(&self, stopping: &AtomicBool) -> Option<u64> {
        loop {
            if stopping.load(Ordering::Acquire) {
                return None;
            }
            let mut state = self.state.lock();
            if state.in_epoll < EPOLL_WAITERS {
                state.in_epoll += 1;
                drop(state);
                let token = self.epoll.wait_one(IDLE_WAIT_MS);
                self.state.lock().in_epoll -= 1;
                if let Some(token) = token {
                    return Some(self.taken(token));
                }
                continue;
            }
            drop(state);
            // Back from a request with enough threads in the epoll: take waiting work, if any.
            if let Some(token) = self.epoll.wait_one(0) {
                return Some(self.taken(token));
            }
            let mut state = self.state.lock();
            if state.in_epoll == 0 && !state.sentinel {
                state.sentinel = true;
                drop(state);
                let token = self.watch(stopping);
                self.state.lock().sentinel = false;
                if let Some(token) = token {
                    return Some(self.taken(token));
                }
            } else if state.in_epoll == EPOLL_WAITERS || state.sentinel {
                state.held += 1;
                self.wake_held.wait_for(&mut state, HELD_WAIT);
                state.held -= 1;
            }
        }
    }

    /// Work was taken: if no thread is left in the epoll and nobody watches,
    /// wake a held thread to watch (it takes waiting work first).
    fn taken(&self, token: u64) -> u64 {
        let state = self.state.lock();
        if state.in_epoll == 0 && !state.sentinel && state.held > 0 {
            self.wake_held.notify_one();
        }
        token
    }

    /// The sentinel: a request left waiting, or None once threads are back
    /// in the epoll for a while (or the daemon stops).
    fn watch(&self, stopping: &AtomicBool) -> Option<u64> {
        let mut idle_ticks = 0;
        while idle_ticks < SENTINEL_IDLE_TICKS && !stopping.load(Ordering::Acquire) {
            std::thread::sleep(SENTINEL_TICK);
            if let Some(token) = self.epoll.wait_one(0) {
                return Some(token);
            }
            idle_ticks = if self.state.lock().in_epoll > 0 {
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
