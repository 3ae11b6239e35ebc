//! The docs are checked against the code, so what a hoster reads works:
//! every node config block parses with the real parser, every `hostyard`
//! subcommand shown exists in the real binary, every link between the
//! pages resolves, and the config reference names exactly the keys the
//! parser knows. Each failure names the file and line to fix.
//!
//! Markdown is read with a few rules, not a full parser: fenced blocks
//! (```lang ... ```), inline code spans within a paragraph, and links
//! `[text](target)` outside code.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use hostyard::units::render_units;
use hostyard_config::{NodeConfig, DEFAULT_CONFIG_PATH};

/// The node config reference, whose complete block the parser's keys are
/// compared with.
const CONFIG_REFERENCE: &str = "docs/reference/config.md";
const CONFIG_REFERENCE_HEADING: &str = "## Every key with its default";
const UNITS_REFERENCE: &str = "docs/reference/units.md";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One markdown file: its path from the repository's root and its text.
struct Doc {
    path: String,
    text: String,
}

/// README.md and every page under docs/.
fn docs() -> Vec<Doc> {
    let mut paths = vec![root().join("README.md")];
    let mut dirs = vec![root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| Doc {
            path: p
                .strip_prefix(root())
                .expect("under the root")
                .display()
                .to_string(),
            text: fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        })
        .collect()
}

/// A fenced block: its info string (`yaml`, `sh`, ...), the line of its
/// first content line (1-based) and its content.
struct Block {
    info: String,
    line: usize,
    text: String,
}

/// The fenced blocks of a page, and its prose: the page with every fenced
/// line blanked, so line numbers stay those of the file.
fn split(text: &str) -> (Vec<Block>, Vec<String>) {
    let mut blocks = Vec::new();
    let mut prose = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match open.take() {
            None if fence => {
                open = Some(Block {
                    info: line.trim_start()[3..].trim().to_string(),
                    line: i + 2,
                    text: String::new(),
                });
                prose.push(String::new());
            }
            None => prose.push(line.to_string()),
            Some(block) if fence && line.trim() == "```" => {
                blocks.push(block);
                prose.push(String::new());
            }
            Some(mut block) => {
                block.text.push_str(line);
                block.text.push('\n');
                open = Some(block);
                prose.push(String::new());
            }
        }
    }
    assert!(open.is_none(), "a fenced block is not closed");
    (blocks, prose)
}

/// Inline code spans of the prose, with the line each starts on. A span may
/// wrap over lines; a paragraph (text between blank lines) ends any span.
fn code_spans(prose: &[String]) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut inside: Option<(usize, String)> = None;
    for (i, line) in prose.iter().enumerate() {
        if line.trim().is_empty() {
            inside = None;
            continue;
        }
        for (j, piece) in line.split('`').enumerate() {
            if j > 0 {
                // A backtick: a span opens or closes here.
                match inside.take() {
                    Some(span) => spans.push(span),
                    None => inside = Some((i + 1, String::new())),
                }
            }
            if let Some((_, span)) = inside.as_mut() {
                span.push_str(piece);
            }
        }
        if let Some((_, span)) = inside.as_mut() {
            span.push(' ');
        }
    }
    spans
}

/// Prose with code spans removed (kept as blanks), for the links.
fn prose_outside_code(prose: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in prose {
        if line.trim().is_empty() {
            inside = false;
        }
        let mut kept = String::new();
        for (j, piece) in line.split('`').enumerate() {
            if j > 0 {
                inside = !inside;
            }
            if !inside {
                kept.push_str(piece);
            }
        }
        out.push(kept);
    }
    out
}

/// Runs the real `hostyard` with a node config of all defaults.
fn hostyard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hostyard"))
        .args(args)
        .env("HOSTYARD_CONFIG", "/dev/null")
        .output()
        .expect("hostyard runs")
}

fn fail_with(problems: Vec<String>, what: &str) {
    assert!(
        problems.is_empty(),
        "{} {what}:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_config_block_parses_with_the_real_parser() {
    let mut problems = Vec::new();
    let mut node_configs = 0;
    let dir = tempfile::tempdir().expect("temp dir");
    for doc in docs() {
        let (blocks, _) = split(&doc.text);
        for block in blocks {
            let mut words = block.info.split_whitespace();
            if words.next() != Some("yaml") {
                continue;
            }
            let at = format!("{}:{}", doc.path, block.line);
            match words.next() {
                // A node config, or a drop-in of one: the same parser.
                None => {
                    node_configs += 1;
                    if let Err(e) = NodeConfig::parse(&block.text, Path::new(&at)) {
                        // The error names `at` and the line and column within the block.
                        problems.push(format!("not a valid node config: {e}"));
                    }
                }
                // A fleet inventory: `hostyard fleet check` reads it.
                Some("inventory") => {
                    let file = dir.path().join("fleet.yaml");
                    fs::write(&file, &block.text).expect("inventory written");
                    let inventory = file.display().to_string();
                    let out = hostyard(&["fleet", "--inventory", &inventory, "check"]);
                    if !out.status.success() {
                        problems.push(format!(
                            "{at}: hostyard fleet check refuses this inventory: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ));
                    }
                }
                Some(other) => problems.push(format!(
                    "{at}: ```yaml {other}: unknown kind of yaml block \
                     (```yaml is a node config, ```yaml inventory a fleet inventory)"
                )),
            }
        }
    }
    fail_with(problems, "config blocks do not parse");
    assert!(node_configs > 1, "no node config block found in the docs");
}

/// `hostyard A [B]` as the docs show it, with where.
fn shown_commands() -> BTreeMap<Vec<String>, Vec<String>> {
    let word = |w: &str| {
        w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let mut shown: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for doc in docs() {
        let (blocks, prose) = split(&doc.text);
        let mut texts: Vec<(usize, String)> = code_spans(&prose);
        for block in blocks {
            let shell = matches!(block.info.as_str(), "sh" | "bash" | "console" | "");
            if shell {
                for (i, line) in block.text.lines().enumerate() {
                    // A comment is prose, not a command.
                    let command = line.split_once('#').map_or(line, |(c, _)| c);
                    texts.push((block.line + i, command.to_string()));
                }
            }
        }
        for (line, text) in texts {
            let words: Vec<&str> = text.split_whitespace().collect();
            for (i, w) in words.iter().enumerate() {
                if *w != "hostyard" {
                    continue;
                }
                let args: Vec<String> = words[i + 1..]
                    .iter()
                    .take(2)
                    .take_while(|w| word(w))
                    .map(|w| w.to_string())
                    .collect();
                if !args.is_empty() {
                    shown
                        .entry(args)
                        .or_default()
                        .push(format!("{}:{line}", doc.path));
                }
            }
        }
    }
    shown
}

#[test]
fn every_hostyard_subcommand_the_docs_show_exists() {
    let shown = shown_commands();
    assert!(
        shown.keys().any(|k| k[0] == "status"),
        "no hostyard command found in the docs"
    );
    // Which commands have subcommands of their own: a second word after
    // one of them must be a subcommand; after another it is an argument.
    let mut nested: BTreeMap<String, bool> = BTreeMap::new();
    let mut problems = Vec::new();
    for (args, places) in &shown {
        let first = &args[0];
        let has_nested = *nested.entry(first.clone()).or_insert_with(|| {
            let out = hostyard(&[first, "--help"]);
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\nCommands:\n")
        });
        let checked: Vec<&str> = if has_nested {
            args.iter().map(String::as_str).collect()
        } else {
            vec![first.as_str()]
        };
        let mut argv = checked.clone();
        argv.push("--help");
        let out = hostyard(&argv);
        if !out.status.success() {
            problems.push(format!(
                "{}: `hostyard {}` is not a subcommand: {}",
                places.join(", "),
                checked.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    fail_with(problems, "hostyard commands in the docs do not exist");
}

/// GitHub's anchor of a heading: lower case, letters, digits, `-` and `_`
/// kept, spaces to `-`, the rest dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let (_, prose) = split(text);
    prose
        .iter()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn every_link_between_the_docs_resolves() {
    let docs = docs();
    let by_path: BTreeMap<&str, &str> = docs
        .iter()
        .map(|d| (d.path.as_str(), d.text.as_str()))
        .collect();
    let mut problems = Vec::new();
    let mut links = 0;
    for doc in &docs {
        let (_, prose) = split(&doc.text);
        for (i, line) in prose_outside_code(&prose).iter().enumerate() {
            for piece in line.split("](").skip(1) {
                let Some((target, _)) = piece.split_once(')') else {
                    problems.push(format!("{}:{}: a link does not close", doc.path, i + 1));
                    continue;
                };
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                links += 1;
                let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
                let resolved = if file.is_empty() {
                    PathBuf::from(&doc.path)
                } else {
                    Path::new(&doc.path).parent().expect("a parent").join(file)
                };
                // Normalise `a/../b` without touching the disk.
                let mut parts: Vec<String> = Vec::new();
                for c in resolved.components() {
                    match c {
                        std::path::Component::ParentDir => {
                            parts.pop();
                        }
                        std::path::Component::CurDir => {}
                        c => parts.push(c.as_os_str().to_string_lossy().into_owned()),
                    }
                }
                let normal = parts.join("/");
                let at = format!("{}:{}: ({target})", doc.path, i + 1);
                if !root().join(&normal).exists() {
                    problems.push(format!("{at}: {normal} does not exist"));
                    continue;
                }
                if fragment.is_empty() {
                    continue;
                }
                match by_path.get(normal.as_str()) {
                    Some(text) if anchors(text).contains(fragment) => {}
                    Some(_) => problems.push(format!("{at}: {normal} has no heading #{fragment}")),
                    None => problems.push(format!("{at}: an anchor into a file that is no page")),
                }
            }
        }
    }
    fail_with(problems, "links do not resolve");
    assert!(links > 10, "only {links} links found");
}

/// Every dotted key path of a YAML block, from its indentation: `a`,
/// `a.b`, ... (comments and values are not read).
fn yaml_key_paths(block: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for line in block.lines() {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') || content.starts_with('-') {
            continue;
        }
        let Some((key, _)) = content.split_once(':') else {
            continue;
        };
        let indent = line.len() - content.len();
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let path = match stack.last() {
            Some((_, parent)) => format!("{parent}.{key}"),
            None => key.to_string(),
        };
        paths.insert(path.clone());
        stack.push((indent, path));
    }
    paths
}

/// Every dotted key path the parser knows, from its defaults serialized.
fn parser_key_paths() -> (BTreeSet<String>, serde_json::Value) {
    let value = serde_json::to_value(NodeConfig::default()).expect("serializes");
    let mut paths = BTreeSet::new();
    let mut stack = vec![(String::new(), &value)];
    while let Some((prefix, v)) = stack.pop() {
        if let Some(map) = v.as_object() {
            for (k, child) in map {
                let path = format!("{prefix}{k}");
                paths.insert(path.clone());
                stack.push((format!("{path}."), child));
            }
        }
    }
    (paths, value)
}

fn reference_block() -> (usize, String) {
    let text = fs::read_to_string(root().join(CONFIG_REFERENCE)).expect("config reference");
    let heading = text
        .lines()
        .position(|l| l == CONFIG_REFERENCE_HEADING)
        .unwrap_or_else(|| panic!("{CONFIG_REFERENCE} has no {CONFIG_REFERENCE_HEADING:?}"));
    let (blocks, _) = split(&text);
    let block = blocks
        .into_iter()
        .find(|b| b.line > heading && b.info == "yaml")
        .unwrap_or_else(|| panic!("no ```yaml block after {CONFIG_REFERENCE_HEADING:?}"));
    (block.line, block.text)
}

#[test]
fn the_config_reference_is_the_complete_default_config() {
    let (line, block) = reference_block();
    let at = format!("{CONFIG_REFERENCE}:{line}");
    let parsed = NodeConfig::parse(&block, Path::new(&at))
        .unwrap_or_else(|e| panic!("{at}: the reference does not parse: {e}"));
    assert_eq!(
        parsed,
        NodeConfig::default(),
        "{at}: the reference's values differ from the parser's defaults"
    );
    let documented = yaml_key_paths(&block);
    let (known, _) = parser_key_paths();
    let missing: Vec<_> = known.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&known).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "{at}: keys the parser knows but the reference lacks: {missing:?}; \
         keys the reference shows but the parser does not know: {unknown:?}"
    );
}

#[test]
fn every_dotted_config_key_the_docs_name_exists() {
    let (_, value) = parser_key_paths();
    let sections: BTreeSet<&str> = value
        .as_object()
        .expect("a map")
        .keys()
        .map(String::as_str)
        .collect();
    // `haproxy.cfg`, `backup.sh`, `etcd.service` are files, not keys.
    const FILE_ENDINGS: &[&str] = &[
        "cfg",
        "map",
        "list",
        "pem",
        "json",
        "sh",
        "rs",
        "yaml",
        "yml",
        "md",
        "toml",
        "env",
        "php",
        "tar",
        "txt",
        "service",
        "timer",
        "target",
        "path",
        "sock",
        "conf",
        "d",
        "sql",
        "candidate",
    ];
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in docs() {
        let (_, prose) = split(&doc.text);
        for (line, span) in code_spans(&prose) {
            let span = span.trim();
            let parts: Vec<&str> = span.split('.').collect();
            let dotted_key = parts.len() > 1
                && parts.iter().all(|p| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                });
            if !dotted_key
                || !sections.contains(parts[0])
                || FILE_ENDINGS.contains(parts.last().expect("parts"))
            {
                continue;
            }
            checked += 1;
            if parts.iter().try_fold(&value, |v, p| v.get(p)).is_none() {
                problems.push(format!(
                    "{}:{line}: `{span}` is no key of the node config",
                    doc.path
                ));
            }
        }
    }
    fail_with(problems, "config keys in the docs do not exist");
    assert!(checked > 10, "only {checked} dotted keys found");
}

#[test]
fn every_unit_generate_writes_is_in_the_units_reference() {
    let text = fs::read_to_string(root().join(UNITS_REFERENCE)).expect("units reference");
    let units =
        render_units(&NodeConfig::default(), Path::new(DEFAULT_CONFIG_PATH)).expect("renders");
    let missing: Vec<&str> = units
        .iter()
        .map(|u| u.name.as_str())
        .filter(|name| !text.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "{UNITS_REFERENCE} does not name {missing:?}"
    );
}

#[test]
fn readme_opens_with_the_server_in_a_box_and_test_commands() {
    let text = fs::read_to_string(root().join("README.md")).expect("README.md");
    let (blocks, _) = split(&text);
    let first = blocks.first().expect("README.md has a fenced block");
    let commands: Vec<&str> = first
        .text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(commands, ["scripts/server-in-a-box.sh", "scripts/test.sh"]);
    for c in commands {
        assert!(root().join(c).is_file(), "{c}");
    }
}
