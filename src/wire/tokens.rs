//! Counting tokens without a tokenizer: a lower bound from how BPE tokenizers cut text into pieces.
//!
//! BPE tokenizers (gpt-oss's o200k, Qwen's) first cut text into pieces with a regex (a word with
//! its leading space, a run of punctuation, up to 3 digits) and never merge tokens across
//! pieces, so the number of pieces is a lower bound on the number of tokens. Within a piece, one
//! token covers at most [`MAX_TOKEN_BYTES`] bytes. Vocabulary, so that validation (the prompt
//! estimate) and the relay (completion tokens counted from a stream's deltas) count alike.

/// Generous bound on the bytes one token can cover (the longest tokens in o200k are ~128 bytes
/// of repeated punctuation or spaces).
pub const MAX_TOKEN_BYTES: usize = 128;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Digit,
    Space,
    Other,
}

/// Classes of ASCII bytes, looked up instead of asking Unicode tables: most prompt text is ASCII.
const ASCII_CLASS: [Class; 128] = {
    let mut table = [Class::Other; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = if c.is_ascii_alphabetic() || c == b'\'' {
            Class::Letter
        } else if c.is_ascii_digit() {
            Class::Digit
        } else if c.is_ascii_whitespace() || c == 0x0b {
            Class::Space
        } else {
            Class::Other
        };
        b += 1;
    }
    table
};

#[inline]
fn class(c: char) -> Class {
    if c.is_ascii() {
        return ASCII_CLASS[c as usize];
    }
    if c.is_alphabetic() || c == '\'' {
        Class::Letter
    } else if c.is_numeric() {
        Class::Digit
    } else if c.is_whitespace() {
        Class::Space
    } else {
        Class::Other
    }
}

/// Lower bound on the tokens of `text`.
///
/// Walks bytes, decoding a `char` only where a byte is not ASCII: prompts are mostly ASCII,
/// and this runs over every byte of every request.
pub fn text_tokens(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let mut tokens: u64 = 0;
    let mut current: Option<Class> = None;
    let mut run_bytes = 0usize;
    let mut run_chars = 0usize;
    let close = |class: Option<Class>, bytes: usize, chars: usize| -> u64 {
        match class {
            None => 0,
            Some(Class::Digit) => chars.div_ceil(3) as u64,
            Some(_) => bytes.div_ceil(MAX_TOKEN_BYTES).max(1) as u64,
        }
    };
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (k, len) = if b < 0x80 {
            (ASCII_CLASS[b as usize], 1)
        } else {
            // `i` is always on a char boundary: it only ever advances by whole chars.
            match text.get(i..).and_then(|rest| rest.chars().next()) {
                Some(c) => (class(c), c.len_utf8()),
                None => break,
            }
        };
        i += len;
        // A single space joins the word after it (" word" is one piece), so a space run does
        // not count on its own when a word follows.
        let joins = current == Some(Class::Space) && k == Class::Letter && run_chars == 1;
        if Some(k) == current || joins {
            if joins {
                current = Some(Class::Letter);
            }
            run_bytes += len;
            run_chars += 1;
            continue;
        }
        tokens += close(current, run_bytes, run_chars);
        current = Some(k);
        run_bytes = len;
        run_chars = 1;
    }
    tokens + close(current, run_bytes, run_chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pieces() {
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("hello"), 1);
        assert_eq!(text_tokens("hello world"), 2);
        assert_eq!(text_tokens("hello, world!"), 4);
        assert_eq!(text_tokens("1234567"), 3);
        assert_eq!(text_tokens(&"a".repeat(1000)), 8);
        assert_eq!(text_tokens(&" ".repeat(300)), 3);
    }

    /// The char-by-char form the byte walk replaced: the two must always agree.
    fn by_chars(text: &str) -> u64 {
        let mut tokens: u64 = 0;
        let mut current: Option<Class> = None;
        let (mut run_bytes, mut run_chars) = (0usize, 0usize);
        let close = |class: Option<Class>, bytes: usize, chars: usize| -> u64 {
            match class {
                None => 0,
                Some(Class::Digit) => chars.div_ceil(3) as u64,
                Some(_) => bytes.div_ceil(MAX_TOKEN_BYTES).max(1) as u64,
            }
        };
        for c in text.chars() {
            let k = class(c);
            let joins = current == Some(Class::Space) && k == Class::Letter && run_chars == 1;
            if Some(k) == current || joins {
                if joins {
                    current = Some(Class::Letter);
                }
                run_bytes += c.len_utf8();
                run_chars += 1;
                continue;
            }
            tokens += close(current, run_bytes, run_chars);
            current = Some(k);
            run_bytes = c.len_utf8();
            run_chars = 1;
        }
        tokens + close(current, run_bytes, run_chars)
    }

    proptest::proptest! {
        #[test]
        fn the_byte_walk_counts_like_the_char_walk(text in "(?s).{0,300}", ascii in "[ -~\\n]{0,300}") {
            proptest::prop_assert_eq!(text_tokens(&text), by_chars(&text));
            proptest::prop_assert_eq!(text_tokens(&ascii), by_chars(&ascii));
        }
    }

    #[test]
    fn stays_below_a_real_count_for_prose() {
        // 50 words of English; any BPE tokenizer needs at least one token per word.
        let prose = "The quick brown fox jumps over the lazy dog. ".repeat(5);
        let estimate = text_tokens(&prose);
        assert!(estimate <= 50 + 5, "{estimate}");
        assert!(estimate >= 40, "{estimate}");
    }
}
