//! A document's "last changed" instant, whatever its representation: BSON Date, epoch milliseconds (int32,
//! int64 or double), an ISO-8601 / RFC 3339 string (with `Z` or an offset; without one it is read as UTC), or
//! a BSON Timestamp (what `$currentDate: {f: {$type: "timestamp"}}` writes: its seconds, the increment being
//! only an ordinal within the second).
use bson::RawBsonRef;

/// Epoch milliseconds of a timestamp-like value, or None when it is not one.
/// 0001-01-01T00:00:00Z: the earliest instant the lake stores as a timestamp.
pub const MIN_LAKE_MILLIS: i64 = -62_135_596_800_000;
/// 9999-12-31T23:59:59.999Z: the latest. BSON dates reach ±292 million years, but Athena (Trino), Spark and
/// Hive read timestamps only within years 1-9999 (Spark overflows converting far dates to microseconds).
pub const MAX_LAKE_MILLIS: i64 = 253_402_300_799_999;

/// True for instants the lake can store as a timestamp; others are rejected (kept in the rejects area).
pub fn in_lake_range(ms: i64) -> bool {
    (MIN_LAKE_MILLIS..=MAX_LAKE_MILLIS).contains(&ms)
}

pub fn instant_millis(value: RawBsonRef<'_>) -> Option<i64> {
    match value {
        RawBsonRef::DateTime(d) => Some(d.timestamp_millis()),
        RawBsonRef::Int64(v) => Some(v),
        RawBsonRef::Int32(v) => Some(v as i64),
        RawBsonRef::Double(v) if v.is_finite() && v.abs() < 9.2e18 => Some(v as i64),
        RawBsonRef::String(s) => parse_iso(s),
        RawBsonRef::Timestamp(t) => Some(i64::from(t.time) * 1000),
        _ => None,
    }
}

/// Parses RFC 3339 and the common ISO-8601 variants (`T` or space, optional fraction, optional offset).
pub fn parse_iso(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in
        ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"]
    {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, fmt) {
            return Some(t.timestamp_millis());
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis())
}

/// The same value as a BSON Date when it is timestamp-like (used to normalise the timestamp column and the
/// fields of `date(...)` partitions, so the lake column is a timestamp whatever the source representation).
pub fn normalise(value: RawBsonRef<'_>) -> RawBsonRef<'_> {
    match value {
        RawBsonRef::DateTime(_) => value,
        other => match instant_millis(other) {
            Some(ms) => RawBsonRef::DateTime(bson::DateTime::from_millis(ms)),
            None => other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_representations_agree() {
        let want = 1_751_394_600_000; // 2025-07-01T18:30:00Z
        assert_eq!(instant_millis(RawBsonRef::DateTime(bson::DateTime::from_millis(want))), Some(want));
        assert_eq!(instant_millis(RawBsonRef::Int64(want)), Some(want));
        assert_eq!(instant_millis(RawBsonRef::Double(want as f64)), Some(want));
        for s in [
            "2025-07-01T18:30:00Z",
            "2025-07-02T00:00:00+05:30",
            "2025-07-02T00:00:00.000+05:30",
            "2025-07-01 18:30:00",
            "2025-07-02T00:00:00+0530",
        ] {
            assert_eq!(instant_millis(RawBsonRef::String(s)), Some(want), "{s}");
        }
        let ts = bson::Timestamp { time: (want / 1000) as u32, increment: 7 };
        assert_eq!(instant_millis(RawBsonRef::Timestamp(ts)), Some(want));
        assert_eq!(instant_millis(RawBsonRef::String("yesterday")), None);
        assert_eq!(instant_millis(RawBsonRef::Boolean(true)), None);
        assert_eq!(instant_millis(RawBsonRef::Double(f64::NAN)), None);
    }
}
