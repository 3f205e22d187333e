//! `trace_init`: one tracing subscriber for a test process, filtered by `RUST_LOG`.

use std::sync::Once;

use tracing_subscriber::EnvFilter;

/// Installs a fmt subscriber (test writer, `RUST_LOG` filter, default `warn`). Idempotent, and
/// harmless if another subscriber is already installed.
pub fn trace_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
