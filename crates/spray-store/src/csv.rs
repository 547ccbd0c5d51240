//! The one way the stages write a CSV table: a list of named columns, each a function from a
//! row to its cell, so a column's header and value are written side by side and a table's
//! shape is one list. Cells are quoted only where CSV needs it (RFC 4180).

use std::path::Path;

use crate::Result;

/// One column of a CSV table of rows `R`.
pub struct Column<R> {
    pub name: &'static str,
    pub cell: fn(&R) -> String,
}

impl<R> Column<R> {
    pub const fn new(name: &'static str, cell: fn(&R) -> String) -> Self {
        Column { name, cell }
    }
}

/// A text cell: quoted when it holds a comma, a quote or a line break.
pub fn text(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A ratio or effect, to four decimals (the tables' precision: differences below 1e-4 are
/// noise of the scoring batch, not findings).
pub fn fixed4(x: f64) -> String {
    format!("{x:.4}")
}

/// The table as text: the header line, then one line per row.
pub fn render<R>(columns: &[Column<R>], rows: &[R]) -> String {
    let mut out = columns.iter().map(|c| c.name).collect::<Vec<_>>().join(",");
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = columns.iter().map(|c| (c.cell)(row)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// Write the table to `path` atomically.
pub fn write<R>(path: &Path, columns: &[Column<R>], rows: &[R]) -> Result<()> {
    crate::write_atomically(path, render(columns, rows).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_then_rows_quoted_where_needed() {
        let columns = [
            Column::new("name", |r: &(String, f64)| text(&r.0)),
            Column::new("x", |r: &(String, f64)| fixed4(r.1)),
        ];
        let rows = vec![("a".to_string(), 0.5), ("b, \"c\"".to_string(), 1.0 / 3.0)];
        assert_eq!(
            render(&columns, &rows),
            "name,x\na,0.5000\n\"b, \"\"c\"\"\",0.3333\n"
        );
        assert_eq!(render(&columns, &[]), "name,x\n");
    }
}
