//! A WordPress site's PHP limits: the largest upload, PHP's memory per
//! request and its time, set by `hostyard site set D --php-upload ...` and
//! kept in the site's declaration ([`crate::etcd::SiteDecl`]), within the
//! bounds of the node config (`wordpress.php_limits`). The decision on a
//! change and what each setting becomes (the site's Apache directives,
//! HAProxy's body limit and server timeout) are pure functions here.
//!
//! The container gets them as `php_admin_value` directives in files of
//! the site's data ([`defaults_conf`], [`site_conf`]): Apache reads them at a graceful
//! restart (no request lost), and, unlike php.ini values, neither a
//! tenant's `.htaccess` (`php_value`) nor the site's PHP (`ini_set`,
//! `set_time_limit`) can raise them. mod_php reads no `.user.ini`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What HAProxy lets through above the upload limit: the multipart form
/// around the file (boundaries, part headers, the other fields).
pub const BODY_MARGIN: u64 = 256 * 1024;

/// What HAProxy waits for a response above PHP's time: PHP's own error
/// page (max_execution_time exceeded) reaches the client, not a 504.
pub const TIMEOUT_MARGIN_SECS: u32 = 5;

/// Below this WordPress itself does not run (it asks for 40M).
pub const MIN_MEMORY: u64 = 64 * 1024 * 1024;

/// A size in bytes, written as PHP writes it: `64M`, `512K`, `1G` (powers
/// of 1024) or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(text: &str) -> Result<Size, String> {
        let t = text.trim();
        let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((i, _)) => t.split_at(i),
            None => (t, ""),
        };
        let factor: u64 = match unit {
            "" | "b" | "B" => 1,
            "k" | "K" | "kb" | "KB" => 1024,
            "m" | "M" | "mb" | "MB" => 1024 * 1024,
            "g" | "G" | "gb" | "GB" => 1024 * 1024 * 1024,
            _ => {
                return Err(format!(
                    "{text:?} is not a size: a number with K, M or G (for example 64M)"
                ))
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a size: a number with K, M or G (64M)"))?;
        match n.checked_mul(factor) {
            Some(0) => Err(format!("{text:?}: a size of 0 is no limit to set")),
            // PHP and HAProxy both count in 63 bits; a terabyte is far beyond
            // any bound.
            Some(b) if b <= 1 << 40 => Ok(Size(b)),
            _ => Err(format!("{text:?} is too large (at most 1024G)")),
        }
    }
}

impl fmt::Display for Size {
    /// The largest unit that divides it: `64M`, as PHP reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in [("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
            if self.0 % factor == 0 {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// A time in whole seconds: `120s`, `2m` or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seconds(pub u32);

impl Seconds {
    pub fn parse(text: &str) -> Result<Seconds, String> {
        let t = text.trim();
        let (digits, factor) = if let Some(d) = t.strip_suffix('s') {
            (d, 1)
        } else if let Some(d) = t.strip_suffix('m') {
            (d, 60)
        } else {
            (t, 1)
        };
        let n: u32 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a time: seconds (120s) or minutes (2m)"))?;
        match n.checked_mul(factor) {
            Some(0) => Err(format!("{text:?}: 0 s is no limit to set")),
            // A day: beyond it a request is no request.
            Some(s) if s <= 86_400 => Ok(Seconds(s)),
            _ => Err(format!("{text:?} is too long (at most a day)")),
        }
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

macro_rules! text_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // A YAML number (a size in bytes, a time in seconds) or text.
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    N(u64),
                    S(String),
                }
                let text = match Raw::deserialize(d)? {
                    Raw::N(n) => n.to_string(),
                    Raw::S(s) => s,
                };
                <$t>::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}
text_serde!(Size);
text_serde!(Seconds);

/// A site's own settings, as its declaration holds them; what is not set
/// is the node config's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhpLimits {
    /// The largest file one request uploads (upload_max_filesize and
    /// post_max_size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<Size>,
    /// PHP's memory per request (memory_limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// PHP's time per request (max_execution_time, max_input_time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Seconds>,
}

impl PhpLimits {
    pub fn is_empty(&self) -> bool {
        self == &PhpLimits::default()
    }
}

/// A setting's default and bound in the node config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bound<T> {
    pub default: T,
    pub max: T,
}

/// `wordpress.php_limits` in the node config. The defaults are what the
/// image's php.ini says, so a site without settings is served as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhpBounds {
    pub upload: Bound<Size>,
    pub memory: Bound<Size>,
    pub time: Bound<Seconds>,
}

impl Default for PhpBounds {
    fn default() -> PhpBounds {
        const M: u64 = 1024 * 1024;
        PhpBounds {
            upload: Bound {
                default: Size(64 * M),
                max: Size(512 * M),
            },
            memory: Bound {
                default: Size(256 * M),
                max: Size(1024 * M),
            },
            time: Bound {
                default: Seconds(60),
                max: Seconds(300),
            },
        }
    }
}

impl PhpBounds {
    /// Each bound's problems (a default over its max, a memory bound
    /// WordPress cannot run in), named by the config key.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let key = "wordpress.php_limits";
        if self.upload.default > self.upload.max {
            problems.push(format!(
                "{key}.upload.default {} is over {key}.upload.max {}",
                self.upload.default, self.upload.max
            ));
        }
        if self.memory.default > self.memory.max {
            problems.push(format!(
                "{key}.memory.default {} is over {key}.memory.max {}",
                self.memory.default, self.memory.max
            ));
        }
        if self.memory.default < Size(MIN_MEMORY) {
            problems.push(format!(
                "{key}.memory.default {} is below {} (WordPress does not run in less)",
                self.memory.default,
                Size(MIN_MEMORY)
            ));
        }
        if self.time.default > self.time.max {
            problems.push(format!(
                "{key}.time.default {} is over {key}.time.max {}",
                self.time.default, self.time.max
            ));
        }
        problems
    }
}

/// What `hostyard site set` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhpChange {
    /// Back to the defaults first (what is given besides is then set).
    pub reset: bool,
    pub upload: Option<Size>,
    pub memory: Option<Size>,
    pub time: Option<Seconds>,
}

impl PhpChange {
    pub fn is_empty(&self) -> bool {
        self == &PhpChange::default()
    }
}

/// The site's settings after `change`, or every reason it is refused (a
/// value over its bound names the bound and its config key).
pub fn decide(
    current: &PhpLimits,
    change: &PhpChange,
    bounds: &PhpBounds,
) -> Result<PhpLimits, Vec<String>> {
    let mut next = if change.reset {
        PhpLimits::default()
    } else {
        current.clone()
    };
    let mut problems = Vec::new();
    let over = |flag: &str, value: &dyn fmt::Display, max: &dyn fmt::Display, key: &str| {
        format!(
            "--{flag} {value} is over the bound {max} (wordpress.php_limits.{key}.max in the \
             node config; raise it there first if the site needs more)"
        )
    };
    if let Some(v) = change.upload {
        if v > bounds.upload.max {
            problems.push(over("php-upload", &v, &bounds.upload.max, "upload"));
        }
        next.upload = Some(v);
    }
    if let Some(v) = change.memory {
        if v > bounds.memory.max {
            problems.push(over("php-memory", &v, &bounds.memory.max, "memory"));
        } else if v < Size(MIN_MEMORY) {
            problems.push(format!(
                "--php-memory {v} is below {} (WordPress does not run in less)",
                Size(MIN_MEMORY)
            ));
        }
        next.memory = Some(v);
    }
    if let Some(v) = change.time {
        if v > bounds.time.max {
            problems.push(over("php-time", &v, &bounds.time.max, "time"));
        }
        next.time = Some(v);
    }
    if problems.is_empty() {
        Ok(next)
    } else {
        Err(problems)
    }
}

/// The limits a site runs with: its own, else the default, never over
/// the bound (one lowered in the node config after the site was set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    pub upload: Size,
    pub memory: Size,
    pub time: Seconds,
}

pub fn effective(limits: &PhpLimits, bounds: &PhpBounds) -> Effective {
    Effective {
        upload: limits
            .upload
            .unwrap_or(bounds.upload.default)
            .min(bounds.upload.max),
        memory: limits
            .memory
            .unwrap_or(bounds.memory.default)
            .min(bounds.memory.max),
        time: limits
            .time
            .unwrap_or(bounds.time.default)
            .min(bounds.time.max),
    }
}

impl Effective {
    /// The largest request body HAProxy lets through to the site.
    pub fn max_body(&self) -> u64 {
        self.upload.0 + BODY_MARGIN
    }

    /// How long HAProxy waits for the site's response, in milliseconds.
    pub fn server_timeout_ms(&self) -> u64 {
        u64::from(self.time.0 + TIMEOUT_MARGIN_SECS) * 1000
    }

    /// The site's entry of HAProxy's PHP map: `<max body bytes>/<server
    /// timeout ms>` (haproxy.cfg takes each with `field(N,/)`).
    pub fn map_value(&self) -> String {
        format!("{}/{}", self.max_body(), self.server_timeout_ms())
    }
}

/// Where the site's container finds its PHP limits (the site's
/// `php/` dir, read-only): the image's Apache includes every `*.conf` in
/// its virtual host, in name order.
pub const CONTAINER_DIR: &str = "/etc/hostyard/php";

/// The node config's defaults, `defaults.conf` (the importer writes it at
/// every start of the site, so a changed default reaches it then).
pub fn defaults_conf(bounds: &PhpBounds) -> String {
    directives(
        "the importer, from wordpress.php_limits of the node config",
        &effective(&PhpLimits::default(), bounds),
        &PhpLimits {
            upload: Some(bounds.upload.default),
            memory: Some(bounds.memory.default),
            time: Some(bounds.time.default),
        },
    )
}

/// The site's own settings, `site.conf` (`hostyard site set` writes it),
/// read after `defaults.conf`: only what the site sets, never over a bound.
pub fn site_conf(limits: &PhpLimits, bounds: &PhpBounds) -> String {
    directives("hostyard site set", &effective(limits, bounds), limits)
}

/// `php_admin_value`: no `.htaccess` (`php_value`) and no `ini_set` or
/// `set_time_limit` of the site's PHP raises them.
fn directives(writer: &str, e: &Effective, which: &PhpLimits) -> String {
    let mut text = format!(
        "# Written by {writer}; do not edit (hostyard site set DOMAIN --php-...).\n\
         <IfModule php_module>\n"
    );
    if which.upload.is_some() {
        text += &format!("    php_admin_value upload_max_filesize {}\n", e.upload);
        text += &format!("    php_admin_value post_max_size {}\n", e.upload);
    }
    if which.memory.is_some() {
        text += &format!("    php_admin_value memory_limit {}\n", e.memory);
    }
    if which.time.is_some() {
        text += &format!("    php_admin_value max_execution_time {}\n", e.time.0);
        text += &format!("    php_admin_value max_input_time {}\n", e.time.0);
    }
    text + "</IfModule>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1024 * 1024;

    #[test]
    fn sizes_and_times_parse_as_php_writes_them_and_round_trip() {
        for (text, bytes, shown) in [
            ("64m", 64 * M, "64M"),
            ("64M", 64 * M, "64M"),
            ("512k", 512 * 1024, "512K"),
            ("1G", 1 << 30, "1G"),
            ("1536K", 1536 * 1024, "1536K"),
            ("1000", 1000, "1000"),
        ] {
            let s = Size::parse(text).unwrap();
            assert_eq!(s, Size(bytes), "{text}");
            assert_eq!(s.to_string(), shown);
            assert_eq!(Size::parse(shown).unwrap(), s);
        }
        for bad in [
            "",
            "0",
            "0M",
            "M",
            "-1M",
            "1.5M",
            "10T",
            "64 MiB",
            "99999999999G",
        ] {
            assert!(Size::parse(bad).is_err(), "{bad}");
        }
        for (text, secs) in [("120s", 120), ("120", 120), ("2m", 120)] {
            assert_eq!(Seconds::parse(text).unwrap(), Seconds(secs));
        }
        assert_eq!(Seconds(120).to_string(), "120s");
        for bad in ["", "0s", "1h", "-5", "2 m", "100000"] {
            assert!(Seconds::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_defaults_are_the_images_php_ini() {
        let ini = include_str!("../../../dockerfiles/wordpress/php.ini");
        let e = effective(&PhpLimits::default(), &PhpBounds::default());
        for line in [
            format!("upload_max_filesize = {}", e.upload),
            format!("post_max_size = {}", e.upload),
            format!("memory_limit = {}", e.memory),
            format!("max_execution_time = {}", e.time.0),
        ] {
            assert!(ini.contains(&line), "{line}");
        }
        // The image's Apache floor (a site without php/ files) says the same.
        for apache in [
            include_str!("../../../dockerfiles/wordpress/apache.conf"),
            include_str!("../../../tests/e2e/debian12/wordpress/apache.conf"),
        ] {
            for line in defaults_conf(&PhpBounds::default())
                .lines()
                .filter(|l| l.contains("php_admin_value"))
            {
                assert!(apache.contains(&format!("    {line}\n")), "{line}");
            }
            assert!(apache.contains("IncludeOptional /etc/hostyard/php/*.conf\n"));
        }
        assert!(PhpBounds::default().check().is_empty());
    }

    #[test]
    fn sets_within_bounds_and_resets() {
        let b = PhpBounds::default();
        let change = PhpChange {
            upload: Some(Size(2 * M)),
            time: Some(Seconds(120)),
            ..PhpChange::default()
        };
        let set = decide(&PhpLimits::default(), &change, &b).unwrap();
        assert_eq!(set.upload, Some(Size(2 * M)));
        assert_eq!(set.memory, None);
        assert_eq!(set.time, Some(Seconds(120)));
        // Another flag later keeps what was set.
        let more = PhpChange {
            memory: Some(Size(512 * M)),
            ..PhpChange::default()
        };
        let set = decide(&set, &more, &b).unwrap();
        assert_eq!(
            (set.upload, set.memory),
            (Some(Size(2 * M)), Some(Size(512 * M)))
        );
        let reset = PhpChange {
            reset: true,
            ..PhpChange::default()
        };
        assert_eq!(decide(&set, &reset, &b).unwrap(), PhpLimits::default());
        // A value at the bound is allowed.
        let at = PhpChange {
            upload: Some(b.upload.max),
            ..PhpChange::default()
        };
        assert!(decide(&set, &at, &b).is_ok());
    }

    #[test]
    fn a_value_over_its_bound_is_refused_naming_the_bound_and_its_key() {
        let b = PhpBounds::default();
        let change = PhpChange {
            upload: Some(Size(2 << 30)),
            memory: Some(Size(32 * M)),
            time: Some(Seconds(301)),
            ..PhpChange::default()
        };
        let text = decide(&PhpLimits::default(), &change, &b)
            .unwrap_err()
            .join("\n");
        for says in [
            "--php-upload 2G is over the bound 512M (wordpress.php_limits.upload.max",
            "--php-memory 32M is below 64M",
            "--php-time 301s is over the bound 300s (wordpress.php_limits.time.max",
        ] {
            assert!(text.contains(says), "{text}");
        }
    }

    #[test]
    fn effective_limits_take_defaults_and_never_pass_a_lowered_bound() {
        let mut b = PhpBounds::default();
        let site = PhpLimits {
            upload: Some(Size(400 * M)),
            ..PhpLimits::default()
        };
        let e = effective(&site, &b);
        assert_eq!(
            (e.upload, e.memory, e.time),
            (Size(400 * M), Size(256 * M), Seconds(60))
        );
        b.upload.max = Size(100 * M);
        assert_eq!(effective(&site, &b).upload, Size(100 * M));
        assert_eq!(e.map_value(), format!("{}/65000", 400 * M + BODY_MARGIN));
        let conf = defaults_conf(&b);
        for line in [
            "php_admin_value upload_max_filesize 64M\n",
            "php_admin_value post_max_size 64M\n",
            "php_admin_value memory_limit 256M\n",
            "php_admin_value max_execution_time 60\n",
            "php_admin_value max_input_time 60\n",
        ] {
            assert!(conf.contains(line), "{conf}");
        }
        // The site's file: only what it sets, clamped to the bound.
        let conf = site_conf(&site, &b);
        assert!(
            conf.contains("php_admin_value upload_max_filesize 100M\n"),
            "{conf}"
        );
        assert!(
            conf.contains("php_admin_value post_max_size 100M\n"),
            "{conf}"
        );
        assert!(!conf.contains("memory_limit"), "{conf}");
        assert!(!conf.contains("max_execution_time"), "{conf}");
    }

    #[test]
    fn bad_bounds_are_named_by_their_key() {
        let mut b = PhpBounds::default();
        b.upload.default = Size(1 << 30);
        b.memory.default = Size(16 * M);
        let text = b.check().join("\n");
        assert!(text.contains("wordpress.php_limits.upload.default 1G is over wordpress.php_limits.upload.max 512M"), "{text}");
        assert!(
            text.contains("wordpress.php_limits.memory.default 16M is below"),
            "{text}"
        );
    }

    #[test]
    fn the_declaration_and_the_node_config_read_sizes_as_text_or_numbers() {
        let l: PhpLimits = serde_json::from_str(r#"{"upload":"2M","time":120}"#).unwrap();
        assert_eq!(l.upload, Some(Size(2 * M)));
        assert_eq!(l.time, Some(Seconds(120)));
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"upload":"2M","time":"120s"}"#
        );
        assert_eq!(serde_json::to_string(&PhpLimits::default()).unwrap(), "{}");
        assert!(serde_json::from_str::<PhpLimits>(r#"{"upload":"lots"}"#).is_err());
    }
}
