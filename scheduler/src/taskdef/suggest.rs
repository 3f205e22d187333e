//! "Did you mean …?": the nearest known name to a misspelt one, by edit distance.

/// The candidate nearest to `word`, if one is near enough to be a plausible typo.
///
/// Distance is strsim's optimal-string-alignment distance (insertions, deletions, substitutions
/// and swaps of neighbours each cost one), ignoring case; names equal up to case, `_` and `-` (such
/// as `memory_reservation` for `memoryReservation`) count as distance zero, and a prefix of three
/// or more characters (`soft` for `softLimit`) as the largest plausible distance. Ties go to the
/// candidate listed first.
pub(super) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let normalized = normalize(word);
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let known = normalize(candidate);
        let distance = if known == normalized {
            0
        } else if normalized.chars().count() >= 3 && known.starts_with(&normalized) {
            // A truncated name ("soft" for "softLimit") is as plausible as the farthest typo.
            threshold(candidate)
        } else {
            strsim::osa_distance(&lower, &candidate.to_lowercase())
        };
        if distance <= threshold(candidate) && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// How many edits a typo of `candidate` may plausibly have.
fn threshold(candidate: &str) -> usize {
    match candidate.chars().count() {
        0..=3 => 1,
        4..=8 => 2,
        _ => 3,
    }
}

fn normalize(word: &str) -> String {
    word.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_plausible_name() {
        let known = ["memory", "memoryReservation", "cpu", "command"];
        assert_eq!(nearest("memroy", known), Some("memory"));
        assert_eq!(nearest("MEMORY", known), Some("memory"));
        assert_eq!(
            nearest("memory_reservation", known),
            Some("memoryReservation")
        );
        assert_eq!(nearest("cpus", known), Some("cpu"));
        assert_eq!(nearest("comand", known), Some("command"));
        assert_eq!(nearest("volumes", known), None);
        assert_eq!(nearest("memoryRes", known), Some("memoryReservation"));
        assert_eq!(nearest("me", known), None);
        assert_eq!(nearest("x", known), None);
    }
}
