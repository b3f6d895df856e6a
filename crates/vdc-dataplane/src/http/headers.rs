//! Header rewriting at the proxy: hop-by-hop headers stay on their hop,
//! `x-forwarded-for` records the client, and `Host` is kept as sent.

use std::fmt::Write as _;
use std::net::SocketAddr;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, EXPECT, HOST, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::request::Parts;
use http::{Uri, Version};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1,
/// plus the legacy ones still seen in the wild).
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Rewrites a client's request for the upstream hop.
pub(crate) fn prepare_request(parts: &mut Parts, peer: SocketAddr) {
    strip_hop_by_hop(&mut parts.headers);
    // The client's `Expect: 100-continue` was answered on its own hop when
    // the body was first read; the upstream simply gets the body.
    parts.headers.remove(EXPECT);
    append_forwarded_for(&mut parts.headers, peer);
    if parts.uri.scheme().is_some() {
        // Absolute form, as sent to a forward proxy: the upstream expects
        // origin form, with the authority in `Host`.
        if let Some(authority) = parts.uri.authority() {
            if !parts.headers.contains_key(HOST) {
                if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                    parts.headers.insert(HOST, host);
                }
            }
        }
        parts.uri = parts
            .uri
            .path_and_query()
            .cloned()
            .map_or_else(|| Uri::from_static("/"), Uri::from);
    }
    // Upstream connections are HTTP/1.1 so they can be kept alive, whatever
    // the client spoke.
    parts.version = Version::HTTP_11;
}

/// Rewrites an endpoint's response head for the client's hop.
pub(crate) fn prepare_response(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop as well. Collecting them
    // allocates, but only when a client names something unusual.
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
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
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Appends the client's address to `x-forwarded-for`, folding earlier
/// values into one comma-separated header.
fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    let mut value = String::new();
    for earlier in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(earlier) = earlier.to_str() {
            value.push_str(earlier);
            value.push_str(", ");
        }
    }
    let ip = peer.ip().to_canonical();
    let _ = write!(value, "{ip}");
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn prepared(request: Request<()>) -> Parts {
        let (mut parts, ()) = request.into_parts();
        prepare_request(&mut parts, "10.1.2.3:5555".parse().expect("an address"));
        parts
    }

    #[test]
    fn strips_hop_by_hop_and_named_headers_and_keeps_host() {
        let parts = prepared(
            Request::get("/a?b=1")
                .header(HOST, "shop.example")
                .header(CONNECTION, "keep-alive, x-secret")
                .header("x-secret", "1")
                .header(KEEP_ALIVE, "timeout=5")
                .header(TRANSFER_ENCODING, "chunked")
                .header(UPGRADE, "websocket")
                .header("x-kept", "yes")
                .body(())
                .expect("a valid request"),
        );
        let names: Vec<&str> = parts.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["host", "x-kept", "x-forwarded-for"]);
        assert_eq!(parts.headers[HOST], "shop.example");
        assert_eq!(parts.uri, "/a?b=1");
        assert_eq!(parts.version, Version::HTTP_11);
    }

    #[test]
    fn forwarded_for_appends_to_earlier_hops() {
        let parts = prepared(
            Request::get("/")
                .header(X_FORWARDED_FOR, "192.0.2.1")
                .header(X_FORWARDED_FOR, "192.0.2.2")
                .body(())
                .expect("a valid request"),
        );
        assert_eq!(
            parts.headers[X_FORWARDED_FOR],
            "192.0.2.1, 192.0.2.2, 10.1.2.3"
        );
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_host() {
        let parts = prepared(
            Request::get("http://shop.example:8080/cart?x")
                .body(())
                .expect("a valid request"),
        );
        assert_eq!(parts.uri, "/cart?x");
        assert_eq!(parts.headers[HOST], "shop.example:8080");
    }
}
