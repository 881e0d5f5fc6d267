//! `httpcheck`: one HTTP/1.1 GET, judged on the status code of the response
//! head. The body is never read: at most [`HTTP_MAX_HEAD`] bytes are, so a
//! huge or never-ending response cannot hold the checker.

use std::net::IpAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{io_reason, CheckSpec, HTTP_MAX_HEAD};

/// Room for every header that fits in the bounded head (the shortest is
/// `a:\n`), so that only the byte bound ever limits a response.
const MAX_HEADERS: usize = HTTP_MAX_HEAD / 3;

pub(crate) async fn check(
    mut stream: TcpStream,
    spec: &CheckSpec,
    uri: &str,
    vhost: Option<&str>,
    want: u16,
) -> Result<(), String> {
    let request = request(spec, uri, vhost)?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending the request: {}", io_reason(&e)))?;
    let mut buf = vec![0u8; HTTP_MAX_HEAD];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(format!("response head over {HTTP_MAX_HEAD} bytes"));
        }
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|e| format!("reading the response: {}", io_reason(&e)))?;
        if n == 0 {
            return Err(if len == 0 {
                "connection closed without a response".to_string()
            } else {
                "connection closed inside the response head".to_string()
            });
        }
        len += n;
        match status(&buf[..len])? {
            Some(code) if code == want => return Ok(()),
            Some(code) => return Err(format!("status {code}")),
            None => {}
        }
    }
    // Dropping the stream with the body unread resets the connection: the
    // server gets no more of our time, and we keep no TIME_WAIT.
}

/// The request bytes. Refuses a URI or Host that would split the request.
fn request(spec: &CheckSpec, uri: &str, vhost: Option<&str>) -> Result<String, String> {
    let host = match vhost {
        Some(h) => h.to_string(),
        None => host_header(spec.addr, spec.port),
    };
    let clean = |s: &str| !s.is_empty() && !s.bytes().any(|b| b.is_ascii_control() || b == b' ');
    if !clean(uri) {
        return Err(format!("bad uri {uri:?}"));
    }
    if !clean(&host) {
        return Err(format!("bad vhost {host:?}"));
    }
    Ok(format!(
        "GET {uri} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lvs-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ))
}

/// The Host header for a server without `vhost`: its address, bracketed for
/// IPv6, with the port unless it is HTTP's default.
fn host_header(addr: IpAddr, port: u16) -> String {
    let a = match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    if port == 80 {
        a
    } else {
        format!("{a}:{port}")
    }
}

/// The status code once the whole head has arrived, `None` while it is partial.
fn status(head: &[u8]) -> Result<Option<u16>, String> {
    // Most responses fit the small table; a head with more headers is parsed
    // again with room for as many as the byte bound allows.
    let mut few = [httparse::EMPTY_HEADER; 32];
    match parse(head, &mut few) {
        Err(httparse::Error::TooManyHeaders) => {
            parse(head, &mut vec![httparse::EMPTY_HEADER; MAX_HEADERS])
        }
        r => r,
    }
    .map_err(|e| format!("malformed response: {e}"))
}

fn parse<'h>(
    head: &'h [u8],
    headers: &mut [httparse::Header<'h>],
) -> Result<Option<u16>, httparse::Error> {
    let mut resp = httparse::Response::new(headers);
    Ok(match resp.parse(head)? {
        httparse::Status::Complete(_) => resp.code,
        httparse::Status::Partial => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CheckKind;
    use std::time::Duration;

    fn spec(addr: &str, port: u16) -> CheckSpec {
        CheckSpec {
            kind: CheckKind::Tcp,
            addr: addr.parse().unwrap(),
            port,
            source: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 1,
            fall: 1,
        }
    }

    #[test]
    fn request_bytes() {
        assert_eq!(
            request(&spec("198.18.0.2", 80), "/health", None).unwrap(),
            "GET /health HTTP/1.1\r\nHost: 198.18.0.2\r\nUser-Agent: lvs-health\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        );
        let r = request(&spec("2001:db8::2", 8080), "/", None).unwrap();
        assert!(r.contains("\r\nHost: [2001:db8::2]:8080\r\n"), "{r}");
        let r = request(&spec("198.18.0.2", 8080), "/", Some("www.example.com")).unwrap();
        assert!(r.contains("\r\nHost: www.example.com\r\n"), "{r}");
    }

    #[test]
    fn request_refuses_splitting() {
        assert!(request(&spec("198.18.0.2", 80), "/a\r\nX: y", None).is_err());
        assert!(request(&spec("198.18.0.2", 80), "/a b", None).is_err());
        assert!(request(&spec("198.18.0.2", 80), "/", Some("h\r\n")).is_err());
    }

    #[test]
    fn status_waits_for_the_whole_head() {
        let full = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\n\r\nbye";
        assert_eq!(status(&full[..10]), Ok(None));
        assert_eq!(status(&full[..40]), Ok(None));
        assert_eq!(status(full), Ok(Some(503)));
        assert_eq!(status(b"HTTP/1.0 200 OK\r\n\r\n"), Ok(Some(200)));
        assert!(status(b"SSH-2.0-OpenSSH_9.6\r\n").is_err());
        let mut many = b"HTTP/1.1 204 No Content\r\n".to_vec();
        for _ in 0..1000 {
            many.extend_from_slice(b"a:\r\n");
        }
        assert_eq!(status(&many), Ok(None));
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), Ok(Some(204)));
    }
}
