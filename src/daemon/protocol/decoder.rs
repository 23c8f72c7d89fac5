//! Incremental decoder with hard limits.

use std::io::{self, Read};

use super::error::{EofPhase, ProtocolError};
use super::frame::{
    Abort, AbortCode, FileSegment, Frame, FrameType, Hello, HelloAck, Log, LogLevel, Pair, Reject, RejectCode,
    RequestHead, ResponseHead, HEADER_LEN, MAGIC, PROTOCOL_VERSION,
};
use super::pairs::PairBlock;

/// Smallest read [`Decoder::fill_from`] asks for.
const READ_CHUNK: usize = 16 * 1024;
/// Largest read [`Decoder::fill_from`] asks for (when a big frame is still incomplete).
const READ_CHUNK_MAX: usize = 1024 * 1024;
/// Consumed bytes at the front of the buffer are dropped once there are at least this many.
const COMPACT_MIN: usize = 64 * 1024;

/// A frame from [`Decoder::next_frame_lent`].
pub enum Lent<'a> {
    Frame(Frame),
    /// A BODY or RESPONSE_BODY payload in the decoder's buffer;
    /// `more_buffered`: a further complete frame is already buffered behind it.
    Data {
        kind: FrameType,
        data: &'a [u8],
        more_buffered: bool,
    },
}

/// Hard limits of a [`Decoder`]. Lengths are payload bytes; each is checked from the frame
/// header, before any of the payload is buffered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// REQUEST_HEAD, BODY, RESPONSE_BODY and LOG (default 16 MiB).
    pub max_frame_len: u32,
    /// Every other frame type (default 64 KiB).
    pub max_control_len: u32,
    /// RESPONSE_HEAD (default 1 MiB); the client maps going over it to "response head too large".
    pub max_response_head_len: u32,
    /// `extra` + `environ` items of a REQUEST_HEAD (default 10 000).
    pub max_request_items: u32,
    /// Headers of a RESPONSE_HEAD (default 1 000).
    pub max_response_headers: u32,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_frame_len: 16 * 1024 * 1024,
        max_control_len: 64 * 1024,
        max_response_head_len: 1024 * 1024,
        max_request_items: 10_000,
        max_response_headers: 1_000,
    };

    /// No limit beyond what the format can express (for tests and tools, not for sockets).
    pub const UNLIMITED: Limits = Limits {
        max_frame_len: u32::MAX,
        max_control_len: u32::MAX,
        max_response_head_len: u32::MAX,
        max_request_items: u32::MAX,
        max_response_headers: u32::MAX,
    };

    /// Checks a frame header's declared payload length against the limit for its type.
    pub fn check(&self, frame: FrameType, len: u32) -> Result<(), ProtocolError> {
        let max = match frame {
            FrameType::RequestHead | FrameType::Body | FrameType::ResponseBody | FrameType::Log => self.max_frame_len,
            FrameType::ResponseHead => {
                if len > self.max_response_head_len {
                    return Err(ProtocolError::ResponseHeadTooLarge {
                        len: u64::from(len),
                        max: u64::from(self.max_response_head_len),
                    });
                }
                return Ok(());
            }
            _ => self.max_control_len,
        };
        if len > max {
            return Err(ProtocolError::FrameTooLarge {
                frame,
                len: u64::from(len),
                max: u64::from(max),
            });
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Turns a byte stream, fed in pieces of any size, into [`Frame`]s.
///
/// Errors are sticky in effect: a bad frame is never consumed, so calling
/// [`Decoder::next_frame`] again reports it again. Memory held is what was fed and not yet
/// decoded; [`super::read_frame`] only feeds more when less than one frame is buffered.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes `pos..end` are fed and not yet decoded; the rest of `buf` is room
    /// for the next read (kept initialised, so reads do not zero it again).
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    limits: Limits,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::with_limits(Limits::DEFAULT)
    }

    pub fn with_limits(limits: Limits) -> Decoder {
        Decoder {
            buf: Vec::new(),
            pos: 0,
            end: 0,
            limits,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes the limits for the frames still to come.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.compact();
        self.room(data.len()).copy_from_slice(data);
        self.end += data.len();
    }

    /// Bytes fed and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.pos
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        let avail = &self.buf[self.pos..self.end];
        let Some(len) = self.header(avail)? else {
            return Ok(None);
        };
        let end = HEADER_LEN + len;
        if avail.len() < end {
            return Ok(None);
        }
        let frame = decode_payload(avail[0], &avail[HEADER_LEN..end], &self.limits)?;
        self.pos += end;
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            if self.buf.len() > READ_CHUNK_MAX {
                // A big frame passed: do not keep its buffer for the connection's lifetime.
                self.buf = Vec::new();
            }
        }
        Ok(Some(frame))
    }

    /// [`Decoder::next_frame`], except that a BODY's or RESPONSE_BODY's payload
    /// is lent from the buffer instead of copied into a new `Vec` (the receiver
    /// copies it straight to where it goes: Apache, or the app's read buffer).
    pub fn next_frame_lent(&mut self) -> Result<Option<Lent<'_>>, ProtocolError> {
        let avail = &self.buf[self.pos..self.end];
        let Some(len) = self.header(avail)? else {
            return Ok(None);
        };
        if avail.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let kind = match FrameType::from_u8(avail[0]) {
            Some(kind @ (FrameType::Body | FrameType::ResponseBody)) => kind,
            _ => return Ok(self.next_frame()?.map(Lent::Frame)),
        };
        let start = self.pos + HEADER_LEN;
        self.pos = start + len;
        if self.pos == self.end {
            // The buffer stays as it is while the payload is lent out.
            self.pos = 0;
            self.end = 0;
        }
        let more_buffered = self.missing().is_ok_and(|m| m == 0);
        Ok(Some(Lent::Data {
            kind,
            data: &self.buf[start..start + len],
            more_buffered,
        }))
    }

    /// Bytes still missing before the frame at the front can be decoded (0 if it can be).
    /// Fails like [`Decoder::next_frame`] on a bad header.
    pub fn missing(&self) -> Result<usize, ProtocolError> {
        let avail = &self.buf[self.pos..self.end];
        Ok(match self.header(avail)? {
            None => HEADER_LEN - avail.len(),
            Some(len) => (HEADER_LEN + len).saturating_sub(avail.len()),
        })
    }

    /// Call at end of stream: fails with [`EofPhase::MidFrame`] if part of a frame is buffered.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(ProtocolError::UnexpectedEof(EofPhase::MidFrame { buffered })),
        }
    }

    /// Reads once from `r` into the buffer (at most 1 MiB); returns what `read` returned.
    pub fn fill_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        let want = self.missing().unwrap_or(0).clamp(READ_CHUNK, READ_CHUNK_MAX);
        self.compact();
        let res = r.read(self.room(want));
        self.end += *res.as_ref().unwrap_or(&0).min(&want);
        res
    }

    /// `len` bytes of room after the fed data (grown, and zeroed once, when short).
    fn room(&mut self, len: usize) -> &mut [u8] {
        let want = self.end + len;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.end..want]
    }

    /// Validates the header at the front of `avail`; its payload length if complete.
    fn header(&self, avail: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let Some(head) = avail.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let frame = FrameType::from_u8(head[0]).ok_or(ProtocolError::UnknownFrameType(head[0]))?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        self.limits.check(frame, len)?;
        Ok(Some(len as usize))
    }

    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn compact(&mut self) {
        if self.pos > 0 && (self.pos == self.end || self.pos >= COMPACT_MIN) {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
    }
}

/// Decodes one payload of frame type `code` (already validated by the header check).
fn decode_payload(code: u8, payload: &[u8], limits: &Limits) -> Result<Frame, ProtocolError> {
    let frame = FrameType::from_u8(code).ok_or(ProtocolError::UnknownFrameType(code))?;
    let mut c = Cursor { buf: payload, frame };
    let decoded = match frame {
        FrameType::Hello => {
            c.preamble()?;
            let generation = c.u64("truncated generation")?;
            Frame::Hello(Hello {
                generation,
                token: c.rest().to_vec(),
            })
        }
        FrameType::HelloAck => {
            c.preamble()?;
            let pid = c.u32("truncated pid")?;
            let generation = c.u64("truncated generation")?;
            Frame::HelloAck(HelloAck { pid, generation })
        }
        FrameType::Reject => {
            let code = RejectCode(c.u16("truncated reject code")?);
            Frame::Reject(Reject {
                code,
                message: c.text()?,
            })
        }
        FrameType::RequestHead => {
            let has_length = c.u8("truncated content length flag")?;
            let length = c.u64("truncated content length")?;
            let content_length = match (has_length, length) {
                (0, 0) => None,
                (0, _) => return Err(c.malformed("content length given but flagged absent")),
                (1, n) => Some(n),
                _ => return Err(c.malformed("content length flag not 0 or 1")),
            };
            let script = c.bytes("truncated script")?;
            let application_group = c.bytes("truncated application group")?;
            let extra = c.pairs(limits.max_request_items)?;
            let left = limits.max_request_items - extra.len() as u32;
            let environ = c.pair_block(left).map_err(|e| match e {
                ProtocolError::TooManyItems { frame, count, .. } => ProtocolError::TooManyItems {
                    frame,
                    count: count.saturating_add(extra.len() as u32),
                    max: limits.max_request_items,
                },
                e => e,
            })?;
            Frame::RequestHead(RequestHead {
                content_length,
                script,
                application_group,
                extra,
                environ,
            })
        }
        FrameType::Ready => Frame::Ready,
        FrameType::Credit => Frame::Credit(c.u32("truncated credit")?),
        FrameType::Body => Frame::Body(c.rest().to_vec()),
        FrameType::BodyEnd => Frame::BodyEnd,
        FrameType::ResponseHead => {
            let status = c.u16("truncated status")?;
            if !(100..=999).contains(&status) {
                return Err(ProtocolError::InvalidStatus(status));
            }
            let reason = c.bytes("truncated reason")?;
            let headers = c.pairs(limits.max_response_headers)?;
            Frame::ResponseHead(ResponseHead {
                status,
                reason,
                headers,
            })
        }
        FrameType::ResponseBody => Frame::ResponseBody(c.rest().to_vec()),
        FrameType::File => {
            let offset = c.u64("truncated offset")?;
            let length = c.u64("truncated length")?;
            Frame::File(FileSegment { offset, length })
        }
        FrameType::ResponseEnd => Frame::ResponseEnd,
        FrameType::Abort => {
            let code = AbortCode(c.u16("truncated abort code")?);
            Frame::Abort(Abort {
                code,
                message: c.text()?,
            })
        }
        FrameType::Log => {
            let level = c.u8("truncated level")?;
            let level = LogLevel::from_u8(level).ok_or_else(|| c.malformed("log level not in 0..=7"))?;
            Frame::Log(Log {
                level,
                message: c.text()?,
            })
        }
    };
    if !c.buf.is_empty() {
        return Err(c.malformed("trailing bytes"));
    }
    Ok(decoded)
}

/// Reads fields off the front of a payload; every length is checked against what is left
/// before anything is allocated.
struct Cursor<'a> {
    buf: &'a [u8],
    frame: FrameType,
}

impl<'a> Cursor<'a> {
    fn malformed(&self, what: &'static str) -> ProtocolError {
        ProtocolError::Malformed {
            frame: self.frame,
            what,
        }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(self.malformed(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ProtocolError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, ProtocolError> {
        let len = self.u32(what)? as usize;
        Ok(self.take(len, what)?.to_vec())
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn text(&mut self) -> Result<String, ProtocolError> {
        let rest = self.rest();
        String::from_utf8(rest.to_vec()).map_err(|_| self.malformed("text is not valid UTF-8"))
    }

    /// `MAGIC` and a supported version.
    fn preamble(&mut self) -> Result<(), ProtocolError> {
        let magic: [u8; 4] = self.array("truncated magic")?;
        if magic != MAGIC {
            return Err(ProtocolError::BadMagic(magic));
        }
        let version = self.u16("truncated version")?;
        if version != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion(version));
        }
        Ok(())
    }

    /// An item count, checked against `max`.
    fn item_count(&mut self, max: u32) -> Result<u32, ProtocolError> {
        let count = self.u32("truncated item count")?;
        if count > max {
            return Err(ProtocolError::TooManyItems {
                frame: self.frame,
                count,
                max,
            });
        }
        Ok(count)
    }

    fn pairs(&mut self, max: u32) -> Result<Vec<Pair>, ProtocolError> {
        let count = self.item_count(max)?;
        // Each pair takes at least 8 bytes: a count the payload cannot hold is rejected before
        // it sizes an allocation.
        if count as usize > self.buf.len() / 8 {
            return Err(self.malformed("item count larger than the payload"));
        }
        let mut pairs = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let key = self.bytes("truncated item name")?;
            let value = self.bytes("truncated item value")?;
            pairs.push((key, value));
        }
        Ok(pairs)
    }

    /// Like `pairs`, but checks the items in place and keeps them as one block.
    fn pair_block(&mut self, max: u32) -> Result<PairBlock, ProtocolError> {
        let count = self.item_count(max)?;
        let start = self.buf;
        for _ in 0..count {
            let len = self.u32("truncated item name")? as usize;
            self.take(len, "truncated item name")?;
            let len = self.u32("truncated item value")? as usize;
            self.take(len, "truncated item value")?;
        }
        let used = start.len() - self.buf.len();
        Ok(PairBlock::from_encoded(&start[..used], count))
    }
}
