//! A small fault-injecting HTTP proxy on loopback, between a controller and one S3 node: it
//! forwards each request unchanged (so its signature still holds) and, when told, answers
//! late, answers 503, or drops the connection. Plain threads and std::net: HTTP/1.1 with
//! `Content-Length` or chunked bodies, which is what S3 clients and servers send.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What the proxy does to the requests it gets; change it at any time.
#[derive(Debug, Default)]
pub struct Faults {
    /// Every request waits this long before it is forwarded.
    pub delay_ms: AtomicU64,
    /// The next this many requests are answered `503 Service Unavailable` (S3's `SlowDown`).
    pub fail_next: AtomicU64,
    /// Every request is answered 503, until cleared.
    pub fail_all: AtomicBool,
    /// The next this many requests get their connection closed without an answer.
    pub drop_next: AtomicU64,
    /// Requests received, and those answered 503 or dropped by the proxy itself.
    pub requests: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

impl Faults {
    fn take(counter: &AtomicU64) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`: the endpoint to give the client.
    pub endpoint: String,
    pub faults: Arc<Faults>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`). The
    /// proxy lives as long as the test process.
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let faults = Arc::new(Faults::default());
        let shared = Arc::clone(&faults);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (faults, upstream) = (Arc::clone(&shared), upstream.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, &upstream, &faults);
                });
            }
        });
        FaultProxy { endpoint, faults }
    }
}

/// One client connection: its requests one after another (keep-alive), each on a fresh
/// connection to the upstream.
fn serve(client: TcpStream, upstream: &str, faults: &Faults) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    loop {
        let Some(request) = read_message(&mut reader, false)? else {
            return Ok(());
        };
        faults.requests.fetch_add(1, Ordering::SeqCst);
        let delay = faults.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if Faults::take(&faults.drop_next) {
            faults.dropped.fetch_add(1, Ordering::SeqCst);
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
        if faults.fail_all.load(Ordering::SeqCst) || Faults::take(&faults.fail_next) {
            faults.failed.fetch_add(1, Ordering::SeqCst);
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown\
                        </Code><Message>injected by the test's fault proxy</Message></Error>";
            write!(
                writer,
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            continue;
        }
        let is_head = request.starts_with(b"HEAD ");
        let mut up = TcpStream::connect(upstream)?;
        up.write_all(&request)?;
        let mut up_reader = BufReader::new(up);
        let Some(response) = read_message(&mut up_reader, is_head)? else {
            return Ok(());
        };
        writer.write_all(&response)?;
    }
}

/// One whole HTTP/1.1 message (head and body) as bytes; `None` at a clean end of stream.
/// `no_body`: the answer to a HEAD request.
fn read_message(r: &mut impl BufRead, no_body: bool) -> io::Result<Option<Vec<u8>>> {
    let mut msg = Vec::new();
    let mut content_length = None;
    let mut chunked = false;
    let mut status = None;
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return if msg.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        msg.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).to_ascii_lowercase();
        if status.is_none() {
            status = text
                .strip_prefix("http/1.1 ")
                .and_then(|s| s.get(..3))
                .and_then(|s| s.parse::<u16>().ok())
                .or(Some(0));
        }
        if let Some(v) = text.strip_prefix("content-length:") {
            content_length = v.trim().parse::<usize>().ok();
        }
        if text.starts_with("transfer-encoding:") && text.contains("chunked") {
            chunked = true;
        }
        if line == b"\r\n" {
            break;
        }
    }
    let bodiless = no_body
        || matches!(status, Some(204 | 304))
        || status.is_some_and(|s| (100..200).contains(&s));
    if bodiless {
        return Ok(Some(msg));
    }
    if chunked {
        loop {
            let mut size_line = Vec::new();
            r.read_until(b'\n', &mut size_line)?;
            msg.extend_from_slice(&size_line);
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&size_line)
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or("0"),
                16,
            )
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            msg.extend_from_slice(&chunk);
            if size == 0 {
                return Ok(Some(msg));
            }
        }
    }
    if let Some(n) = content_length {
        let mut body = vec![0; n];
        r.read_exact(&mut body)?;
        msg.extend_from_slice(&body);
    }
    Ok(Some(msg))
}
