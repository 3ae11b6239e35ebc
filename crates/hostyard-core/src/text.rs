//! Foreign text quoted in a message: kept short.

/// Cuts `text` to at most `max` bytes (at a character boundary) and marks
/// the cut with `…`: foreign text quoted in a log line or error stays short.
pub fn shorten(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_cuts_at_a_character_boundary_and_marks_the_cut() {
        let shortened = |text: &str, max| {
            let mut t = text.to_string();
            shorten(&mut t, max);
            t
        };
        assert_eq!(shortened("short", 10), "short");
        assert_eq!(shortened("abcdef", 3), "abc…");
        assert_eq!(shortened("aéb", 2), "a…");
    }
}
