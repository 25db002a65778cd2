//! Join codes, ids and display names: what a learner types and what is shown of them.

/// Join-code characters: upper-case letters and digits without the look-alikes 0/O, 1/I/L.
pub const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
pub const CODE_LEN: usize = 6;
/// Longest display name, in characters.
pub const MAX_NAME: usize = 40;

/// A new join code: 6 characters of [`ALPHABET`], each uniformly drawn (31^6 ≈ 887 million).
pub fn join_code() -> String {
    let mut out = String::with_capacity(CODE_LEN);
    // Rejection sampling: a byte below 248 (8 × 31) maps uniformly onto the alphabet.
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    while out.len() < CODE_LEN {
        let mut buf = [0u8; 16];
        getrandom::fill(&mut buf).expect("the kernel's random source");
        for b in buf {
            if b < limit && out.len() < CODE_LEN {
                out.push(ALPHABET[(b as usize) % ALPHABET.len()] as char);
            }
        }
    }
    out
}

/// A code as typed (any case, spaces or dashes between groups) in its stored form, or `None`
/// if it cannot be a code at all.
pub fn normalize_code(typed: &str) -> Option<String> {
    let code: String = typed.chars().filter(|c| !matches!(c, ' ' | '-')).map(|c| c.to_ascii_uppercase()).collect();
    (code.len() == CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// A random id of `n` bytes (URL-safe text).
pub fn random_id(n: usize) -> String {
    super::auth::random_token(n)
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NameError {
    #[error("a name is at most {MAX_NAME} characters")]
    TooLong,
    #[error("a name cannot contain control or direction-changing characters")]
    Invalid,
}

/// A display name as typed: trimmed and inner whitespace collapsed; empty is no name. Control
/// characters and the bidirectional overrides (which can make a name display as another) are
/// refused. Markup is not refused: it is text, and every page and the CSV show it as text.
pub fn display_name(typed: &str) -> Result<Option<String>, NameError> {
    let name = typed.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        return Ok(None);
    }
    if name.chars().count() > MAX_NAME {
        return Err(NameError::TooLong);
    }
    let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}');
    if name.chars().any(|c| c.is_control() || bidi(c)) {
        return Err(NameError::Invalid);
    }
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_only_the_alphabet_and_normalize_as_typed() {
        for _ in 0..200 {
            let c = join_code();
            assert_eq!(c.len(), CODE_LEN);
            assert!(c.bytes().all(|b| ALPHABET.contains(&b)), "{c}");
            assert_eq!(normalize_code(&c.to_lowercase()).as_deref(), Some(c.as_str()));
        }
        for bad in [b'0', b'O', b'1', b'I', b'L'] {
            assert!(!ALPHABET.contains(&bad), "{} looks like another character", bad as char);
        }
        assert_eq!(normalize_code("abc-234").as_deref(), Some("ABC234"));
        assert_eq!(normalize_code("ab c2 34").as_deref(), Some("ABC234"));
        assert_eq!(normalize_code("ABC23"), None);
        assert_eq!(normalize_code("ABC2O4"), None, "O is not in the alphabet");
        assert_eq!(normalize_code("../../x"), None);
    }

    #[test]
    fn names_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(display_name("  Ada   Lovelace "), Ok(Some("Ada Lovelace".into())));
        assert_eq!(display_name("   "), Ok(None));
        assert_eq!(display_name("<script>alert(1)</script>"), Ok(Some("<script>alert(1)</script>".into())));
        assert_eq!(display_name("山田 太郎"), Ok(Some("山田 太郎".into())));
        assert_eq!(display_name(&"x".repeat(MAX_NAME)), Ok(Some("x".repeat(MAX_NAME))));
        assert_eq!(display_name(&"x".repeat(MAX_NAME + 1)), Err(NameError::TooLong));
        assert_eq!(display_name("a\u{0007}b"), Err(NameError::Invalid));
        assert_eq!(display_name("admin\u{202E}nimda"), Err(NameError::Invalid));
    }
}
