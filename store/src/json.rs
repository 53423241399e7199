//! JSON strings written straight into a buffer, exactly as `serde_json` writes them: for pages
//! written from their rows without serde (see [`crate::contacts::Page::write_json`]).

/// Writes `text` as a JSON string, quotes included: the same bytes as `serde_json::to_writer`
/// (`"` and `\` escaped, control characters as `\b \t \n \f \r` or `\u00xx`, everything else as
/// it is, non-ASCII included).
///
/// Text is scanned eight bytes at a time: most of a contact's text needs no escape, and
/// `serde_json`'s byte-by-byte scan was about 3 % of serve's CPU for a page of contacts.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `bytes[start..at]` is written as it is once something to escape (or the end) is reached.
    let (mut start, mut at) = (0, 0);
    while at < bytes.len() {
        if let Some(chunk) = bytes.get(at..at + 8) {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            if !needs_escape(u64::from_le_bytes(word)) {
                at += 8;
                continue;
            }
        }
        // Byte by byte to the end of this chunk (or of the text).
        for _ in 0..8 {
            let Some(&byte) = bytes.get(at) else { break };
            if let Some(escape) = escape(byte) {
                out.extend_from_slice(&bytes[start..at]);
                match escape {
                    Escape::Short(letter) => out.extend_from_slice(&[b'\\', letter]),
                    Escape::Unicode => {
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        let digits = [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]];
                        out.extend_from_slice(b"\\u00");
                        out.extend_from_slice(&digits);
                    }
                }
                start = at + 1;
            }
            at += 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

enum Escape {
    /// `\` and this letter.
    Short(u8),
    /// `\u00` and the byte in two lower-case hex digits.
    Unicode,
}

fn escape(byte: u8) -> Option<Escape> {
    Some(match byte {
        b'"' => Escape::Short(b'"'),
        b'\\' => Escape::Short(b'\\'),
        0x08 => Escape::Short(b'b'),
        b'\t' => Escape::Short(b't'),
        b'\n' => Escape::Short(b'n'),
        0x0c => Escape::Short(b'f'),
        b'\r' => Escape::Short(b'r'),
        0..0x20 => Escape::Unicode,
        _ => return None,
    })
}

/// Whether any of the eight bytes of `word` is a control character, `"` or `\` (exact for "any";
/// which byte is left to the byte loop).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte below `n` (n ≤ 0x80) leaves its high bit set in `word - n` where it was clear in
    // `word`; a byte equal to `c` is a zero byte of `word ^ c`, which is below 1.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS != 0;
    below(word, 0x20) || below(word ^ (ONES * u64::from(b'"')), 1) || below(word ^ (ONES * u64::from(b'\\')), 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn ours(text: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_byte_that_serde_json_escapes_is_escaped_the_same_way_at_every_offset() {
        for byte in 0..=0x7f_u8 {
            let c = char::from(byte);
            // At each position of a chunk of eight, and across a chunk's end.
            for before in 0..17 {
                let text = format!("{}{c}{}", "a".repeat(before), "é".repeat(before % 3));
                assert_eq!(ours(&text), serde_json::to_string(&text).unwrap(), "{byte:#04x} after {before}");
            }
        }
        assert_eq!(ours(""), "\"\"");
        assert_eq!(ours("\u{7f}\u{2028}😀"), "\"\u{7f}\u{2028}😀\"");
    }

    #[test]
    fn a_word_needs_an_escape_exactly_when_one_of_its_bytes_does() {
        // Each byte value in each of the eight places, among bytes that need none (and that make
        // the subtraction borrow: 0x80 and above, 0x20 and 0x21 just above the limit).
        for filler in [b'a', 0x20, 0x21, 0x80, 0xff, b'#', b'['] {
            for place in 0..8 {
                for byte in 0..=0xff_u8 {
                    let mut word = [filler; 8];
                    word[place] = byte;
                    assert_eq!(
                        needs_escape(u64::from_le_bytes(word)),
                        escape(byte).is_some(),
                        "{byte:#04x} at {place} among {filler:#04x}"
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_text_is_written_as_serde_json_writes_it(text in any::<String>()) {
            prop_assert_eq!(ours(&text), serde_json::to_string(&text).unwrap());
        }

        #[test]
        fn text_of_controls_quotes_and_backslashes_is_written_as_serde_json_writes_it(
            text in "[\\x00-\\x21\"\\\\a-z\u{80}-\u{10ffff}]{0,40}"
        ) {
            prop_assert_eq!(ours(&text), serde_json::to_string(&text).unwrap());
        }
    }
}
