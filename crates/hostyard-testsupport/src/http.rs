//! A plain HTTP client for routing tests.
//!
//! Each call uses a fresh connection (no pooling), so a request after a
//! HAProxy reload or map change is answered by the current configuration,
//! not by a kept-alive connection to an old worker.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

/// Short enough that a hung backend fails a test quickly, long enough for a
/// loaded two-core machine.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A response as routing tests look at it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET http://127.0.0.1:{port}{path}` with `Host: {host_header}`; returns
/// status and body. Redirects are not followed; 4xx/5xx are not errors.
pub fn http_get(port: u16, host_header: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let resp = http_get_with_headers(port, host_header, path, &[])?;
    Ok((resp.status, resp.body))
}

/// `GET http://{addr}{path}` with `Host: {host_header}`, for servers not on
/// 127.0.0.1 (a container's address).
pub fn http_get_addr(
    addr: SocketAddr,
    host_header: &str,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let resp = get(&format!("http://{addr}{path}"), host_header, &[])?;
    Ok((resp.status, resp.body))
}

/// Like [`http_get`] with extra request headers, returning response headers
/// too (e.g. `Location` of a redirect).
pub fn http_get_with_headers(
    port: u16,
    host_header: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<HttpResponse> {
    get(
        &format!("http://127.0.0.1:{port}{path}"),
        host_header,
        headers,
    )
}

fn get(url: &str, host_header: &str, headers: &[(&str, &str)]) -> anyhow::Result<HttpResponse> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(0)
        .build()
        .into();
    let mut req = agent.get(url).header("Host", host_header);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req
        .call()
        .with_context(|| format!("GET {url} (Host: {host_header})"))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading body of GET {url} (Host: {host_header})"))?;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}
