//! A minimal HTTP/1.1 keep-alive client over one TCP connection.
//!
//! The load generator shares two cores with the server and its database, so
//! every cycle it spends is taken from what it measures. This client does
//! only what the benchmark needs: write a request that is already
//! serialised, read the status line, `Content-Length` or chunked framing,
//! and skip the body. No header map, no allocation per request once the
//! buffer has grown.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One kept-alive connection.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// What the benchmark keeps of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body_len: usize,
}

impl Conn {
    /// Opens a connection to `addr`.
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let mut conn = Conn {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
        };
        conn.reopen().await?;
        Ok(conn)
    }

    async fn reopen(&mut self) -> io::Result<()> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        self.stream = Some(stream);
        self.buf.clear();
        Ok(())
    }

    /// Sends `request` (a complete HTTP/1.1 request) and reads the response.
    /// A connection the server closed while idle (keep-alive timeout) is
    /// reopened and the request sent once more: nothing of it was read.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Response> {
        if self.stream.is_none() {
            self.reopen().await?;
        }
        match self.exchange(request).await {
            Err(e) if is_stale(&e) => {
                self.reopen().await?;
                self.exchange(request).await
            }
            other => other,
        }
        .inspect_err(|_| self.stream = None)
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<Response> {
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(request).await?;
        let response = read_response(stream, &mut self.buf).await?;
        if response.close {
            self.stream = None;
        }
        Ok(Response {
            status: response.status,
            body_len: response.body_len,
        })
    }
}

fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

struct Parsed {
    status: u16,
    body_len: usize,
    close: bool,
}

/// Reads one response from `stream`; bytes past it stay in `buf`.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Parsed> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        fill(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| invalid("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| invalid("bad length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    buf.drain(..head_end);
    let body_len = if chunked {
        read_chunked(stream, buf).await?
    } else {
        let n = length.unwrap_or(0);
        while buf.len() < n {
            fill(stream, buf).await?;
        }
        buf.drain(..n);
        n
    };
    Ok(Parsed {
        status,
        body_len,
        close,
    })
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let line_end = loop {
            if let Some(i) = find(buf, b"\r\n") {
                break i;
            }
            fill(stream, buf).await?;
        };
        let size_text = std::str::from_utf8(&buf[..line_end]).map_err(|_| invalid("chunk"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("chunk size"))?;
        // Chunk data and its CRLF (or, for the last chunk, the final CRLF).
        let needed = line_end + 2 + size + 2;
        while buf.len() < needed {
            fill(stream, buf).await?;
        }
        buf.drain(..needed);
        total += size;
        if size == 0 {
            return Ok(total);
        }
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let len = buf.len();
    buf.resize(len + 8192, 0);
    let n = stream.read(&mut buf[len..]).await;
    let n = match n {
        Ok(n) => n,
        Err(e) => {
            buf.truncate(len);
            return Err(e);
        }
    };
    buf.truncate(len + n);
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Serialises a request with a body.
pub fn post(path: &str, content_type: &str, body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// The stats token of the collectors the benchmark starts.
pub const BENCH_TOKEN: &str = "anonstats-bench-stats-token";

/// Serialises a GET request, as a maintainer holding the stats token.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nAuthorization: Bearer {BENCH_TOKEN}\r\n\r\n")
        .into_bytes()
}

/// Like [`get`], naming `client` in `X-Forwarded-For`, which the collectors
/// the benchmark starts trust from the loopback address.
pub fn get_from(path: &str, client: std::net::Ipv4Addr) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nX-Forwarded-For: {client}\r\nAuthorization: Bearer {BENCH_TOKEN}\r\n\r\n")
        .into_bytes()
}
