//! Daemon mode: `process-group=` requests are forwarded from Apache's
//! children to daemon processes over a Unix socket.
//!
//! * `protocol`: the pure, versioned frame protocol (unit-tested and fuzzed).

pub mod protocol;
