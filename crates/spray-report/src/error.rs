//! The report's error: what went wrong, and where a caller could act on it.

use std::path::PathBuf;

/// Why the report (or `spray evaluate`) could not be built. Each variant's message names what
/// failed; the underlying error is its `source`, printed once by whoever prints the chain.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading one of the stages' tables or writing the report's files.
    #[error(transparent)]
    Store(#[from] spray_store::StoreError),
    /// The report folder cannot be created.
    #[error("creating the report folder {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A class page of an earlier run could not be listed or removed.
    #[error("removing an earlier run's class page in {}", path.display())]
    StalePage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The run cannot be exported as a ViRelAy project (`spray export virelay`).
    #[error("exporting {}: {reason}", path.display())]
    Export { path: PathBuf, reason: String },
    /// plotters failed to draw a chart (into a string: not a matter of the input).
    #[error("drawing the chart '{title}'")]
    Chart {
        title: String,
        #[source]
        source: plotters::drawing::DrawingAreaErrorKind<std::io::Error>,
    },
    /// The page template failed to compile or render.
    #[error("rendering the report page")]
    Template(#[source] minijinja::Error),
    /// polars failed to build or write a CSV table.
    #[error("building the table {}", path.display())]
    Table {
        path: PathBuf,
        #[source]
        source: polars::error::PolarsError,
    },
    /// A detection truth file that cannot be read.
    #[error("reading {}", path.display())]
    ReadTruth {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A detection truth file that is not a truth (`tests/scenarios/make_scenarios.py`).
    #[error("{} is not a detection truth file", path.display())]
    InvalidTruth {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The truth names a shortcut class the analysis does not have: a truth of another
    /// dataset.
    #[error("the truth names shortcut class '{class}', which the analysis does not have")]
    UnknownShortcutClass { class: String },
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain as anyhow's `{:#}` prints it: each message once.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut parts = vec![e.to_string()];
        let mut source = e.source();
        while let Some(s) = source {
            parts.push(s.to_string());
            source = s.source();
        }
        parts.join(": ")
    }

    #[test]
    fn a_message_does_not_repeat_its_cause() {
        let e = ReportError::ReadTruth {
            path: "truth.json".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        };
        assert_eq!(chain(&e), "reading truth.json: no such file");
        let json = serde_json::from_str::<u8>("x").unwrap_err();
        let e = ReportError::InvalidTruth {
            path: "truth.json".into(),
            source: json,
        };
        let text = chain(&e);
        assert_eq!(text.matches("expected value").count(), 1, "{text}");
    }
}
