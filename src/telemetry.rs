//! Logging set-up, done once per process, and what a panic writes.
//!
//! A panic's message can hold whatever the code was handling (Rust's
//! slicing panics quote the string), so a panic logs where it happened,
//! never its message.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{Config, LogFormat};

/// Install the global `tracing` subscriber. Logs go to stderr so that
/// commands printing data (`schema`, `migrate status`) keep stdout clean.
pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.log_format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A second initialisation (several apps in one test process) keeps the first.
    let _ = result;
    std::panic::set_hook(Box::new(log_panic));
}

/// The panic hook: one ERROR line with the location (and a backtrace when
/// `RUST_BACKTRACE` asks for one), without the panic's message.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_else(|| "an unknown location".to_owned());
    let backtrace = std::backtrace::Backtrace::capture();
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("unnamed");
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        tracing::error!(%location, thread, %backtrace,
            "panicked at {location} (its message is not logged: it may quote private data)");
    } else {
        tracing::error!(%location, thread,
            "panicked at {location} (its message is not logged: it may quote private data)");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panic_logs_its_location_but_not_its_message() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let secret = "a private message\u{a0}text";
        tracing::subscriber::with_default(subscriber, || {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(super::log_panic));
            let result = std::panic::catch_unwind(|| {
                let text = secret.to_owned();
                let at = text.find('\u{a0}').unwrap() + 1;
                // Slicing inside a character: the panic quotes the text.
                text[at..].len()
            });
            std::panic::set_hook(previous);
            assert!(result.is_err());
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("panicked at src/telemetry.rs"), "{log}");
        assert!(!log.contains("a private message"), "{log}");
    }
}
