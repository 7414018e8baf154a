//! A GraphQL lexer that only counts: tokens and bracket nesting.
//!
//! It runs before the parser, in one pass over the bytes, and stops as soon
//! as a limit is passed, so a megabyte of `{a a a ...}` costs microseconds
//! instead of a parse (and a deeply nested document never reaches the
//! recursive parser). It follows the GraphQL lexical grammar closely enough
//! to count like a real lexer; whatever it cannot classify counts as one
//! token and is left for the parser to reject.

/// What the scan found, when no limit was passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    pub tokens: usize,
    pub nesting: usize,
}

/// The scan stopped because of a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// More than this many tokens.
    Tokens(usize),
    /// Brackets nested deeper than this.
    Nesting(usize),
}

/// Count the tokens of `source`, and its deepest nesting of `{`, `(` and `[`.
pub fn scan(source: &str, max_tokens: usize, max_nesting: usize) -> Result<Scan, Exceeded> {
    let bytes = source.as_bytes();
    let mut at = 0;
    let mut tokens = 0;
    let mut depth = 0usize;
    let mut nesting = 0usize;
    while at < bytes.len() {
        let byte = bytes[at];
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                at += 1;
                continue;
            }
            b'#' => {
                while at < bytes.len() && bytes[at] != b'\n' && bytes[at] != b'\r' {
                    at += 1;
                }
                continue;
            }
            // The byte order mark, U+FEFF, is ignored like white space.
            0xEF if bytes[at..].starts_with(&[0xEF, 0xBB, 0xBF]) => {
                at += 3;
                continue;
            }
            b'{' | b'(' | b'[' => {
                depth += 1;
                nesting = nesting.max(depth);
                if nesting > max_nesting {
                    return Err(Exceeded::Nesting(max_nesting));
                }
                at += 1;
            }
            b'}' | b')' | b']' => {
                depth = depth.saturating_sub(1);
                at += 1;
            }
            b'.' if bytes[at..].starts_with(b"...") => at += 3,
            b'"' if bytes[at..].starts_with(b"\"\"\"") => at = block_string_end(bytes, at + 3),
            b'"' => at = string_end(bytes, at + 1),
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                at += 1;
                while at < bytes.len() && (bytes[at] == b'_' || bytes[at].is_ascii_alphanumeric()) {
                    at += 1;
                }
            }
            b'-' | b'0'..=b'9' => {
                at += 1;
                // Digits, a fraction and an exponent all belong to one number.
                while at < bytes.len()
                    && (bytes[at].is_ascii_alphanumeric()
                        || bytes[at] == b'.'
                        || ((bytes[at] == b'+' || bytes[at] == b'-')
                            && matches!(bytes[at - 1], b'e' | b'E')))
                {
                    at += 1;
                }
            }
            _ => {
                // A punctuator, or a character the parser will refuse: one
                // token either way. Skip the whole UTF-8 sequence.
                at += 1;
                while at < bytes.len() && (bytes[at] & 0xC0) == 0x80 {
                    at += 1;
                }
            }
        }
        tokens += 1;
        if tokens > max_tokens {
            return Err(Exceeded::Tokens(max_tokens));
        }
    }
    Ok(Scan { tokens, nesting })
}

/// Where a `"..."` string that starts before `at` ends (after its quote),
/// or at the end of its line when it is unterminated.
fn string_end(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' => return at + 1,
            b'\n' | b'\r' => return at,
            _ => at += 1,
        }
    }
    bytes.len()
}

/// Where a `"""..."""` block string that starts before `at` ends.
fn block_string_end(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() {
        if bytes[at..].starts_with(b"\\\"\"\"") {
            at += 4;
        } else if bytes[at..].starts_with(b"\"\"\"") {
            return at + 3;
        } else {
            at += 1;
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(source: &str) -> usize {
        scan(source, usize::MAX, usize::MAX).unwrap().tokens
    }

    #[test]
    fn counts_like_a_lexer() {
        assert_eq!(count("{ a }"), 3);
        assert_eq!(
            count("query Q($x: Int = -1.5e+3) { a(x: $x) @skip(if: true) }"),
            26
        );
        assert_eq!(count("{ ...F } fragment F on Query { a }"), 11);
        assert_eq!(count(r#"{ a(s: "x \" y, z # no comment") }"#), 8);
        assert_eq!(count("{ a(s: \"\"\"block \\\"\"\" still \"\"\") }"), 8);
        assert_eq!(count("# just a comment\n{ a, b, c }"), 5);
        assert_eq!(count("\u{FEFF}{ é }"), 3);
    }

    #[test]
    fn stops_at_the_limits() {
        let flood = format!("{{{}}}", " a".repeat(10_000));
        assert_eq!(scan(&flood, 1000, 64), Err(Exceeded::Tokens(1000)));
        let deep = format!("{}{}", "{a".repeat(100), "}".repeat(100));
        assert_eq!(scan(&deep, 10_000, 64), Err(Exceeded::Nesting(64)));
        assert_eq!(
            scan("{ a { b } }", 10, 64),
            Ok(Scan {
                tokens: 6,
                nesting: 2
            })
        );
    }
}
