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
    /// Only in [`BYTE_CLASS`]: a byte of a multi-byte char, whose class needs the decoded char;
    /// and in [`text_tokens`], the "no run yet" marker.
    NonAscii,
}

/// Classes of every byte, looked up instead of asking Unicode tables: most prompt text is ASCII.
/// Bytes from 0x80 up are [`Class::NonAscii`], which no run has, so a run's scan stops there.
const BYTE_CLASS: [Class; 256] = {
    let mut table = [Class::NonAscii; 256];
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
        return BYTE_CLASS[c as usize];
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
/// Walks runs of ASCII bytes of one class at one table lookup per byte, and decodes a `char`
/// only where a byte is not ASCII: prompts are mostly ASCII, and this runs over every byte of
/// every request, so the work per run (a word, a space, a punctuation mark) is kept small too.
pub fn text_tokens(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut tokens: u64 = 0;
    // `NonAscii` stands for "no run yet": no run has that class.
    let mut current = Class::NonAscii;
    let mut run_bytes = 0usize;
    let mut run_chars = 0usize;
    let mut i = 0;
    while i < n {
        let k = BYTE_CLASS[bytes[i] as usize];
        // `fresh`: the run starts a piece whatever came before.
        let (k, len, chars, fresh) = if k == Class::NonAscii {
            // `i` is always on a char boundary: it only ever advances by whole chars.
            match text.get(i..).and_then(|rest| rest.chars().next()) {
                Some(c) => {
                    i += c.len_utf8();
                    (class(c), c.len_utf8(), 1, false)
                }
                None => break,
            }
        } else {
            let start = i;
            i += 1;
            let mut k = k;
            let mut fresh = false;
            // " word" in one step: a space that starts a space run (the class changes) and is
            // followed by a letter is a single space, which joins the word after it. Half the
            // runs of prose are such spaces.
            if k == Class::Space
                && current != Class::Space
                && bytes.get(i).is_some_and(|&b| BYTE_CLASS[b as usize] == Class::Letter)
            {
                k = Class::Letter;
                fresh = true;
                i += 1;
            }
            while i < n && BYTE_CLASS[bytes[i] as usize] == k {
                i += 1;
            }
            (k, i - start, i - start, fresh)
        };
        // A single space joins the word after it (" word" is one piece), so a space run does
        // not count on its own when a word follows.
        if !fresh && (k == current || (k == Class::Letter && current == Class::Space && run_chars == 1)) {
            current = k;
            run_bytes += len;
            run_chars += chars;
        } else {
            tokens += close(current, run_bytes, run_chars);
            current = k;
            run_bytes = len;
            run_chars = chars;
        }
    }
    tokens + close(current, run_bytes, run_chars)
}

/// The tokens of one finished run: up to 3 digits per token, or [`MAX_TOKEN_BYTES`] of anything
/// else (0 for the "no run yet" marker).
#[inline]
fn close(class: Class, bytes: usize, chars: usize) -> u64 {
    match class {
        Class::NonAscii => 0,
        Class::Digit => chars.div_ceil(3) as u64,
        _ if bytes <= MAX_TOKEN_BYTES => 1,
        _ => bytes.div_ceil(MAX_TOKEN_BYTES) as u64,
    }
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
        fn the_byte_walk_counts_like_the_char_walk(
            text in "(?s).{0,300}",
            ascii in "[ -~\\n]{0,300}",
            mixed in "[ab é\u{a0}\u{3000}1,]{0,200}",
        ) {
            proptest::prop_assert_eq!(text_tokens(&text), by_chars(&text));
            proptest::prop_assert_eq!(text_tokens(&ascii), by_chars(&ascii));
            proptest::prop_assert_eq!(text_tokens(&mixed), by_chars(&mixed));
        }
    }

    #[test]
    fn the_run_scan_counts_like_the_char_walk_on_varied_text() {
        let samples = [
            "The quick brown fox jumps over the lazy dog.  Twice   spaced,\tand\n\nnew lines.",
            "fn main() {\n    let x: Vec<u8> = vec![1, 2, 3];\n    println!(\"{x:?}\"); // 0x7f\n}\n",
            "{\"city\": \"Paris\", \"days\": 12345678, \"ok\": true}",
            "東京都は日本の首都です。人口は約1400万人。",
            "Hello 👋🏽 world 🌍! Emoji ZWJ: 👩‍👩‍👧 and flags 🇫🇷🇯🇵.",
            "Ça coûte 3,50 € — naïve café, Ünïcödé ２０２４ ١٢٣ text\u{a0}with\u{2003}spaces",
            "      leading spaces, trailing     ",
            "'quoted' it's don't'' x",
            "a",
            " a",
            "  a",
            " é",
            "é word,word  word\u{a0}word \u{a0} word\u{a0}  word 1 word",
            "x 1 y 22 z 333 w 4444",
        ];
        for text in samples {
            assert_eq!(text_tokens(text), by_chars(text), "{text:?}");
        }
        let long = samples.concat().repeat(20);
        assert_eq!(text_tokens(&long), by_chars(&long));
        let word = format!(" {}", "x".repeat(300));
        assert_eq!(text_tokens(&word), by_chars(&word));
        assert_eq!(text_tokens(&word), 3, "301 bytes of one piece: 3 tokens of at most 128");
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
