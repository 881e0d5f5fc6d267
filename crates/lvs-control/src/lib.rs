//! Control protocol between `lvsd` and `lvsadm`, and ipvsadm-compatible text renderings.
//!
//! Framing: one request per connection. The client writes one JSON object
//! followed by `\n` and shuts down its write half; the daemon answers with one
//! JSON object followed by `\n` and closes. [`call`] is the client side;
//! [`read_request`] and [`encode_response`] are the daemon side, so that the
//! framing lives in this one place.

pub mod args;
pub mod procfs;
pub mod proto;
pub mod render;

pub use proto::*;

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default path of the control socket, shared by `lvsd` and `lvsadm`.
pub const DEFAULT_CONTROL_PATH: &str = "/run/lvsd/control.sock";

/// Read and write timeout used by [`call`].
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response line [`call`] accepts (bytes), as a guard against a
/// runaway peer.
pub const MAX_RESPONSE_LEN: u64 = 256 * 1024 * 1024;

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The control socket could not be connected to.
    #[error(
        "cannot connect to the lvsd control socket {}: {source}\n\
         is lvsd running? start it with `lvsd --config FILE` or pass --control PATH",
        path.display()
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading or writing the connected socket failed (including timeouts).
    #[error("i/o error on the lvsd control socket: {0}")]
    Io(#[from] io::Error),
    /// The daemon answered something that is not a `Response`.
    #[error("bad response from lvsd: {0}")]
    BadResponse(String),
}

/// Encodes a request as one protocol line (JSON + `\n`).
pub fn encode_request(req: &Request) -> String {
    let mut s = serde_json::to_string(req).unwrap_or_else(|_| String::from("null"));
    s.push('\n');
    s
}

/// Decodes one request line (daemon side). Surrounding whitespace, including
/// the trailing newline, is ignored.
pub fn read_request(line: &str) -> Result<Request, serde_json::Error> {
    serde_json::from_str(line.trim())
}

/// Encodes a response as one protocol line (JSON + `\n`), daemon side.
pub fn encode_response(resp: &Response) -> String {
    let mut s = match serde_json::to_string(resp) {
        Ok(s) => s,
        // Cannot happen with these types (no non-string map keys), but never panic.
        Err(e) => serde_json::to_string(&Response::Error {
            kind: ErrorKind::Invalid,
            detail: format!("cannot encode response: {e}"),
        })
        .unwrap_or_default(),
    };
    s.push('\n');
    s
}

/// Decodes one response line (client side).
pub fn decode_response(line: &str) -> Result<Response, ControlError> {
    let line = line.trim();
    if line.is_empty() {
        return Err(ControlError::BadResponse(
            "empty answer (connection closed without a response)".into(),
        ));
    }
    serde_json::from_str(line).map_err(|e| ControlError::BadResponse(e.to_string()))
}

/// Sends one request to the daemon listening on `path` and returns its
/// answer (a listing in parts is put back together).
pub fn call(path: &Path, req: &Request) -> Result<Response, ControlError> {
    let mut all = Vec::new();
    let last = call_stream(path, req, |r| {
        if let Response::ConnectionsPart(v) = r {
            all.extend(v);
        }
    })?;
    Ok(match last {
        Response::Connections(v) if !all.is_empty() => {
            all.extend(v);
            Response::Connections(all)
        }
        other => other,
    })
}

/// `call` for answers that may come in parts (a long connection listing):
/// every `ConnectionsPart` goes to `part` as it arrives; the last answer
/// is returned. Each line is bounded by `MAX_RESPONSE_LEN`.
pub fn call_stream(
    path: &Path,
    req: &Request,
    mut part: impl FnMut(Response),
) -> Result<Response, ControlError> {
    let stream = UnixStream::connect(path).map_err(|source| ControlError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    stream.set_read_timeout(Some(CALL_TIMEOUT))?;
    stream.set_write_timeout(Some(CALL_TIMEOUT))?;
    let mut writer = &stream;
    writer.write_all(encode_request(req).as_bytes())?;
    writer.flush()?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reader = BufReader::new(&stream);
    loop {
        let mut line = String::new();
        io::Read::take(&mut reader, MAX_RESPONSE_LEN).read_line(&mut line)?;
        match decode_response(&line)? {
            r @ Response::ConnectionsPart(_) => part(r),
            r => return Ok(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    #[test]
    fn framing_round_trip() {
        let req = Request::GetService(ServiceKey {
            protocol: Protocol::Tcp,
            addr: "192.0.2.10".parse().unwrap(),
            port: 80,
        });
        let line = encode_request(&req);
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(read_request(&line).unwrap(), req);
        let resp = Response::Error {
            kind: ErrorKind::NoSuchService,
            detail: "x\ny".into(),
        };
        let line = encode_response(&resp);
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(decode_response(&line).unwrap(), resp);
        assert!(matches!(
            decode_response(""),
            Err(ControlError::BadResponse(_))
        ));
        assert!(matches!(
            decode_response("{\"nope\":1}"),
            Err(ControlError::BadResponse(_))
        ));
    }

    /// An `-a` from an lvsadm that predates tunnel types still decodes (as
    /// ipip), and a GUE destination survives the round trip.
    #[test]
    fn dest_spec_tunnel_is_optional_on_the_wire() {
        let old = r#"{"AddDest":{"service":{"protocol":"Tcp","addr":"192.0.2.10","port":80},"dest":{"addr":"10.0.1.5","port":80,"forward":"Tunnel","weight":1,"u_threshold":0,"l_threshold":0}}}"#;
        let Request::AddDest { dest, .. } = read_request(old).unwrap() else {
            panic!("not an AddDest")
        };
        assert_eq!(dest.tunnel, Tunnel::default());
        assert_eq!(dest.tunnel.kind, TunnelType::Ipip);
        let req = Request::EditDest {
            service: ServiceKey {
                protocol: Protocol::Udp,
                addr: "192.0.2.10".parse().unwrap(),
                port: 53,
            },
            dest: DestSpec {
                tunnel: Tunnel {
                    kind: TunnelType::Gue,
                    port: 6080,
                    csum: TunnelCsum::RemCsum,
                },
                ..dest
            },
        };
        assert_eq!(read_request(&encode_request(&req)).unwrap(), req);
    }

    #[test]
    fn call_against_a_fake_daemon() {
        let dir = std::env::temp_dir().join(format!("lvs-control-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("control.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).unwrap();
            let req = read_request(&buf).unwrap();
            assert_eq!(req, Request::GetTimeouts);
            s.write_all(
                encode_response(&Response::Timeouts(Timeouts {
                    tcp: 900,
                    tcpfin: 120,
                    udp: 300,
                }))
                .as_bytes(),
            )
            .unwrap();
        });
        let resp = call(&path, &Request::GetTimeouts).unwrap();
        server.join().unwrap();
        assert_eq!(
            resp,
            Response::Timeouts(Timeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300
            })
        );
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn connect_error_names_path_and_hint() {
        let path = Path::new("/nonexistent/lvsd/control.sock");
        let err = call(path, &Request::ListServices).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ControlError::Connect { .. }));
        assert!(text.contains("/nonexistent/lvsd/control.sock"), "{text}");
        assert!(text.contains("is lvsd running?"), "{text}");
    }
}
