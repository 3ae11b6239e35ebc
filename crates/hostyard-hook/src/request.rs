//! One hook request read from its connection, within bounds: the head with
//! httparse, then exactly `Content-Length` bytes of body. Everything a
//! client sends is untrusted: a head or body past its cap, a chunked or
//! unsized body, a second request or a second Host are refused with the
//! status to answer, before any secret is read.

use std::io::Read;

/// The most a head may take (the forges send a few kB).
pub const MAX_HEAD: usize = 16 * 1024;
/// The most a body may take (a push's JSON; GitHub caps its own at 25 MB,
/// but a push with many commits is a few hundred kB).
pub const MAX_BODY: usize = 1024 * 1024;
const MAX_HEADERS: usize = 64;

/// A request as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The Host header, without a port.
    pub host: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a request is not read, with the status it is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    pub status: u16,
    pub why: String,
}

fn unread(status: u16, why: impl Into<String>) -> Unread {
    Unread {
        status,
        why: why.into(),
    }
}

/// Reads one request from `from`.
pub fn read(from: &mut impl Read) -> Result<Request, Unread> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                return finish(&parsed, buf[head_len..].to_vec(), from)
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(unread(400, format!("a malformed request head: {e}"))),
        }
        if buf.len() >= MAX_HEAD {
            return Err(unread(431, format!("a request head over {MAX_HEAD} bytes")));
        }
        let n = from
            .read(&mut chunk)
            .map_err(|e| unread(400, format!("reading the request: {e}")))?;
        if n == 0 {
            return Err(unread(400, "the connection closed within the request head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn finish(
    parsed: &httparse::Request<'_, '_>,
    mut body: Vec<u8>,
    from: &mut impl Read,
) -> Result<Request, Unread> {
    let method = parsed.method.unwrap_or_default().to_string();
    let path = parsed.path.unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for h in parsed.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| unread(400, format!("header {} is not UTF-8", h.name)))?;
        headers.push((h.name.to_string(), value.trim().to_string()));
    }
    let one = |name: &str| -> Result<Option<&str>, Unread> {
        let mut found = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        match (found.next(), found.next()) {
            (first, None) => Ok(first),
            _ => Err(unread(400, format!("{name} is there twice"))),
        }
    };
    if one("transfer-encoding")?.is_some() {
        return Err(unread(411, "a chunked body: send Content-Length"));
    }
    let host = one("host")?.ok_or_else(|| unread(400, "no Host header"))?;
    // Without a port (the caller checks the rest is a site's domain).
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
    .to_ascii_lowercase();
    let length: usize = match one("content-length")? {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| unread(400, format!("Content-Length {v:?} is not a number")))?,
    };
    if length > MAX_BODY {
        return Err(unread(413, format!("a body over {MAX_BODY} bytes")));
    }
    if body.len() > length {
        return Err(unread(
            400,
            "more bytes than Content-Length: one request a connection",
        ));
    }
    let missing = length - body.len();
    let start = body.len();
    body.resize(length, 0);
    from.read_exact(&mut body[start..start + missing])
        .map_err(|_| unread(400, format!("the body ended before its {length} bytes")))?;
    Ok(Request {
        method,
        path,
        host,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(raw: &[u8]) -> Result<Request, Unread> {
        read(&mut std::io::Cursor::new(raw.to_vec()))
    }

    #[test]
    fn reads_a_push_with_its_body() {
        let got = parse(
            b"POST /.well-known/hostyard/deploy HTTP/1.1\r\nHost: Example.com:443\r\n\
              X-Gitea-Event: push\r\nContent-Length: 4\r\n\r\n{\"a\"",
        )
        .unwrap();
        assert_eq!(got.method, "POST");
        assert_eq!(got.path, "/.well-known/hostyard/deploy");
        assert_eq!(got.host, "example.com");
        assert_eq!(got.body, b"{\"a\"");
        assert!(got
            .headers
            .contains(&("X-Gitea-Event".to_string(), "push".to_string())));
    }

    #[test]
    fn refuses_what_it_cannot_bound_with_the_status_to_answer() {
        let cases: [(&[u8], u16); 7] = [
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                411,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n",
                413,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
                400,
            ),
            (b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nshort",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nxGET / HTTP/1.1",
                400,
            ),
        ];
        for (raw, status) in cases {
            let got = parse(raw).unwrap_err();
            assert_eq!(
                got.status,
                status,
                "{:?}: {}",
                String::from_utf8_lossy(raw),
                got.why
            );
        }
        let huge = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat();
        assert_eq!(parse(&huge).unwrap_err().status, 431);
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_or_refused_without_panicking(
            raw in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let _ = parse(&raw);
        }

        #[test]
        fn a_sized_body_is_read_exactly(
            body in proptest::collection::vec(any::<u8>(), 0..4096),
        ) {
            let mut raw = format!(
                "POST /h HTTP/1.1\r\nHost: s.example\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            raw.extend_from_slice(&body);
            prop_assert_eq!(parse(&raw).unwrap().body, body);
        }
    }
}
