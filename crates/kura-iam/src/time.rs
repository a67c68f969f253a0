//! Dates for the `Date*` operators: ISO 8601 / RFC 3339 text or epoch seconds.

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// `UTC` seconds since the epoch as RFC 3339 text, e.g. `2024-05-01T12:00:00Z`
/// (the form of `aws:CurrentTime`).
pub fn format_rfc3339(epoch_secs: i64) -> String {
    let days = epoch_secs.div_euclid(86_400);
    let secs = epoch_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `UTC` milliseconds since the epoch as RFC 3339 text with milliseconds,
/// e.g. `2024-05-01T12:00:00.250Z` (the form of `aws:TokenIssueTime`).
pub fn format_rfc3339_millis(epoch_millis: i64) -> String {
    let secs = format_rfc3339(epoch_millis.div_euclid(1000));
    format!(
        "{}.{:03}Z",
        secs.strip_suffix('Z').unwrap_or(&secs),
        epoch_millis.rem_euclid(1000)
    )
}

/// Parse a `Date*` condition value into milliseconds since the epoch.
///
/// Accepted: epoch seconds (`1700000000`, `1700000000.25`, negative too) and
/// ISO 8601 dates: `YYYY-MM-DD`, optionally followed by `T` and `hh:mm`,
/// `hh:mm:ss` or `hh:mm:ss.fraction`, then optionally `Z` or an offset
/// (`+hh:mm`, `+hhmm`, `-hh`); a time without a zone is UTC.
pub fn parse_date(text: &str) -> Option<i64> {
    let s = text.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') && !s[1..].contains('-') {
        return parse_epoch(s);
    }
    parse_iso(s)
}

fn parse_epoch(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if int.is_empty() || int.len() > 12 || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (digits.contains('.') && frac.is_empty()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let millis = frac_millis(frac);
    let total = secs * 1000 + millis;
    Some(if neg { -total } else { total })
}

/// The first three digits of a fraction of a second, as milliseconds.
fn frac_millis(frac: &str) -> i64 {
    let mut ms = 0;
    for i in 0..3 {
        ms = ms * 10 + frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
    }
    ms
}

fn num(s: &str, len: usize) -> Option<i64> {
    if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn parse_iso(s: &str) -> Option<i64> {
    if !s.is_ascii() || s.len() < 10 {
        return None;
    }
    let (date, rest) = s.split_at(10);
    let b = date.as_bytes();
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(&date[..4], 4)?, num(&date[5..7], 2)?, num(&date[8..], 2)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut millis = days_from_civil(y, m, d) * 86_400_000;
    if rest.is_empty() {
        return Some(millis);
    }
    let rest = rest.strip_prefix(['T', 't'])?;
    // Split the zone off: `Z`, or the last `+`/`-`.
    let (time, zone) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, "")
    } else if let Some(i) = rest.rfind(['+', '-']) {
        (&rest[..i], &rest[i..])
    } else {
        (rest, "")
    };
    let (hms, frac) = match time.split_once('.') {
        Some((h, f)) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => (h, f),
        Some(_) => return None,
        None => (time, ""),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let (h, mi, sec) = match parts.as_slice() {
        [h, mi] if frac.is_empty() => (num(h, 2)?, num(mi, 2)?, 0),
        [h, mi, sec] => (num(h, 2)?, num(mi, 2)?, num(sec, 2)?),
        _ => return None,
    };
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    millis += ((h * 60 + mi) * 60 + sec) * 1000 + frac_millis(frac);
    if !zone.is_empty() {
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let z = zone[1..].replace(':', "");
        let (zh, zm) = match z.len() {
            2 => (num(&z, 2)?, 0),
            4 => (num(&z[..2], 2)?, num(&z[2..], 2)?),
            _ => return None,
        };
        if zh > 23 || zm > 59 {
            return None;
        }
        millis -= sign * (zh * 60 + zm) * 60_000;
    }
    Some(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_date("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_date("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_date("2023-11-14T23:13:20+01:00"), Some(1_700_000_000_000));
        assert_eq!(parse_date("2023-11-14T21:13:20-0100"), Some(1_700_000_000_000));
        assert_eq!(parse_date("2023-11-14T22:13:20.5Z"), Some(1_700_000_000_500));
        assert_eq!(parse_date("2023-11-14T22:13Z"), Some(1_699_999_980_000));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(
            parse_date("2024-02-29"),
            Some(days_from_civil(2024, 2, 29) * 86_400_000)
        );
        assert_eq!(parse_date("2023-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(parse_date(""), None);
        assert_eq!(parse_date("-"), None);
        assert_eq!(parse_date("2023-11-14T25:00:00Z"), None);
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
