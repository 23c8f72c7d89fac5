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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
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

/// The counts are atomics, so taking a request costs no lock: with a mutex
/// around them, threads coming back from requests and the one leaving the
/// epoll collided once per request, and parking_lot's spinning turned that
/// into `sched_yield` calls (7 % of a daemon's samples in the environ
/// benchmark; a yielding thread can lose its core for a whole time slice,
/// which showed as a p99 latency 2-3 ms above uWSGI's). The mutex below
/// only serves the condvar of held threads; std's, which spins briefly and
/// then sleeps, never yields the CPU.
pub struct Dispatcher {
    pub epoll: Epoll,
    /// Threads in the epoll.
    in_epoll: AtomicUsize,
    /// Threads held (waiting on `wake_held`, or about to).
    held: AtomicUsize,
    hold: Mutex<()>,
    wake_held: Condvar,
}

impl Dispatcher {
    pub fn new(epoll: Epoll) -> Dispatcher {
        Dispatcher {
            epoll,
            in_epoll: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            hold: Mutex::new(()),
            wake_held: Condvar::new(),
        }
    }

    /// The next ready token, or None after a timeout or when stopping.
    pub fn next(&self, stopping: &AtomicBool) -> Option<u64> {
        loop {
            if stopping.load(SeqCst) {
                return None;
            }
            let entered = self
                .in_epoll
                .fetch_update(SeqCst, SeqCst, |n| (n < EPOLL_WAITERS).then_some(n + 1));
            if entered.is_ok() {
                let token = self.epoll.wait_one(IDLE_WAIT_MS);
                let left = self.in_epoll.fetch_sub(1, SeqCst) - 1;
                if token.is_some() && left == 0 && self.held.load(SeqCst) > 0 {
                    // The epoll would be left unwatched: a held thread takes
                    // over. A thread that counted itself held keeps the lock
                    // until it waits, so once we had the lock it waits (or saw
                    // `in_epoll` drop and did not); notifying after releasing
                    // it spares the woken thread a wait for the lock.
                    drop(self.hold.lock());
                    self.wake_held.notify_one();
                }
                if token.is_some() {
                    return token;
                }
                continue;
            }
            // Back from a request with enough threads in the epoll: take waiting work, if any.
            if let Some(token) = self.epoll.wait_one(0) {
                return Some(token);
            }
            let hold = self.hold.lock().unwrap_or_else(|e| e.into_inner());
            // Counted before the check: a thread leaving the epoll after the
            // check sees the count and wakes us; one that left before, we see.
            self.held.fetch_add(1, SeqCst);
            if self.in_epoll.load(SeqCst) >= EPOLL_WAITERS {
                drop(self.wake_held.wait_timeout(hold, HELD_WAIT));
            }
            self.held.fetch_sub(1, SeqCst);
        }
    }

    /// Wakes held threads (the daemon is stopping).
    pub fn stop(&self) {
        let _hold = self.hold.lock().unwrap_or_else(|e| e.into_inner());
        self.wake_held.notify_all();
    }
}
