//! `hostyard status`: every site from etcd (declarations and registrations)
//! joined with HAProxy's own view (its runtime map) and confd's held state.
//!
//! It lives here, beside the routing rules, so the verdicts it prints are
//! computed by the very function confd applies; the `hostyard` binary only
//! calls [`run`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hostyard_config::NodeConfig;
use hostyard_core::etcd::Schema;
use hostyard_core::Layout;
use serde::Serialize;

use hostyard_haproxy::{Entry, HostMap, MapApi, Session};

use crate::state::{ConfdState, Held};
use crate::Problem;

#[derive(Debug, Serialize)]
pub struct Report {
    /// "ok", or why etcd could not be read (then sites come from confd's
    /// state file).
    pub etcd: String,
    /// "running", or why the runtime API did not answer.
    pub haproxy: String,
    pub confd_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_rejected: Option<String>,
    pub sites: Vec<Row>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub domain: String,
    pub kind: String,
    pub address: String,
    /// routed / down / conflict / invalid from etcd; "held" when a held
    /// change keeps HAProxy on the old routing for this site, "pending"
    /// when HAProxy does not have it yet.
    pub state: String,
    /// What HAProxy's runtime map says for the domain ("" if unknown).
    pub haproxy: String,
    pub detail: String,
    /// The certificate HTTPS serves: "imported, expires <Unix time>",
    /// "acme, expires <Unix time>" or "default" (none of its own).
    pub certificate: String,
    /// A refused certificate file, the last failed ACME order, or a
    /// certificate within 14 days of its end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_warning: Option<String>,
}

fn read_etcd(config: &NodeConfig) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let schema = Schema::new(&config.etcd.prefix);
    hostyard_etcd::block_on(async {
        let mut client =
            hostyard_etcd::connect_within(&config.etcd, Duration::from_secs(3)).await?;
        let (kvs, _) = hostyard_etcd::read_routing(&mut client, &schema).await?;
        Ok(kvs)
    })
}

/// The certificate column of a site, given by the caller (the `hostyard`
/// binary reads it from the TLS state, so routing does not depend on TLS):
/// what HTTPS serves for the domain ([`Row::certificate`]) and a warning
/// when it needs attention ([`Row::certificate_warning`]).
pub type Certificates<'a> = &'a dyn Fn(&str) -> (String, Option<String>);

/// No certificate state: every site shows "default".
pub fn no_certificates(_domain: &str) -> (String, Option<String>) {
    ("default".to_string(), None)
}

pub fn report(config: &NodeConfig, certificate: Certificates) -> anyhow::Result<Report> {
    let layout = Layout::new(&config.data_root);
    let schema = Schema::new(&config.etcd.prefix);
    let (allowed, _) = crate::site_network::allowed_networks(config);
    let state = ConfdState::load(&layout.confd_state());
    let (confd_state, state) = match state {
        Ok(Some(s)) => ("ok".to_string(), Some(s)),
        Ok(None) => ("absent (confd has not run)".to_string(), None),
        Err(e) => (format!("{e:#}"), None),
    };
    let (etcd, desired) = match read_etcd(config) {
        Ok(kvs) => (
            "ok".to_string(),
            Some(crate::desired(&schema, &kvs, &allowed)),
        ),
        Err(e) => (format!("unreachable: {e:#}"), None),
    };
    let (haproxy, runtime): (String, Option<HostMap>) =
        match Session::connect(&layout.haproxy_admin_socket()) {
            Ok(mut s) => match MapApi::new(&mut s, &layout.hosts_map()).show() {
                Ok(m) => ("running".to_string(), Some(m)),
                Err(e) => (e.to_string(), None),
            },
            Err(e) => (e.to_string(), None),
        };
    let held = state.as_ref().and_then(|s| s.held.clone());
    let (sites, problems) = match (&desired, &state) {
        (Some(d), _) => (d.sites.clone(), d.problems.clone()),
        (None, Some(s)) => (s.sites.clone(), s.problems.clone()),
        (None, None) => (Vec::new(), Vec::new()),
    };
    let mut rows = Vec::new();
    for site in &sites {
        let want = desired
            .as_ref()
            .and_then(|d| d.map.get(site.domain.as_str()));
        let have = runtime.as_ref().map(|m| m.get(site.domain.as_str()));
        let mut state_word = site.state.to_string();
        if let (Some(want), Some(have)) = (want, have) {
            if have != Some(want) {
                state_word = if held.is_some() { "held" } else { "pending" }.to_string();
            }
        }
        let (cert, cert_warning) = certificate(site.domain.as_str());
        rows.push(Row {
            certificate: cert,
            certificate_warning: cert_warning,
            domain: site.domain.to_string(),
            kind: site
                .kind
                .map(|k| k.as_str().to_string())
                .unwrap_or_default(),
            address: site.address.map(|a| a.to_string()).unwrap_or_default(),
            state: state_word,
            haproxy: have.flatten().map(Entry::map_value).unwrap_or_default(),
            detail: site.detail.clone().unwrap_or_default(),
        });
    }
    // Hosts HAProxy still routes that etcd no longer has (a held removal).
    if let (Some(runtime), Some(d)) = (&runtime, &desired) {
        for (host, entry) in runtime {
            if entry.is_route() && !d.map.contains_key(host) {
                rows.push(Row {
                    domain: host.clone(),
                    kind: String::new(),
                    address: entry.address().map(|a| a.to_string()).unwrap_or_default(),
                    state: if held.is_some() { "held" } else { "pending" }.to_string(),
                    haproxy: entry.map_value(),
                    detail: "gone from etcd, still routed by HAProxy".to_string(),
                    certificate: String::new(),
                    certificate_warning: None,
                });
            }
        }
    }
    Ok(Report {
        etcd,
        haproxy,
        confd_state,
        held,
        config_rejected: state.and_then(|s| s.config_rejected),
        sites: rows,
        problems,
    })
}

impl Report {
    /// Whether something needs an operator: exit status 1.
    pub fn needs_attention(&self) -> bool {
        self.etcd != "ok"
            || self.held.is_some()
            || self.config_rejected.is_some()
            || !self.problems.is_empty()
            || self
                .sites
                .iter()
                .any(|r| r.state != "routed" && r.state != "down")
            || self.sites.iter().any(|r| r.certificate_warning.is_some())
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let header = [
            "DOMAIN",
            "KIND",
            "ADDRESS",
            "STATE",
            "CERTIFICATE",
            "DETAIL",
        ];
        let rows: Vec<[&str; 6]> = self
            .sites
            .iter()
            .map(|r| {
                [
                    r.domain.as_str(),
                    r.kind.as_str(),
                    r.address.as_str(),
                    r.state.as_str(),
                    r.certificate.as_str(),
                    r.detail.as_str(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        for row in std::iter::once(&header).chain(rows.iter()) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let _ = writeln!(out, "\netcd: {}", self.etcd);
        let _ = writeln!(out, "haproxy: {}", self.haproxy);
        let _ = writeln!(out, "confd state: {}", self.confd_state);
        if let Some(h) = &self.held {
            let _ = writeln!(
                out,
                "HELD: a change removing {} of {} routes is held until unix time {}; \
                 accept it now with: {}",
                h.removed_routes, h.current_routes, h.until_unix, h.accept_with
            );
        }
        if let Some(why) = &self.config_rejected {
            let _ = writeln!(out, "CONFIG REJECTED (HAProxy keeps the old one): {why}");
        }
        for p in &self.problems {
            let _ = writeln!(out, "skipped {}: {}", p.key, p.message);
        }
        for r in &self.sites {
            if let Some(w) = &r.certificate_warning {
                let _ = writeln!(out, "WARNING {}: {w}", r.domain);
            }
        }
        out
    }
}

/// `hostyard status [--json]`: prints the report; 0 when all is well, 1
/// when something needs attention (held change, rejected config, bad keys,
/// conflicts, etcd unreachable, a refused certificate file or one within 14
/// days of its end).
pub fn run(config: &NodeConfig, json: bool, certificate: Certificates) -> anyhow::Result<i32> {
    let report = report(config, certificate)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(if report.needs_attention() { 1 } else { 0 })
}
