//! The export's copy of a live site's tree, raced by the site's own code:
//! a directory swapped for a symlink to another site's secrets between the
//! copy's look at an entry and its open.

use std::fs;
use std::path::Path;

use hostyard_backup::export_watched;
use hostyard_config::NodeConfig;
use hostyard_core::{Domain, Layout};

#[test]
fn a_directory_swapped_for_a_symlink_during_an_export_copies_nothing_from_outside() {
    // After the copy listed a file of the directory (named like the
    // secret), and after it saw the directory itself.
    for swap_at in ["assets/wp.env", "assets"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        let layout = Layout::new(&root);
        let tenant = Domain::parse("tenant.example.com").unwrap();
        let other = Domain::parse("other.example.com").unwrap();
        let www = layout.www_dir(&tenant);
        fs::create_dir_all(www.join("assets")).unwrap();
        fs::write(www.join("index.html"), "<h1>tenant</h1>").unwrap();
        fs::write(www.join("assets/wp.env"), "the tenant's own").unwrap();
        let secrets = layout.secrets_dir(&other);
        fs::create_dir_all(&secrets).unwrap();
        fs::write(secrets.join("wp.env"), "DB_PASSWORD=SECRET").unwrap();
        let config = NodeConfig::parse(
            &format!("data_root: {}\n", root.display()),
            Path::new("hostyard.yaml"),
        )
        .unwrap();

        let dest = tmp.path().join("export");
        let mut swapped = false;
        let result = export_watched(&config, &tenant, &dest, &mut |rel| {
            if rel == Path::new(swap_at) && !swapped {
                fs::rename(www.join("assets"), tmp.path().join("aside")).unwrap();
                std::os::unix::fs::symlink(&secrets, www.join("assets")).unwrap();
                swapped = true;
            }
        });
        assert!(swapped, "{swap_at}: the export never reached it");
        match result {
            // The file was opened beneath the directory the copy holds:
            // the tenant's own, wherever it was moved meanwhile.
            Ok(_) => {
                assert_eq!(swap_at, "assets/wp.env", "the swapped directory was copied");
                assert_eq!(
                    fs::read_to_string(dest.join("static/www-content/assets/wp.env")).unwrap(),
                    "the tenant's own"
                );
            }
            // A failed export leaves nothing, so nothing of the secret.
            Err(e) => {
                let err = format!("{e:#}");
                assert_eq!(err.lines().count(), 1, "{swap_at}: {err}");
                assert!(
                    err.contains(&www.join("assets").display().to_string()),
                    "{swap_at}: the refusal does not name the swapped path: {err}"
                );
                assert!(!dest.exists(), "{} is left", dest.display());
            }
        }
    }
}
