//! Escaping of values placed in unit files.
//!
//! systemd expands specifiers (`%i`, `%h`, ...) in almost every setting, so a
//! literal `%` in a value (a path, an image name) must be written `%%` or
//! systemd would substitute something else, or refuse the unit. This is the
//! one function that does it; the templates receive values already escaped.
//! Other characters that unit syntax treats specially (whitespace, quotes,
//! `\`, `$`, `;`) are refused where values enter: by the node config's
//! validation and by [`crate::units::check_config_path`].

/// Escapes `value` for a unit file: `%` becomes `%%`.
pub fn systemd_escape(value: &str) -> String {
    value.replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_percent_and_nothing_else() {
        for (input, expected) in [
            ("", ""),
            ("/data/domains", "/data/domains"),
            ("%", "%%"),
            ("%i", "%%i"),
            ("%%", "%%%%"),
            ("100%", "100%%"),
            ("/srv/%n/%i.d", "/srv/%%n/%%i.d"),
            ("hostyard/static:1", "hostyard/static:1"),
            ("a-b_c.d", "a-b_c.d"),
        ] {
            assert_eq!(systemd_escape(input), expected, "{input:?}");
        }
    }
}
