//! A small HTTP/1.x server for the exporter's few fixed pages, bounded in every direction: the
//! request head (request line and headers) is at most [`MAX_HEAD`] bytes and must arrive within
//! [`HEAD_DEADLINE`]; at most [`MAX_CONNS`] connections are served at once, each on a thread of
//! its own with a small stack, so a slow client holds one slot for a few seconds and never
//! blocks the others; above the limit a connection gets a 503 at once. One request per
//! connection (`Connection: close`): scrapers open one per scrape anyway.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest request head read; a longer request line gets 414, longer headers 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head (a slow client gets 408).
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// How long writing a response may take (a client that does not read is dropped).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNS: usize = 256;
/// Each connection thread's stack: it parses a head and writes a page, nothing deep.
const STACK: usize = 256 * 1024;

/// What a page handler returns.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into() }
    }
}

/// Serves `listener` until the process ends; `page` gets the request path (no query) of every
/// GET or HEAD request.
pub fn serve(listener: TcpListener, page: Arc<dyn Fn(&str) -> Response + Send + Sync>) -> ! {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and the like: wait for connections to finish instead of spinning.
                log::warn!("cannot accept a connection: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.load(Ordering::Acquire) >= MAX_CONNS {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            respond(&stream, &Response::text(503, "too many connections; try again\n"), false);
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let (active2, page) = (Arc::clone(&active), Arc::clone(&page));
        let spawned = std::thread::Builder::new().stack_size(STACK).spawn(move || {
            handle(&stream, page.as_ref());
            active2.fetch_sub(1, Ordering::AcqRel);
        });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::AcqRel);
            log::warn!("cannot start a connection thread: {e}");
        }
    }
}

/// The request head, or the error status to answer with.
fn read_head(stream: &TcpStream) -> Result<Vec<u8>, u16> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(408);
        }
        stream.set_read_timeout(Some(left)).map_err(|_| 500u16)?;
        let n = match (&*stream).read(&mut buf) {
            Ok(0) => return Err(400),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Err(408),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(400),
        };
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find_end(&head) {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(if head.contains(&b'\n') { 431 } else { 414 });
        }
    }
}

/// Where the head ends (the blank line), if it has.
fn find_end(head: &[u8]) -> Option<usize> {
    let crlf = head.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = head.windows(2).position(|w| w == b"\n\n");
    crlf.into_iter().chain(lf).min()
}

/// A request line's method and path, or the status to answer with.
pub fn parse_request_line(head: &[u8]) -> Result<(String, String), u16> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| 400u16)?.trim_end_matches('\r');
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (words.next(), words.next(), words.next(), words.next()) else {
        return Err(400);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(400);
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Ok((method.to_string(), path.to_string()))
}

fn handle(stream: &TcpStream, page: &(dyn Fn(&str) -> Response + Send + Sync)) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let (response, head_only) = match read_head(stream).and_then(|h| parse_request_line(&h)) {
        Err(status) => (Response::text(status, format!("{}\n", reason(status))), false),
        Ok((method, _)) if method != "GET" && method != "HEAD" => (Response::text(405, "only GET and HEAD\n"), false),
        Ok((method, path)) => (page(&path), method == "HEAD"),
    };
    respond(stream, &response, head_only);
}

fn respond(stream: &TcpStream, r: &Response, head_only: bool) {
    let allow = if r.status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    let mut out = stream;
    let _ = out.write_all(head.as_bytes());
    if !head_only {
        let _ = out.write_all(r.body.as_bytes());
    }
    let _ = out.flush();
    // Half-close, so the client reads everything before the socket goes (no RST over unread input).
    let _ = stream.shutdown(Shutdown::Write);
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(parse_request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n"), Ok(("GET".into(), "/metrics".into())));
        assert_eq!(parse_request_line(b"HEAD / HTTP/1.0\n"), Ok(("HEAD".into(), "/".into())));
        for bad in [&b"GET /metrics\r\n"[..], b"GET  /metrics HTTP/1.1", b"GET metrics HTTP/1.1", b"GET / SPDY/3", b"\xff / HTTP/1.1"] {
            assert_eq!(parse_request_line(bad), Err(400), "{bad:?}");
        }
        assert_eq!(find_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"), Some(20));
        assert_eq!(find_end(b"GET / HTTP/1.0\n\n"), Some(14));
        assert_eq!(find_end(b"GET / HTTP/1.0\r\n"), None);
    }
}
