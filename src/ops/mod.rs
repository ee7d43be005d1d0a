//! Operator commands that are not a sync: `mongolake status` (what the lake says about each collection) and
//! `mongolake check` (is everything in place for tonight's run).
pub mod check;
pub mod status;

/// `1h 05m`, `3d 02h`, `42s`: a duration for people.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_naturally() {
        assert_eq!(super::human_duration(42), "42s");
        assert_eq!(super::human_duration(3900), "1h 05m");
        assert_eq!(super::human_duration(2 * 86_400 + 7200), "2d 02h");
    }
}
