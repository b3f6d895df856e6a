use super::*;
use proptest::prelude::*;

fn parsed(text: &str, head_only: bool) -> Result<Option<Head>, UpstreamError> {
    let mut buf = BytesMut::from(text.as_bytes());
    parse_head(&mut buf, head_only)
}

fn head(text: &str) -> Head {
    match parsed(text, false) {
        Ok(Some(head)) => head,
        Ok(None) => panic!("incomplete head: {text:?}"),
        Err(error) => panic!("refused head {text:?}: {error}"),
    }
}

fn refused(text: &str) -> String {
    match parsed(text, false) {
        Err(error) => error.to_string(),
        Ok(_) => panic!("accepted {text:?}"),
    }
}

/// Decodes a chunked body fed in the given pieces; the data, or the error.
fn decode_pieces(pieces: &[&[u8]]) -> Result<(Vec<u8>, bool), UpstreamError> {
    let mut chunk = Chunk::Size;
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decode_chunked(&mut chunk, &mut buf)? {
                Decoded::Data(data) => out.extend_from_slice(&data),
                Decoded::More => break,
                Decoded::End => return Ok((out, buf.is_empty())),
            }
        }
    }
    Err(UpstreamError::Invalid("the body did not end"))
}

#[test]
fn a_length_framed_answer_is_reusable_and_keeps_its_fields() {
    let head = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Kept: yes\r\nX-Kept: again\r\n\r\n");
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.framing, Framing::Length(5));
    assert!(head.reusable);
    assert!(head.reason.is_none());
    let kept: Vec<_> = head.headers.get_all("x-kept").iter().collect();
    assert_eq!(kept, ["yes", "again"]);
    assert_eq!(head.headers[CONTENT_LENGTH], "5");
}

#[test]
fn hop_by_hop_fields_and_those_connection_names_stay_behind() {
    let head = head(
        "HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
         Upgrade: h2c\r\nTrailer: x-t\r\nContent-Length: 0\r\nX-Kept: yes\r\n\r\n",
    );
    let mut names: Vec<&str> = head.headers.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-length", "x-kept"]);
    assert!(head.reusable);
}

#[test]
fn interim_answers_are_skipped_and_switching_protocols_refused() {
    let head = head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(head.status, StatusCode::CREATED);
    assert!(!head.headers.contains_key("link"));
    assert!(refused("HTTP/1.1 101 Switching Protocols\r\n\r\n").contains("101"));
}

#[test]
fn connection_reuse_follows_the_version_and_connection_field() {
    assert!(!head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").reusable);
    assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").reusable);
    assert!(
        head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").reusable
    );
    assert!(
        !head("HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n")
            .reusable
    );
}

#[test]
fn framing_follows_rfc_9112() {
    // Chunked wins over a length, which is dropped, and the connection is
    // not reused after such a message.
    let both = head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(both.framing, Framing::Chunked(Chunk::Size));
    assert!(!both.headers.contains_key(CONTENT_LENGTH));
    assert!(!both.headers.contains_key(TRANSFER_ENCODING));
    assert!(!both.reusable);
    let chunked = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(chunked.framing, Framing::Chunked(Chunk::Size));
    assert!(chunked.reusable);
    // A coding other than chunked last is refused; no framing at all means
    // until close.
    assert!(
        refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")
            .contains("chunked last")
    );
    let old =
        head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(!old.reusable, "HTTP/1.0 with a transfer coding closes");
    let unframed = head("HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(unframed.framing, Framing::Close);
    assert!(!unframed.reusable);
    // Answers that never have a body.
    for status in ["204 No Content", "304 Not Modified"] {
        let text = format!("HTTP/1.1 {status}\r\nContent-Length: 7\r\n\r\n");
        assert_eq!(head(&text).framing, Framing::Done, "{status}");
    }
    let to_head = parsed("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", true)
        .expect("a valid head")
        .expect("a whole head");
    assert_eq!(to_head.framing, Framing::Done);
    assert_eq!(to_head.headers[CONTENT_LENGTH], "7");
}

#[test]
fn content_length_must_be_one_number() {
    assert_eq!(
        head("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n").framing,
        Framing::Length(5)
    );
    assert!(refused("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n").contains("Content-Length"));
    assert!(
        refused("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
            .contains("conflicting")
    );
    for bad in ["-1", "+5", "0x10", "", "99999999999999999999", "5 5"] {
        let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
        assert!(refused(&text).contains("Content-Length"), "{bad:?}");
    }
}

#[test]
fn an_unusual_reason_phrase_is_kept() {
    let head = head("HTTP/1.1 404 Gone Fishing\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        head.reason.as_ref().map(|r| r.as_bytes()),
        Some(&b"Gone Fishing"[..])
    );
}

#[test]
fn incomplete_oversized_and_malformed_heads() {
    assert!(matches!(
        parsed("HTTP/1.1 200 OK\r\nContent-Le", false),
        Ok(None)
    ));
    let huge = format!("HTTP/1.1 200 OK\r\nX-Big: {}", "a".repeat(MAX_HEAD + 1));
    assert!(refused(&huge).contains("64 KiB"));
    let whole = format!("{huge}\r\nContent-Length: 0\r\n\r\n");
    assert!(refused(&whole).contains("64 KiB"));
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
    assert!(refused(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")).contains("128"));
    assert!(refused("SSH-2.0-OpenSSH_9.2\r\n\r\n").contains("malformed"));
    assert!(refused("HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n").contains("malformed"));
}

#[test]
fn the_body_after_the_head_stays_in_the_buffer() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..]);
    let head = parse_head(&mut buf, false).expect("valid").expect("whole");
    assert_eq!(head.framing, Framing::Length(5));
    assert_eq!(&buf[..], b"hello");
}

#[test]
fn chunked_bodies_decode_with_extensions_and_trailers() {
    let body = b"5;name=value\r\nhello\r\n1 \r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: 1\r\n\r\n";
    let (data, nothing_left) = decode_pieces(&[body]).expect("a valid body");
    assert_eq!(data, b"hello world!");
    assert!(nothing_left);
}

#[test]
fn broken_chunked_bodies_are_refused() {
    for (body, why) in [
        (&b"zz\r\n"[..], "invalid chunk size"),
        (b"\r\n", "invalid chunk size"),
        (b"5x\r\nhello\r\n", "invalid chunk size"),
        (b"12345678901234567\r\n", "invalid chunk size"),
        (b"5\nhello\r\n", "without CRLF"),
        (b"3\r\nhello\r\n", "longer than its size"),
    ] {
        match decode_pieces(&[body]) {
            Err(error) => assert!(error.to_string().contains(why), "{body:?}: {error}"),
            Ok(_) => panic!("accepted {body:?}"),
        }
    }
    let long_line = vec![b'1'; MAX_CHUNK_LINE + 10];
    assert!(decode_pieces(&[&long_line]).is_err());
    let mut endless_trailers = b"0\r\n".to_vec();
    endless_trailers.extend(std::iter::repeat_n(b"X-T: 1\r\n".as_slice(), 3000).flatten());
    assert!(decode_pieces(&[&endless_trailers]).is_err());
}

/// A body chunked in `sizes`, with the data bytes counting up.
fn encode_chunked(sizes: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let mut data = Vec::new();
    let mut wire = Vec::new();
    for &size in sizes.iter().filter(|&&s| s > 0) {
        let piece: Vec<u8> = (0..size).map(|i| (data.len() + i) as u8).collect();
        wire.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        wire.extend_from_slice(&piece);
        wire.extend_from_slice(b"\r\n");
        data.extend_from_slice(&piece);
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    (data, wire)
}

proptest! {
    /// However the bytes arrive, the decoded body is the one encoded.
    #[test]
    fn chunked_decoding_does_not_depend_on_how_the_bytes_arrive(
        sizes in prop::collection::vec(0usize..300, 0..8),
        cuts in prop::collection::vec(1usize..64, 1..40),
    ) {
        let (data, wire) = encode_chunked(&sizes);
        let mut pieces = Vec::new();
        let mut rest = &wire[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at((*cut).min(rest.len()));
            pieces.push(piece);
            rest = after;
        }
        let (decoded, nothing_left) = decode_pieces(&pieces).expect("a valid body");
        prop_assert_eq!(decoded, data);
        prop_assert!(nothing_left);
    }

    /// A head cut anywhere is incomplete, never an error or a wrong head.
    #[test]
    fn a_head_cut_short_is_incomplete(cut in 0usize..60) {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\n";
        let cut = cut.min(text.len() - 1);
        prop_assert!(matches!(parsed(&text[..cut], false), Ok(None)));
    }
}
