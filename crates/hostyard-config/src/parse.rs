//! Parsing a node config's text, its drop-ins merged.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::validate::Problem;
use crate::{layers, NodeConfig, DEFAULT_CONFIG_PATH};

/// Why a node config could not be used.
///
/// Each message is complete on its own, and the underlying error is not
/// also exposed as a `source`: callers print error chains (`{:#}`), which
/// would otherwise repeat it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The YAML parser's message names the field and carries line and column.
    #[error("{path}: {error}")]
    Parse {
        path: PathBuf,
        error: yaml_serde::Error,
    },
    /// Every problem of a config that parsed, one line each, in the order
    /// of [`NodeConfig::validate`]. YAML syntax, an unknown key or a wrong
    /// type is reported alone: the parser stops at the first.
    #[error("{}", lines(.0))]
    Invalid(Vec<FileProblem>),
    #[error("{path}: drop-ins are read only when named *.yaml: rename it")]
    DropInName { path: PathBuf },
}

/// A problem of a config and the file it is in: that file sets the key,
/// or it is the main file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub path: PathBuf,
    pub problem: Problem,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

fn lines(problems: &[FileProblem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

impl NodeConfig {
    /// Parses YAML text; `path` names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse_files(&[(path.to_path_buf(), text.to_string())])
    }

    /// Parses the files of a node config, merged in order; each error names
    /// the file it is in.
    pub fn parse_files(files: &[(PathBuf, String)]) -> Result<NodeConfig, ConfigError> {
        let mut layers = Vec::new();
        for (path, text) in files {
            // An empty document is null in YAML; treat it as "all defaults".
            if text.trim().is_empty() {
                continue;
            }
            let parse_error = |error| ConfigError::Parse {
                path: path.clone(),
                error,
            };
            // Each file alone first: its errors carry its line and column.
            yaml_serde::from_str::<NodeConfig>(text).map_err(parse_error)?;
            let value = yaml_serde::from_str(text).map_err(parse_error)?;
            layers.push(layers::Layer {
                path: path.clone(),
                value,
            });
        }
        let main = files
            .first()
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        let merged = layers::merge(&layers).map_err(|c| {
            ConfigError::Invalid(vec![FileProblem {
                path: c.second.clone(),
                problem: Problem::new(
                    &c.key,
                    format!(
                        "is also set in {}: keep it in one file (deploy/ owns node_name, etcd and fleet in {}/fleet.yaml)",
                        c.first.display(),
                        layers::drop_in_dir(&main).display(),
                    ),
                ),
            }])
        })?;
        let config: NodeConfig = if merged.value.is_empty() {
            NodeConfig::default()
        } else {
            yaml_serde::from_value(yaml_serde::Value::Mapping(merged.value.clone())).map_err(
                |error| ConfigError::Parse {
                    path: main.clone(),
                    error,
                },
            )?
        };
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(
                problems
                    .into_iter()
                    .map(|problem| FileProblem {
                        path: merged.owner(&problem.field).unwrap_or(&main).to_path_buf(),
                        problem,
                    })
                    .collect(),
            ));
        }
        Ok(config)
    }
}
