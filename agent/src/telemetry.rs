//! Logging setup. Under systemd (stderr is the journal stream JOURNAL_STREAM names) events go
//! to journald natively, every field its own journal field (`task.id` → `TASK_ID`,
//! `container.name` → `CONTAINER_NAME`), so `journalctl -u berth-agent TASK_ID=…` works.
//! Otherwise tracing writes to stderr, plain or JSON. Either way the filter is the configured
//! level or a full filter directive (RUST_LOG wins when set).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the global subscriber; a second call is a no-op.
pub fn init_tracing(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    if berth_policy::stderr_is_journal() {
        // The socket may be missing (a journal stream without /run/systemd/journal/socket):
        // then stderr, which still reaches the journal, is used below.
        if let Ok(journald) = tracing_journald::layer() {
            let journald = journald.with_field_prefix(None);
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(journald)
                .try_init();
            return;
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}
