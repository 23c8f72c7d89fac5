//! How a daemon's request threads take work (a new connection, or the next
//! request on a kept one) from the epoll they share.
//!
//! If every idle thread waited in the epoll, each request arriving while
//! others are being served would wake yet another thread only for it to
//! queue for the GIL: a crowd handing the GIL round, and a wake-up each. So
//! at most `EPOLL_WAITERS` threads wait in the epoll (they take the requests
//! and come back for more, as a daemon with that many threads would) and
//! the other idle threads are *held* here. When the last thread in the epoll
//! takes a request, a held thread takes its place, so that `threads=`
//! requests still run at once when they are long.

use crate::apache::poll::Epoll;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Threads waiting in the epoll at most. One: a thread back from a request
/// takes the next one itself if it is waiting (its caches are warm and it
/// need not wait for the GIL), and a second thread is woken only when the
/// first has taken a request. With 2 or 3 waiters, a burst of requests woke
/// that many threads at once to queue for the GIL: on 2 cores, 1 instead of
/// 3 served ~10 % more environ requests per second in the benchmark.
const EPOLL_WAITERS: usize = 1;
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
                let mut state = self.state.lock();
                state.in_epoll -= 1;
                if token.is_some() && state.in_epoll == 0 && state.held > 0 {
                    // The epoll would be left unwatched: a held thread takes over.
                    self.wake_held.notify_one();
                }
                if token.is_some() {
                    return token;
                }
                continue;
            }
            drop(state);
            // Back from a request with enough threads in the epoll: take waiting work, if any.
            if let Some(token) = self.epoll.wait_one(0) {
                return Some(token);
            }
            let mut state = self.state.lock();
            if state.in_epoll == EPOLL_WAITERS {
                state.held += 1;
                self.wake_held.wait_for(&mut state, HELD_WAIT);
                state.held -= 1;
            }
        }
    }

    /// Wakes held threads (the daemon is stopping).
    pub fn stop(&self) {
        self.wake_held.notify_all();
    }
}
