//! The HAProxy config confd renders ([`render_cfg`]) for the default node
//! config, compared with `tests/golden/haproxy/haproxy.cfg`, so a template
//! change shows as a reviewed diff. After an intended change:
//! `HOSTYARD_BLESS=1 cargo test -p hostyard-haproxy --test golden`.

use std::path::Path;

use hostyard_config::NodeConfig;
use hostyard_haproxy::render_cfg;

#[test]
fn haproxy_cfg_for_the_default_config_matches_its_golden() {
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/haproxy/haproxy.cfg");
    let rendered = render_cfg(&NodeConfig::default()).expect("renders");
    if std::env::var_os("HOSTYARD_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden.parent().expect("has a parent")).expect("golden dir");
        std::fs::write(&golden, &rendered).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("reading {}: {e}", golden.display()));
    if rendered != expected {
        let line = expected
            .lines()
            .zip(rendered.lines())
            .position(|(e, r)| e != r)
            .unwrap_or_else(|| expected.lines().count().min(rendered.lines().count()));
        panic!(
            "{} differs from what confd renders, first at line {}:\n  golden:   {}\n  \
             rendered: {}\nIf the change is intended, refresh with: \
             HOSTYARD_BLESS=1 cargo test -p hostyard-haproxy --test golden",
            golden.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("(end of file)"),
            rendered.lines().nth(line).unwrap_or("(end of file)"),
        );
    }
}
