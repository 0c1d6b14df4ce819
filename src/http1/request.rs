//! Request head encoding.

use super::Header;

/// How the request body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// Everything that goes into a request head.
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub host: &'a str,
    pub headers: &'a [Header],
    pub body: BodyFraming,
    /// Send `Connection: close` (keep-alive off, lease expired, last request allowed).
    pub close: bool,
    /// Send `Connection: keep-alive` (the first request of a connection that stays open).
    pub keep_alive: bool,
    /// Send `Expect: 100-continue` (the body follows the server's 100).
    pub expect_continue: bool,
    /// `Proxy-Authorization` value, for a request forwarded by a proxy that wants it.
    pub proxy_authorization: Option<&'a str>,
}

/// Methods whose requests announce an empty body explicitly, as curl and browsers do.
fn expects_body(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH")
}

/// Writes the head into `out` (cleared first).
pub fn encode(head: &RequestHead<'_>, user_agent: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let has = |name: &str| {
        head.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    if !has("host") {
        line(out, "Host", head.host.as_bytes());
    }
    if !has("user-agent") {
        line(out, "User-Agent", user_agent.as_bytes());
    }
    for h in head.headers {
        line(out, &h.name, &h.value);
    }
    match head.body {
        BodyFraming::Length(n) if n > 0 || expects_body(head.method) => {
            line(out, "Content-Length", n.to_string().as_bytes());
        }
        BodyFraming::Length(_) | BodyFraming::None => {
            if expects_body(head.method) && head.body == BodyFraming::None {
                line(out, "Content-Length", b"0");
            }
        }
        BodyFraming::Chunked => line(out, "Transfer-Encoding", b"chunked"),
    }
    if head.expect_continue {
        line(out, "Expect", b"100-continue");
    }
    if let Some(auth) = head.proxy_authorization {
        if !has("proxy-authorization") {
            line(out, "Proxy-Authorization", auth.as_bytes());
        }
    }
    if head.close {
        line(out, "Connection", b"close");
    } else if head.keep_alive {
        line(out, "Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a `CONNECT` request for a tunnel to `authority` (`host:port`) into `out`.
pub fn encode_connect(
    authority: &str,
    authorization: Option<&str>,
    user_agent: &str,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(b"CONNECT ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    line(out, "Host", authority.as_bytes());
    line(out, "User-Agent", user_agent.as_bytes());
    if let Some(auth) = authorization {
        line(out, "Proxy-Authorization", auth.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Encodes one chunk of a chunked request body (an empty `data` is the last chunk).
pub fn chunk_header(len: usize) -> String {
    if len == 0 {
        "0\r\n\r\n".to_string()
    } else {
        format!("{len:x}\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_head_with_length_and_close() {
        let headers = [Header {
            name: "X-A".into(),
            value: b"1".to_vec(),
        }];
        let head = RequestHead {
            method: "POST",
            target: "/p?q=1",
            host: "h:8080",
            headers: &headers,
            body: BodyFraming::Length(3),
            close: true,
            keep_alive: false,
            expect_continue: false,
            proxy_authorization: None,
        };
        let mut out = Vec::new();
        encode(&head, "ua", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nHost: h:8080\r\nUser-Agent: ua\r\nX-A: 1\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn get_has_no_length_and_user_host_wins() {
        let headers = [Header {
            name: "host".into(),
            value: b"other".to_vec(),
        }];
        let head = RequestHead {
            method: "GET",
            target: "/",
            host: "h",
            headers: &headers,
            body: BodyFraming::None,
            close: false,
            keep_alive: true,
            expect_continue: false,
            proxy_authorization: Some("Basic eA=="),
        };
        let mut out = Vec::new();
        encode(&head, "ua", &mut out);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "GET / HTTP/1.1\r\nUser-Agent: ua\r\nhost: other\r\n\
             Proxy-Authorization: Basic eA==\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn encodes_connect() {
        let mut out = Vec::new();
        encode_connect("[::1]:443", Some("Basic eA=="), "ua", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nUser-Agent: ua\r\n\
             Proxy-Authorization: Basic eA==\r\n\r\n"
        );
    }
}
