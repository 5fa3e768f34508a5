//! The `Date` header value (RFC 9110 5.6.7 IMF-fixdate), cached per thread per second.

use std::cell::Cell;

/// Length of an IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
pub const HTTP_DATE_LEN: usize = 29;

/// Last second a four-digit year can show (9999-12-31 23:59:59 UTC); later times are clamped.
const MAX_UNIX_SECS: u64 = 253_402_300_799;

const WEEKDAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

thread_local! {
    // (UNIX second, its formatted date); u64::MAX never matches a real clock reading.
    static CACHE: Cell<(u64, [u8; HTTP_DATE_LEN])> = const { Cell::new((u64::MAX, [0; HTTP_DATE_LEN])) };
}

/// The IMF-fixdate for now, e.g. "Sun, 06 Nov 1994 08:49:37 GMT". Formats at most once per
/// second per thread; every other call is a clock read and a 29-byte copy.
pub fn http_date() -> [u8; HTTP_DATE_LEN] {
    let now = unix_now();
    CACHE.with(|cache| {
        let (secs, date) = cache.get();
        if secs == now {
            return date;
        }
        let date = format_http_date(now);
        cache.set((now, date));
        date
    })
}

/// Formats `unix_secs` (seconds since 1970-01-01 00:00:00 UTC) as an IMF-fixdate. Times past
/// year 9999 are clamped to its last second so the output keeps its fixed length.
pub fn format_http_date(unix_secs: u64) -> [u8; HTTP_DATE_LEN] {
    let secs = unix_secs.min(MAX_UNIX_SECS);
    let days = (secs / 86_400) as i64;
    let sod = (secs % 86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 4 with Sunday = 0); days is never negative here.
    let weekday = ((days + 4) % 7) as usize;

    let mut out = [0u8; HTTP_DATE_LEN];
    out[0..3].copy_from_slice(WEEKDAYS[weekday]);
    out[3..5].copy_from_slice(b", ");
    put2(&mut out[5..7], day);
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    out[11] = b' ';
    // year is 1970..=9999 after the clamp.
    let y = year as u32;
    put2(&mut out[12..14], y / 100);
    put2(&mut out[14..16], y % 100);
    out[16] = b' ';
    put2(&mut out[17..19], sod / 3600);
    out[19] = b':';
    put2(&mut out[20..22], sod / 60 % 60);
    out[22] = b':';
    put2(&mut out[23..25], sod % 60);
    out[25..29].copy_from_slice(b" GMT");
    out
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month 1..=12, day 1..=31).
///
/// Works in "eras" of 400 years (146097 days, the Gregorian cycle) with years starting on
/// March 1st, so the leap day is the last day of the shifted year and month lengths follow a
/// linear formula. Valid for any `days` whose year fits in i64.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01, the start of an era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
                                     // Year of era 0..=399: remove the leap days (one per 4 years, minus one per 100, plus one
                                     // per 400) before dividing by 365.
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year, 0..=365
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    // January and February belong to the next civil year.
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Writes `v` (0..=99) as two ASCII digits.
fn put2(dst: &mut [u8], v: u32) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

/// Seconds since the UNIX epoch, 0 if the clock is before it.
#[cfg(target_os = "linux")]
fn unix_now() -> u64 {
    // The coarse clock is the cheapest to read (no TSC read, no syscall) and its few
    // milliseconds of lag do not matter at one-second resolution.
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if rc == 0 {
        u64::try_from(ts.tv_sec).unwrap_or(0)
    } else {
        system_now()
    }
}

#[cfg(not(target_os = "linux"))]
fn unix_now() -> u64 {
    system_now()
}

fn system_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(secs: u64) -> String {
        String::from_utf8(format_http_date(secs).to_vec()).unwrap()
    }

    #[test]
    fn known_timestamps() {
        let cases: &[(u64, &str)] = &[
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (86_399, "Thu, 01 Jan 1970 23:59:59 GMT"),
            (86_400, "Fri, 02 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"), // leap year divisible by 400
            (951_868_800, "Wed, 01 Mar 2000 00:00:00 GMT"),
            (1_078_012_800, "Sun, 29 Feb 2004 00:00:00 GMT"),
            (1_230_768_000, "Thu, 01 Jan 2009 00:00:00 GMT"),
            (1_230_767_999, "Wed, 31 Dec 2008 23:59:59 GMT"), // last day of a leap year
            (1_330_473_600, "Wed, 29 Feb 2012 00:00:00 GMT"),
            (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
            (1_709_251_200, "Fri, 01 Mar 2024 00:00:00 GMT"),
            (2_147_483_647, "Tue, 19 Jan 2038 03:14:07 GMT"), // i32 time_t limit
            (2_147_483_648, "Tue, 19 Jan 2038 03:14:08 GMT"),
            (4_102_444_800, "Fri, 01 Jan 2100 00:00:00 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"), // 2100 is not a leap year
            (4_107_542_399, "Sun, 28 Feb 2100 23:59:59 GMT"),
            (4_294_967_295, "Sun, 07 Feb 2106 06:28:15 GMT"), // u32 limit
            (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
            (253_402_300_800, "Fri, 31 Dec 9999 23:59:59 GMT"), // clamped
            (u64::MAX, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        for &(secs, want) in cases {
            assert_eq!(fmt(secs), want, "unix time {secs}");
        }
    }

    #[test]
    fn civil_from_days_round_trips() {
        // Walk day by day from 1600 to 2500 checking month lengths and leap rules independently.
        fn is_leap(y: i64) -> bool {
            (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
        }
        fn month_len(y: i64, m: u32) -> u32 {
            match m {
                2 if is_leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            }
        }
        let start = -135_140; // 1600-01-01
        assert_eq!(civil_from_days(start), (1600, 1, 1));
        let mut expect = (1600i64, 1u32, 1u32);
        for days in start..start + 900 * 366 {
            assert_eq!(civil_from_days(days), expect, "days {days}");
            let (y, m, d) = expect;
            expect = if d < month_len(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn now_is_well_formed_and_cached() {
        let a = http_date();
        let s = std::str::from_utf8(&a).unwrap();
        assert_eq!(s.len(), HTTP_DATE_LEN);
        assert!(s.ends_with(" GMT"));
        assert!(WEEKDAYS.iter().any(|w| s.as_bytes().starts_with(&w[..])));
        // The cached value matches a fresh formatting of the same second.
        let (secs, cached) = CACHE.with(|c| c.get());
        assert_eq!(cached, format_http_date(secs));
        // A current clock is after 2020 and before 9999.
        assert!(secs > 1_577_836_800 && secs < MAX_UNIX_SECS);
        let b = http_date();
        let (secs2, _) = CACHE.with(|c| c.get());
        assert!(secs2 >= secs);
        assert_eq!(b, format_http_date(secs2));
    }
}
