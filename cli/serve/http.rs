//! The HTTP/1.1 listener of `serve`, bounded so that no local user can use up its threads or
//! descriptors (docs/http.md, "Limits").
//!
//! tiny_http, used before, gave each connection a thread of its own with no cap and no
//! timeout, and stopped accepting for good at the open-file limit; it offers no hook to bound
//! either, so the loop is ours (a few hundred lines of std): one accepting thread, one reader
//! thread per connection still sending its request — at most [`MAX_PENDING`], the oldest
//! closed to make room, each given [`REQUEST_TIMEOUT`] for its whole request — and a bounded
//! queue of complete requests for the workers. A request that arrives whole is therefore
//! served however many idle connections there are. Every answer closes its connection.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Connections still sending their request at once (fewer when the open-file limit is low:
/// a quarter of it); a new one closes the oldest.
pub const MAX_PENDING: usize = 256;
/// Complete requests waiting for a free worker; beyond it, `503` at once.
pub const MAX_QUEUED: usize = 64;
/// Time a client has from connecting to having sent its whole request (line, headers, body).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time an answer may take to be taken by the client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing connection is read on for what the client still sends (bounded).
const LINGER: Duration = Duration::from_secs(1);
/// Request line and headers together.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// A body over the limit is read (and dropped) up to this much before `413` is answered, so
/// that the client gets the answer rather than a reset connection.
const MAX_DRAINED_BYTES: u64 = 1024 * 1024;

/// A request received whole, before it is joined to its connection.
struct Parts {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Parts {
    fn with(self, stream: TcpStream) -> Request {
        Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            stream,
        }
    }
}

/// A request received whole.
pub struct Request {
    pub method: String,
    /// The request target (path and query) as sent.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    stream: TcpStream,
}

/// An answer: status and body (a 401 also asks for a bearer token).
pub struct Reply {
    pub status: u16,
    pub body: Body,
}

/// A JSON value, or bytes made before (the read routes' cached answers, `/metrics`' text).
pub enum Body {
    Json(Value),
    Bytes {
        content_type: &'static str,
        bytes: Arc<Vec<u8>>,
    },
}

impl From<Value> for Body {
    fn from(v: Value) -> Self {
        Body::Json(v)
    }
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sends `reply` and closes the connection; a client that went away gets nothing.
    pub fn respond(mut self, reply: Reply) {
        write_reply(&mut self.stream, &reply);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}

fn write_reply(stream: &mut TcpStream, reply: &Reply) {
    let json;
    let (content_type, body): (&str, &[u8]) = match &reply.body {
        Body::Json(v) => {
            json = v.to_string();
            ("application/json", json.as_bytes())
        }
        Body::Bytes {
            content_type,
            bytes,
        } => (content_type, bytes),
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reason(reply.status),
        body.len()
    );
    if reply.status == 401 {
        head.push_str("WWW-Authenticate: Bearer\r\n");
    }
    head.push_str("\r\n");
    // One write: a head and a body sent apart would wait for the client's delayed ACK
    // (Nagle), some 40 ms per answer.
    let mut whole = head.into_bytes();
    whole.extend_from_slice(body);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.write_all(&whole).and_then(|()| stream.flush());
    let _ = stream.shutdown(Shutdown::Write);
    // Closing with unread bytes would reset the connection, and the client could lose the
    // answer (a refused head or body it was still sending): read on a little, bounded.
    let _ = stream.set_read_timeout(Some(LINGER));
    let _ = std::io::copy(
        &mut (&*stream).take(MAX_DRAINED_BYTES),
        &mut std::io::sink(),
    );
}

/// Connections whose request is still coming, oldest first, by descriptor, so that the
/// accepting thread can close one: a `shutdown` wakes its reader, which then ends. A reader
/// takes its entry out (under the lock) before its descriptor can be closed, so a descriptor
/// listed here is always still that connection's.
#[derive(Default)]
struct Pending {
    next_id: u64,
    open: VecDeque<(u64, RawFd)>,
}

fn shutdown_fd(fd: RawFd) {
    // SAFETY: `fd` is an open socket (see `Pending`); shutdown neither closes nor frees it.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// [`MAX_PENDING`], or a quarter of the open-file limit when that is lower, so that pending
/// connections never use up the descriptors (the soft limit is first raised to the hard one).
fn pending_cap() -> usize {
    // SAFETY: plain calls with a valid struct.
    let soft = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return MAX_PENDING;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    usize::try_from(soft / 4).map_or(MAX_PENDING, |q| q.clamp(8, MAX_PENDING))
}

/// Accepts connections on `listener` until `stop()` says so, and hands complete requests to
/// `queue`. `problem(status, kind, message)` makes the body of the listener's own refusals.
pub fn accept_loop(
    listener: TcpListener,
    queue: SyncSender<Request>,
    stop: impl Fn() -> bool,
    problem: fn(u16, &'static str, String) -> Value,
) {
    let cap = pending_cap();
    let pending = Arc::new(Mutex::new(Pending::default()));
    let readers = Arc::new(Readers::default());
    while !stop() {
        match listener.accept() {
            Ok((stream, _)) => {
                if stop() {
                    break;
                }
                let id = {
                    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                    while p.open.len() >= cap {
                        if let Some((_, old)) = p.open.pop_front() {
                            shutdown_fd(old);
                        }
                    }
                    p.next_id += 1;
                    let id = p.next_id;
                    p.open.push_back((id, stream.as_raw_fd()));
                    id
                };
                // An evicted reader ends only once it is scheduled: wait for a thread to end
                // rather than start more than `cap` of them (a flood would pile them up).
                let slot = Readers::take(&readers, cap, &stop);
                let reader = {
                    let pending = Arc::clone(&pending);
                    let queue = queue.clone();
                    move || {
                        let _slot = slot;
                        let mut stream = stream;
                        let received = read_request(&mut stream, problem);
                        // Out of the list before the descriptor can be closed (`Pending`).
                        forget(&pending, id);
                        if let Some(parts) = received {
                            hand_over(parts.with(stream), &queue, problem);
                        }
                    }
                };
                let spawned = std::thread::Builder::new()
                    .name("aps-http-read".into())
                    .stack_size(64 * 1024)
                    .spawn(reader);
                if spawned.is_err() {
                    // No thread to be had: the connection was closed with the closure; only
                    // this thread evicts, so its descriptor cannot have been reused meanwhile.
                    forget(&pending, id);
                }
            }
            // The accept queue had a connection that was reset meanwhile, or a signal came.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM and the like are temporary: free a
                // descriptor, wait a little, and keep listening (never stop for good).
                let out_of_files = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                if out_of_files {
                    evict_oldest(&pending);
                }
                crate::common::errln!("accept: {e}; still listening");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    // Stopping: whatever is still being sent will not be served.
    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
    for (_, fd) in p.open.drain(..) {
        shutdown_fd(fd);
    }
}

fn evict_oldest(pending: &Mutex<Pending>) {
    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, old)) = p.open.pop_front() {
        shutdown_fd(old);
    }
}

/// Reader threads alive, evicted ones included, so that their number stays under the cap.
#[derive(Default)]
struct Readers {
    alive: Mutex<usize>,
    ended: Condvar,
}

/// One reader thread's place among [`Readers`], given back when the thread ends (or when its
/// closure is dropped because no thread could be started).
struct ReaderSlot(Arc<Readers>);

impl Readers {
    fn take(readers: &Arc<Readers>, cap: usize, stop: &impl Fn() -> bool) -> ReaderSlot {
        let mut alive = readers.alive.lock().unwrap_or_else(|e| e.into_inner());
        while *alive >= cap && !stop() {
            alive = readers
                .ended
                .wait_timeout(alive, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *alive += 1;
        ReaderSlot(Arc::clone(readers))
    }
}

impl Drop for ReaderSlot {
    fn drop(&mut self) {
        let mut alive = self.0.alive.lock().unwrap_or_else(|e| e.into_inner());
        *alive = alive.saturating_sub(1);
        self.0.ended.notify_one();
    }
}

fn forget(pending: &Mutex<Pending>, id: u64) {
    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
    p.open.retain(|(i, _)| *i != id);
}

fn hand_over(
    request: Request,
    queue: &SyncSender<Request>,
    problem: fn(u16, &'static str, String) -> Value,
) {
    match queue.try_send(request) {
        Ok(()) => {}
        Err(TrySendError::Full(request) | TrySendError::Disconnected(request)) => {
            request.respond(Reply {
                status: 503,
                body: Body::Json(problem(
                    503,
                    "busy",
                    format!(
                        "every worker is busy and {MAX_QUEUED} requests are waiting already; try again later"
                    ),
                )),
            });
        }
    }
}

/// The next request of `queue`, shared by the workers; `None` once the listener has stopped.
pub fn next(queue: &Mutex<Receiver<Request>>) -> Option<Request> {
    queue.lock().unwrap_or_else(|e| e.into_inner()).recv().ok()
}

/// Reads one request within [`REQUEST_TIMEOUT`]. `None` when the client went away, was too
/// slow or was closed to make room; a malformed request is answered here.
fn read_request(
    stream: &mut TcpStream,
    problem: fn(u16, &'static str, String) -> Value,
) -> Option<Parts> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let refuse = |stream: &mut TcpStream, status: u16, message: String| {
        let kind = if status == 413 {
            "body-too-large"
        } else {
            "bad-request"
        };
        write_reply(
            stream,
            &Reply {
                status,
                body: Body::Json(problem(status, kind, message)),
            },
        );
    };
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = find_head_end(&buf) {
            break at;
        }
        if buf.len() >= MAX_HEAD_BYTES {
            refuse(
                stream,
                431,
                format!("the request line and headers exceed {MAX_HEAD_BYTES} bytes"),
            );
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = read_by(stream, &mut chunk, deadline)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = match std::str::from_utf8(&buf[..head_end]) {
        Ok(h) => h,
        Err(_) => {
            refuse(stream, 400, "the request head is not UTF-8".into());
            return None;
        }
    };
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(url), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        refuse(stream, 400, format!("malformed request line {line:?}"));
        return None;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !url.starts_with('/') {
        refuse(stream, 400, format!("malformed request line {line:?}"));
        return None;
    }
    let mut headers = Vec::new();
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            refuse(stream, 400, format!("malformed header line {l:?}"));
            return None;
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    if header("Transfer-Encoding").is_some() {
        refuse(
            stream,
            411,
            "send the body with a Content-Length (chunked bodies are not taken)".into(),
        );
        return None;
    }
    let length: u64 = match header("Content-Length").map(str::parse) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            refuse(stream, 400, "Content-Length is not a number".into());
            return None;
        }
    };
    if header("Expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        && length <= crate::serve::MAX_BODY_BYTES
    {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let mut body = buf[head_end + 4..].to_vec();
    if length > crate::serve::MAX_BODY_BYTES {
        // Read what was sent (up to a bound) so that the client reads the answer.
        let mut left = length
            .min(MAX_DRAINED_BYTES)
            .saturating_sub(body.len() as u64);
        let mut chunk = [0u8; 8192];
        while left > 0 {
            let Some(n) = read_by(stream, &mut chunk, deadline) else {
                break;
            };
            left = left.saturating_sub(n as u64);
        }
        refuse(
            stream,
            413,
            format!(
                "request bodies are at most {} bytes",
                crate::serve::MAX_BODY_BYTES
            ),
        );
        return None;
    }
    while (body.len() as u64) < length {
        let mut chunk = [0u8; 8192];
        let n = read_by(stream, &mut chunk, deadline)?;
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length as usize);
    Some(Parts {
        method: method.to_owned(),
        url: url.to_owned(),
        headers,
        body,
    })
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// One read before `deadline`; `None` on end of stream, error or time up.
fn read_by(stream: &mut TcpStream, into: &mut [u8], deadline: Instant) -> Option<usize> {
    let left = deadline.checked_duration_since(Instant::now())?;
    if left.is_zero() {
        return None;
    }
    stream.set_read_timeout(Some(left)).ok()?;
    match stream.read(into) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// Wakes the accepting thread (blocked in `accept`) so that it sees it must stop.
pub fn wake(addr: SocketAddr) {
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
}
