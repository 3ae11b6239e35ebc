//! Time spans as the config writes them for systemd, and durations in
//! whole seconds or milliseconds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A time span as the config writes it for systemd, in the simple forms
/// docs/reference/config.md documents: `600`, `30s`, `10min`, `1h`, `1d`. Parsed once,
/// when the config is read (a bad one is an error naming the field, with
/// line and column); it goes into a unit as [`TimeSpan`]'s `Display`, the
/// largest unit that divides it (`600` is written `10min`), which systemd
/// reads as the same span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeSpan {
    secs: u64,
}

/// A time span that is not one of the documented forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a systemd time span like 10min or 1h (a whole number, then s, min, h or d)")]
pub struct BadTimeSpan(pub String);

impl TimeSpan {
    /// A span of `secs` seconds; `None` for zero, which no timer means.
    pub fn from_secs(secs: u64) -> Option<TimeSpan> {
        (secs > 0).then_some(TimeSpan { secs })
    }

    pub fn as_secs(self) -> u64 {
        self.secs
    }
}

/// A duration the config file writes as whole seconds: parsed into a
/// [`Duration`] once, when the config is read.
pub(crate) mod whole_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// A duration the config file writes as whole milliseconds.
pub(crate) mod whole_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl FromStr for TimeSpan {
    type Err = BadTimeSpan;
    fn from_str(s: &str) -> Result<TimeSpan, BadTimeSpan> {
        let bad = || BadTimeSpan(s.to_string());
        let digits = s.chars().take_while(|c| c.is_ascii_digit()).count();
        let n = s[..digits].parse::<u64>().map_err(|_| bad())?;
        let unit = match &s[digits..] {
            "" | "s" | "sec" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => return Err(bad()),
        };
        n.checked_mul(unit)
            .and_then(TimeSpan::from_secs)
            .ok_or_else(bad)
    }
}

impl fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, unit) = [(86400, "d"), (3600, "h"), (60, "min")]
            .into_iter()
            .find(|(unit, _)| self.secs % unit == 0)
            .map_or((self.secs, "s"), |(unit, name)| (self.secs / unit, name));
        write!(f, "{n}{unit}")
    }
}

impl Serialize for TimeSpan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeSpan {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TimeSpan, D::Error> {
        deserializer.deserialize_any(TimeSpanVisitor)
    }
}

/// Reads a span from a string, or from a bare number in YAML
/// (`poll_interval: 600`), which is seconds as in systemd.
struct TimeSpanVisitor;

impl serde::de::Visitor<'_> for TimeSpanVisitor {
    type Value = TimeSpan;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a systemd time span like 10min or 1h")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<TimeSpan, E> {
        text.parse().map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, secs: u64) -> Result<TimeSpan, E> {
        TimeSpan::from_secs(secs).ok_or_else(|| E::custom(BadTimeSpan(secs.to_string())))
    }

    fn visit_i64<E: serde::de::Error>(self, secs: i64) -> Result<TimeSpan, E> {
        u64::try_from(secs)
            .ok()
            .and_then(TimeSpan::from_secs)
            .ok_or_else(|| E::custom(BadTimeSpan(secs.to_string())))
    }
}
