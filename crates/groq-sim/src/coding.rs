//! Content codings for the `gzip` and `encoding:NAME` faults: a server that compresses though nobody asked.
//!
//! The gzip is made by hand from stored (uncompressed) deflate blocks: any gzip decoder reads
//! it, it needs no compression library, and each piece of a stream can be a block of its own,
//! so a decoder can hand every SSE event on as soon as it arrives.

use bytes::{Bytes, BytesMut};

/// The coding a fault puts on the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Coding {
    /// The body gzip-coded, with `content-encoding: gzip`.
    Gzip,
    /// The body as it is, labelled `content-encoding: NAME` (a coding the client must take on
    /// trust, such as `br`).
    Label(String),
}

impl Coding {
    pub(crate) fn header_value(&self) -> &str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Label(name) => name,
        }
    }
}

/// The gzip member header: no name, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// The most a stored block holds.
const MAX_STORED: usize = 0xffff;

/// Writes a gzip member piece by piece: [`GzipWriter::piece`] for each part of the body as it
/// goes out, [`GzipWriter::finish`] for the end.
pub(crate) struct GzipWriter {
    crc: u32,
    len: u32,
    started: bool,
}

impl GzipWriter {
    pub(crate) fn new() -> GzipWriter {
        GzipWriter {
            crc: !0,
            len: 0,
            started: false,
        }
    }

    /// `data` as non-final stored blocks (the member header first, the first time).
    pub(crate) fn piece(&mut self, data: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(data.len() + HEADER.len() + 5 * (data.len() / MAX_STORED + 1));
        if !std::mem::replace(&mut self.started, true) {
            out.extend_from_slice(&HEADER);
        }
        for block in data.chunks(MAX_STORED) {
            stored_block(&mut out, block, false);
        }
        self.crc = crc32_update(self.crc, data);
        self.len = self.len.wrapping_add(data.len() as u32);
        out.freeze()
    }

    /// An empty final block and the trailer (CRC-32 and length of the whole body).
    pub(crate) fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER.len() + 13);
        if !std::mem::replace(&mut self.started, true) {
            out.extend_from_slice(&HEADER);
        }
        stored_block(&mut out, &[], true);
        out.extend_from_slice(&(!self.crc).to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.freeze()
    }
}

/// A whole body gzip-coded.
pub(crate) fn gzip(body: &[u8]) -> Bytes {
    let mut writer = GzipWriter::new();
    let mut out = BytesMut::from(&writer.piece(body)[..]);
    out.extend_from_slice(&writer.finish());
    out.freeze()
}

/// A stored block: the block header on a byte boundary, LEN and its complement, the bytes.
fn stored_block(out: &mut BytesMut, data: &[u8], last: bool) {
    let len = data.len() as u16;
    out.extend_from_slice(&[u8::from(last)]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
}

/// CRC-32 (IEEE, reflected), bit by bit: the bodies are small.
fn crc32_update(mut crc: u32, data: &[u8]) -> u32 {
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_reference_value() {
        assert_eq!(!crc32_update(!0, b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn pieces_make_one_member_equal_to_the_whole() {
        let mut writer = GzipWriter::new();
        let mut pieces = BytesMut::new();
        for part in [&b"data: a\n\n"[..], b"data: [DONE]\n\n"] {
            pieces.extend_from_slice(&writer.piece(part));
        }
        pieces.extend_from_slice(&writer.finish());
        // The stored blocks differ from one block per body, but the trailer must agree.
        let whole = gzip(b"data: a\n\ndata: [DONE]\n\n");
        assert_eq!(pieces[..10], whole[..10]);
        assert_eq!(pieces[pieces.len() - 8..], whole[whole.len() - 8..]);
        assert_eq!(&pieces[15..24], b"data: a\n\n");
        let big = gzip(&vec![7u8; 70_000]);
        assert_eq!(big.len(), 10 + 5 + 65_535 + 5 + 4_465 + 5 + 8);
    }
}
