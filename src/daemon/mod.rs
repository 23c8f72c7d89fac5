//! Daemon mode: `process-group=` requests are forwarded from Apache's
//! children to daemon processes over a Unix socket.
//!
//! * `protocol`: the pure, versioned frame protocol (unit-tested and fuzzed).
//! * `supervisor`: Apache's parent forks and replaces daemons, keeps sockets.
//! * `server`, `dispatch`, `exchange`: a daemon process, how its threads
//!   take work, and its side of one request.
//! * `client`: an Apache child forwarding a request.

#[cfg(not(test))]
mod channel;
#[cfg(not(test))]
pub mod client;
#[cfg(not(test))]
mod dispatch;
#[cfg(not(test))]
mod exchange;
pub mod protocol;
#[cfg(not(test))]
mod server;
#[cfg(not(test))]
pub mod supervisor;
