//! Tarballs as a hostile tool would write them, for tests of the archive
//! checks: names go into the header raw (the `tar` crate's `set_path`
//! refuses `..` and absolute paths, which is exactly what such tests need).

/// One entry: name, type, and content (a file) or link target (a link).
pub type RawTarEntry<'a> = (&'a str, tar::EntryType, &'a [u8]);

/// A tar archive of `entries`, names and link targets written unchecked.
pub fn raw_tar(entries: &[RawTarEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        if kind.is_symlink() || kind.is_hard_link() {
            h.set_link_name_literal(data)
                .expect("link target fits a header");
            h.set_size(0);
        } else {
            h.set_size(data.len() as u64);
        }
        let raw = name.as_bytes();
        h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
        h.set_cksum();
        let body: &[u8] = if kind.is_file() { data } else { &[] };
        b.append(&h, body).expect("append to an in-memory tar");
    }
    b.into_inner().expect("finish an in-memory tar")
}
