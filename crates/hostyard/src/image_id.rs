//! `hostyard image-id TAR`: the ID of the image a `docker save` tarball
//! holds, read from its `manifest.json` with a JSON parser.
//!
//! `scripts/images.sh` skips writing a tarball that already holds the
//! built image, and `scripts/setup.sh` skips loading one the engine already
//! has; both compare this ID with `docker image inspect --format '{{.Id}}'`.
//! The ID is the digest of the image's config blob, which the manifest
//! names in both layouts Docker writes: the legacy `<hex>.json` and the
//! OCI `blobs/sha256/<hex>`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a tarball has no image ID.
#[derive(Debug, thiserror::Error)]
pub enum ImageIdError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} holds no manifest.json: is it a `docker save` tarball?")]
    NoManifest { path: PathBuf },
    #[error("{path}: manifest.json: {problem}")]
    BadManifest { path: PathBuf, problem: String },
}

/// The image ID (64 hex digits, no `sha256:`) of the first image in `tar`.
pub fn image_id(tar: &Path) -> Result<String, ImageIdError> {
    let read = |error| ImageIdError::Read {
        path: tar.to_path_buf(),
        error,
    };
    let file = File::open(tar).map_err(read)?;
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        let is_manifest = entry
            .path()
            .is_ok_and(|p| p.as_os_str() == "manifest.json" || p.as_os_str() == "./manifest.json");
        if !is_manifest {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).map_err(read)?;
        return id_from_manifest(&text).map_err(|problem| ImageIdError::BadManifest {
            path: tar.to_path_buf(),
            problem,
        });
    }
    Err(ImageIdError::NoManifest {
        path: tar.to_path_buf(),
    })
}

/// The config blob's digest named by the first entry of a manifest.
fn id_from_manifest(text: &str) -> Result<String, String> {
    let manifest: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let first = manifest
        .as_array()
        .ok_or("is not a list of images")?
        .first()
        .ok_or("lists no image")?;
    let config = first
        .get("Config")
        .and_then(|c| c.as_str())
        .ok_or("its first image has no Config")?;
    let name = config.rsplit('/').next().unwrap_or_default();
    let hex = name.strip_suffix(".json").unwrap_or(name);
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(hex.to_string())
    } else {
        Err(format!("Config {config:?} names no sha256 digest"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn both_layouts_name_the_config_digest() {
        for config in [format!("{HEX}.json"), format!("blobs/sha256/{HEX}")] {
            let manifest = format!(
                r#"[{{"Config":"{config}","RepoTags":["hostyard/static:latest"],"Layers":[]}}]"#
            );
            assert_eq!(id_from_manifest(&manifest).unwrap(), HEX, "{config}");
        }
    }

    #[test]
    fn a_manifest_without_a_digest_is_refused() {
        for bad in [
            "[]",
            "{}",
            r#"[{"Config":"x.json"}]"#,
            r#"[{"RepoTags":[]}]"#,
            "not json",
        ] {
            assert!(id_from_manifest(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_the_manifest_of_a_tarball() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("static.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        for (name, body) in [
            (format!("blobs/sha256/{HEX}"), "{}".to_string()),
            (
                "manifest.json".to_string(),
                format!(r#"[{{"Config":"blobs/sha256/{HEX}","Layers":[]}}]"#),
            ),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, body.as_bytes())
                .unwrap();
        }
        builder.finish().unwrap();
        drop(builder);
        assert_eq!(image_id(&path).unwrap(), HEX);
        let e = image_id(&dir.path().join("none.tar"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.tar"), "{e}");
    }
}
