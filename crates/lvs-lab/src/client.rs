//! Tiny clients for the lab: an HTTP/1.0 GET and a UDP request/reply.
//! They use the calling thread's network namespace, so run them inside
//! [`crate::Lab::run_in`] (or [`crate::in_netns`]).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::LabError;

/// Largest response [`http_get`] accepts.
const MAX_RESPONSE: usize = 1 << 20;

fn remaining(deadline: Instant, what: &str) -> Result<Duration, LabError> {
    let now = Instant::now();
    if now >= deadline {
        Err(LabError::Timeout(what.to_string()))
    } else {
        Ok(deadline - now)
    }
}

fn io_or_timeout(e: std::io::Error, what: &str) -> LabError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => LabError::Timeout(what.to_string()),
        _ => LabError::io(what, e),
    }
}

/// `GET /` over HTTP/1.0 to `addr`; returns the body of a 2xx response.
/// The whole exchange is bounded by `timeout`.
pub fn http_get(addr: SocketAddrV4, timeout: Duration) -> Result<String, LabError> {
    http_get_path(addr, "/", timeout)
}

/// `GET path` over HTTP/1.0 to `addr`; returns the body of a 2xx response
/// (non-2xx statuses are [`LabError::Http`]). Bounded by `timeout`.
pub fn http_get_path(
    addr: SocketAddrV4,
    path: &str,
    timeout: Duration,
) -> Result<String, LabError> {
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_whitespace() || b < 0x20) {
        return Err(LabError::InvalidArgument(format!("bad HTTP path {path:?}")));
    }
    let deadline = Instant::now() + timeout;
    let what = format!("HTTP GET http://{addr}{path}");
    let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(addr), timeout)
        .map_err(|e| io_or_timeout(e, &format!("{what}: connect")))?;
    stream
        .set_write_timeout(Some(remaining(deadline, &what)?))
        .map_err(|e| LabError::io(&what, e))?;
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: lvs-lab\r\nConnection: close\r\n\r\n",
        addr.ip()
    );
    stream
        .write_all(req.as_bytes())
        .map_err(|e| io_or_timeout(e, &format!("{what}: send")))?;
    let mut resp = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        stream
            .set_read_timeout(Some(remaining(deadline, &what)?))
            .map_err(|e| LabError::io(&what, e))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                resp.extend_from_slice(&chunk[..n]);
                if resp.len() > MAX_RESPONSE {
                    return Err(LabError::Http(format!("{what}: response too large")));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_or_timeout(e, &format!("{what}: receive"))),
        }
    }
    parse_response(&resp).map_err(|m| LabError::Http(format!("{what}: {m}")))
}

fn parse_response(resp: &[u8]) -> Result<String, String> {
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("incomplete response ({} bytes)", resp.len()))?;
    let head = String::from_utf8_lossy(&resp[..split]);
    let mut body = &resp[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let code: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    if !version.starts_with("HTTP/") {
        return Err(format!("bad status line {status_line:?}"));
    }
    if !(200..300).contains(&code) {
        return Err(format!("status {status_line:?}"));
    }
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                let len: usize = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad Content-Length {v:?}"))?;
                if body.len() < len {
                    return Err(format!("truncated body: {} of {len} bytes", body.len()));
                }
                body = &body[..len];
            }
        }
    }
    Ok(String::from_utf8_lossy(body).into_owned())
}

/// Binds UDP `0.0.0.0:local_port` (0 = any port), sends `payload` to `dst`
/// and returns the first datagram that comes back *from `dst`* within
/// `timeout` (datagrams from other sources are ignored).
pub fn udp_exchange(
    local_port: u16,
    dst: SocketAddrV4,
    payload: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, LabError> {
    let what = format!("UDP exchange with {dst} from port {local_port}");
    let deadline = Instant::now() + timeout;
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, local_port))
        .map_err(|e| LabError::io(format!("{what}: bind"), e))?;
    sock.send_to(payload, dst)
        .map_err(|e| LabError::io(format!("{what}: send"), e))?;
    let mut buf = vec![0u8; 65536];
    loop {
        sock.set_read_timeout(Some(remaining(deadline, &what)?))
            .map_err(|e| LabError::io(&what, e))?;
        match sock.recv_from(&mut buf) {
            Ok((n, src)) if src == SocketAddr::V4(dst) => return Ok(buf[..n].to_vec()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_or_timeout(e, &format!("{what}: receive"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_response;

    #[test]
    fn parses_identity_response() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\nrs1\n";
        assert_eq!(parse_response(r).unwrap(), "rs1\n");
        assert!(parse_response(b"HTTP/1.1 503 Nope\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nrs1\n").is_err());
        assert!(parse_response(b"garbage").is_err());
    }
}
