//! `hostyard config get KEY`: one value of the node config, for scripts.
//!
//! `scripts/setup.sh` needs a few values of the node config (`bin_dir`,
//! `data_root`, the image names, and `etcd.endpoints`, a list). Reading the
//! YAML again in shell would be a second parser that cannot read lists and
//! would accept what the binaries refuse; this asks the real one
//! ([`NodeConfig::load`], defaults and validation included). Keys are the
//! config's own dotted names, as docs/reference/config.md shows them.

use hostyard_config::NodeConfig;
use serde_json::Value;

/// Why a key has no printable value.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No such field in the node config.
    #[error("unknown config key {key:?}; known keys: {}", known.join(", "))]
    Unknown { key: String, known: Vec<String> },
    /// The key names a section, not a value.
    #[error("{key:?} is a section; ask for one of its keys: {}", keys.join(", "))]
    Section { key: String, keys: Vec<String> },
}

/// The value of `key` (`bin_dir`, `etcd.endpoints`, `images.static_git`)
/// as lines: a scalar is one line, printed as it is (no quotes); a list is
/// one line per item; `null` (an unset optional) and an empty list are no
/// lines.
pub fn get(config: &NodeConfig, key: &str) -> Result<Vec<String>, KeyError> {
    let tree = serde_json::to_value(config).unwrap_or(Value::Null);
    let mut node = &tree;
    for part in key.split('.') {
        node = match node.get(part) {
            Some(child) if node.is_object() => child,
            _ => {
                return Err(KeyError::Unknown {
                    key: key.to_string(),
                    known: leaf_keys(&tree, ""),
                })
            }
        };
    }
    match node {
        Value::Object(_) => Err(KeyError::Section {
            key: key.to_string(),
            keys: leaf_keys(node, &format!("{key}.")),
        }),
        Value::Array(items) => Ok(items.iter().map(scalar).collect()),
        Value::Null => Ok(Vec::new()),
        other => Ok(vec![scalar(other)]),
    }
}

/// A scalar as a shell reads it: strings without JSON quotes.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every dotted key below `node` that holds a value, sorted.
fn leaf_keys(node: &Value, prefix: &str) -> Vec<String> {
    match node {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| match v {
                Value::Object(_) => leaf_keys(v, &format!("{prefix}{k}.")),
                _ => vec![format!("{prefix}{k}")],
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_lists_and_nulls_of_the_default_config() {
        let c = NodeConfig::default();
        assert_eq!(get(&c, "bin_dir").unwrap(), ["/usr/local/bin"]);
        assert_eq!(
            get(&c, "images.static_git").unwrap(),
            ["hostyard/static-git"]
        );
        assert_eq!(get(&c, "images.static").unwrap(), ["hostyard/static"]);
        assert_eq!(get(&c, "haproxy.http_port").unwrap(), ["80"]);
        assert_eq!(get(&c, "haproxy.bind_address").unwrap(), ["0.0.0.0"]);
        assert_eq!(
            get(&c, "etcd.endpoints").unwrap(),
            ["http://127.0.0.1:2379"]
        );
        assert!(get(&c, "haproxy.frontend_rules").unwrap().is_empty());
        assert!(get(&c, "discovery.expect_status").unwrap().is_empty());
    }

    #[test]
    fn unknown_keys_and_sections_are_errors_naming_the_key() {
        let c = NodeConfig::default();
        for key in ["nope", "etcd.nope", "bin_dir.x", "", "etcd..prefix"] {
            let e = get(&c, key).unwrap_err().to_string();
            assert!(e.contains(&format!("{key:?}")), "{e}");
            assert!(e.contains("etcd.endpoints"), "{e}");
        }
        let e = get(&c, "etcd").unwrap_err().to_string();
        assert!(e.contains("is a section"), "{e}");
        for key in ["etcd.endpoints", "etcd.prefix", "etcd.ca_file"] {
            assert!(e.contains(key), "{e}");
        }
    }
}
