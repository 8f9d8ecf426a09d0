//! The throttle syntax KumoMTA documents for `kumo.make_throttle` and the
//! egress path rates: `[local:]quantity/[N]period[,max_burst=B]`.

use std::time::Duration;

/// A parsed throttle: `limit` events per `period`, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThrottleSpec {
    /// How many per period.
    pub limit: u64,
    /// The period.
    pub period: Duration,
    /// `max_burst`; `None` lets the whole quantity go at once (KumoMTA's
    /// default for `kumo.make_throttle`).
    pub max_burst: Option<u64>,
    /// `local:` — never shared through Redis.
    pub local: bool,
}

/// Why a throttle spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("throttle {text:?}: {reason}")]
pub struct SpecError {
    text: String,
    reason: String,
}

fn refuse(text: &str, reason: impl Into<String>) -> SpecError {
    SpecError { text: text.to_string(), reason: reason.into() }
}

/// A whole number that may use `,` or `_` between digits.
fn quantity(text: &str, digits: &str) -> Result<u64, SpecError> {
    let cleaned: String = digits.trim().chars().filter(|c| *c != ',' && *c != '_').collect();
    cleaned.parse().map_err(|_| refuse(text, format!("{:?} is not a whole number", digits.trim())))
}

fn unit_seconds(text: &str, unit: &str) -> Result<u64, SpecError> {
    Ok(match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86400,
        other => return Err(refuse(text, format!("unknown period {other:?} (use s, m, h or d)"))),
    })
}

impl ThrottleSpec {
    /// Parse KumoMTA's throttle syntax (`10/s`, `1,000/hr`, `20/30minute`,
    /// `local:60/minute,max_burst=1`).
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let trimmed = text.trim();
        let (local, rest) = match trimmed.strip_prefix("local:") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let (rate, burst) = match rest.split_once(",max_burst=") {
            Some((rate, burst)) => (rate, Some(quantity(text, burst)?)),
            None => (rest, None),
        };
        let (n, period) = rate.split_once('/').ok_or_else(|| refuse(text, "expected quantity/period such as 100/s"))?;
        let limit = quantity(text, n)?;
        if limit == 0 {
            return Err(refuse(text, "the quantity must be at least 1"));
        }
        let period = period.trim();
        let split = period.find(|c: char| !c.is_ascii_digit()).unwrap_or(period.len());
        let (count, unit) = period.split_at(split);
        let count: u64 = if count.is_empty() { 1 } else { quantity(text, count)? };
        if count == 0 {
            return Err(refuse(text, "the period must be at least 1"));
        }
        let seconds = unit_seconds(text, unit.trim())?;
        if burst == Some(0) {
            return Err(refuse(text, "max_burst must be at least 1"));
        }
        Ok(Self { limit, period: Duration::from_secs(seconds * count), max_burst: burst, local })
    }

    /// The same spec pacing evenly unless it names a burst: what egress
    /// path rates (`max_message_rate`, `max_connection_rate`) use, so a
    /// `1000/h` path does not send a thousand at the top of the hour.
    pub fn paced(mut self) -> Self {
        self.max_burst.get_or_insert(1);
        self
    }

    /// Time between events at the steady rate (GCRA's emission interval).
    pub fn interval(&self) -> Duration {
        self.period / u32::try_from(self.limit).unwrap_or(u32::MAX)
    }

    /// How many may go at once.
    pub fn burst(&self) -> u64 {
        self.max_burst.unwrap_or(self.limit).clamp(1, self.limit.max(1))
    }

    /// This node's share when `nodes` share the limit and cannot agree
    /// (Redis unreachable): the quantity and burst divided, at least 1.
    pub fn share(&self, nodes: u32) -> Self {
        let nodes = u64::from(nodes.max(1));
        Self { limit: (self.limit / nodes).max(1), max_burst: self.max_burst.map(|b| (b / nodes).max(1)), ..*self }
    }
}

impl std::fmt::Display for ThrottleSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.local {
            f.write_str("local:")?;
        }
        let secs = self.period.as_secs();
        let (count, unit) = match secs {
            s if s % 86400 == 0 => (s / 86400, "d"),
            s if s % 3600 == 0 => (s / 3600, "h"),
            s if s % 60 == 0 => (s / 60, "m"),
            s => (s, "s"),
        };
        if count == 1 {
            write!(f, "{}/{unit}", self.limit)?;
        } else {
            write!(f, "{}/{count}{unit}", self.limit)?;
        }
        if let Some(burst) = self.max_burst {
            write!(f, ",max_burst={burst}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ThrottleSpec {
        ThrottleSpec::parse(text).unwrap()
    }

    #[test]
    fn parses_kumomta_examples() {
        assert_eq!(spec("10/s").period, Duration::from_secs(1));
        assert_eq!(spec("10/sec").limit, 10);
        assert_eq!(spec("10/second").limit, 10);
        assert!(spec("local:10/second").local);
        assert_eq!(spec("50/minute").period, Duration::from_secs(60));
        assert_eq!(spec("60/minute,max_burst=1").max_burst, Some(1));
        assert_eq!(spec("20/30minute").period, Duration::from_secs(1800));
        assert_eq!(spec("1,000/hr").limit, 1000);
        assert_eq!(spec("1_000/h").period, Duration::from_secs(3600));
        assert_eq!(spec("10,000/day").limit, 10_000);
        assert_eq!(spec("5/minutes").period, Duration::from_secs(60));
    }

    #[test]
    fn refuses_nonsense_with_the_reason() {
        for bad in ["fast", "0/s", "10/fortnight", "x/s", "10/0m", "10/s,max_burst=0"] {
            let err = ThrottleSpec::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn interval_burst_share_and_display() {
        let s = spec("60/minute");
        assert_eq!(s.interval(), Duration::from_secs(1));
        assert_eq!(s.burst(), 60);
        assert_eq!(s.paced().burst(), 1);
        assert_eq!(spec("10/s").share(2).limit, 5);
        assert_eq!(spec("1/s").share(3).limit, 1);
        assert_eq!(spec("local:20/30minute,max_burst=2").to_string(), "local:20/30m,max_burst=2");
        assert_eq!(spec("100/s").to_string(), "100/s");
    }
}
