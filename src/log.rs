//! Log levels shared by every layer (mapped to APLOG_* in `apache::log`).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
    Debug,
}

/// Where layers without a request at hand (Python's sys.stdout/stderr,
/// interpreter set-up) send their lines: the server's error log.
pub type ServerLog = fn(Level, &str);
