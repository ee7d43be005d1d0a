//! The environment's time zone: an IANA name (`Asia/Kolkata`) or a fixed offset (`+05:30`).
use chrono::{FixedOffset, NaiveDate, TimeZone};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LakeTimeZone {
    Iana(chrono_tz::Tz),
    Fixed(FixedOffset),
}

impl LakeTimeZone {
    pub fn parse(text: &str) -> Result<LakeTimeZone, String> {
        let t = text.trim();
        if let Some(sign) = t.chars().next().filter(|c| *c == '+' || *c == '-') {
            let rest = &t[1..];
            let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
            let (h, m): (i32, i32) = match (h.parse(), m.parse()) {
                (Ok(h), Ok(m)) if h <= 14 && m < 60 => (h, m),
                _ => return Err(format!("[sync] timezone `{text}`: a fixed offset looks like +05:30 or -03:00")),
            };
            let secs = (h * 3600 + m * 60) * if sign == '-' { -1 } else { 1 };
            return FixedOffset::east_opt(secs)
                .map(LakeTimeZone::Fixed)
                .ok_or_else(|| format!("[sync] timezone `{text}` is out of range"));
        }
        t.parse::<chrono_tz::Tz>().map(LakeTimeZone::Iana).map_err(|_| {
            format!("[sync] timezone `{text}` is not an IANA time zone name (e.g. Asia/Kolkata, UTC) nor an offset like +05:30")
        })
    }

    /// The calendar date of an instant (epoch milliseconds) in this zone.
    pub fn date_of(&self, millis: i64) -> Option<NaiveDate> {
        // Dates the lake cannot store as timestamps go to the null partition rather than a `+20000-01-01` folder.
        if !super::timestamp::in_lake_range(millis) {
            return None;
        }
        let utc = chrono::DateTime::from_timestamp_millis(millis)?;
        Some(match self {
            LakeTimeZone::Iana(tz) => tz.from_utc_datetime(&utc.naive_utc()).date_naive(),
            LakeTimeZone::Fixed(off) => off.from_utc_datetime(&utc.naive_utc()).date_naive(),
        })
    }
}

impl std::fmt::Display for LakeTimeZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LakeTimeZone::Iana(tz) => write!(f, "{}", tz.name()),
            LakeTimeZone::Fixed(off) => write!(f, "{off}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn kolkata_day_boundary() {
        let tz = LakeTimeZone::parse("Asia/Kolkata").unwrap();
        assert_eq!(tz.date_of(ms("2025-07-01T18:30:00Z")).unwrap().to_string(), "2025-07-02");
        assert_eq!(tz.date_of(ms("2025-07-01T18:29:59.999Z")).unwrap().to_string(), "2025-07-01");
        let fixed = LakeTimeZone::parse("+05:30").unwrap();
        assert_eq!(fixed.date_of(ms("2025-07-01T18:30:00Z")).unwrap().to_string(), "2025-07-02");
        let west = LakeTimeZone::parse("-03:00").unwrap();
        assert_eq!(west.date_of(ms("2025-07-01T02:00:00Z")).unwrap().to_string(), "2025-06-30");
        assert!(LakeTimeZone::parse("Nowhere/City").is_err());
        assert!(LakeTimeZone::parse("+25:00").is_err());
    }
}
