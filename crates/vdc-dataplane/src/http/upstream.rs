//! The upstream half of a proxied HTTP/1.1 exchange, driven by the client
//! connection's own task.
//!
//! hyper serves the client side; the upstream side does not use hyper's
//! client. That client runs every connection as a task of its own, so each
//! request would cross a channel to that task, its response head a second
//! channel back and its body chunks a third, with a task wake-up for each.
//! Profiles of the gateway at saturation put that hand-off at about a tenth
//! of a proxied request's CPU, the gap to HAProxy. Here the request's own
//! task writes the request head (already encoded, so a request whose
//! connection turns out closed is sent again without copying anything), and
//! the response body reads the upstream socket when hyper polls it.
//!
//! The message syntax is httparse's. What is written here is what a proxy
//! must decide itself: the response body's framing (RFC 9112 §6: none,
//! `Content-Length`, chunked, or until close), strict limits on what it
//! accepts, and whether the connection can carry another request.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::task::noop_waker_ref;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use hyper::body::Body as _;
use hyper::body::{Incoming, SizeHint};
use hyper::ext::ReasonPhrase;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_util::io::poll_read_buf;

use super::headers::{connection_named, is_hop_by_hop};
use crate::workers;

/// The largest response head accepted (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields a response head may have.
const MAX_HEADERS: usize = 128;
/// What one read asks for at least, and at most while a body's length is
/// known: large enough that a 64 KiB body takes a few reads, not dozens.
const READ_MIN: usize = 8 * 1024;
const READ_MAX: usize = 64 * 1024;
/// The longest chunk-size line (with extensions), and all trailers together.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;

// === types ===

/// An HTTP/1.1 connection to an endpoint, between exchanges: its socket,
/// any bytes read past the last response (there must be none to reuse it),
/// and the data plane worker whose runtime drives its I/O.
pub(crate) struct Conn {
    io: TcpStream,
    buf: BytesMut,
    worker: usize,
}

/// Why an exchange failed, which decides whether the request may be sent
/// again.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Not a byte of the request reached the endpoint: it may go anywhere.
    Unsent(io::Error),
    /// The request went out and the connection ended before any byte of an
    /// answer: typically an idle connection the endpoint was closing just
    /// as it was reused. Only a request that cannot have a side effect may
    /// be sent again.
    NoAnswer(io::Error),
    /// The answer broke off or was not HTTP the proxy can pass on.
    Broken(UpstreamError),
}

/// What went wrong on an upstream connection, or with the client's request
/// body on its way there.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("invalid response: {0}")]
    Invalid(&'static str),
    #[error("the client's request body broke off: {0}")]
    ClientBody(hyper::Error),
}

/// A response head, ready for the client, and how its body is framed.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// The endpoint's reason phrase, when it is not the usual one.
    pub(crate) reason: Option<ReasonPhrase>,
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request once the body ends.
    pub(crate) reusable: bool,
}

/// How a response body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (a HEAD request's answer, 1xx, 204, 304) or its end reached.
    Done,
    /// This many bytes are left.
    Length(u64),
    /// Chunked transfer coding, decoded here.
    Chunked(Chunk),
    /// Until the endpoint closes the connection.
    Close,
}

/// Where a chunked body's decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data, at its CRLF.
    DataEnd,
    /// After the last chunk, in the trailer section (this many bytes read).
    Trailers(usize),
}

/// A response body as it comes off the upstream connection.
pub(crate) struct UpstreamBody {
    /// Taken when the body ends.
    conn: Option<Conn>,
    framing: Framing,
    reusable: bool,
    /// What is left to send of the request body (boxed: most requests have
    /// none).
    upload: Option<Box<Upload>>,
}

// === impl Failure ===

impl Failure {
    pub(crate) fn into_error(self) -> UpstreamError {
        match self {
            Failure::Unsent(error) | Failure::NoAnswer(error) => UpstreamError::Io(error),
            Failure::Broken(error) => error,
        }
    }
}

// === impl UpstreamError ===

impl From<UpstreamError> for io::Error {
    /// What hyper gets when a response body breaks off.
    fn from(error: UpstreamError) -> Self {
        match error {
            UpstreamError::Io(error) => error,
            other => io::Error::other(other),
        }
    }
}

// === impl Conn ===

impl Conn {
    /// A connection just opened by the calling worker.
    pub(crate) fn new(io: TcpStream) -> Self {
        Conn {
            io,
            buf: BytesMut::new(),
            worker: workers::current(),
        }
    }

    pub(crate) fn worker(&self) -> usize {
        self.worker
    }

    /// Whether an idle connection still looks open. Costs no system call
    /// unless the socket became readable while idle: then one non-blocking
    /// read tells a close (or stray bytes, which make it unusable too) from
    /// a stale readiness flag.
    pub(crate) fn is_open(&self) -> bool {
        let mut cx = Context::from_waker(noop_waker_ref());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut byte = [0u8; 1];
                matches!(self.io.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads more of the answer into the buffer; `want` is how much is
    /// useful. Ready(0) at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        let room = want.clamp(READ_MIN, READ_MAX);
        if self.buf.capacity() - self.buf.len() < READ_MIN {
            self.buf.reserve(room);
        }
        poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// Writes `head` and reads the response head, sending the request body
    /// (chunked when `chunked`) meanwhile: an endpoint may answer before it
    /// has read the whole body, and a streaming one (an echo, a
    /// transcoder) answers while it is still coming. What is left of the
    /// body to send when the head arrives comes back as an [`Upload`] for
    /// the response body to go on with.
    ///
    /// `body` is taken only once the head is out, so a request that fails
    /// [`Unsent`](Failure::Unsent) still has it.
    pub(crate) async fn exchange(
        &mut self,
        head: &[u8],
        body: &mut Option<Incoming>,
        chunked: bool,
        head_only: bool,
    ) -> Result<(Head, Option<Upload>), Failure> {
        debug_assert!(
            self.buf.is_empty(),
            "a reused connection has no leftover bytes"
        );
        // Requests that arrive together go out together: this task steps
        // aside once, so every client connection made ready by the same
        // turn of the event loop has its request read before the first one
        // is written. The endpoint, woken by the first, then finds the
        // others waiting and answers them in one pass, instead of being
        // woken once per request and, on a shared CPU, preempting the proxy
        // each time. (HAProxy batches its sends the same way.) Measured on
        // the gateway benchmark: a third fewer context switches and ~8%
        // more requests/s; the cost is one more trip through the scheduler.
        tokio::task::yield_now().await;
        let mut written = 0;
        while written < head.len() {
            match self.io.write(&head[written..]).await {
                Ok(0) => {
                    let closed = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(if written == 0 {
                        Failure::Unsent(closed)
                    } else {
                        Failure::NoAnswer(closed)
                    });
                }
                Ok(n) => written += n,
                Err(e) if written == 0 => return Err(Failure::Unsent(e)),
                Err(e) => return Err(Failure::NoAnswer(e)),
            }
        }
        let mut answer = Answer {
            upload: body.take().map(|body| Upload::new(body, chunked)),
            upload_failed: None,
            answered: false,
            head_only,
        };
        let head = std::future::poll_fn(|cx| self.poll_head(cx, &mut answer)).await?;
        let reusable = head.reusable && answer.upload_failed.is_none();
        Ok((Head { reusable, ..head }, answer.upload))
    }

    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        answer: &mut Answer,
    ) -> Poll<Result<Head, Failure>> {
        loop {
            if let Some(upload) = answer.upload.as_mut() {
                match upload.poll_send(&mut self.io, cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(())) => answer.upload = None,
                    Poll::Ready(Err(error @ UpstreamError::ClientBody(_))) => {
                        return Poll::Ready(Err(Failure::Broken(error)))
                    }
                    Poll::Ready(Err(error)) => {
                        // The endpoint stopped reading; its answer (a 413,
                        // say) may be on the way and is worth more than the
                        // write error.
                        answer.upload = None;
                        answer.upload_failed = Some(error);
                    }
                }
            }
            match parse_head(&mut self.buf, answer.head_only) {
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => {}
                Err(error) => return Poll::Ready(Err(Failure::Broken(error))),
            }
            let failure = match ready!(self.poll_fill(cx, READ_MIN)) {
                Ok(0) => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    if answer.answered {
                        "the connection closed in the middle of the response head"
                    } else {
                        "the connection closed before a response"
                    },
                ),
                Ok(_) => {
                    // Bytes of an answer, even if only an interim one: the
                    // request was heard and must not be sent again.
                    answer.answered = true;
                    continue;
                }
                Err(error) => error,
            };
            return Poll::Ready(Err(match answer.upload_failed.take() {
                Some(error) => Failure::Broken(error),
                None if answer.answered => Failure::Broken(failure.into()),
                None => Failure::NoAnswer(failure),
            }));
        }
    }
}

/// Where an exchange is while it waits for the response head.
struct Answer {
    upload: Option<Upload>,
    upload_failed: Option<UpstreamError>,
    /// Whether any byte of an answer arrived.
    answered: bool,
    head_only: bool,
}

/// The rest of a request body on its way to the endpoint.
pub(crate) struct Upload {
    body: Incoming,
    chunked: bool,
    /// Encoded and not yet written.
    pending: BytesMut,
    /// Whether the body ended (its end is in `pending` if chunked).
    ended: bool,
}

// === impl Upload ===

impl Upload {
    fn new(body: Incoming, chunked: bool) -> Self {
        Upload {
            body,
            chunked,
            pending: BytesMut::new(),
            ended: false,
        }
    }

    /// Moves the body along as far as the client and the socket allow;
    /// ready once all of it is written.
    fn poll_send(
        &mut self,
        io: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UpstreamError>> {
        loop {
            while !self.pending.is_empty() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.pending))?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
                }
                self.pending.advance(n);
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => {
                    self.ended = true;
                    if self.chunked {
                        self.pending.extend_from_slice(b"0\r\n\r\n");
                    }
                }
                Some(Err(error)) => return Poll::Ready(Err(UpstreamError::ClientBody(error))),
                Some(Ok(frame)) => {
                    // Trailers from the client are not passed on.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if self.chunked {
                        self.pending
                            .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                        self.pending.extend_from_slice(&data);
                        self.pending.extend_from_slice(b"\r\n");
                    } else {
                        self.pending.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// Parses a final response head off the front of `buf`, skipping interim
/// (1xx) ones. `None`: more bytes are needed.
fn parse_head(buf: &mut BytesMut, head_only: bool) -> Result<Option<Head>, UpstreamError> {
    loop {
        // Left uninitialized for httparse to fill: zeroing 128 fields
        // showed in profiles.
        let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
            Ok(httparse::Status::Complete(_)) => {
                return Err(UpstreamError::Invalid("response head larger than 64 KiB"))
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(UpstreamError::Invalid("response head larger than 64 KiB"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(UpstreamError::Invalid("more than 128 header fields"))
            }
            Err(_) => return Err(UpstreamError::Invalid("malformed response head")),
        };
        let code = response.code.unwrap_or(0);
        if code == 101 {
            return Err(UpstreamError::Invalid(
                "101 Switching Protocols, which the proxy did not ask for",
            ));
        }
        if (100..200).contains(&code) {
            // 100 Continue, 103 Early Hints: interim, the final answer
            // follows on the same connection.
            buf.advance(parsed);
            continue;
        }
        let status = StatusCode::from_u16(code)
            .map_err(|_| UpstreamError::Invalid("status code out of range"))?;
        let http10 = response.version == Some(0);
        let reason = response
            .reason
            .filter(|r| !r.is_empty() && Some(*r) != status.canonical_reason());
        let reason = reason.map(|r| r.as_bytes().to_vec());

        // Header fields are located by offset, so that once the head is
        // split off the buffer their values are slices of it, not copies.
        let base = buf.as_ptr() as usize;
        let at = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let mut located: Vec<(Range<usize>, Range<usize>)> =
            Vec::with_capacity(response.headers.len());
        for field in response.headers.iter() {
            located.push((at(field.name.as_bytes()), at(field.value)));
        }
        let head = buf.split_to(parsed).freeze();
        return build_head(&head, &located, status, http10, reason, head_only).map(Some);
    }
}

fn build_head(
    head: &Bytes,
    located: &[(Range<usize>, Range<usize>)],
    status: StatusCode,
    http10: bool,
    reason: Option<Vec<u8>>,
    head_only: bool,
) -> Result<Head, UpstreamError> {
    let mut headers = HeaderMap::with_capacity(located.len());
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut coded = false;
    let mut saw_close = false;
    let mut saw_keep_alive = false;
    let mut named: Vec<HeaderName> = Vec::new();
    for (name, value) in located {
        let name = HeaderName::from_bytes(&head[name.clone()])
            .map_err(|_| UpstreamError::Invalid("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value.clone()))
            .map_err(|_| UpstreamError::Invalid("invalid header value"))?;
        if name == CONTENT_LENGTH {
            let n = parse_content_length(value.as_bytes())
                .ok_or(UpstreamError::Invalid("invalid Content-Length"))?;
            if length.is_some_and(|earlier| earlier != n) {
                return Err(UpstreamError::Invalid("conflicting Content-Length values"));
            }
            length = Some(n);
        } else if name == TRANSFER_ENCODING {
            // Only the last coding says how the body ends.
            coded = true;
            chunked = value
                .to_str()
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name == CONNECTION {
            for token in value.to_str().unwrap_or("").split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    saw_close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    saw_keep_alive = true;
                }
            }
            connection_named(&value, &mut named);
        }
        if is_hop_by_hop(&name) {
            continue;
        }
        headers.append(name, value);
    }
    for name in named {
        headers.remove(name);
    }
    // HTTP/1.1 connections persist unless closed; HTTP/1.0 ones only when
    // asked to.
    let mut close = saw_close || (http10 && !saw_keep_alive);

    let no_body = head_only
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    let framing = if no_body {
        Framing::Done
    } else if coded {
        // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3), and a
        // message with both must not leave a connection to be reused; nor
        // may an HTTP/1.0 message with a transfer coding (§6.1).
        if length.is_some() || http10 {
            headers.remove(CONTENT_LENGTH);
            close = true;
        }
        if !chunked {
            // A body in some other coding, until close: the client could
            // not be told how to decode it once the coding header is gone.
            return Err(UpstreamError::Invalid(
                "a transfer coding other than chunked last",
            ));
        }
        Framing::Chunked(Chunk::Size)
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let reason = match reason {
        Some(bytes) => ReasonPhrase::try_from(bytes).ok(),
        None => None,
    };
    Ok(Head {
        status,
        headers,
        reason,
        framing,
        reusable: !close && framing != Framing::Close,
    })
}

/// A Content-Length value: digits, or a list of equal ones (RFC 9110 §8.6).
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut found = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = std::str::from_utf8(part).ok()?.parse::<u64>().ok()?;
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

// === impl UpstreamBody ===

impl UpstreamBody {
    pub(crate) fn new(conn: Conn, head: &Head, upload: Option<Upload>) -> Self {
        UpstreamBody {
            conn: Some(conn),
            framing: head.framing,
            reusable: head.reusable,
            upload: upload.map(Box::new),
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done || self.framing == Framing::Length(0)
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Chunked(_) | Framing::Close => SizeHint::default(),
        }
    }

    /// The connection, if the body was read to its end and it may carry
    /// another request.
    pub(crate) fn take_reusable(&mut self) -> Option<Conn> {
        let conn = self.conn.take()?;
        // A request body not sent to its end would be read as the next
        // request's beginning.
        let clean = self.upload.is_none() && conn.buf.is_empty();
        (self.reusable && self.is_end_stream() && clean).then_some(conn)
    }

    /// The next piece of the body: `Ok(Some(data))`, or the end. After an
    /// error the connection is dropped (closed).
    pub(crate) fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, UpstreamError>> {
        let polled = ready!(self.poll_next(cx));
        if polled.is_err() {
            self.conn = None;
        }
        Poll::Ready(polled)
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, UpstreamError>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(Ok(None));
            };
            if let Some(upload) = self.upload.as_mut() {
                match upload.poll_send(&mut conn.io, cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(())) => self.upload = None,
                    Poll::Ready(Err(error @ UpstreamError::ClientBody(_))) => {
                        return Poll::Ready(Err(error))
                    }
                    // The endpoint stopped reading the request and answers
                    // anyway: the answer goes on, the connection is not
                    // reused.
                    Poll::Ready(Err(_)) => {
                        self.upload = None;
                        self.reusable = false;
                    }
                }
            }
            match &mut self.framing {
                Framing::Done | Framing::Length(0) => return Poll::Ready(Ok(None)),
                Framing::Length(left) => {
                    if !conn.buf.is_empty() {
                        let n = conn
                            .buf
                            .len()
                            .min(usize::try_from(*left).unwrap_or(usize::MAX));
                        *left -= n as u64;
                        return Poll::Ready(Ok(Some(conn.buf.split_to(n).freeze())));
                    }
                    let want = usize::try_from(*left).unwrap_or(usize::MAX);
                    if ready!(conn.poll_fill(cx, want))? == 0 {
                        return Poll::Ready(Err(UpstreamError::Io(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the connection closed before the end of the body",
                        ))));
                    }
                }
                Framing::Close => {
                    if !conn.buf.is_empty() {
                        return Poll::Ready(Ok(Some(conn.buf.split().freeze())));
                    }
                    if ready!(conn.poll_fill(cx, READ_MAX))? == 0 {
                        self.framing = Framing::Done;
                        self.reusable = false;
                    }
                }
                Framing::Chunked(chunk) => match decode_chunked(chunk, &mut conn.buf)? {
                    Decoded::Data(data) => return Poll::Ready(Ok(Some(data))),
                    Decoded::End => self.framing = Framing::Done,
                    Decoded::More => {
                        if ready!(conn.poll_fill(cx, READ_MIN))? == 0 {
                            return Poll::Ready(Err(UpstreamError::Io(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the connection closed in the middle of a chunked body",
                            ))));
                        }
                    }
                },
            }
        }
    }
}

enum Decoded {
    Data(Bytes),
    End,
    More,
}

/// Decodes what `buf` holds of a chunked body (RFC 9112 §7.1). Chunk
/// extensions and trailer fields are read past and dropped.
fn decode_chunked(chunk: &mut Chunk, buf: &mut BytesMut) -> Result<Decoded, UpstreamError> {
    loop {
        match chunk {
            Chunk::Size => {
                let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                    if buf.len() > MAX_CHUNK_LINE {
                        return Err(UpstreamError::Invalid("chunk-size line too long"));
                    }
                    return Ok(Decoded::More);
                };
                if end > MAX_CHUNK_LINE {
                    return Err(UpstreamError::Invalid("chunk-size line too long"));
                }
                let line = buf[..end]
                    .strip_suffix(b"\r")
                    .ok_or(UpstreamError::Invalid("chunk-size line without CRLF"))?;
                let size = parse_chunk_size(line)?;
                buf.advance(end + 1);
                *chunk = if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                if *left == 0 {
                    *chunk = Chunk::DataEnd;
                }
                return Ok(Decoded::Data(buf.split_to(n).freeze()));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Decoded::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(UpstreamError::Invalid("chunk data longer than its size"));
                }
                buf.advance(2);
                *chunk = Chunk::Size;
            }
            Chunk::Trailers(seen) => {
                let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                    if *seen + buf.len() > MAX_TRAILERS {
                        return Err(UpstreamError::Invalid("trailer section too large"));
                    }
                    return Ok(Decoded::More);
                };
                let blank = end == 0 || (end == 1 && buf[0] == b'\r');
                *seen += end + 1;
                if *seen > MAX_TRAILERS {
                    return Err(UpstreamError::Invalid("trailer section too large"));
                }
                buf.advance(end + 1);
                if blank {
                    return Ok(Decoded::End);
                }
            }
        }
    }
}

/// The hexadecimal size at the start of a chunk-size line; what follows it
/// may only be whitespace and chunk extensions.
fn parse_chunk_size(line: &[u8]) -> Result<u64, UpstreamError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(UpstreamError::Invalid("invalid chunk size"));
    }
    let rest = &line[digits..];
    if !rest.is_empty() && !matches!(rest[0], b';' | b' ' | b'\t') {
        return Err(UpstreamError::Invalid("invalid chunk size"));
    }
    let text = std::str::from_utf8(&line[..digits])
        .map_err(|_| UpstreamError::Invalid("invalid chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| UpstreamError::Invalid("invalid chunk size"))
}

#[cfg(test)]
mod tests;
