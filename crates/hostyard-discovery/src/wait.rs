//! `wait`: the site unit's `ExecStartPost=`, so that `systemctl start
//! static-git@D` returns only once the site is really reachable.
//!
//! "Up" means both halves of routing work: discovery has registered the site
//! in etcd, and a request through this server's HAProxy with the site's Host
//! header is answered by the site (not HAProxy's 503 "down" or 404 "unknown"
//! page). The wait is bounded; on timeout it says what it saw last, which is
//! the line an operator finds in the journal. A registration is this
//! server's only when it names this server: another server's copy of the
//! site answering is not this start succeeding, and a site another server
//! owns fails the wait at once (its discovery refuses to register it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hostyard_config::NodeConfig;
use hostyard_core::etcd::{owner_or_raw, Schema, ServiceValue};
use hostyard_core::{Domain, SiteKind};
use tokio::time::Instant;

use crate::probe::http_agent;
use crate::registry::{self, CALL_TIMEOUT};

const POLL_EVERY: Duration = Duration::from_millis(250);

/// Waits until the site is up or `timeout` passes; the error is one line
/// naming the last thing seen.
pub async fn wait(
    config: &NodeConfig,
    kind: SiteKind,
    domain: &Domain,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let schema = Schema::new(&config.etcd.prefix);
    let key = schema.service_key(kind, domain);
    let owner_key = schema.owner_key(domain);
    let me = config.node_name();
    let mut client = registry::connect(config).await?;
    let frontend = SocketAddr::new(
        local_address(config.haproxy.bind_address),
        config.haproxy.http_port,
    );
    let url = format!("http://{frontend}/");
    let agent = http_agent(CALL_TIMEOUT);
    loop {
        if let Some(owner) = other_owner(&mut client, &owner_key, &me).await {
            anyhow::bail!(
                "{domain} is owned by server {owner} ({owner_key}), not by this server ({me}): \
                 its discovery here does not register it (journalctl -u {})",
                kind.instance_unit(hostyard_core::UnitRole::Discovery, domain)
            );
        }
        let last_seen = match look(&mut client, &key, &me, &agent, &url, domain).await {
            Ok(()) => return Ok(()),
            Err(seen) => seen,
        };
        let now = Instant::now();
        if now >= deadline {
            anyhow::bail!(
                "{domain} is not up after {}s: {last_seen}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep_until((now + POLL_EVERY).min(deadline)).await;
    }
}

/// The server that owns the site when it is not `me` (an unanswered read
/// is no answer: the registration's own check follows).
async fn other_owner(
    client: &mut etcd_client::Client,
    owner_key: &str,
    me: &str,
) -> Option<String> {
    let response = tokio::time::timeout(CALL_TIMEOUT, client.get(owner_key, None))
        .await
        .ok()?
        .ok()?;
    let raw = response.kvs().first()?.value();
    let owner = owner_or_raw(raw);
    (owner != me).then_some(owner)
}

/// One look at both halves; `Err` says what is missing.
async fn look(
    client: &mut etcd_client::Client,
    key: &str,
    me: &str,
    agent: &ureq::Agent,
    url: &str,
    domain: &Domain,
) -> Result<(), String> {
    let got = tokio::time::timeout(CALL_TIMEOUT, client.get(key, None)).await;
    let response = match got {
        Err(_) => return Err(format!("etcd did not answer a read of {key}")),
        Ok(Err(e)) => return Err(format!("etcd read of {key} failed: {e}")),
        Ok(Ok(r)) => r,
    };
    let Some(kv) = response.kvs().first() else {
        return Err(format!("{key} is not registered in etcd yet"));
    };
    match ServiceValue::parse(kv.value()) {
        Err(e) => return Err(format!("{key} holds {e}")),
        Ok(ServiceValue { node: Some(n), .. }) if n != me => {
            return Err(format!(
                "{key} is registered by server {n}, not by this one ({me})"
            ))
        }
        Ok(_) => {}
    }
    let agent = agent.clone();
    let url_owned = url.to_string();
    let host = domain.as_str().to_string();
    let answer = tokio::task::spawn_blocking(move || {
        agent
            .get(&url_owned)
            .header("Host", host.as_str())
            .call()
            .map(|r| {
                let page = r
                    .headers()
                    .get(HAPROXY_PAGE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                (r.status().as_u16(), page)
            })
    })
    .await;
    match answer {
        Ok(Ok((_, None))) => Ok(()),
        Ok(Ok((status, Some(page)))) => Err(format!(
            "registered, but HAProxy at {url} answers its own {status} ({page}) for Host {domain}"
        )),
        Ok(Err(e)) => Err(format!("registered, but HAProxy at {url}: {e}")),
        Err(e) => Err(format!("request task failed: {e}")),
    }
}

/// The header HAProxy's own pages carry (unknown host, site down, site
/// busy), so that a site's own 404 or 503 counts as the site answering.
const HAPROXY_PAGE_HEADER: &str = "x-hostyard-page";

/// Where to reach this server's HAProxy: its bind address, or loopback when
/// it binds to every address.
fn local_address(bind: IpAddr) -> IpAddr {
    match bind {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_bind_is_reached_on_loopback() {
        assert_eq!(
            local_address("0.0.0.0".parse().unwrap()),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            local_address("::".parse().unwrap()),
            "::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            local_address("10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }
}
