//! The environment's time zone: an IANA name (`Asia/Kolkata`) or a fixed offset (`+05:30`).
// The zone is configuration data (see [`crate::config::timezone`]); dates in it are computed here.
pub use crate::config::timezone::LakeTimeZone;
use chrono::{NaiveDate, TimeZone};

impl LakeTimeZone {
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
