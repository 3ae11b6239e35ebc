//! The static kinds' nginx (dockerfiles/common/nginx.conf) as a CDN would
//! serve: the image built from this checkout's dockerfiles/, run with the
//! site unit's confinement on a site's files, asked with real HTTP/1.1
//! requests: gzip for text (Vary: Accept-Encoding), a precompressed
//! FILE.gz preferred, ETag and If-None-Match -> 304, Last-Modified, Range
//! -> 206 with the right bytes, Cache-Control by file type, and dotfiles
//! still 404.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use hostyard_testsupport::{docker, require_docker, wait_until_ok, Container};

/// A tag of the tests' own, so the image the units run is never replaced.
const IMAGE: &str = "hostyard-test/static";
const TIMEOUT: Duration = Duration::from_secs(5);

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 request (nginx gzips only for 1.1) with
/// `Connection: close`; a chunked body is reassembled.
fn get(ip: IpAddr, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer> {
    let mut tcp = TcpStream::connect_timeout(&SocketAddr::new(ip, 80), TIMEOUT)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no end of head in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?;
    let mut answer = Answer {
        status,
        head,
        body: Vec::new(),
    };
    if answer
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    }
    answer.body = body;
    Ok(answer)
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow::anyhow!("truncated chunk size"))?;
        let size_text = std::str::from_utf8(&data[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        anyhow::ensure!(data.len() >= size + 2, "truncated chunk");
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A 200 kB HTML page of prose-like text (compressible as real pages are).
fn page() -> Vec<u8> {
    let words = [
        "hosting", "static", "site", "page", "owner", "cache", "the", "of",
    ];
    let mut out = String::from("<!doctype html><html><body>\n");
    let mut n: usize = 7;
    while out.len() < 200_000 {
        out.push_str("<p>");
        for _ in 0..25 {
            n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            out.push_str(words[(n >> 16) % words.len()]);
            out.push(' ');
        }
        out.push_str("</p>\n");
    }
    out.push_str("</body></html>\n");
    out.into_bytes()
}

fn write(root: &Path, path: &str, data: &[u8]) {
    let file = root.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, data).unwrap();
}

#[test]
fn static_sites_are_served_compressed_cacheable_and_in_ranges() {
    require_docker();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // No registry is reachable from a fresh machine: its FROM image is
    // made from the Debian mirror first (nothing when it exists).
    let base = std::process::Command::new(repo.join("scripts/base-image.sh"))
        .arg("trixie")
        .status()
        .expect("scripts/base-image.sh runs");
    assert!(base.success(), "scripts/base-image.sh trixie failed");
    docker(&[
        "build",
        "-q",
        "-t",
        IMAGE,
        "-f",
        &repo.join("dockerfiles/static/Dockerfile").to_string_lossy(),
        &repo.join("dockerfiles").to_string_lossy(),
    ])
    .unwrap_or_else(|e| panic!("building the static image: {e:#}"));

    let site = tempfile::tempdir().unwrap();
    let root = site.path();
    let html = page();
    write(root, "index.html", &html);
    write(
        root,
        "css/style.css",
        &b"body { color: #333; }\n".repeat(100),
    );
    write(
        root,
        "js/app.3f9a2c1b.js",
        b"console.log('fingerprinted');\n",
    );
    write(root, "img/photo.png", b"\x89PNG not really");
    write(root, "img/photo-20240101.jpg", b"not a hash");
    // A precompressed file beside its original: the .gz is what is sent.
    write(root, "big.txt", &b"original ".repeat(500));
    write(root, "big.txt.gz", &gzip(b"precompressed"));
    write(root, ".env", b"SECRET=1\n");
    write(root, ".git/config", b"[core]\n");
    // nginx runs as www-data: the tree must be readable by others.
    std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(root)
        .status()
        .unwrap();

    let mount = format!("{}:/srv/www:ro", root.display());
    let container = Container::run(&[
        "--read-only",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        "--cap-add",
        "NET_BIND_SERVICE",
        "--cap-add",
        "SETGID",
        "--cap-add",
        "SETUID",
        "--security-opt",
        "no-new-privileges",
        "-v",
        &mount,
        IMAGE,
    ])
    .unwrap_or_else(|e| panic!("running {IMAGE}: {e:#}"));
    let ip = container.ip().unwrap();
    let first = wait_until_ok("nginx answers", Duration::from_secs(20), || {
        get(ip, "/", &[])
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", container.logs()));

    // Uncompressed: the page as it is, with validators and no-cache.
    assert_eq!(first.status, 200, "{}", first.head);
    assert_eq!(first.body, html);
    assert!(first.header("last-modified").is_some(), "{}", first.head);
    assert_eq!(
        first.header("cache-control"),
        Some("no-cache"),
        "{}",
        first.head
    );

    // Gzipped on the fly: same bytes, much smaller, Vary set.
    let gz = get(ip, "/", &[("Accept-Encoding", "gzip")]).unwrap();
    assert_eq!(gz.status, 200, "{}", gz.head);
    assert_eq!(gz.header("content-encoding"), Some("gzip"), "{}", gz.head);
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"), "{}", gz.head);
    assert!(
        gz.body.len() * 4 < html.len(),
        "{} bytes gzipped",
        gz.body.len()
    );
    assert_eq!(gunzip(&gz.body), html);

    // The precompressed file is preferred over compressing the original.
    let pre = get(ip, "/big.txt", &[("Accept-Encoding", "gzip")]).unwrap();
    assert_eq!(pre.header("content-encoding"), Some("gzip"), "{}", pre.head);
    assert_eq!(gunzip(&pre.body), b"precompressed");
    let plain = get(ip, "/big.txt", &[]).unwrap();
    assert_eq!(plain.body, b"original ".repeat(500));

    // ETag, both for the plain and the gzipped answer: a 304 without body.
    for enc in ["identity", "gzip"] {
        let a = get(ip, "/index.html", &[("Accept-Encoding", enc)]).unwrap();
        let etag = a
            .header("etag")
            .unwrap_or_else(|| panic!("no ETag ({enc}): {}", a.head))
            .to_string();
        let again = get(
            ip,
            "/index.html",
            &[("Accept-Encoding", enc), ("If-None-Match", &etag)],
        )
        .unwrap();
        assert_eq!(again.status, 304, "{enc}: {}", again.head);
        assert!(again.body.is_empty());
        let since = a.header("last-modified").unwrap().to_string();
        let again = get(ip, "/index.html", &[("If-Modified-Since", &since)]).unwrap();
        assert_eq!(again.status, 304, "{}", again.head);
    }

    // Range: the bytes asked for, and a range past the end refused.
    let part = get(ip, "/index.html", &[("Range", "bytes=1000-1999")]).unwrap();
    assert_eq!(part.status, 206, "{}", part.head);
    assert_eq!(part.body, &html[1000..2000]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 1000-1999/{}", html.len()).as_str())
    );
    let past = get(ip, "/index.html", &[("Range", "bytes=900000-")]).unwrap();
    assert_eq!(past.status, 416, "{}", past.head);

    // Cache-Control by type: assets an hour, fingerprinted ones a year.
    for (path, want) in [
        ("/css/style.css", "public, max-age=3600"),
        ("/img/photo.png", "public, max-age=3600"),
        ("/js/app.3f9a2c1b.js", "public, max-age=31536000, immutable"),
        ("/img/photo-20240101.jpg", "public, max-age=3600"),
        ("/big.txt", "no-cache"),
    ] {
        let a = get(ip, path, &[]).unwrap();
        assert_eq!(a.status, 200, "{path}: {}", a.head);
        assert_eq!(a.header("cache-control"), Some(want), "{path}");
    }

    // Dotfiles stay hidden, compressed or not.
    for path in ["/.env", "/.git/config", "/%2egit/config", "/.env.gz"] {
        for enc in ["identity", "gzip"] {
            let a = get(ip, path, &[("Accept-Encoding", enc)]).unwrap();
            assert_eq!(a.status, 404, "{path} ({enc}): {}", a.head);
        }
    }
}
