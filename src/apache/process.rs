//! Process plumbing for daemon mode: Apache's user, forking, child
//! supervision through Apache's "other child" registry, listening sockets,
//! signals, and what a daemon does right after fork.

use super::server::cstr_or_empty;
use super::{Pool, Server};
use crate::ffi;
use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

/// A user to run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

/// Apache's `User`/`Group` (what its children run as).
pub fn apache_identity() -> Identity {
    // SAFETY: ap_unixd_config is filled by mod_unixd while reading the configuration.
    unsafe {
        let c = std::ptr::addr_of!(ffi::ap_unixd_config);
        Identity {
            user: cstr_or_empty((*c).user_name),
            uid: (*c).user_id,
            gid: (*c).group_id,
        }
    }
}

/// Resolves a user name (or `#uid`) to its uid and primary gid.
pub fn resolve_user(name: &str) -> Result<Identity, String> {
    let c = CString::new(name.trim_start_matches('#')).map_err(|_| format!("invalid user name {name:?}"))?;
    // SAFETY: getpwnam/getpwuid return NULL or a pointer to static storage we read at once
    // (the parent is single-threaded while reading its configuration).
    unsafe {
        let pw = match name.strip_prefix('#').map(str::parse::<u32>) {
            Some(Ok(uid)) => libc::getpwuid(uid),
            Some(Err(_)) => return Err(format!("invalid user id {name:?}")),
            None => libc::getpwnam(c.as_ptr()),
        };
        if pw.is_null() {
            return Err(format!("unknown user '{name}'"));
        }
        Ok(Identity {
            user: cstr_or_empty((*pw).pw_name),
            uid: (*pw).pw_uid,
            gid: (*pw).pw_gid,
        })
    }
}

/// Resolves a group name (or `#gid`).
pub fn resolve_group(name: &str) -> Result<u32, String> {
    if let Some(id) = name.strip_prefix('#') {
        return id.parse().map_err(|_| format!("invalid group id {name:?}"));
    }
    let c = CString::new(name).map_err(|_| format!("invalid group name {name:?}"))?;
    // SAFETY: as in resolve_user.
    unsafe {
        let gr = libc::getgrnam(c.as_ptr());
        if gr.is_null() {
            return Err(format!("unknown group '{name}'"));
        }
        Ok((*gr).gr_gid)
    }
}

/// `fork()`: `Ok(None)` in the child, `Ok(Some(pid))` in the parent.
pub fn fork() -> io::Result<Option<i32>> {
    // SAFETY: Apache's parent is single-threaded when it configures modules.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// Ends the calling process at once (a daemon never returns into Apache).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// True once Apache's parent is exiting (after `-k stop`), not for restarts.
pub fn apache_is_exiting() -> bool {
    // SAFETY: always callable.
    unsafe { ffi::ap_state_query(ffi::AP_SQ_MAIN_STATE as i32) == ffi::AP_SQ_MS_EXITING as i32 }
}

/// While the configuration is torn down for a restart: true for `-k graceful`,
/// false for `-k restart` (the MPM records which in its retained data).
pub fn restart_is_graceful() -> bool {
    // SAFETY: the unix MPMs' retained data lives in the parent for its whole life.
    unsafe {
        let retained = ffi::ap_unixd_mpm_get_retained_data();
        !retained.is_null() && (*retained).was_graceful != 0
    }
}

/// Sends SIGTERM to our own children (not yet reaped, so their pids are still theirs).
pub fn terminate_children(pids: &[i32]) {
    for &pid in pids {
        // SAFETY: signalling our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

pub fn mpm_is_stopping() -> bool {
    let mut state = 0;
    // SAFETY: writes one int.
    unsafe { ffi::ap_mpm_query(ffi::AP_MPMQ_MPM_STATE as i32, &mut state) };
    state == ffi::AP_MPMQ_STOPPING as i32
}

/// Called in the parent when a watched child died: (main server, pool, pid, status).
pub type OnDeath = Box<dyn Fn(Server<'_>, Pool<'_>, i32, i32)>;

struct Watched {
    process: ffi::apr_proc_t,
    server: *mut ffi::server_rec,
    pool: *mut ffi::apr_pool_t,
    on_death: OnDeath,
}

unsafe extern "C" fn child_maintenance(reason: i32, data: *mut std::ffi::c_void, status: i32) {
    // SAFETY: data is the pool-owned Watched registered below, alive until its
    // registration is removed (the pool cleanup removes the registration first).
    let watched = &*(data as *const Watched);
    if reason == ffi::APR_OC_REASON_DEATH as i32 || reason == ffi::APR_OC_REASON_LOST as i32 {
        ffi::apr_proc_other_child_unregister(data);
        let (server, pool) = (Server::from_raw(watched.server), Pool::from_raw(watched.pool));
        let pid = watched.process.pid;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (watched.on_death)(server, pool, pid, status)
        }));
    }
}

/// Has Apache's parent tell us when child `pid` dies during the life of
/// `pool` (one configuration generation): the MPM reaps unknown children and
/// passes them to registered "other child" watchers; `on_death` runs then.
/// (Not `ap_register_extra_mpm_process`: prefork's bookkeeping for those
/// indexes its scoreboard with -1, and event logs AH00546 for them.)
pub fn watch_child(server: Server<'_>, pool: Pool<'_>, pid: i32, on_death: OnDeath) {
    // SAFETY: apr_proc_t is plain data.
    let mut process: ffi::apr_proc_t = unsafe { std::mem::zeroed() };
    process.pid = pid;
    let watched = pool.own(Watched {
        process,
        server: server.raw(),
        pool: pool.raw(),
        on_death,
    });
    // SAFETY: `watched` lives in `pool`, whose cleanup also unregisters it (the
    // registration's cleanup is added after, so it runs first).
    unsafe {
        ffi::apr_proc_other_child_register(
            &mut (*watched).process,
            Some(child_maintenance),
            watched as *mut std::ffi::c_void,
            std::ptr::null_mut(),
            pool.raw(),
        );
    }
}

/// A Unix listening socket at `path` with `backlog`, connectable only by `owner`
/// (mode 0600, chowned), replacing any stale file there.
pub fn bind_listener(path: &str, backlog: u32, owner: &Identity) -> io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let c_path = CString::new(path).map_err(|_| io::Error::other("socket path contains NUL"))?;
    // SAFETY: plain socket calls on a descriptor we own; sockaddr_un is filled within bounds
    // (the caller checked the path length).
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let owned = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = c_path.as_bytes_with_nul();
        if bytes.len() > addr.sun_path.len() {
            return Err(io::Error::other(format!(
                "socket path too long ({} bytes): {path}",
                bytes.len() - 1
            )));
        }
        for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        let old_mask = libc::umask(0o177);
        let bound = libc::bind(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as u32,
        );
        libc::umask(old_mask);
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::chown(c_path.as_ptr(), owner.uid, owner.gid) < 0 || libc::listen(fd, backlog as i32) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(UnixListener::from(owned))
    }
}

/// The uid of the process at the other end of a Unix socket.
pub fn peer_uid(stream: &std::os::unix::net::UnixStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    unsafe {
        let mut cred: libc::ucred = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        if libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut _,
            &mut len,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(cred.uid)
    }
}

/// Closes a descriptor this process inherited but must not keep.
pub fn close_fd(fd: i32) {
    // SAFETY: closing an inherited descriptor we do not otherwise use.
    unsafe { libc::close(fd) };
}

/// Adopts an inherited descriptor as a listener.
pub fn listener_from_fd(fd: i32) -> UnixListener {
    // SAFETY: the fd is a listening Unix socket created by `bind_listener` in the parent.
    unsafe { UnixListener::from_raw_fd(fd) }
}

/// What a daemon does first after fork: leave Apache's sockets and signal
/// set-up behind, die with the parent, take its identity and title.
pub fn enter_daemon(
    server: Server<'_>,
    title: &str,
    identity: &Identity,
    home: Option<&str>,
    umask: Option<u32>,
) -> Result<(), String> {
    // SAFETY: we are the only thread of a freshly forked child; these calls
    // only affect this process.
    unsafe {
        ffi::ap_close_listeners();
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        for sig in [
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGINT,
            libc::SIGCHLD,
            libc::SIGALRM,
        ] {
            libc::signal(sig, libc::SIG_DFL);
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        set_title(server, title);
        if libc::getuid() == 0 {
            let user = CString::new(identity.user.as_str()).unwrap_or_default();
            if libc::setgid(identity.gid) < 0
                || libc::initgroups(user.as_ptr(), identity.gid) < 0
                || libc::setuid(identity.uid) < 0
            {
                return Err(format!(
                    "cannot switch to user '{}' (uid {}, gid {}): {}",
                    identity.user,
                    identity.uid,
                    identity.gid,
                    io::Error::last_os_error()
                ));
            }
        }
        if let Some(mask) = umask {
            libc::umask(mask);
        }
    }
    let dir = home.unwrap_or("/");
    std::env::set_current_dir(dir).map_err(|e| format!("cannot change directory to '{dir}': {e}"))
}

/// Shows `title` in `ps`: rewrites the argv area in place and sets the thread name.
///
/// # Safety
/// Must run before other threads exist; argv strings are contiguous in memory.
unsafe fn set_title(server: Server<'_>, title: &str) {
    let process = (*server.raw()).process;
    if process.is_null() || (*process).argv.is_null() || (*process).argc < 1 {
        return;
    }
    // The command line's strings lie in one block that the environment's
    // strings follow. Apache's argv array may list fewer of them (the MPM drops
    // `-k start`), so the block's end comes from where the environment begins.
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    let argv = (*process).argv as *mut *mut libc::c_char;
    let start = *argv;
    let mut end = start.add(libc::strlen(start));
    let env_start = if environ.is_null() { std::ptr::null() } else { *environ };
    if !env_start.is_null() && env_start as usize > end as usize && (env_start as usize) < start as usize + 4096 {
        end = (env_start as *mut libc::c_char).sub(1);
    }
    let space = end.offset_from(start) as usize;
    let bytes = title.as_bytes();
    let n = bytes.len().min(space);
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), start as *mut u8, n);
    std::ptr::write_bytes(start.add(n), 0, space - n + 1);
    let short = CString::new(&bytes[..bytes.len().min(15)]).unwrap_or_default();
    libc::prctl(libc::PR_SET_NAME, short.as_ptr());
}

/// Where daemon sockets live by default: under Apache's runtime directory.
pub fn runtime_dir_path(pool: Pool<'_>, name: &str) -> String {
    let c = CString::new(name).unwrap_or_default();
    // SAFETY: returns a pool string (or NULL on error).
    unsafe { cstr_or_empty(ffi::ap_runtime_dir_relative(pool.raw(), c.as_ptr())) }
}

/// Waits until one of `fds` is readable (or hung up) or `timeout_ms` passes
/// (-1: no limit); returns which are ready.
pub fn wait_readable(fds: &[i32], timeout_ms: i32) -> Vec<bool> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: polls is a valid array of pollfd for its length.
    let n = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, timeout_ms) };
    if n <= 0 {
        return vec![false; fds.len()];
    }
    polls.iter().map(|p| p.revents != 0).collect()
}

/// `pread` on a descriptor the caller holds open.
pub fn read_at(fd: i32, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    // SAFETY: buf is writable for its length; fd stays open for the call.
    let n = unsafe {
        libc::pread(
            fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            offset as libc::off_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

static SIGNAL_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn note_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    let byte = sig as u8;
    // SAFETY: write(2) is async-signal-safe; a full pipe just drops the byte.
    unsafe { libc::write(fd, &byte as *const u8 as *const libc::c_void, 1) };
}

/// Routes `signals` into a pipe (self-pipe trick) and returns its read end;
/// each signal arrives as one byte holding its number. Daemon processes only.
pub fn signal_pipe(signals: &[i32]) -> io::Result<std::io::PipeReader> {
    let (reader, writer) = std::io::pipe()?;
    use std::os::fd::{AsRawFd, IntoRawFd};
    let fd = writer.into_raw_fd();
    // SAFETY: fd is the pipe's write end, kept open for the process's life;
    // sigaction installs an async-signal-safe handler.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        SIGNAL_PIPE.store(fd, std::sync::atomic::Ordering::Relaxed);
        for &sig in signals {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = note_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
    let _ = reader.as_raw_fd();
    Ok(reader)
}

/// At shutdown: SIGTERM the given children (our own, not yet reaped, so
/// their pids cannot have been reused), wait up to `budget` for them, then
/// SIGKILL what is left. Returns the pids that had to be killed.
pub fn stop_children(pids: &[i32], budget: std::time::Duration) -> Vec<i32> {
    let mut left: Vec<i32> = pids.to_vec();
    // SAFETY: signalling and reaping our own unreaped children.
    unsafe {
        for &pid in &left {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + budget;
        loop {
            left.retain(|&pid| {
                let mut status = 0;
                let r = libc::waitpid(pid, &mut status, libc::WNOHANG);
                r == 0
            });
            if left.is_empty() || std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for &pid in &left {
            libc::kill(pid, libc::SIGKILL);
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
    }
    left
}

/// The configuration generation Apache is in.
pub fn generation() -> i32 {
    let mut generation = 0;
    // SAFETY: writes one int.
    unsafe { ffi::ap_mpm_query(ffi::AP_MPMQ_GENERATION as i32, &mut generation) };
    generation
}

/// True in the preflight pass of startup, when nothing should be started.
pub fn is_preflight() -> bool {
    // SAFETY: always callable.
    unsafe { ffi::ap_state_query(ffi::AP_SQ_MAIN_STATE as i32) == ffi::AP_SQ_MS_CREATE_PRE_CONFIG as i32 }
}

/// The request/connection timeout (`Timeout`) of a server.
pub fn server_timeout(server: Server<'_>) -> std::time::Duration {
    // SAFETY: plain field read; apr_interval_time_t is microseconds.
    std::time::Duration::from_micros(unsafe { (*server.raw()).timeout }.max(0) as u64)
}

/// Counters in memory shared with every process forked after they were made
/// (an anonymous `MAP_SHARED` mapping): e.g. how many connections each
/// daemon of a group holds, so they can share new ones fairly.
pub struct SharedCounters {
    ptr: *mut std::sync::atomic::AtomicU32,
    len: usize,
}

// SAFETY: the mapping holds only atomics and lives until drop.
unsafe impl Send for SharedCounters {}
// SAFETY: as above; all access goes through the atomics.
unsafe impl Sync for SharedCounters {}

impl SharedCounters {
    pub fn new(len: usize) -> io::Result<SharedCounters> {
        let len = len.max(1);
        let bytes = len * std::mem::size_of::<std::sync::atomic::AtomicU32>();
        // SAFETY: a fresh anonymous mapping (zero-filled), owned by the returned value.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedCounters {
            ptr: ptr as *mut std::sync::atomic::AtomicU32,
            len,
        })
    }

    pub fn all(&self) -> &[std::sync::atomic::AtomicU32] {
        // SAFETY: the mapping holds `len` zero-initialised AtomicU32 until drop.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for SharedCounters {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new` (other processes keep theirs).
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len * 4) };
    }
}

/// True while `sig` is blocked for this thread, as it is inside that signal's
/// handler (prefork ends a child from its SIGTERM handler).
pub fn signal_blocked(sig: i32) -> bool {
    // SAFETY: reads this thread's mask into a local set; no other effect.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set) == 0 && libc::sigismember(&set, sig) == 1
    }
}

/// Caps glibc's malloc arenas for this process, unless MALLOC_ARENA_MAX is set.
pub fn limit_malloc_arenas(max: i32) {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only adjusts allocator tuning; called before other threads exist.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, max) };
    }
}

/// A prefork child has accepted a connection and not yet cleared its pool.
static PREFORK_CONNECTION_OPEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// This process is a prefork child (set once in child_init: the MPM is asked
/// once per child, not per connection).
static IN_PREFORK_CHILD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Called in child_init: remembers whether this child runs under prefork.
pub fn note_child_mpm() {
    IN_PREFORK_CHILD.store(!super::mpm_is_threaded(), std::sync::atomic::Ordering::Relaxed);
}

/// Called first thing for every new connection: under prefork, marks the
/// child busy until the connection's pool is cleared. Closes the gap in
/// which the scoreboard still says SERVER_READY although Apache is already
/// building the connection (and allocating).
pub fn note_prefork_connection(ptrans: &Pool<'_>) {
    if IN_PREFORK_CHILD.load(std::sync::atomic::Ordering::Relaxed) {
        PREFORK_CONNECTION_OPEN.store(true, std::sync::atomic::Ordering::SeqCst);
        ptrans.on_cleanup(|| PREFORK_CONNECTION_OPEN.store(false, std::sync::atomic::Ordering::SeqCst));
    }
}

/// Blocks the signals prefork ends a child with, for the rest of the process's
/// life: the parent's SIGTERM may follow its SIGHUP, and a second entry into
/// the exit path would interrupt the first.
pub fn block_stop_signals() {
    // SAFETY: builds a local set and changes only this thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// A prefork child's only worker is waiting for a connection (scoreboard
/// SERVER_READY, no connection open), i.e. not in the middle of Apache's or
/// Python's code. The scoreboard turns READY only after the previous
/// connection's pool was cleared, so the two together leave no busy gap.
pub fn prefork_child_is_idle() -> bool {
    if PREFORK_CONNECTION_OPEN.load(std::sync::atomic::Ordering::SeqCst) {
        return false;
    }
    let mut me: ffi::apr_proc_t = ffi::apr_proc_t {
        pid: std::process::id() as i32,
        in_: std::ptr::null_mut(),
        out: std::ptr::null_mut(),
        err: std::ptr::null_mut(),
    };
    // SAFETY: scoreboard reads for this process's own slot; no allocation.
    unsafe {
        let slot = ffi::ap_find_child_by_pid(&mut me);
        if slot < 0 {
            return false;
        }
        let worker = ffi::ap_get_scoreboard_worker_from_indexes(slot, 0);
        !worker.is_null() && u32::from((*worker).status) == ffi::SERVER_READY
    }
}
