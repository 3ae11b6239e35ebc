//! Secrets hostyard generates (database and administrator passwords,
//! restic's repository key, WordPress salts): one home, so every one of
//! them comes from the OS random generator with the same strength.

/// The OS random generator failed (no `getrandom(2)` entropy yet, or a
/// seccomp filter refused it); nothing was generated.
#[derive(Debug, thiserror::Error)]
#[error("the OS random generator failed: {0}")]
pub struct RandomError(String);

/// `n` random bytes from the OS.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, RandomError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| RandomError(e.to_string()))?;
    Ok(buf)
}

/// 256 random bits as 64 lower-case hex digits: safe as is in an env file,
/// a shell word, a SQL string and a PHP string literal.
pub fn new_password() -> Result<String, RandomError> {
    Ok(random_bytes(32)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_64_hex_digits_and_differ() {
        let a = new_password().unwrap();
        let b = new_password().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
