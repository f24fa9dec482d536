//! The cheap walk: what it accepts, and what it leaves to the exact pass.

use super::*;

fn yes(doc: &str) -> bool {
    plain(doc.as_bytes()).is_some()
}

#[test]
fn accepts_plain_requests() {
    let chat = r#" {"model":"m","messages":[{"role":"user","content":"héllo \"you\" \\ \n \u00e9 \ud83d\ude00 😀"}],
        "temperature":0.5,"n":1,"max_tokens":-0,"stop":null,"stream":false,"x":[true,{},[]]} "#;
    assert_eq!(plain(chat.as_bytes()), Some(Plain { nul: false }));
    assert_eq!(plain(br#"{"a":"x\u0000y"}"#), Some(Plain { nul: true }));
    assert_eq!(
        plain(br#"{"a":"x\\u0000y"}"#),
        Some(Plain { nul: false }),
        "an escaped backslash"
    );
    for doc in ["0", "-1.25", "\"\"", "[]", "{}", "null", "[1,[2,{\"a\":{\"a\":1}}]]"] {
        assert!(yes(doc), "{doc}");
    }
    // The same key in different objects is no repeat.
    assert!(yes(r#"{"a":{"a":1,"b":2},"b":[{"a":1},{"a":2}]}"#));
    let long = format!("{{\"content\":\"{}\"}}", "abcdefgh".repeat(300));
    assert!(yes(&long));
}

#[test]
fn leaves_the_rest_to_the_exact_pass() {
    let wide: Vec<String> = (0..17).map(|i| format!("\"k{i}\":{i}")).collect();
    let cases = [
        // Errors.
        "",
        " ",
        "{} x",
        "{\"a\":1,}",
        "[1,]",
        "{\"a\" 1}",
        "{\"a\":1 \"b\":2}",
        "[01]",
        "[1.]",
        "[-]",
        "[tru]",
        "[nul]",
        "\"a",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12g4\"",
        "\"\u{1}\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "{\"a\":1,\"a\":2}",
        "{\"b\":{\"a\":1,\"c\":2,\"a\":3}}",
        "{1:2}",
        // Valid, but for the exact pass to judge.
        "{\"\\u0061\":1}",
        "[1e5]",
        "[1E-5]",
        &format!("[{}]", "9".repeat(101)),
        &format!("{{{}}}", wide.join(",")),
        &format!("{}1{}", "[".repeat(65), "]".repeat(65)),
    ];
    for doc in cases {
        assert!(!yes(doc), "{doc:?}");
    }
    assert!(yes(&format!("{}1{}", "[".repeat(64), "]".repeat(64))));
    for bytes in [
        &b"\"\xff\""[..],
        b"\"\xc3\"",
        b"\"\xed\xa0\x80\"",
        b"\"\xc0\x80\"",
        b"[\xc3\xa9]",
    ] {
        assert!(plain(bytes).is_none(), "{bytes:?}");
    }
}
