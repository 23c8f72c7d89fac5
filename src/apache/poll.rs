//! A thin safe wrapper over one epoll instance shared by a daemon's request
//! threads: several threads wait on it, and each ready descriptor wakes only
//! one of them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// How a descriptor is watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// Level-triggered: reported while readable (the stop pipe; the listener,
    /// which every daemon of the group watches: not EPOLLEXCLUSIVE, which
    /// would always wake the same process and put every connection on it).
    Level,
    /// Reported once, then disarmed until [`Epoll::rearm`] (a connection being
    /// handed to exactly one thread).
    OneShot,
}

pub struct Epoll(OwnedFd);

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the returned descriptor is owned from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: i32, fd: RawFd, token: u64, watch: Watch) -> io::Result<()> {
        let flags = match watch {
            Watch::Level => libc::EPOLLIN,
            Watch::OneShot => libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT,
        };
        let mut event = libc::epoll_event {
            events: flags as u32,
            u64: token,
        };
        // SAFETY: event is a valid epoll_event for the call; the kernel copies it.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Starts watching `fd`; readiness reports `token`.
    pub fn add(&self, fd: RawFd, token: u64, watch: Watch) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, watch)
    }

    /// Arms a [`Watch::OneShot`] descriptor again after it was reported.
    pub fn rearm(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, Watch::OneShot)
    }

    /// Waits up to `timeout_ms` for one ready descriptor; its token, or None
    /// on timeout or a signal.
    pub fn wait_one(&self, timeout_ms: i32) -> Option<u64> {
        let mut event = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: room for exactly one event is passed.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), &mut event, 1, timeout_ms) };
        (n == 1).then_some(event.u64)
    }
}
