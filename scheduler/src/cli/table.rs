//! Plain-text tables for people, fitted to the terminal's width by truncating long cells with "…".

/// The gap between columns.
const GAP: &str = "  ";
/// The width assumed when `COLUMNS` does not say.
const DEFAULT_WIDTH: usize = 120;
/// No column is shrunk below this (or below its natural width, when that is smaller).
const MIN_COLUMN: usize = 6;

/// The terminal width: `COLUMNS` when it is a positive number, else 120.
pub(super) fn terminal_width() -> usize {
    width_from(std::env::var("COLUMNS").ok().as_deref())
}

fn width_from(columns: Option<&str>) -> usize {
    columns
        .and_then(|c| c.trim().parse().ok())
        .filter(|w| *w > 0)
        .unwrap_or(DEFAULT_WIDTH)
}

/// A table: a header row and rows of cells.
#[derive(Debug)]
pub(super) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub(super) fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The table at most `width` characters wide (unless even the narrowest columns are wider),
    /// one line a row, each ending with a newline. Newlines in cells become spaces.
    pub(super) fn render(&self, width: usize) -> String {
        let clean = |cell: &str| cell.replace(['\n', '\r', '\t'], " ");
        let rows: Vec<Vec<String>> = std::iter::once(&self.headers)
            .chain(&self.rows)
            .map(|row| row.iter().map(|c| clean(c)).collect())
            .collect();
        let mut widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                rows.iter()
                    .map(|row| row[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let floors: Vec<usize> = widths.iter().map(|w| (*w).min(MIN_COLUMN)).collect();
        let available = width.saturating_sub(GAP.len() * widths.len().saturating_sub(1));
        while widths.iter().sum::<usize>() > available {
            // Shrink the widest column that can still shrink.
            let Some((i, _)) = widths
                .iter()
                .enumerate()
                .filter(|(i, w)| **w > floors[*i])
                .max_by_key(|(i, w)| (**w, usize::MAX - i))
            else {
                break;
            };
            widths[i] -= 1;
        }
        let mut out = String::new();
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{:<w$}", truncate(cell, *w), w = *w))
                .collect();
            out.push_str(line.join(GAP).trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` cut to `width` characters, the last one "…" when it was cut.
pub(super) fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_with_an_ellipsis() {
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcde…");
        assert_eq!(truncate("äöüäöüä", 3), "äö…");
        assert_eq!(truncate("abc", 1), "…");
        assert_eq!(truncate("abc", 0), "");
    }

    #[test]
    fn fits_the_width() {
        let mut table = Table::new(&["ID", "REASON"]);
        table.row(vec!["t1".into(), "short".into()]);
        table.row(vec![
            "t2".into(),
            "a rather long reason that will not fit".into(),
        ]);
        assert_eq!(
            table.render(80),
            "ID  REASON\nt1  short\nt2  a rather long reason that will not fit\n"
        );
        assert_eq!(
            table.render(20),
            "ID  REASON\nt1  short\nt2  a rather long r…\n"
        );
        // Too narrow for anything: columns keep their floors.
        assert_eq!(table.render(1), "ID  REASON\nt1  short\nt2  a rat…\n");
    }

    #[test]
    fn shrinks_the_widest_column_first() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["0123456789".into(), "abcdefghijklmnopqrst".into()]);
        assert_eq!(
            table.render(24),
            "A           B\n0123456789  abcdefghijk…\n"
        );
        assert_eq!(table.render(20), "A          B\n01234567…  abcdefgh…\n");
    }

    #[test]
    fn width_from_columns() {
        assert_eq!(width_from(Some("80")), 80);
        assert_eq!(width_from(Some("0")), 120);
        assert_eq!(width_from(Some("wide")), 120);
        assert_eq!(width_from(None), 120);
    }
}
