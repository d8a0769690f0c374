//! Durations and sizes as people read them in messages, reports and logs.
//!
//! A leaf: anything that talks to a human (the log, reports, status, prune) formats
//! through here, so `2d4h` and `6.0 MiB` read the same everywhere.

/// `3h12m`, `45s`, `2d4h` for messages.
pub fn human_secs(s: u64) -> String {
    let (d, h, m) = (s / 86400, s / 3600 % 24, s / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m{}s", s % 60),
        (0, h, m) => format!("{h}h{m}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// `512 B`, `22.9 KiB`, `6.0 MiB`, `1.5 GiB`: binary units, one decimal.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A size as people write it: `1048576`, `512K`, `10M`, `1.5G`, `2T` (binary units,
/// case-insensitive, optionally followed by `B` or `iB`: `10MiB`). Whole bytes; the error
/// says what was expected.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let expected = || {
        format!("'{text}' is not a size: write bytes (1048576) or a number with K, M, G or T (512K, 10M, 1.5G)")
    };
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix("ib"))
        .or_else(|| t.strip_suffix(['B', 'b']))
        .unwrap_or(t);
    let (number, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(expected()),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    // Digits and at most one dot: no signs, exponents, `inf` or `NaN` (f64's parser takes them).
    let well_formed = !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        && number.matches('.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    if !well_formed {
        return Err(expected());
    }
    if shift == 0 && !number.contains('.') {
        return number.parse().map_err(|_| expected());
    }
    let bytes = number.parse::<f64>().map_err(|_| expected())? * (1u64 << shift) as f64;
    if bytes >= u64::MAX as f64 {
        return Err(format!("'{text}' is too large"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_bytes_reads_what_people_write() {
        for (text, want) in [
            ("1048576", 1 << 20),
            ("512K", 512 << 10),
            ("10M", 10 << 20),
            ("10m", 10 << 20),
            ("10MiB", 10 << 20),
            ("10MB", 10 << 20),
            ("1.5G", 3 << 29),
            ("2T", 2 << 40),
            (" 7 ", 7),
            ("0", 0),
        ] {
            assert_eq!(parse_bytes(text), Ok(want), "{text}");
        }
        for bad in [
            "", "M", "-1M", "1e3", "inf", "1.2.3M", "10X", "10 M M", "NaN", "+5",
        ] {
            let e = parse_bytes(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{bad}: {e}");
        }
        assert!(parse_bytes("99999999999999999999").is_err());
        assert!(parse_bytes("99999999T").unwrap_err().contains("too large"));
    }

    #[test]
    fn human_bytes_picks_the_largest_unit_below_1024() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(23_488), "22.9 KiB");
        assert_eq!(human_bytes(6_335_032), "6.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
    }
}
