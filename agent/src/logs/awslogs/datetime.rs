//! `awslogs-datetime-format`: a strftime format turned into the regular expression that marks
//! where an event starts (a line beginning with such a timestamp), as Docker's awslogs driver
//! does with the same directives.

use regex::Regex;

/// The regular expression of each directive.
fn directive(d: char) -> Option<&'static str> {
    Some(match d {
        'a' => "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)",
        'A' => "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)",
        'b' => "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)",
        'B' => {
            "(?:January|February|March|April|May|June|July|August|September|October|November|December)"
        }
        'd' => "(?:0[1-9]|[12][0-9]|3[01])",
        'f' => "[0-9]{1,9}",
        'H' => "(?:[01][0-9]|2[0-3])",
        'I' => "(?:0[1-9]|1[0-2])",
        'j' => "(?:[0-2][0-9]{2}|3[0-5][0-9]|36[0-6])",
        'L' => r"\.[0-9]{3}",
        'm' => "(?:0[1-9]|1[0-2])",
        'M' => "[0-5][0-9]",
        'p' => "(?:AM|PM|am|pm)",
        'S' => "(?:[0-5][0-9]|60)",
        'U' | 'W' => "(?:[0-4][0-9]|5[0-3])",
        'w' => "[0-6]",
        'y' => "[0-9]{2}",
        'Y' => "[0-9]{4}",
        'z' => "(?:Z|[+-][0-9]{2}:?[0-9]{2})",
        'Z' => "[A-Z]{1,5}",
        '%' => "%",
        _ => return None,
    })
}

/// The start-of-event pattern of a strftime format; None when it uses an unknown directive.
pub(crate) fn start_pattern(format: &str) -> Option<Regex> {
    let mut pattern = String::from("^");
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            pattern.push_str(directive(chars.next()?)?);
        } else {
            pattern.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
        }
    }
    Regex::new(&pattern).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_lines_that_start_with_their_timestamp() {
        let p = start_pattern("[%b %d, %Y %H:%M:%S]").unwrap();
        assert!(p.is_match("[May 01, 2017 19:00:01] A message was logged"));
        assert!(!p.is_match("    at Foo.bar(Foo.java:10)"));
        assert!(!p.is_match("x [May 01, 2017 19:00:01]"));
        let iso = start_pattern("%Y-%m-%dT%H:%M:%S%L%z").unwrap();
        assert!(iso.is_match("2024-02-29T23:59:60.123+01:00 leap"));
        assert!(!iso.is_match("2024-13-01T00:00:00.000Z"));
        assert!(start_pattern("100%% %Q").is_none());
        assert!(start_pattern("trailing %").is_none());
    }
}
