//! What groxy needs to know about SSE framing without parsing it: whether the bytes relayed so far end on an event boundary.

/// Tracks the last bytes written so an error frame appended after a failure starts on a fresh
/// event: a frame glued to half an event would be one garbled event instead of a visible error.
#[derive(Debug, Clone, Copy, Default)]
pub struct BoundaryTracker {
    tail: [u8; 4],
    len: u8,
}

impl BoundaryTracker {
    pub fn observe(&mut self, chunk: &[u8]) {
        let start = chunk.len().saturating_sub(4);
        for &b in &chunk[start..] {
            self.tail.rotate_left(1);
            self.tail[3] = b;
            self.len = (self.len + 1).min(4);
        }
    }

    /// True when nothing was written yet or the last event was terminated by a blank line
    /// (`\n\n`, `\r\r` or `\r\n\r\n`: SSE allows all three).
    pub fn at_boundary(&self) -> bool {
        if self.len == 0 {
            return true;
        }
        let t = &self.tail[(4 - self.len as usize)..];
        t.ends_with(b"\n\n") || t.ends_with(b"\r\r") || t.ends_with(b"\r\n\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(chunks: &[&str], expected: bool) {
        let mut t = BoundaryTracker::default();
        for c in chunks {
            t.observe(c.as_bytes());
        }
        assert_eq!(t.at_boundary(), expected, "{chunks:?}");
    }

    #[test]
    fn boundaries() {
        check(&[], true);
        check(&["data: {}\n\n"], true);
        check(&["data: {}\n", "\n"], true);
        check(&["data: {}\r\n\r\n"], true);
        check(&["data: {}\r", "\r"], true);
        check(&["data: {"], false);
        check(&["data: {}\n"], false);
        check(&["data: {}\n\n", "da"], false);
        check(&["\n", "\n", "x"], false);
        check(&["\r\n\r", "\n"], true);
    }
}
