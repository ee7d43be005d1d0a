//! `[sync] timezone`, parsed: an IANA name (`Asia/Kolkata`) or a fixed offset (`+05:30`). What a date is in it
//! is [`crate::transform::timezone`]'s.
use chrono::FixedOffset;

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
}

impl std::fmt::Display for LakeTimeZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LakeTimeZone::Iana(tz) => write!(f, "{}", tz.name()),
            LakeTimeZone::Fixed(off) => write!(f, "{off}"),
        }
    }
}
