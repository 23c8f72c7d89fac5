//! A daemon process: forked by Apache's parent, it takes its identity,
//! starts Python, and serves its group's socket with `threads=` request
//! threads that share one epoll (see `dispatch`) for new connections and for
//! the next request on kept ones, until the generation ends (drain), a signal stops it, or
//! `maximum-requests=` / `inactivity-timeout=` / `request-timeout=` recycle it.

use super::channel::Channel;
use super::dispatch::Dispatcher;
use super::exchange::DaemonExchange;
use super::protocol::{
    Abort, AbortCode, DaemonSession, Frame, HelloAck, Reject, RejectCode, RequestHead, PROTOCOL_VERSION,
};
use super::supervisor::{self, DaemonPlan};
use crate::apache::poll::{Epoll, Watch};
use crate::apache::process::{self, wait_readable};
use crate::apache::registry;
use crate::apache::{self, Server};
use crate::config::PythonHome;
use crate::log::Level;
use crate::python;
use crate::wsgi::{self, EnvironInfo, Outcome, ScriptCall};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long in-flight requests get when Apache stops or restarts hard: the
/// Apache children waiting for them are ended after 1 s themselves, so a
/// response could not be delivered later anyway.
const STOP_GRACE: Duration = Duration::from_millis(1000);
/// How long a new connection may take to send HELLO.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

struct Shared {
    plan: Arc<DaemonPlan>,
    /// Apache's version for `apache.version`, read once.
    apache_version: (u32, u32, u32),
    /// This process's maximum-requests, spread over the group's processes so
    /// they do not recycle together: slot k of P recycles after
    /// N - N*k/(2P) requests (never more than N).
    request_limit: u64,
    listener: UnixListener,
    /// Set when the daemon stops taking new connections.
    stopping: AtomicBool,
    /// Connections being served.
    active: AtomicUsize,
    requests: AtomicU64,
    last_activity_ms: AtomicU64,
    /// Per request thread: when its current request began (ms since `started`), 0 if idle.
    busy_since_ms: Vec<AtomicU64>,
    started: Instant,
    /// Request threads wait here for new connections, requests on parked
    /// connections, and the stop pipe.
    dispatch: Dispatcher,
    parked: Mutex<HashMap<u64, Conn>>,
    next_token: AtomicU64,
    recycle_fd: i32,
    /// This process's place in its group (0..processes).
    slot: usize,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// How long each current request has been running.
    fn request_ages(&self) -> impl Iterator<Item = Duration> + '_ {
        let now = self.now_ms();
        self.busy_since_ms
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .filter(|&since| since > 0)
            .map(move |since| Duration::from_millis(now.saturating_sub(since)))
    }

    /// Requests running longer than request-timeout.
    fn overdue_requests(&self) -> usize {
        self.plan
            .group
            .request_timeout
            .map_or(0, |limit| self.request_ages().filter(|&age| age > limit).count())
    }
}

fn log(message: &str, level: Level) {
    apache::log_main(level, message);
}

/// glibc gives every thread that contends for malloc its own arena (up to 8
/// per core), and each keeps its freed memory: with `threads=15` that was
/// 5-7 MiB per daemon after a burst. The GIL serialises most allocation
/// anyway, so two arenas cost no measurable speed. MALLOC_ARENA_MAX in the
/// environment still wins.
const DAEMON_MALLOC_ARENAS: i32 = 2;

/// Runs the daemon; never returns.
pub fn run(main: Server<'_>, plan: &Arc<DaemonPlan>, slot: u32) -> ! {
    let group = &plan.group;
    let pid = std::process::id();
    if let Err(e) = process::enter_daemon(main, &group.title(), &plan.identity, group.home.as_deref(), group.umask) {
        log(
            &format!("WSGI daemon process {pid} of group '{}': {e}", group.name),
            Level::Error,
        );
        process::exit_now(1);
    }
    process::limit_malloc_arenas(DAEMON_MALLOC_ARENAS);
    // Keep only our own listener and generation pipe.
    process::close_fd(supervisor::generation_write_fd());
    for fd in registry::listener_fds(main) {
        if fd != plan.listener_fd {
            process::close_fd(fd);
        }
    }
    let signals = match process::signal_pipe(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1]) {
        Ok(p) => p,
        Err(e) => {
            log(
                &format!("WSGI daemon process {pid}: cannot set up signals: {e}"),
                Level::Error,
            );
            process::exit_now(1);
        }
    };
    let (program_name, home) = match group
        .python_home
        .as_deref()
        .map(|h| crate::config::check_python_home(h, crate::config::PYTHON_VERSION))
    {
        Some(Ok(PythonHome::Venv { program })) => (program, None),
        Some(Ok(PythonHome::Prefix { home })) => ("/usr/bin/python3".to_string(), Some(home)),
        Some(Err(e)) => {
            log(
                &format!("WSGI daemon process group '{}': {e}", group.name),
                Level::Error,
            );
            process::exit_now(1);
        }
        None => ("/usr/bin/python3".to_string(), None),
    };
    let mut python_path = main.config().python_path.clone();
    python_path.extend(group.python_path.iter().cloned());
    let options = python::Options {
        program_name: &program_name,
        home: home.as_deref(),
        python_path,
        server_log: apache::log_main,
    };
    if let Err(e) = python::initialize(&options) {
        log(
            &format!(
                "WSGI daemon process {pid} of group '{}': cannot initialise Python: {e}",
                group.name
            ),
            Level::Error,
        );
        process::exit_now(1);
    }
    let (wake_read, wake_write) = std::io::pipe().unwrap_or_else(|_| process::exit_now(1));
    let (recycle_read, recycle_write) = std::io::pipe().unwrap_or_else(|_| process::exit_now(1));
    let epoll = Epoll::new().unwrap_or_else(|_| process::exit_now(1));
    let shared = Arc::new(Shared {
        plan: Arc::clone(plan),
        apache_version: wsgi::parse_version(apache::server_description().strip_prefix("Apache/").unwrap_or_default()),
        request_limit: {
            let n = group.maximum_requests;
            (n - n * u64::from(slot) / (2 * u64::from(group.processes.max(1)))).max(n.min(1))
        },
        listener: process::listener_from_fd(plan.listener_fd),
        stopping: AtomicBool::new(false),
        active: AtomicUsize::new(0),
        requests: AtomicU64::new(0),
        last_activity_ms: AtomicU64::new(0),
        busy_since_ms: (0..group.threads).map(|_| AtomicU64::new(0)).collect(),
        started: Instant::now(),
        dispatch: Dispatcher::new(epoll),
        parked: Mutex::new(HashMap::new()),
        next_token: AtomicU64::new(WAKE + 1),
        recycle_fd: recycle_write.as_raw_fd(),
        slot: slot as usize,
    });
    // A replacement starts from nothing: its predecessor's connections died with it.
    shared.plan.connections.all()[shared.slot].store(0, Ordering::Relaxed);
    let watched = shared.listener.set_nonblocking(true).and_then(|()| {
        shared
            .dispatch
            .epoll
            .add(shared.listener.as_raw_fd(), LISTENER, Watch::Level)?;
        shared.dispatch.epoll.add(wake_read.as_raw_fd(), WAKE, Watch::Level)
    });
    if let Err(e) = watched {
        log(
            &format!("WSGI daemon process {pid}: cannot use the listening socket: {e}"),
            Level::Error,
        );
        process::exit_now(1);
    }
    for i in 0..group.threads {
        let shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("wsgi-rs-req-{i}"))
            .spawn(move || request_thread(&shared, i as usize));
        if let Err(e) = spawned {
            log(
                &format!("WSGI daemon process {pid}: cannot start request thread: {e}"),
                Level::Error,
            );
        }
    }
    let grace = control_loop(&shared, &signals, recycle_read.as_raw_fd());
    shared.stopping.store(true, Ordering::Release);
    drop(wake_write); // wakes every request thread
    shared.dispatch.stop();
    close_parked(&shared);
    let mut deadline = Instant::now() + grace;
    let stop_grace = STOP_GRACE.min(group.shutdown_timeout);
    // Requests over request-timeout are not waited for: they are why we stop.
    while shared.active.load(Ordering::Acquire) > shared.overdue_requests() && Instant::now() < deadline {
        // A stop signal while draining (Apache stopping after a restart began) shortens the wait.
        if wait_readable(&[signals.as_raw_fd()], 10)[0] && stop_signal(&signals) {
            deadline = deadline.min(Instant::now() + stop_grace);
        }
    }
    if shared.active.load(Ordering::Acquire) > 0 {
        log(
            &format!(
                "WSGI daemon process {pid} of group '{}': exiting with requests still running",
                group.name
            ),
            Level::Warning,
        );
        process::exit_now(0);
    }
    python::finalize(Duration::from_millis(1000));
    process::exit_now(0)
}

/// Reads one signal from the pipe: true for a stop (TERM, INT, HUP), false for USR1 (graceful).
fn stop_signal(signals: &std::io::PipeReader) -> bool {
    let mut byte = [0u8; 1];
    let _ = (&*signals).read(&mut byte);
    byte[0] as i32 != libc::SIGUSR1
}

/// Waits for a reason to stop; returns how long in-flight requests may take.
fn control_loop(shared: &Shared, signals: &std::io::PipeReader, recycle_fd: i32) -> Duration {
    let group = &shared.plan.group;
    let fds = [shared.plan.generation_fd, signals.as_raw_fd(), recycle_fd];
    loop {
        let ready = wait_readable(&fds, 1000);
        if ready[0] {
            // The generation ended (restart or parent gone): drain.
            return group.graceful_timeout;
        }
        if ready[1] {
            return if stop_signal(signals) {
                STOP_GRACE.min(group.shutdown_timeout)
            } else {
                group.graceful_timeout
            };
        }
        if ready[2] {
            return group.graceful_timeout;
        }
        if let Some(limit) = group.request_timeout {
            // A request thread stuck in the app cannot be interrupted: replace
            // the process (others finish within shutdown-timeout) so the group
            // does not end up with every thread stuck.
            let longest = shared.request_ages().max().unwrap_or_default();
            if longest > limit {
                log(
                    &format!(
                        "WSGI daemon process {} of group '{}': a request has run for {}s, over request-timeout={}s; restarting the process",
                        std::process::id(),
                        group.name,
                        longest.as_secs(),
                        limit.as_secs()
                    ),
                    Level::Error,
                );
                return group.shutdown_timeout;
            }
        }
        if let Some(idle) = group.inactivity_timeout {
            let last = Duration::from_millis(shared.last_activity_ms.load(Ordering::Relaxed));
            if shared.active.load(Ordering::Acquire) == 0 && shared.started.elapsed().saturating_sub(last) >= idle {
                log(
                    &format!(
                        "WSGI daemon process {} of group '{}' idle for {idle:?}; recycling",
                        std::process::id(),
                        group.name
                    ),
                    Level::Info,
                );
                return group.graceful_timeout;
            }
        }
    }
}

/// epoll tokens: the listener, the stop pipe, then one per connection.
const LISTENER: u64 = 0;
const WAKE: u64 = 1;

/// A connection between requests: parked in epoll until its next request
/// arrives, so idle connections kept by Apache children pin no thread.
struct Conn {
    channel: Channel<DaemonSession>,
    token: u64,
    watched: bool,
    /// This process's entry in the group's connection counts (one while this lives).
    _counted: Counted,
}

struct Counted(Arc<DaemonPlan>, usize);

impl Counted {
    fn new(plan: &Arc<DaemonPlan>, slot: usize) -> Counted {
        plan.connections.all()[slot].fetch_add(1, Ordering::Relaxed);
        Counted(Arc::clone(plan), slot)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.all()[self.1].fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long a process that holds more connections than another of its group
/// waits before taking a new one, so the other (if it has a thread free) gets it.
const FAIR_SHARE_DELAY: Duration = Duration::from_millis(2);

fn request_thread(shared: &Shared, index: usize) {
    loop {
        let token = shared.dispatch.next(&shared.stopping);
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        match token {
            None => {}
            Some(WAKE) => return,
            Some(LISTENER) => {
                if holds_more_than_others(shared) {
                    std::thread::sleep(FAIR_SHARE_DELAY);
                }
                if let Some(conn) = accept(shared) {
                    serve(shared, conn, index);
                }
            }
            Some(token) => {
                let conn = shared.parked.lock().remove(&token);
                if let Some(conn) = conn {
                    serve(shared, conn, index);
                }
            }
        }
    }
}

/// Serves requests on `conn` while they are already waiting, then parks it.
fn serve(shared: &Shared, mut conn: Conn, index: usize) {
    loop {
        shared.active.fetch_add(1, Ordering::AcqRel);
        let busy = &shared.busy_since_ms[index];
        busy.store(shared.now_ms().max(1), Ordering::Relaxed);
        let reusable = serve_request(shared, &mut conn.channel);
        busy.store(0, Ordering::Relaxed);
        shared.last_activity_ms.store(shared.now_ms(), Ordering::Relaxed);
        shared.active.fetch_sub(1, Ordering::AcqRel);
        if !reusable || shared.stopping.load(Ordering::Acquire) {
            return;
        }
        if !conn.channel.has_frame_buffered() {
            break;
        }
    }
    let fd = conn.channel.stream.as_raw_fd();
    let (token, first) = (conn.token, !conn.watched);
    conn.watched = true;
    {
        let mut parked = shared.parked.lock();
        // Checked under the lock: `close_parked` empties the table after setting it.
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        parked.insert(token, conn);
    }
    let armed = if first {
        shared.dispatch.epoll.add(fd, token, Watch::OneShot)
    } else {
        shared.dispatch.epoll.rearm(fd, token)
    };
    if armed.is_err() {
        shared.parked.lock().remove(&token);
    }
}

/// Closes every parked connection (the daemon is stopping): their clients
/// see EOF at once and send their next request elsewhere.
fn close_parked(shared: &Shared) {
    shared.parked.lock().clear();
}

fn holds_more_than_others(shared: &Shared) -> bool {
    let counts = shared.plan.connections.all();
    let mine = counts[shared.slot].load(Ordering::Relaxed);
    counts.iter().any(|c| c.load(Ordering::Relaxed) < mine)
}

/// Accepts one connection and does the handshake.
fn accept(shared: &Shared) -> Option<Conn> {
    let pid = python::current_pid();
    // The listener is non-blocking: other processes may race for one connection.
    let stream = match shared.listener.accept() {
        Ok((stream, _)) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
        Err(e) => {
            log(
                &format!("WSGI daemon process {pid}: accept failed: {e}"),
                Level::Warning,
            );
            std::thread::sleep(Duration::from_millis(50));
            return None;
        }
    };
    let plan = &shared.plan;
    stream.set_nonblocking(false).ok()?;
    match process::peer_uid(&stream) {
        Ok(uid) if uid == plan.client_uid || uid == 0 => {}
        Ok(uid) => {
            log(
                &format!("WSGI daemon process {pid}: refused a connection from uid {uid}"),
                Level::Warning,
            );
            return None;
        }
        Err(_) => return None,
    }
    // Apache children send HELLO right after connecting; do not let a silent peer hold a thread.
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).ok()?;
    let mut channel = Channel::new(stream, DaemonSession::new());
    match channel.recv() {
        Ok(Some(Frame::Hello(_))) => {}
        Err(super::protocol::ProtocolError::UnsupportedVersion(v)) => {
            let _ = channel.send(&Frame::Reject(Reject {
                code: RejectCode::UNSUPPORTED_VERSION,
                message: format!("protocol version {v} is not supported; this daemon speaks {PROTOCOL_VERSION}"),
            }));
            let _ = channel.flush();
            return None;
        }
        _ => return None,
    }
    channel.stream.set_read_timeout(None).ok()?;
    let ack = HelloAck {
        pid,
        generation: plan.generation as u64,
    };
    channel.send(&Frame::HelloAck(ack)).ok()?;
    Some(Conn {
        channel,
        token: shared.next_token.fetch_add(1, Ordering::Relaxed),
        watched: false,
        _counted: Counted::new(&shared.plan, shared.slot),
    })
}

/// Reads the next REQUEST_HEAD and serves it; true if the connection can carry another.
fn serve_request(shared: &Shared, channel: &mut Channel<DaemonSession>) -> bool {
    let plan = &shared.plan;
    let pid = python::current_pid();
    let head = match channel.recv() {
        Ok(Some(Frame::RequestHead(head))) => head,
        _ => return false,
    };
    // Count the request when it is accepted, so maximum-requests holds with many threads.
    let number = shared.requests.fetch_add(1, Ordering::AcqRel) + 1;
    let limit = shared.request_limit;
    if shared.stopping.load(Ordering::Acquire) || (limit > 0 && number > limit) {
        let _ = channel.send(&Frame::Reject(Reject {
            code: RejectCode::SHUTTING_DOWN,
            message: "daemon process is stopping".into(),
        }));
        let _ = channel.flush();
        return false;
    }
    // READY: from here on the app may see the request, so the client must
    // not send it elsewhere. A request with a body sends it at once; a
    // bodiless one lets it travel with the response head, saving the client
    // a wake-up. Until then the client retries only a connection reset (the
    // request was not read); a clean close after the head was read is final.
    let ready = channel.send(&Frame::Ready);
    let ready = if head.content_length == Some(0) {
        ready
    } else {
        ready.and_then(|()| channel.flush())
    };
    if ready.is_err() {
        return false;
    }
    if limit > 0 && number == limit {
        // The last one: take no more connections (other threads too) and
        // let the control loop drain once it is served.
        shared.stopping.store(true, Ordering::Release);
    }
    let reusable = handle_request(shared, channel, &head);
    if limit > 0 && number == limit {
        log(
            &format!(
                "WSGI daemon process {pid} of group '{}' reached maximum-requests={limit}; recycling",
                plan.group.name
            ),
            Level::Info,
        );
        process::close_fd(shared.recycle_fd);
    }
    reusable
}

fn extra<'h>(head: &'h RequestHead, key: &[u8]) -> Option<&'h [u8]> {
    head.extra.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
}

/// Runs one request; true if the connection can carry another.
fn handle_request(shared: &Shared, channel: &mut Channel<DaemonSession>, head: &RequestHead) -> bool {
    let group = &shared.plan.group;
    // Borrowed unless not UTF-8 (Apache sends its own strings).
    let script = String::from_utf8_lossy(&head.script);
    let application_group = String::from_utf8_lossy(&head.application_group);
    let request_handler = String::from_utf8_lossy(extra(head, b"request_handler").unwrap_or_default());
    let module_name = match extra(head, b"module_name") {
        Some(name) if !name.is_empty() => String::from_utf8_lossy(name),
        _ => format!("_mod_wsgi_{}", apache::md5_hex(&script)).into(),
    };
    let call = ScriptCall {
        info: EnvironInfo {
            process_group: &group.name,
            application_group: &application_group,
            handler_script: &script,
            request_handler: &request_handler,
            script_reloading: extra(head, b"script_reloading") != Some(b"0"),
            multithread: group.threads > 1,
            multiprocess: group.processes > 1 || group.processes_given,
            apache_version: shared.apache_version,
        },
        module_name: &module_name,
    };
    let exchange = DaemonExchange::new(channel, head);
    match wsgi::run_script(&call, &exchange) {
        Outcome::Responded => exchange.finish(),
        Outcome::Failed => {
            exchange.fail(Abort {
                code: AbortCode::APP_ERROR,
                message: "the application failed before the response started".into(),
            });
            false
        }
    }
}
