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

/// Counts the events (blocks of lines ended by a blank line) a stream has carried, however it
/// is sliced: the Responses API numbers its events from 0, so the count is the number the next
/// event takes. Line ends are LF or CRLF (a CR alone, which Groq never sends, is not one).
#[derive(Debug, Clone, Copy, Default)]
pub struct EventCounter {
    events: u64,
    mid_line: bool,
    in_event: bool,
}

impl EventCounter {
    pub fn observe(&mut self, chunk: &[u8]) {
        for &b in chunk {
            match b {
                b'\n' => {
                    if !self.mid_line && std::mem::take(&mut self.in_event) {
                        self.events += 1;
                    }
                    self.mid_line = false;
                }
                b'\r' => {}
                _ => {
                    self.mid_line = true;
                    self.in_event = true;
                }
            }
        }
    }

    pub fn events(&self) -> u64 {
        self.events
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

    #[test]
    fn events_are_counted_however_the_stream_is_sliced() {
        let stream = b"event: a\ndata: {}\n\nevent: b\r\ndata: {}\r\n\r\n\nevent: c\ndata: {";
        for slice in [1, 2, 3, 7, 100] {
            let mut counter = EventCounter::default();
            for piece in stream.chunks(slice) {
                counter.observe(piece);
            }
            assert_eq!(counter.events(), 2, "slice {slice}");
        }
    }
}

/// Splits a byte stream into lines (LF, CR or CRLF, split anywhere across chunks) without
/// copying whole chunks: only an unfinished line is kept, and only up to `max_line`.
#[derive(Debug)]
pub struct LineSplitter {
    partial: Vec<u8>,
    /// The previous chunk ended in CR: a LF starting the next one belongs to it.
    skip_lf: bool,
    /// The partial line grew past `max_line` and is being skipped to its end.
    overflow: bool,
    max_line: usize,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        Self {
            partial: Vec::new(),
            skip_lf: false,
            overflow: false,
            max_line,
        }
    }

    /// Calls `on_line` for every line completed by `chunk` (without its terminator). Lines
    /// longer than `max_line` are dropped whole.
    pub fn feed(&mut self, mut chunk: &[u8], mut on_line: impl FnMut(&[u8])) {
        if self.skip_lf {
            self.skip_lf = false;
            if chunk.first() == Some(&b'\n') {
                chunk = &chunk[1..];
            }
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line = &chunk[..end];
            if self.overflow {
                self.overflow = false;
            } else if self.partial.is_empty() {
                on_line(line);
            } else if self.partial.len() + line.len() <= self.max_line {
                self.partial.extend_from_slice(line);
                on_line(&self.partial);
            }
            self.partial.clear();
            let cr = chunk[end] == b'\r';
            chunk = &chunk[end + 1..];
            if cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    None => self.skip_lf = true,
                    Some(_) => {}
                }
            }
        }
        if !chunk.is_empty() && !self.overflow {
            if self.partial.len() + chunk.len() > self.max_line {
                self.partial.clear();
                self.overflow = true;
            } else {
                self.partial.extend_from_slice(chunk);
            }
        }
    }
}

/// The payload of a `data:` line (`data: x` and `data:x` both give `x`).
pub fn data_payload(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"data:")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

#[cfg(test)]
mod line_tests {
    use super::*;

    fn lines(chunks: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let mut splitter = LineSplitter::new(64);
        for c in chunks {
            splitter.feed(c.as_bytes(), |l| out.push(String::from_utf8_lossy(l).into_owned()));
        }
        out
    }

    #[test]
    fn splits_on_every_terminator_across_chunks() {
        assert_eq!(lines(&["a\nb\n"]), ["a", "b"]);
        assert_eq!(lines(&["a\r\nb\rc\n"]), ["a", "b", "c"]);
        assert_eq!(lines(&["da", "ta: x", "\n\n"]), ["data: x", ""]);
        assert_eq!(lines(&["a\r", "\nb\n"]), ["a", "b"]);
        assert_eq!(lines(&["a\r", "b\n"]), ["a", "b"]);
        assert_eq!(lines(&["x".repeat(100).as_str(), "\nok\n"]), ["ok"]);
        assert_eq!(data_payload(b"data: {}"), Some(&b"{}"[..]));
        assert_eq!(data_payload(b"data:{}"), Some(&b"{}"[..]));
        assert_eq!(data_payload(b": comment"), None);
    }
}
