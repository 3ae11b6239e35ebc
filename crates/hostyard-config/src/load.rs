//! Reading a node config from disk: the one place with file I/O; the
//! rest of the crate works on text.

use std::path::Path;

use crate::{layers, ConfigError, NodeConfig, DEFAULT_CONFIG_PATH};

impl NodeConfig {
    /// Reads a config file and the drop-ins beside it
    /// (`hostyard.yaml.d/*.yaml`, merged in name order; see
    /// [`crate::layers`]). A missing file at the default path is the
    /// default config; a missing file named explicitly is an error.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let read_error = |path: &Path, error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        };
        let main = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && path == Path::new(DEFAULT_CONFIG_PATH) =>
            {
                String::new()
            }
            Err(error) => return Err(read_error(path, error)),
        };
        let mut files = vec![(path.to_path_buf(), main)];
        let dir = layers::drop_in_dir(path);
        let mut names = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| read_error(&dir, e))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".yml") {
                        return Err(ConfigError::DropInName { path: entry.path() });
                    }
                    if layers::is_drop_in_name(&name) {
                        names.push(name);
                    }
                }
            }
            // No directory, or a config named /dev/null: no drop-ins.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) => {}
            Err(error) => return Err(read_error(&dir, error)),
        }
        names.sort();
        for name in names {
            let file = dir.join(&name);
            let text = std::fs::read_to_string(&file).map_err(|e| read_error(&file, e))?;
            files.push((file, text));
        }
        NodeConfig::parse_files(&files)
    }
}
