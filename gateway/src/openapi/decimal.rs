//! Regular expressions for the decimal text of integers in given ranges, as the transcoder reads
//! it: Rust's `from_str`, so an optional `+`, a `-` only for signed types (`-0` is zero), and any
//! number of leading zeros. The OpenAPI document gives them for integers sent as JSON strings
//! (64-bit integers are strings in proto3 JSON, and any integer may be) and for enum numbers in
//! the query string, so a schema admits exactly the texts the gateway reads as an allowed value.
//!
//! The expressions use only `^ $ (?: ) | ? * + [0-9] {n}` and literals, which ECMA-262, RE2,
//! Python and Rust read alike (`[0-9]` rather than `\d`, which is Unicode-aware in some).

/// A pattern matching exactly the decimal texts of the values in `ranges` (inclusive bounds),
/// for an integer type that is `signed` or not. An empty list gives a pattern matching nothing.
pub fn pattern(ranges: &[(i128, i128)], signed: bool) -> String {
    let mut positive = Vec::new();
    let mut negative = Vec::new();
    let mut zero_signed = false;
    for &(low, high) in ranges.iter().filter(|(low, high)| low <= high) {
        if high >= 0 {
            positive.extend(canonical(low.max(0).unsigned_abs(), high.unsigned_abs()));
        }
        if signed && low < 0 {
            let top = high.min(-1);
            negative.extend(canonical(top.unsigned_abs(), low.unsigned_abs()));
        }
        zero_signed |= signed && low <= 0 && high >= 0;
    }
    let mut alternatives = Vec::new();
    if !positive.is_empty() {
        alternatives.push(format!("\\+?0*(?:{})", positive.join("|")));
    }
    if !negative.is_empty() {
        alternatives.push(format!("-0*(?:{})", negative.join("|")));
    }
    if zero_signed {
        alternatives.push("-0+".to_owned());
    }
    if alternatives.is_empty() {
        // Nothing is allowed: a class no character is in.
        return "[^\\s\\S]".to_owned();
    }
    format!("^(?:{})$", alternatives.join("|"))
}

/// Alternatives matching exactly the canonical decimals (no leading zeros) of `low..=high`.
fn canonical(low: u128, high: u128) -> Vec<String> {
    let mut alternatives = Vec::new();
    let mut from = low;
    while from <= high {
        let digits = from.to_string().len() as u32;
        let to = high.min(10u128.pow(digits) - 1);
        alternatives.extend(same_length(
            from.to_string().as_bytes(),
            to.to_string().as_bytes(),
        ));
        if to == high {
            break;
        }
        from = to + 1;
    }
    alternatives
}

/// Alternatives matching the digit strings from `low` to `high`, both of the same length.
fn same_length(low: &[u8], high: &[u8]) -> Vec<String> {
    let (Some((&first_low, rest_low)), Some((&first_high, rest_high))) =
        (low.split_first(), high.split_first())
    else {
        return vec![String::new()];
    };
    let prefixed = |digit: u8, tails: Vec<String>| -> Vec<String> {
        tails
            .into_iter()
            .map(|tail| format!("{}{tail}", char::from(digit)))
            .collect()
    };
    if first_low == first_high {
        return prefixed(first_low, same_length(rest_low, rest_high));
    }
    let width = rest_low.len();
    let mut alternatives = Vec::new();
    let mut middle_low = first_low;
    let mut middle_high = first_high;
    // The lower edge: `first_low` followed by `rest_low..=99..9`, unless that is every tail.
    if rest_low.iter().any(|&digit| digit != b'0') {
        alternatives.extend(prefixed(
            first_low,
            same_length(rest_low, &vec![b'9'; width]),
        ));
        middle_low += 1;
    }
    let upper = if rest_high.iter().any(|&digit| digit != b'9') {
        middle_high -= 1;
        prefixed(first_high, same_length(&vec![b'0'; width], rest_high))
    } else {
        Vec::new()
    };
    if middle_low <= middle_high {
        let leading = if middle_low == middle_high {
            char::from(middle_low).to_string()
        } else {
            format!("[{}-{}]", char::from(middle_low), char::from(middle_high))
        };
        let tail = match width {
            0 => String::new(),
            1 => "[0-9]".to_owned(),
            n => format!("[0-9]{{{n}}}"),
        };
        alternatives.push(format!("{leading}{tail}"));
    }
    alternatives.extend(upper);
    alternatives
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use regex::Regex;

    use super::*;

    fn matches(ranges: &[(i128, i128)], signed: bool, text: &str) -> bool {
        Regex::new(&pattern(ranges, signed)).unwrap().is_match(text)
    }

    #[test]
    fn the_steps_range_reads_as_the_transcoder_reads_it() {
        let steps = [(0, 1_000_000)];
        for yes in [
            "0",
            "7",
            "+7",
            "007",
            "-0",
            "-000",
            "999999",
            "1000000",
            "0001000000",
        ] {
            assert!(matches(&steps, true, yes), "{yes}");
        }
        for no in [
            "", "+", "-", "-1", "1000001", "9999999", "1e3", " 1", "1.0", "١",
        ] {
            assert!(!matches(&steps, true, no), "{no}");
        }
        // Unsigned types take no minus sign, not even on zero.
        assert!(!matches(&[(0, 10)], false, "-0"));
    }

    #[test]
    fn the_extremes_of_64_bit_types_are_exact() {
        let int64 = [(i128::from(i64::MIN), i128::from(i64::MAX))];
        assert!(matches(&int64, true, "9223372036854775807"));
        assert!(!matches(&int64, true, "9223372036854775808"));
        assert!(matches(&int64, true, "-9223372036854775808"));
        assert!(!matches(&int64, true, "-9223372036854775809"));
        let uint64 = [(0, i128::from(u64::MAX))];
        assert!(matches(&uint64, false, "18446744073709551615"));
        assert!(!matches(&uint64, false, "18446744073709551616"));
        assert!(!matches(&[], true, "0"));
    }

    proptest! {
        /// For any ranges and any number text, the pattern matches exactly when Rust parses the
        /// text as an `i64` (or `u64`) inside one of the ranges.
        #[test]
        fn the_pattern_matches_exactly_the_values_in_range(
            bounds in proptest::collection::vec((-2_000_000i64..2_000_000, 0i64..3_000), 1..3),
            signed in any::<bool>(),
            text in prop_oneof![
                "[+-]?0{0,3}[0-9]{1,8}",
                (-3_000_000i64..3_000_000).prop_map(|n| n.to_string()),
                "[+-]?[0-9]{17,21}",
            ],
        ) {
            let ranges: Vec<(i128, i128)> = bounds
                .iter()
                .map(|&(low, width)| (i128::from(low), i128::from(low) + i128::from(width)))
                .collect();
            let parsed: Option<i128> = if signed {
                text.parse::<i64>().ok().map(i128::from)
            } else {
                text.parse::<u64>().ok().map(i128::from)
            };
            let allowed = parsed
                .is_some_and(|value| ranges.iter().any(|&(low, high)| low <= value && value <= high));
            prop_assert_eq!(matches(&ranges, signed, &text), allowed, "{} in {:?}", text, ranges);
        }
    }
}
