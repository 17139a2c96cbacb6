//! Logging: text or JSON lines on standard error.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. The exporter's own events are logged from
/// `level` up; its dependencies' only from `warn` (or `level`, if stricter).
pub fn init(level: Level, format: LogFormat) {
    let others = level.min(Level::WARN);
    let filter = EnvFilter::new(format!(
        "{},respan_exporter={}",
        others.as_str().to_ascii_lowercase(),
        level.as_str().to_ascii_lowercase()
    ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests embedding the exporter) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
