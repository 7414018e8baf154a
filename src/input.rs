//! Rules every string a client sends must pass, on every API, before any
//! SQL runs: no NUL character (PostgreSQL cannot store one in text, and
//! SQLite would store what PostgreSQL refuses) and a sane length. Field
//! specific rules (a username's 150 characters, a text's 1024) come on top,
//! in the domain.
//!
//! Invalid UTF-8 never gets this far: JSON bodies are refused by the JSON
//! parser, and query strings and form bodies are decoded strictly by
//! [`decode_form`].

/// Longest string any input field may hold, in characters.
pub const MAX_CHARS: usize = 4096;

/// What is wrong with a client's string, if anything: the message for its field.
pub fn problem(value: &str) -> Option<String> {
    if value.contains('\0') {
        return Some("This field may not contain the NUL character (\\u0000).".to_owned());
    }
    if value.len() > MAX_CHARS && value.chars().count() > MAX_CHARS {
        return Some(format!(
            "Ensure this field has no more than {MAX_CHARS} characters."
        ));
    }
    None
}

/// Decode `application/x-www-form-urlencoded` text (a query string or a form
/// body) strictly: a name or value that is not UTF-8 once percent-decoded is
/// an error naming it, instead of being patched with replacement characters.
pub fn decode_form(raw: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    let mut pairs = Vec::new();
    for part in raw.split(|b| *b == b'&') {
        if part.is_empty() {
            continue;
        }
        let (name, value) = match part.iter().position(|b| *b == b'=') {
            Some(at) => (&part[..at], &part[at + 1..]),
            None => (part, &[][..]),
        };
        let name = decode_component(name).map_err(|_| FormError {
            field: String::from_utf8_lossy(name).into_owned(),
        })?;
        let value = decode_component(value).map_err(|_| FormError {
            field: name.clone(),
        })?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// A form field whose name or value is not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    pub field: String,
}

impl FormError {
    pub const MESSAGE: &'static str = "This field is not valid UTF-8.";
}

fn decode_component(raw: &[u8]) -> Result<String, std::string::FromUtf8Error> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut at = 0;
    while at < raw.len() {
        match raw[at] {
            b'+' => bytes.push(b' '),
            b'%' if at + 2 < raw.len() => match (hex(raw[at + 1]), hex(raw[at + 2])) {
                (Some(high), Some(low)) => {
                    bytes.push(high << 4 | low);
                    at += 3;
                    continue;
                }
                _ => bytes.push(b'%'),
            },
            other => bytes.push(other),
        }
        at += 1;
    }
    String::from_utf8(bytes)
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_checked() {
        assert_eq!(problem("fine"), None);
        assert!(problem("nul\0inside").is_some());
        assert!(problem(&"é".repeat(MAX_CHARS)).is_none());
        assert!(problem(&"x".repeat(MAX_CHARS + 1)).is_some());
    }

    #[test]
    fn forms_are_decoded_strictly() {
        assert_eq!(
            decode_form(b"a=1&b=hey+man&c=%C3%A9&d&&e=%zz%").unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "hey man".into()),
                ("c".into(), "é".into()),
                ("d".into(), "".into()),
                ("e".into(), "%zz%".into()),
            ]
        );
        assert_eq!(
            decode_form(b"username=%FF").unwrap_err(),
            FormError {
                field: "username".into()
            }
        );
        assert_eq!(
            decode_form(b"x=%00").unwrap(),
            vec![("x".into(), "\0".into())]
        );
    }
}
