//! OpenFlow 1.3 (wire version 0x04): a typed codec of the messages this
//! switch speaks, written for it.
//!
//! [`decode`] turns one framed message into a [`Message`] or a
//! [`Rejection`] carrying the error type and code the spec names for what
//! was wrong (a short field, an unknown action, a match field without its
//! prerequisites, ...); [`encode`] writes a message back. Decoding never
//! panics on any input, and whatever it accepts encodes to bytes that
//! decode to the same message (the fuzz target checks both).
//!
//! Framing: [`frame_len`] says how long the message at the start of a
//! stream buffer is, once its header is there.

#![forbid(unsafe_code)]

pub mod action;
pub mod error;
pub mod msg;
pub mod multipart;
pub mod oxm;
pub mod port;
pub mod wire;

pub use action::{Action, Instruction};
pub use error::{ErrorCode, Rejection};
pub use msg::*;
pub use multipart::{MultipartReply, MultipartReplyBody, MultipartRequest, MultipartRequestBody};
pub use oxm::{Field, Match, Oxm};

use wire::{Reader, Writer};

/// OpenFlow 1.3.
pub const VERSION: u8 = 0x04;
/// The fixed header's size.
pub const HEADER_LEN: usize = 8;
/// The largest message (the length field is 16 bits).
pub const MAX_LEN: usize = 0xffff;
/// Bytes of a refused request an ERROR carries back (spec: at least 64).
pub const ERROR_DATA_LEN: usize = 64;

/// A message's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub kind: u8,
    pub length: u16,
    pub xid: u32,
}

impl Header {
    /// The header at the start of `buf`, if 8 bytes are there.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        let mut r = Reader::new(buf);
        Some(Header { version: r.u8().ok()?, kind: r.u8().ok()?, length: r.u16().ok()?, xid: r.u32().ok()? })
    }
}

/// What [`frame_len`] found at the start of a stream buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not a whole header yet, or not the whole message: read more.
    Partial,
    /// A whole message of this many bytes.
    Complete(usize),
    /// A length below the header's size: the stream cannot be resynchronised.
    Broken(u16),
}

/// How long the message at the start of `buf` is.
pub fn frame_len(buf: &[u8]) -> Frame {
    let Some(h) = Header::parse(buf) else { return Frame::Partial };
    let len = usize::from(h.length);
    if len < HEADER_LEN {
        Frame::Broken(h.length)
    } else if buf.len() < len {
        Frame::Partial
    } else {
        Frame::Complete(len)
    }
}

/// A refused message: its header and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub header: Header,
    pub rejection: Rejection,
}

/// Decodes one whole message (`buf` is exactly one frame). A version other
/// than 1.3 is refused with BAD_VERSION except on HELLO, which any version
/// may send.
///
/// # Errors
/// The header, and the spec's code for what is wrong.
pub fn decode(buf: &[u8]) -> Result<(Header, Message), Box<Refused>> {
    let header = Header::parse(buf).unwrap_or(Header { version: 0, kind: 0, length: 0, xid: 0 });
    let refuse = |rejection| Box::new(Refused { header, rejection });
    if buf.len() < HEADER_LEN || usize::from(header.length) != buf.len() {
        return Err(refuse(Rejection::new(
            ErrorCode::BadRequestBadLen,
            format!("message length field {} for {} bytes", header.length, buf.len()),
        )));
    }
    if header.version != VERSION && header.kind != msg::kind::HELLO {
        return Err(refuse(Rejection::new(
            ErrorCode::BadRequestBadVersion,
            format!("version {:#04x} (this switch speaks OpenFlow 1.3, 0x04)", header.version),
        )));
    }
    let mut r = Reader::new(&buf[HEADER_LEN..]);
    match Message::decode_body(header.kind, &mut r) {
        Ok(m) => Ok((header, m)),
        Err(e) => Err(refuse(e)),
    }
}

/// Encodes a message with version 1.3 and `xid`. A body too large for the
/// 16-bit length is cut to fit (only a multipart reply can be that large;
/// use [`encode_multipart_reply`] for those).
pub fn encode(xid: u32, m: &Message) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(VERSION).u8(m.kind()).u16(0).u32(xid);
    m.encode_body(&mut w);
    w.buf.truncate(MAX_LEN);
    let len = w.len() as u16;
    w.set_u16(2, len);
    w.buf
}

/// Encodes a multipart reply as as many messages as it needs, split between
/// entries, every one but the last with the MORE flag.
pub fn encode_multipart_reply(xid: u32, body: &MultipartReplyBody) -> Vec<Vec<u8>> {
    const ROOM: usize = MAX_LEN - HEADER_LEN - 8;
    let mut parts: Vec<Vec<u8>> = vec![Vec::new()];
    for e in body.entries() {
        let cur = parts.last_mut().expect("one part at least");
        if !cur.is_empty() && cur.len() + e.len() > ROOM {
            parts.push(Vec::new());
        }
        parts.last_mut().expect("one part at least").extend_from_slice(&e);
    }
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let mut w = Writer::new();
            w.u8(VERSION).u8(msg::kind::MULTIPART_REPLY).u16(0).u32(xid);
            w.u16(body.kind()).u16(if i + 1 < n { multipart::MORE } else { 0 }).zeros(4).bytes(&p);
            let len = w.len().min(MAX_LEN) as u16;
            w.buf.truncate(MAX_LEN);
            w.set_u16(2, len);
            w.buf
        })
        .collect()
}

/// The ERROR message for a refused request: the spec's type and code and
/// the request's first bytes.
pub fn error_reply(xid: u32, code: ErrorCode, request: &[u8]) -> Vec<u8> {
    let (typ, code) = code.type_code();
    let data = request[..request.len().min(ERROR_DATA_LEN)].to_vec();
    encode(xid, &Message::Error(ErrorMsg { typ, code, data }))
}

#[cfg(test)]
mod tests;
