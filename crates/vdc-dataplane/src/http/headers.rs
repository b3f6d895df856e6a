//! Header rewriting at the proxy: hop-by-hop headers stay on their hop,
//! `x-forwarded-for` records the client, and `Host` is kept as sent.
//!
//! The request head for the upstream is encoded here straight from the
//! client's parsed request, rewriting as it goes: nothing is removed from or
//! added to the client's header map.

use http::header::{HeaderName, HeaderValue, CONNECTION};
use http::request::Parts;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1,
/// plus the legacy ones still seen in the wild).
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Adds the header names a `Connection` value lists (other than `close` and
/// `keep-alive`) to `named`: they are hop-by-hop as well.
pub(crate) fn connection_named(value: &HeaderValue, named: &mut Vec<HeaderName>) {
    let Ok(value) = value.to_str() else { return };
    for token in value.split(',').map(str::trim) {
        if token.is_empty()
            || token.eq_ignore_ascii_case("close")
            || token.eq_ignore_ascii_case("keep-alive")
        {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            named.push(name);
        }
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request must carry exactly one `Host`, any
/// request at most one, and its value must be a host with an optional
/// port. A proxy that passed on two would let the endpoint and anything in
/// front of it disagree about which site a request is for.
pub(crate) fn check_host(parts: &Parts) -> Result<(), &'static str> {
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err("more than one Host header"),
        (None, None) if parts.version == http::Version::HTTP_11 => {
            Err("an HTTP/1.1 request needs a Host header")
        }
        (None, _) => Ok(()),
        (Some(value), None) => {
            if value.to_str().is_ok_and(is_host_and_port) {
                Ok(())
            } else {
                Err("the Host header is not a host[:port]")
            }
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, the host being a name of
/// the characters RFC 3986 allows in one (or an address), the port a
/// number up to 65535.
fn is_host_and_port(value: &str) -> bool {
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, after)) => (
                v6.parse::<std::net::Ipv6Addr>().is_ok().then_some(v6),
                after
                    .strip_prefix(':')
                    .map(Some)
                    .unwrap_or(if after.is_empty() { None } else { Some("") }),
            ),
            None => (None, None),
        },
        None => match value.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(value), None),
        },
    };
    let host_ok = host.is_some_and(|h| {
        !h.is_empty()
            && h.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%' | b':')
            })
    });
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    });
    host_ok && port_ok
}

/// How a request's body goes upstream. The proxy decides and writes the
/// framing header itself: the client's `content-length` and
/// `transfer-encoding` are never passed on as they came, so nothing the
/// client sends (such as `Connection: content-length`) can make the head
/// say one thing while the body does another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestFraming {
    /// No body and no length.
    Empty,
    /// `content-length` (0 for an empty body the client gave a length).
    Length(u64),
    /// `transfer-encoding: chunked`: a body of unknown length.
    Chunked,
}

/// Encodes the client's request head for the upstream hop into `out`:
/// HTTP/1.1 (so the connection can be kept alive, whatever the client
/// spoke), origin-form target (`Host` from the authority of an
/// absolute-form target), hop-by-hop headers and `Expect` dropped, the
/// client's address appended to `x-forwarded-for` (`forwarded_for` is its
/// text), and the body's framing as `framing` says.
pub(crate) fn encode_request(
    parts: &Parts,
    forwarded_for: &str,
    framing: RequestFraming,
    out: &mut Vec<u8>,
) {
    let uri = &parts.uri;
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    match uri.path_and_query() {
        Some(path) => out.extend_from_slice(path.as_str().as_bytes()),
        None => out.push(b'/'),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let headers = &parts.headers;
    // Absolute form, as sent to a forward proxy: the upstream expects origin
    // form, and `Host` is the target's authority (RFC 9112 §3.2.2), without
    // any user information.
    let absolute = uri.scheme().and(uri.authority());
    if let Some(authority) = absolute {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(authority.host().as_bytes());
        if let Some(port) = authority.port() {
            out.push(b':');
            out.extend_from_slice(port.as_str().as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    // Headers named in `Connection` are hop-by-hop as well. Collecting them
    // allocates, but only when a client names something unusual.
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        connection_named(value, &mut named);
    }
    let mut earlier_hops = false;
    for (name, value) in headers {
        if is_hop_by_hop(name) {
            continue;
        }
        match name.as_str() {
            // Written from `framing` below.
            "content-length" => continue,
            "host" if absolute.is_some() => continue,
            // Never dropped because `Connection` names it.
            "host" => {}
            // The client's `Expect: 100-continue` was answered on its own
            // hop when the body was first read; the upstream simply gets
            // the body.
            "expect" => continue,
            // Folded into one field below.
            "x-forwarded-for" => {
                earlier_hops = true;
                continue;
            }
            _ if named.contains(name) => continue,
            _ => {}
        }
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if earlier_hops {
        for earlier in headers.get_all("x-forwarded-for") {
            out.extend_from_slice(earlier.as_bytes());
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(forwarded_for.as_bytes());
    out.extend_from_slice(b"\r\n");
    match framing {
        RequestFraming::Empty => {}
        RequestFraming::Length(n) => {
            out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes());
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod host_tests {
    use super::*;

    fn parts(version: http::Version, hosts: &[&str]) -> Parts {
        let mut request = http::Request::builder().version(version).uri("/");
        for host in hosts {
            request = request.header(http::header::HOST, *host);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn one_host_is_needed_on_http_1_1_and_at_most_one_anywhere() {
        const HTTP_10: http::Version = http::Version::HTTP_10;
        const HTTP_11: http::Version = http::Version::HTTP_11;
        assert!(check_host(&parts(HTTP_11, &["shop.example:8080"])).is_ok());
        assert!(check_host(&parts(HTTP_11, &["[::1]:80"])).is_ok());
        assert!(check_host(&parts(HTTP_10, &[])).is_ok());
        assert!(check_host(&parts(HTTP_11, &[])).is_err());
        assert!(check_host(&parts(HTTP_11, &["a", "b"])).is_err());
        assert!(check_host(&parts(HTTP_10, &["a", "a"])).is_err());
        for bad in ["", "a b", "user@host", "host/path", "host:port"] {
            assert!(check_host(&parts(HTTP_11, &[bad])).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING, UPGRADE};
    use http::Request;

    const X_FORWARDED_FOR: &str = "x-forwarded-for";

    fn encoded(request: Request<()>, framing: RequestFraming) -> String {
        let (parts, ()) = request.into_parts();
        let mut out = Vec::new();
        encode_request(&parts, "10.1.2.3", framing, &mut out);
        String::from_utf8(out).expect("an ASCII head")
    }

    #[test]
    fn strips_hop_by_hop_and_named_headers_and_keeps_host() {
        let head = encoded(
            Request::get("/a?b=1")
                .version(http::Version::HTTP_10)
                .header(HOST, "shop.example")
                .header(CONNECTION, "keep-alive, x-secret")
                .header("x-secret", "1")
                .header("keep-alive", "timeout=5")
                .header(TRANSFER_ENCODING, "chunked")
                .header(UPGRADE, "websocket")
                .header(EXPECT, "100-continue")
                .header("x-kept", "yes")
                .body(())
                .expect("a valid request"),
            RequestFraming::Empty,
        );
        assert_eq!(
            head,
            "GET /a?b=1 HTTP/1.1\r\nhost: shop.example\r\nx-kept: yes\r\nx-forwarded-for: 10.1.2.3\r\n\r\n"
        );
    }

    #[test]
    fn forwarded_for_appends_to_earlier_hops() {
        let head = encoded(
            Request::get("/")
                .header(X_FORWARDED_FOR, "192.0.2.1")
                .header(X_FORWARDED_FOR, "192.0.2.2")
                .body(())
                .expect("a valid request"),
            RequestFraming::Empty,
        );
        assert_eq!(
            head,
            "GET / HTTP/1.1\r\nx-forwarded-for: 192.0.2.1, 192.0.2.2, 10.1.2.3\r\n\r\n"
        );
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_host() {
        let head = encoded(
            Request::post("http://user:secret@shop.example:8080/cart?x")
                .header(HOST, "elsewhere.example")
                .body(())
                .expect("a valid request"),
            RequestFraming::Chunked,
        );
        assert_eq!(
            head,
            "POST /cart?x HTTP/1.1\r\nhost: shop.example:8080\r\nx-forwarded-for: 10.1.2.3\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    /// A client may list any header in `Connection`; the framing and the
    /// host of what goes upstream are still the proxy's, or the endpoint
    /// would read the body as the next request.
    #[test]
    fn connection_cannot_take_away_framing_or_host() {
        let head = encoded(
            Request::post("/orders")
                .header(HOST, "shop.example")
                .header(CONTENT_LENGTH, "5")
                .header(CONNECTION, "content-length, host, transfer-encoding")
                .body(())
                .expect("a valid request"),
            RequestFraming::Length(5),
        );
        assert_eq!(
            head,
            "POST /orders HTTP/1.1\r\nhost: shop.example\r\nx-forwarded-for: 10.1.2.3\r\ncontent-length: 5\r\n\r\n"
        );
    }
}
