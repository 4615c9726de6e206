//! The raw peer transport for the two Raft RPCs every commit waits on, AppendEntries and Vote:
//! length-prefixed protobuf frames on a plain TCP connection, one request in flight at a time
//! (openraft's default `stream_append` sends one AppendEntries at a time per replication
//! stream, each carrying everything submitted since the last).
//!
//! Why not gRPC for these: each tonic call hops through the channel's buffer task and the
//! HTTP/2 connection task on the sender and through the connection task on the receiver, and
//! HTTP/2 framing was about a fifth of a follower's CPU. Here the replication task writes the
//! frame to the socket itself and the receiving connection's task calls openraft directly.
//!
//! The peer port serves both protocols: a connection that opens with [`MAGIC`] speaks this
//! one; anything else (an HTTP/2 preface) is handed to the gRPC peer service, which keeps
//! snapshot streaming, forwarding and read-index.
//!
//! Frames: `u32` big-endian length of the rest, then one tag byte, then the body.
//! Requests carry a [`Tag`]; responses carry 0 and a protobuf body, or a gRPC status code
//! and the error's UTF-8 message.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The first bytes a raw-transport client sends on a new connection. HTTP/2 clients open
/// with `PRI * HTTP/2.0`, so the first byte alone tells the two apart.
pub(crate) const MAGIC: &[u8; 4] = b"KRP1";

/// Frames larger than this are rejected as corrupt (a Temporal payload is at most 128 MiB;
/// an AppendEntries carries at most `max-append-entries` entries).
pub(crate) const MAX_FRAME_BYTES: usize = 1 << 30;

/// What a request frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tag {
    AppendEntries = 1,
    Vote = 2,
}

impl Tag {
    pub(crate) fn from_u8(b: u8) -> Option<Tag> {
        match b {
            1 => Some(Tag::AppendEntries),
            2 => Some(Tag::Vote),
            _ => None,
        }
    }
}

/// Tag byte of a successful response.
pub(crate) const OK: u8 = 0;

/// One frame, ready to write with a single `write_all`.
pub(crate) fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
    out.push(tag);
    out.extend_from_slice(body);
    out
}

/// One frame carrying `msg`, encoded straight into the frame's buffer (an AppendEntries is
/// not copied again after encoding).
pub(crate) fn message_frame(tag: u8, msg: &impl prost::Message) -> Vec<u8> {
    let len = msg.encoded_len();
    let mut out = Vec::with_capacity(5 + len);
    out.extend_from_slice(&((len + 1) as u32).to_be_bytes());
    out.push(tag);
    msg.encode(&mut out).expect("a Vec grows to fit");
    out
}

/// Reads one frame. `Ok(None)`: the peer closed the connection cleanly between frames.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 4];
    match r.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..]).await?;
    let len = u32::from_be_bytes(head) as usize;
    if len == 0 || len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("peer frame of {len} bytes (1..={MAX_FRAME_BYTES} allowed)"),
        ));
    }
    let tag = r.read_u8().await?;
    // Grown as bytes arrive, not allocated from the claimed length up front.
    let want = len - 1;
    let mut body = Vec::with_capacity(want.min(64 << 10));
    (&mut *r).take(want as u64).read_to_end(&mut body).await?;
    if body.len() != want {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("peer frame cut off after {} of {want} bytes", body.len()),
        ));
    }
    Ok(Some((tag, body)))
}

/// The response frame of a failed request: its gRPC code (never 0) and message.
pub(crate) fn error_frame(status: &tonic::Status) -> Vec<u8> {
    let code = (status.code() as i32).clamp(1, 255) as u8;
    frame(code, status.message().as_bytes())
}

/// Decodes a response frame into the protobuf body or the status it carries.
pub(crate) fn response_result(tag: u8, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    if tag == OK {
        return Ok(body);
    }
    Err(tonic::Status::new(
        tonic::Code::from_i32(tag as i32),
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_back_to_back() {
        let mut bytes = frame(Tag::AppendEntries as u8, b"entries");
        bytes.extend(frame(Tag::Vote as u8, b""));
        let mut r = bytes.as_slice();
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Some((1, b"entries".to_vec()))
        );
        assert_eq!(read_frame(&mut r).await.unwrap(), Some((2, Vec::new())));
        assert_eq!(read_frame(&mut r).await.unwrap(), None, "clean end");
    }

    #[tokio::test]
    async fn a_truncated_or_oversized_frame_is_an_error() {
        let whole = frame(1, b"abcdef");
        let mut cut = &whole[..whole.len() - 2];
        let e = read_frame(&mut cut).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);

        let huge = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        let e = read_frame(&mut huge.as_slice()).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let empty = 0u32.to_be_bytes();
        let e = read_frame(&mut empty.as_slice()).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn errors_keep_their_code_and_message() {
        let bytes = error_frame(&tonic::Status::unavailable("blocked"));
        let (tag, body) = read_frame(&mut bytes.as_slice()).await.unwrap().unwrap();
        let back = response_result(tag, body).unwrap_err();
        assert_eq!(back.code(), tonic::Code::Unavailable);
        assert_eq!(back.message(), "blocked");
        assert_eq!(response_result(OK, b"x".to_vec()).unwrap(), b"x".to_vec());
    }

    #[test]
    fn the_magic_and_an_http2_preface_differ_in_the_first_byte() {
        assert_ne!(MAGIC[0], b"PRI * HTTP/2.0"[0]);
    }
}
