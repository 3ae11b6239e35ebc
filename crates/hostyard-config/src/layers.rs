//! The node config's layers: `hostyard.yaml` and the drop-ins beside it.
//!
//! A fleet's settings (`node_name`, `etcd`, `fleet`) are written by
//! `deploy/` from its inventory; the rest of a server's settings are the
//! operator's. Each has a file of its own so that neither overwrites the
//! other: the operator's `hostyard.yaml`, and `hostyard.yaml.d/*.yaml`
//! (`deploy/` writes `fleet.yaml` there). The files are merged key by key.
//! A setting given in two files is an error naming both: neither silently
//! wins, so an operator's edit cannot be undone by the next deploy, nor a
//! deploy's by a forgotten edit.

use std::path::{Path, PathBuf};

use yaml_serde::{Mapping, Value};

/// The drop-in directory of a node config: the config's path with `.d`
/// appended (`/etc/hostyard/hostyard.yaml.d`).
pub fn drop_in_dir(config: &Path) -> PathBuf {
    let mut dir = config.as_os_str().to_owned();
    dir.push(".d");
    PathBuf::from(dir)
}

/// Whether a file in the drop-in directory is read: `*.yaml`, not hidden
/// (an editor's or a writer's temporary file is neither).
pub fn is_drop_in_name(name: &str) -> bool {
    !name.starts_with('.') && name.len() > ".yaml".len() && name.ends_with(".yaml")
}

/// One file's YAML and where it came from.
pub struct Layer {
    pub path: PathBuf,
    pub value: Value,
}

/// A setting given in two files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The dotted key, as `hostyard config get` takes it.
    pub key: String,
    pub first: PathBuf,
    pub second: PathBuf,
}

/// The merged document and which file set each key.
#[derive(Debug, Default)]
pub struct Merged {
    pub value: Mapping,
    /// Every key a file set, dotted, with the file (sections and leaves).
    owners: Vec<(String, PathBuf)>,
}

impl Merged {
    /// The file that set `field` (a dotted key) or the section holding it.
    pub fn owner(&self, field: &str) -> Option<&Path> {
        self.owners
            .iter()
            .filter(|(key, _)| {
                field == key
                    || (field.starts_with(key.as_str()) && field[key.len()..].starts_with('.'))
            })
            .max_by_key(|(key, _)| key.len())
            .map(|(_, path)| path.as_path())
    }
}

/// Merges the layers in order: sections (mappings) are merged key by key;
/// any other value (a scalar, a list) may be given by one file only. Every
/// layer must be a mapping or empty (null).
pub fn merge(layers: &[Layer]) -> Result<Merged, Conflict> {
    let mut merged = Merged::default();
    for layer in layers {
        if let Value::Mapping(map) = &layer.value {
            let mut owners = std::mem::take(&mut merged.owners);
            merge_map(&mut merged.value, map, "", &layer.path, &mut owners)?;
            merged.owners = owners;
        }
    }
    Ok(merged)
}

fn merge_map(
    into: &mut Mapping,
    from: &Mapping,
    prefix: &str,
    path: &Path,
    owners: &mut Vec<(String, PathBuf)>,
) -> Result<(), Conflict> {
    for (k, v) in from {
        let name = match k {
            Value::String(s) => s.clone(),
            other => yaml_serde::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        match (into.get_mut(k), v) {
            (Some(Value::Mapping(have)), Value::Mapping(add)) => {
                merge_map(have, add, &key, path, owners)?;
            }
            (Some(_), _) => {
                let first = owners
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == key)
                    .map(|(_, p)| p.clone())
                    .unwrap_or_default();
                return Err(Conflict {
                    key,
                    first,
                    second: path.to_path_buf(),
                });
            }
            (None, _) => {
                into.insert(k.clone(), v.clone());
                record(v, &key, path, owners);
            }
        }
    }
    Ok(())
}

/// Records `key` and, for a section, every key beneath it as set by `path`.
fn record(v: &Value, key: &str, path: &Path, owners: &mut Vec<(String, PathBuf)>) {
    owners.push((key.to_string(), path.to_path_buf()));
    if let Value::Mapping(map) = v {
        for (k, v) in map {
            if let Value::String(name) = k {
                record(v, &format!("{key}.{name}"), path, owners);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(path: &str, yaml: &str) -> Layer {
        Layer {
            path: PathBuf::from(path),
            value: yaml_serde::from_str(yaml).unwrap(),
        }
    }

    #[test]
    fn sections_merge_key_by_key() {
        let m = merge(&[
            layer(
                "main",
                "haproxy:\n  site_maxconn: 123\nbackup:\n  repository: /srv/r\n",
            ),
            layer("fleet", "node_name: n1\nhaproxy:\n  http_port: 8080\n"),
        ])
        .unwrap();
        let expect: Value = yaml_serde::from_str(
            "haproxy:\n  site_maxconn: 123\n  http_port: 8080\nbackup:\n  repository: /srv/r\nnode_name: n1\n",
        )
        .unwrap();
        assert_eq!(Value::Mapping(m.value.clone()), expect);
        assert_eq!(m.owner("haproxy.site_maxconn"), Some(Path::new("main")));
        assert_eq!(m.owner("haproxy.http_port"), Some(Path::new("fleet")));
        assert_eq!(m.owner("node_name"), Some(Path::new("fleet")));
        // A field beneath a key a file set belongs to that file.
        assert_eq!(m.owner("backup.repository.x"), Some(Path::new("main")));
        assert_eq!(m.owner("backup.other"), Some(Path::new("main")));
        assert_eq!(m.owner("backupx"), None);
        assert_eq!(m.owner("etcd"), None);
    }

    #[test]
    fn a_setting_in_two_files_is_a_conflict_naming_both() {
        for (a, b, key) in [
            ("node_name: a\n", "node_name: b\n", "node_name"),
            (
                "etcd:\n  prefix: /a\n",
                "etcd:\n  prefix: /b\n",
                "etcd.prefix",
            ),
            // The same value twice is still two owners.
            (
                "etcd:\n  prefix: /a\n",
                "etcd:\n  prefix: /a\n",
                "etcd.prefix",
            ),
            // A list is one setting, not merged.
            (
                "fleet:\n  peers: []\n",
                "fleet:\n  peers: []\n",
                "fleet.peers",
            ),
            // A section in one file, a scalar in the other.
            ("fleet:\n  peer_port: 1\n", "fleet: 3\n", "fleet"),
        ] {
            let err = merge(&[layer("one", a), layer("two", b)]).unwrap_err();
            assert_eq!(
                err,
                Conflict {
                    key: key.into(),
                    first: "one".into(),
                    second: "two".into()
                },
                "{a} + {b}"
            );
        }
    }

    #[test]
    fn empty_layers_add_nothing() {
        let m = merge(&[layer("a", "~\n"), layer("b", "git:\n  keep_trees: 2\n")]).unwrap();
        assert_eq!(m.owner("git.keep_trees"), Some(Path::new("b")));
        assert_eq!(m.value.len(), 1);
    }

    #[test]
    fn drop_ins_are_visible_yaml_files() {
        assert_eq!(
            drop_in_dir(Path::new("/etc/hostyard/hostyard.yaml")),
            Path::new("/etc/hostyard/hostyard.yaml.d")
        );
        for (name, read) in [
            ("fleet.yaml", true),
            ("10-local.yaml", true),
            (".fleet.yaml.tmp", false),
            (".yaml", false),
            ("fleet.yaml~", false),
            ("fleet.yml", false),
            ("fleet.yaml.dpkg-old", false),
        ] {
            assert_eq!(is_drop_in_name(name), read, "{name}");
        }
    }
}
