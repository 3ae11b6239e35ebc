//! A real ACME CA on loopback: Let's Encrypt's test server `pebble`
//! (Debian's package: 2.4 on Debian 12, 2.6 on Debian 13), with
//! `pebble-challtestsrv` as its DNS server, so every name a test orders
//! resolves to 127.0.0.1 and no validation leaves the machine.
//!
//! Pebble validates HTTP-01 on `http_port` (the HAProxy under test), at
//! once (`PEBBLE_VA_NOSLEEP`). Its own HTTPS certificate is made here; the
//! root it signs sites with is fetched from its management API.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;

use crate::poll::{try_free_port, wait_until_ok};
use crate::process::Service;

// Generous: pebble makes its keys at start, slow on a loaded 2-core CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Pebble {
    dir: TempDir,
    acme_port: u16,
    management_port: u16,
    dns_management_port: u16,
    _dns: Service,
    _pebble: Service,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 against 127.0.0.1:`http_port`.
    pub fn start(http_port: u16) -> anyhow::Result<Pebble> {
        for bin in ["pebble", "pebble-challtestsrv"] {
            // `-h` exits 2; only a missing program matters here.
            if let Err(e) = Command::new(bin).arg("-h").output() {
                anyhow::bail!("{bin} cannot run ({e}): apt-get install pebble");
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("hostyard-pebble-")
            .tempdir()
            .context("creating pebble's temp dir")?;
        // Pebble's own HTTPS certificate, for 127.0.0.1.
        let key = rcgen::KeyPair::generate().context("pebble key")?;
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .context("pebble cert params")?;
        let cert = params.self_signed(&key).context("pebble cert")?;
        let cert_file = dir.path().join("server.pem");
        let key_file = dir.path().join("server.key");
        std::fs::write(&cert_file, cert.pem())?;
        std::fs::write(&key_file, key.serialize_pem())?;

        let dns_port = try_free_port()?;
        let dns_management = try_free_port()?;
        let mut dns_cmd = Command::new("pebble-challtestsrv");
        dns_cmd
            .arg("-dns01")
            .arg(format!("127.0.0.1:{dns_port}"))
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .arg("-management")
            .arg(format!("127.0.0.1:{dns_management}"))
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]);
        let dns = Service::spawn("pebble-challtestsrv", dns_cmd, &dir.path().join("dns.log"))?;

        let acme_port = try_free_port()?;
        let management_port = try_free_port()?;
        let config = format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{acme_port}",
 "managementListenAddress": "127.0.0.1:{management_port}",
 "certificate": "{}", "privateKey": "{}",
 "httpPort": {http_port}, "tlsPort": {}, "ocspResponderURL": "",
 "externalAccountBindingRequired": false}}}}"#,
            cert_file.display(),
            key_file.display(),
            try_free_port()?
        );
        let config_file = dir.path().join("pebble.json");
        std::fs::write(&config_file, config)?;
        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(&config_file)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns_port}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            // Deterministic tests: no random nonce rejections; fresh
            // authorizations for every order.
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0");
        let pebble = Service::spawn("pebble", cmd, &dir.path().join("pebble.log"))?;
        let p = Pebble {
            dir,
            acme_port,
            management_port,
            dns_management_port: dns_management,
            _dns: dns,
            _pebble: pebble,
        };
        wait_until_ok("pebble to answer", READY_TIMEOUT, || {
            p.curl(&p.directory_url())?;
            p.curl(&format!("https://127.0.0.1:{management_port}/roots/0"))
        })?;
        let root = p.curl(&format!("https://127.0.0.1:{management_port}/roots/0"))?;
        std::fs::write(p.root_file(), root)?;
        Ok(p)
    }

    fn curl(&self, url: &str) -> anyhow::Result<String> {
        let out = Command::new("curl")
            .args(["-sSf", "--max-time", "5", "--cacert"])
            .arg(self.server_ca())
            .arg(url)
            .output()
            .context("running curl")?;
        if !out.status.success() {
            anyhow::bail!("{url}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Makes pebble's DNS know `hosts` (each at 127.0.0.1) and nothing
    /// else: any other name, `www.` forms included, has no address record,
    /// as a name without DNS has for a real CA.
    pub fn dns_only(&self, hosts: &[&str]) -> anyhow::Result<()> {
        self.dns_post("set-default-ipv4", r#"{"ip":""}"#.to_string())?;
        for host in hosts {
            self.dns_post(
                "add-a",
                format!(r#"{{"host":"{host}","addresses":["127.0.0.1"]}}"#),
            )?;
        }
        Ok(())
    }

    /// A call to pebble-challtestsrv's management API (plain HTTP).
    fn dns_post(&self, what: &str, body: String) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/{what}", self.dns_management_port);
        let out = Command::new("curl")
            .args(["-sSf", "--max-time", "5", "-X", "POST", "-d"])
            .arg(body)
            .arg(&url)
            .output()
            .context("running curl")?;
        if !out.status.success() {
            anyhow::bail!("{url}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// The ACME directory URL, for `tls.acme.directory`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// The CA of pebble's own HTTPS, for `tls.acme.ca_file`.
    pub fn server_ca(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The root pebble signs certificates with (`/roots/0`), for curl --cacert.
    pub fn root_file(&self) -> PathBuf {
        self.dir.path().join("root.pem")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("pebble.log")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The management port (`/roots/0`, `/intermediates/0`).
    pub fn management_port(&self) -> u16 {
        self.management_port
    }
}
