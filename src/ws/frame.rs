//! WebSocket frame headers, masking and close payloads (RFC 6455 section 5). Pure: no I/O.
//!
//! The data path forwards frames without reassembling messages, so this module works on
//! headers and payload slices, never on whole messages.

use std::fmt;

/// The longest frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame (Close, Ping, Pong) may carry.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong: short, never fragmented, may arrive between data fragments.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A violation of the framing rules; the connection must be closed with 1002.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// RSV bits set, but no extension was negotiated.
    ReservedBits,
    UnknownOpcode(u8),
    /// A control frame with FIN clear or a payload over 125 bytes.
    BadControlFrame,
    /// A 64-bit length with the most significant bit set.
    LengthOverflow,
    /// A Close payload of one byte, a reserved code or a reason that is not UTF-8.
    BadClosePayload,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedBits => f.write_str("reserved bits set in a frame header"),
            Self::UnknownOpcode(op) => write!(f, "unknown frame opcode {op:#x}"),
            Self::BadControlFrame => f.write_str("control frame fragmented or over 125 bytes"),
            Self::LengthOverflow => f.write_str("frame length over 2^63"),
            Self::BadClosePayload => f.write_str("malformed close frame payload"),
        }
    }
}

impl std::error::Error for FrameError {}

/// One frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: OpCode,
    /// The masking key: present on every client-to-server frame, absent the other way.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub len: u64,
}

impl FrameHeader {
    /// Parses a header from the front of `buf`. `Ok(None)` means more bytes are needed;
    /// `Ok(Some((header, n)))` means the header took `n` bytes.
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, FrameError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        if b0 & 0x70 != 0 {
            return Err(FrameError::ReservedBits);
        }
        let fin = b0 & 0x80 != 0;
        let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(FrameError::UnknownOpcode(b0 & 0x0F))?;
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                    if len >> 63 != 0 {
                        return Err(FrameError::LengthOverflow);
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if opcode.is_control() && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
            return Err(FrameError::BadControlFrame);
        }
        let mask = if masked {
            let Some(m) = buf.get(at..at + 4) else { return Ok(None) };
            at += 4;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        Ok(Some((Self { fin, opcode, mask, len }, at)))
    }

    /// Writes the header into `out` and returns how many bytes it took.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (u8::from(self.fin) << 7) | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = if self.len < 126 {
            out[1] = mask_bit | self.len as u8;
            2
        } else if self.len <= u64::from(u16::MAX) {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(self.len as u16).to_be_bytes());
            4
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&self.len.to_be_bytes());
            10
        };
        if let Some(mask) = self.mask {
            out[at..at + 4].copy_from_slice(&mask);
            at += 4;
        }
        at
    }
}

/// XORs `buf` with `mask`, where `offset` is how many payload bytes came before `buf`
/// (so a payload can be unmasked in pieces). Masking and unmasking are the same operation.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: u64) {
    let mut key = mask;
    key.rotate_left((offset % 4) as usize);
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// A Close frame's code and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

impl CloseFrame {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }

    /// The payload: the code, then the reason cut at a character boundary to fit 125 bytes.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut reason = self.reason.as_str();
        while reason.len() > MAX_CONTROL_PAYLOAD - 2 {
            let mut end = MAX_CONTROL_PAYLOAD - 2;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason = &reason[..end];
        }
        let mut out = Vec::with_capacity(2 + reason.len());
        out.extend_from_slice(&self.code.to_be_bytes());
        out.extend_from_slice(reason.as_bytes());
        out
    }

    /// Parses a Close payload; an empty payload means "no status" (`Ok(None)`).
    pub fn parse(payload: &[u8]) -> Result<Option<Self>, FrameError> {
        match payload {
            [] => Ok(None),
            [_] => Err(FrameError::BadClosePayload),
            [hi, lo, rest @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                let reason = std::str::from_utf8(rest).map_err(|_| FrameError::BadClosePayload)?;
                if !close_code_allowed(code) {
                    return Err(FrameError::BadClosePayload);
                }
                Ok(Some(Self::new(code, reason)))
            }
        }
    }
}

/// Whether a peer may send `code` in a Close frame (RFC 6455 section 7.4).
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 1012..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(h: FrameHeader) {
        let mut out = [0; MAX_HEADER_LEN];
        let n = h.encode(&mut out);
        assert_eq!(FrameHeader::parse(&out[..n]), Ok(Some((h, n))));
        for short in 0..n {
            assert_eq!(FrameHeader::parse(&out[..short]), Ok(None), "prefix {short}");
        }
    }

    #[test]
    fn headers_roundtrip_at_every_length_form() {
        for len in [0, 1, 125, 126, 65535, 65536, u64::MAX >> 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                roundtrip(FrameHeader { fin: true, opcode: OpCode::Binary, mask, len });
            }
        }
        roundtrip(FrameHeader { fin: false, opcode: OpCode::Continuation, mask: None, len: 3 });
    }

    #[test]
    fn rfc_examples_parse() {
        // RFC 6455 5.7: a single-frame masked text message "Hello".
        let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let (h, n) = FrameHeader::parse(&frame).unwrap().unwrap();
        assert_eq!(h.opcode, OpCode::Text);
        let mut payload = frame[n..].to_vec();
        apply_mask(&mut payload, h.mask.unwrap(), 0);
        assert_eq!(payload, b"Hello");
    }

    #[test]
    fn bad_headers_are_errors() {
        assert_eq!(FrameHeader::parse(&[0xC2, 0]), Err(FrameError::ReservedBits));
        assert_eq!(FrameHeader::parse(&[0x83, 0]), Err(FrameError::UnknownOpcode(3)));
        assert_eq!(FrameHeader::parse(&[0x09, 0]), Err(FrameError::BadControlFrame));
        assert_eq!(FrameHeader::parse(&[0x89, 126, 0, 126]), Err(FrameError::BadControlFrame));
        let mut huge = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::parse(&huge), Err(FrameError::LengthOverflow));
        huge[2] = 0x7F;
        assert!(FrameHeader::parse(&huge).unwrap().is_some());
    }

    #[test]
    fn masking_in_pieces_matches_masking_at_once() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mask = [0xA1, 0xB2, 0xC3, 0xD4];
        let mut whole = data.clone();
        apply_mask(&mut whole, mask, 0);
        for split in [1, 3, 8, 13, 500, 999] {
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, mask, 0);
            apply_mask(b, mask, split as u64);
            assert_eq!(pieces, whole, "split at {split}");
        }
        let naive: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        assert_eq!(whole, naive);
    }

    #[test]
    fn close_payloads() {
        let c = CloseFrame::new(1000, "bye");
        assert_eq!(CloseFrame::parse(&c.to_payload()), Ok(Some(c)));
        assert_eq!(CloseFrame::parse(&[]), Ok(None));
        assert_eq!(CloseFrame::parse(&[3]), Err(FrameError::BadClosePayload));
        assert_eq!(CloseFrame::parse(&[0x03, 0xED]), Err(FrameError::BadClosePayload)); // 1005
        assert_eq!(CloseFrame::parse(&[0x03, 0xE8, 0xFF]), Err(FrameError::BadClosePayload));
        let long = CloseFrame::new(1011, "é".repeat(100));
        let payload = long.to_payload();
        assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        assert!(CloseFrame::parse(&payload).unwrap().is_some());
    }
}
