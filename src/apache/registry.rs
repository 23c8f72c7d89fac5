//! Plain-data tables in Apache's process pool that outlive configuration
//! generations: the daemon groups' listening sockets (so a graceful restart
//! never closes the queue clients connect to) and the daemon pids (so a new
//! generation can watch the old one's daemons while they drain). Nothing
//! here calls back into this module, which Apache unloads on every restart.

use super::process::close_fd;
use super::Server;
use crate::ffi;
use std::io;
use std::os::unix::net::UnixListener;

const MAX_LISTENERS: usize = 64;
const PATH_MAX_BYTES: usize = 108;

/// Listening sockets kept open by Apache's parent across configuration
/// generations (so a graceful restart never closes the queue clients connect
/// to). Plain data in the process pool: nothing there calls back into this
/// module, which Apache unloads on every restart.
#[repr(C)]
struct ListenerTable {
    entries: [ListenerEntry; MAX_LISTENERS],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct ListenerEntry {
    fd: i32,
    /// Generation that last used it.
    generation: i32,
    path: [u8; PATH_MAX_BYTES],
    /// Device and inode of the socket file at `path` when it was bound
    /// (fstat of the socket itself gives another inode).
    dev: u64,
    ino: u64,
}

/// A zero-initialised plain-data table of type `T` in the process pool under
/// `key`, made on first use. Such tables outlive configuration generations.
///
/// # Safety
/// `T` must be plain data valid when all-zero, and `key` used for `T` only.
unsafe fn process_table<T>(server: Server<'_>, key: &std::ffi::CStr) -> Option<&'static mut T> {
    // SAFETY (caller + here): the process pool lives as long as the Apache parent;
    // tables are only changed by the single-threaded parent and read by forked children.
    let process = (*server.raw()).process;
    if process.is_null() {
        return None;
    }
    let pool = (*process).pool;
    let mut data: *mut std::ffi::c_void = std::ptr::null_mut();
    ffi::apr_pool_userdata_get(&mut data, key.as_ptr(), pool);
    if data.is_null() {
        let size = std::mem::size_of::<T>();
        data = ffi::apr_palloc(pool, size as ffi::apr_size_t);
        std::ptr::write_bytes(data as *mut u8, 0, size);
        ffi::apr_pool_userdata_set(data, key.as_ptr(), None, pool);
    }
    Some(&mut *(data as *mut T))
}

fn listener_table(server: Server<'_>) -> Option<&'static mut ListenerTable> {
    // SAFETY: ListenerTable is plain data; fd 0 marks a free entry (0 is stdin).
    // The key names the layout: a module built with another layout gets a table of its own.
    unsafe { process_table(server, c"wsgi_rs_listeners_v2") }
}

const MAX_DAEMONS: usize = 1024;
const GROUP_NAME_BYTES: usize = 64;

/// Daemon processes Apache's parent forked and has not seen exit, across
/// generations, so a new generation can watch (and reap quietly) the
/// daemons of the old one while they finish their requests.
#[repr(C)]
struct DaemonTable {
    entries: [DaemonEntry; MAX_DAEMONS],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct DaemonEntry {
    /// 0 marks a free entry.
    pid: i32,
    generation: i32,
    group: [u8; GROUP_NAME_BYTES],
}

fn daemon_table(server: Server<'_>) -> Option<&'static mut DaemonTable> {
    // SAFETY: DaemonTable is plain data; pid 0 marks a free entry.
    unsafe { process_table(server, c"wsgi_rs_daemons") }
}

/// A daemon recorded by `record_daemon`.
pub struct DaemonRecord {
    pub pid: i32,
    pub generation: i32,
    pub group: String,
}

pub fn record_daemon(server: Server<'_>, pid: i32, generation: i32, group: &str) {
    let Some(table) = daemon_table(server) else { return };
    if let Some(slot) = table.entries.iter_mut().find(|e| e.pid == 0) {
        let mut name = [0u8; GROUP_NAME_BYTES];
        let bytes = &group.as_bytes()[..group.len().min(GROUP_NAME_BYTES - 1)];
        name[..bytes.len()].copy_from_slice(bytes);
        *slot = DaemonEntry {
            pid,
            generation,
            group: name,
        };
    }
}

pub fn forget_daemon(server: Server<'_>, pid: i32) {
    if let Some(table) = daemon_table(server) {
        table
            .entries
            .iter_mut()
            .filter(|e| e.pid == pid)
            .for_each(|e| e.pid = 0);
    }
}

pub fn recorded_daemons(server: Server<'_>) -> Vec<DaemonRecord> {
    let Some(table) = daemon_table(server) else {
        return Vec::new();
    };
    table
        .entries
        .iter()
        .filter(|e| e.pid > 0)
        .map(|e| {
            let end = e.group.iter().position(|b| *b == 0).unwrap_or(GROUP_NAME_BYTES);
            DaemonRecord {
                pid: e.pid,
                generation: e.generation,
                group: String::from_utf8_lossy(&e.group[..end]).into_owned(),
            }
        })
        .collect()
}

fn path_bytes(path: &str) -> Option<[u8; PATH_MAX_BYTES]> {
    let bytes = path.as_bytes();
    if bytes.len() >= PATH_MAX_BYTES {
        return None;
    }
    let mut out = [0u8; PATH_MAX_BYTES];
    out[..bytes.len()].copy_from_slice(bytes);
    Some(out)
}

/// The descriptor of the persistent listener at `path`, creating it with `create` if needed.
pub fn persistent_listener(
    server: Server<'_>,
    path: &str,
    generation: i32,
    create: impl FnOnce() -> io::Result<UnixListener>,
) -> io::Result<i32> {
    use std::os::fd::IntoRawFd;
    let table = listener_table(server).ok_or_else(|| io::Error::other("no process pool"))?;
    let key = path_bytes(path).ok_or_else(|| io::Error::other(format!("socket path too long: {path}")))?;
    if let Some(entry) = table.entries.iter_mut().find(|e| e.fd > 0 && e.path == key) {
        if file_identity(path) == Some((entry.dev, entry.ino)) {
            entry.generation = generation;
            return Ok(entry.fd);
        }
        // The socket file was removed or replaced: start over with a new one.
        close_fd(entry.fd);
        entry.fd = 0;
    }
    let slot = table
        .entries
        .iter_mut()
        .find(|e| e.fd <= 0)
        .ok_or_else(|| io::Error::other("too many daemon process groups"))?;
    let fd = create()?.into_raw_fd();
    let (dev, ino) = file_identity(path).unwrap_or_default();
    *slot = ListenerEntry {
        fd,
        generation,
        path: key,
        dev,
        ino,
    };
    Ok(fd)
}

/// Device and inode of the file at `path` (None if it is gone).
fn file_identity(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Closes (and unlinks) persistent listeners no group of `generation` uses.
pub fn retire_listeners(server: Server<'_>, generation: i32) {
    let Some(table) = listener_table(server) else { return };
    for entry in table
        .entries
        .iter_mut()
        .filter(|e| e.fd > 0 && e.generation != generation)
    {
        close_fd(entry.fd);
        let end = entry.path.iter().position(|b| *b == 0).unwrap_or(PATH_MAX_BYTES);
        let _ = std::fs::remove_file(String::from_utf8_lossy(&entry.path[..end]).as_ref());
        entry.fd = 0;
    }
}

/// Every persistent listener descriptor (for processes that must close them).
pub fn listener_fds(server: Server<'_>) -> Vec<i32> {
    listener_table(server).map_or_else(Vec::new, |t| {
        t.entries.iter().filter(|e| e.fd > 0).map(|e| e.fd).collect()
    })
}
