//! systemd time spans (systemd.time(7), "Parsing Time Spans"): `30s`,
//! `10min`, `1h 30m`, `2.5h`, a bare number meaning seconds.

use std::time::Duration;

/// Units systemd accepts, longest spelling first so `ms` wins over `m`.
const UNITS: &[(&str, f64)] = &[
    ("seconds", 1.0),
    ("second", 1.0),
    ("minutes", 60.0),
    ("minute", 60.0),
    ("months", 2_629_800.0),
    ("month", 2_629_800.0),
    ("hours", 3600.0),
    ("hour", 3600.0),
    ("weeks", 604_800.0),
    ("week", 604_800.0),
    ("years", 31_557_600.0),
    ("year", 31_557_600.0),
    ("usec", 1e-6),
    ("msec", 1e-3),
    ("days", 86_400.0),
    ("day", 86_400.0),
    ("sec", 1.0),
    ("min", 60.0),
    ("hr", 3600.0),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("μs", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86_400.0),
    ("w", 604_800.0),
    ("M", 2_629_800.0),
    ("y", 31_557_600.0),
];

/// Parses a time span. `infinity` is `None` (no limit).
pub fn parse(text: &str) -> Result<Option<Duration>, String> {
    let s = text.trim();
    if s == "infinity" {
        return Ok(None);
    }
    if s.is_empty() {
        return Err("is empty; write a time span such as `30s`, `10min` or `1h 30min`".into());
    }
    let mut rest = s;
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a time span: expected a number at `{rest}`"
            ));
        }
        let number: f64 = rest[..digits].parse().map_err(|_| {
            format!(
                "`{text}` is not a time span: bad number `{}`",
                &rest[..digits]
            )
        })?;
        rest = rest[digits..].trim_start();
        let unit = UNITS.iter().find(|(name, _)| {
            rest.starts_with(name) && !rest[name.len()..].starts_with(|c: char| c.is_alphabetic())
        });
        let factor = match unit {
            Some((name, factor)) => {
                rest = rest[name.len()..].trim_start();
                *factor
            }
            // A bare number is seconds, but only as the last component.
            None if rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_digit()) => 1.0,
            None => {
                return Err(format!(
                    "`{text}` is not a time span: unknown unit at `{rest}` (use us, ms, s, min, h, d, w, M, y)"
                ));
            }
        };
        total += number * factor;
    }
    if !total.is_finite() || total > 1e15 {
        return Err(format!("`{text}` is too long a time span"));
    }
    Ok(Some(Duration::from_secs_f64(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        let secs = |s: &str| parse(s).unwrap().unwrap().as_secs_f64();
        assert_eq!(secs("30"), 30.0);
        assert_eq!(secs("30s"), 30.0);
        assert_eq!(secs("10min"), 600.0);
        assert_eq!(secs("10m"), 600.0);
        assert_eq!(secs("1h 30min"), 5400.0);
        assert_eq!(secs("1h30m"), 5400.0);
        assert_eq!(secs("2.5h"), 9000.0);
        assert_eq!(secs("500ms"), 0.5);
        assert_eq!(secs("1 d"), 86400.0);
        assert_eq!(secs("2weeks"), 1_209_600.0);
        assert_eq!(parse("infinity").unwrap(), None);
        for bad in ["", "abc", "10 parsecs", "1h foo", "-5s", "10mins"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
