//! Digests of secrets: SHA-256, hex, and constant-time comparison, so keys are stored and compared without ever being kept in clear.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// The 32 bytes a 64-digit hex string spells, or `None` for anything else.
pub fn unhex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// Equal digests, compared in constant time so timing reveals nothing about a stored key.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let digest = sha256(b"abc");
        let text = hex(&digest);
        assert_eq!(&text[..8], "ba7816bf");
        assert_eq!(unhex(&text), Some(digest));
        assert_eq!(unhex("zz"), None);
        assert!(same(&digest, &digest) && !same(&digest, &sha256(b"abd")));
    }
}
