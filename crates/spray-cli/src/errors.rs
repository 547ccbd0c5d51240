//! How an error reaches the user: its message, then each cause that says something new.

/// The error and its causes joined by ": ", skipping a cause whose text the message so far
/// already holds. Why: many library errors print their source in their own message (`{path}:
/// {source}`) and also return it from `source()`, so the plain chain (`{:#}`) says the OS
/// reason or the decoder's complaint twice.
pub fn chain_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Io {
        path: String,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = anyhow::Error::new(Io {
            path: "/nonexistent.toml".into(),
            source: io,
        })
        .context("reading the pipeline");
        assert_eq!(
            chain_text(&e),
            "reading the pipeline: /nonexistent.toml: No such file or directory"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_text(&plain), "outer: inner");
    }
}
