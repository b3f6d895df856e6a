//! Header rewriting at the proxy: hop-by-hop headers stay on their hop,
//! `x-forwarded-for` records the client, and `Host` is kept as sent.
//!
//! The request head for the upstream is encoded here straight from the
//! client's parsed request, rewriting as it goes: nothing is removed from or
//! added to the client's header map.

use http::header::{HeaderName, HeaderValue, CONNECTION, HOST};
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

/// Encodes the client's request head for the upstream hop into `out`:
/// HTTP/1.1 (so the connection can be kept alive, whatever the client
/// spoke), origin-form target, hop-by-hop headers and `Expect` dropped,
/// the client's address appended to `x-forwarded-for` (`forwarded_for` is
/// its text), and `transfer-encoding: chunked` when `chunked`.
pub(crate) fn encode_request(parts: &Parts, forwarded_for: &str, chunked: bool, out: &mut Vec<u8>) {
    let uri = &parts.uri;
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    match (uri.scheme(), uri.path_and_query(), uri.authority()) {
        // Absolute form, as sent to a forward proxy: the upstream expects
        // origin form, with the authority in `Host`.
        (Some(_), Some(path), _) => out.extend_from_slice(path.as_str().as_bytes()),
        (Some(_), None, _) => out.push(b'/'),
        (None, Some(path), _) => out.extend_from_slice(path.as_str().as_bytes()),
        // Authority form (CONNECT).
        (None, None, Some(authority)) => out.extend_from_slice(authority.as_str().as_bytes()),
        (None, None, None) => out.push(b'/'),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let headers = &parts.headers;
    // Headers named in `Connection` are hop-by-hop as well. Collecting them
    // allocates, but only when a client names something unusual.
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        connection_named(value, &mut named);
    }
    if uri.scheme().is_some() && !headers.contains_key(HOST) {
        if let Some(authority) = uri.authority() {
            field(out, b"host", authority.as_str().as_bytes());
        }
    }
    let mut earlier_hops = false;
    for (name, value) in headers {
        if is_hop_by_hop(name) || named.contains(name) {
            continue;
        }
        match name.as_str() {
            // The client's `Expect: 100-continue` was answered on its own
            // hop when the body was first read; the upstream simply gets
            // the body.
            "expect" => continue,
            // Folded into one field below.
            "x-forwarded-for" => {
                earlier_hops = true;
                continue;
            }
            _ => field(out, name.as_str().as_bytes(), value.as_bytes()),
        }
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
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
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
mod tests {
    use super::*;
    use http::header::{EXPECT, TRANSFER_ENCODING, UPGRADE};
    use http::Request;

    const X_FORWARDED_FOR: &str = "x-forwarded-for";

    fn encoded(request: Request<()>, chunked: bool) -> String {
        let (parts, ()) = request.into_parts();
        let mut out = Vec::new();
        encode_request(&parts, "10.1.2.3", chunked, &mut out);
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
            false,
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
            false,
        );
        assert_eq!(
            head,
            "GET / HTTP/1.1\r\nx-forwarded-for: 192.0.2.1, 192.0.2.2, 10.1.2.3\r\n\r\n"
        );
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_host() {
        let head = encoded(
            Request::post("http://shop.example:8080/cart?x")
                .body(())
                .expect("a valid request"),
            true,
        );
        assert_eq!(
            head,
            "POST /cart?x HTTP/1.1\r\nhost: shop.example:8080\r\nx-forwarded-for: 10.1.2.3\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }
}
