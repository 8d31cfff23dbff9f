//! The binary's logs (`[log]`): human-readable lines, the default, or one JSON object a line for
//! log collectors (`format = "json"`). Either way a line logged while serving a request carries
//! that request's ID, and each request ends with one access line, `served`
//! (`request::request_id`). Verbosity comes from `RUST_LOG` (default `info`).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    EnvFilter,
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields,
        format::{JsonFields, Writer},
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One human-readable line per event (the dev stack's and the default).
    #[default]
    Text,
    /// One JSON object a line ([`JsonLines`]).
    Json,
}

/// The `[log]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
}

/// Installs the process's logger, writing to stdout in `config.format`, filtered by `RUST_LOG`
/// (default `info`). For binaries: it sets the global default, once.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logger = tracing_subscriber::fmt().with_env_filter(filter);
    match config.format {
        LogFormat::Text => logger.init(),
        LogFormat::Json => logger
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .init(),
    }
}

/// One JSON object a line, flat: `timestamp` (RFC 3339, UTC), `level`, `target`, `message`, the
/// event's own fields, and the fields of every span it happened in (`request_id`, `method` and
/// `path` for a request), the innermost span's winning a name clash and the event's winning over
/// all. Span fields must be recorded as JSON ([`JsonFields`]), which [`init`] sets up.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), Value::String(timestamp));
        let metadata = event.metadata();
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                // A span without fields records nothing (an empty string).
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut FieldsInto(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Records an event's fields into a JSON object.
struct FieldsInto<'a>(&'a mut Map<String, Value>);

impl Visit for FieldsInto<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message` arrives as format arguments, whose Debug is the text itself.
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects what the logger writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn a_line_is_one_flat_json_object_with_the_request_id_of_its_span() {
        let lines = Lines::default();
        let logger = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(logger, || {
            let request = tracing::info_span!("request", request_id = "r-1", path = "/api/x");
            request.in_scope(|| {
                tracing::info!(status = 404u16, error_code = "not_found", "served");
            });
            tracing::warn!(ratio = 0.5, quoted = "a \"b\"\nc", "outside any request");
        });
        let written = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<Value> = written
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect();
        assert_eq!(parsed.len(), 2, "{written}");
        let served = &parsed[0];
        assert_eq!(served["message"], "served");
        assert_eq!(served["level"], "INFO");
        assert_eq!(served["request_id"], "r-1");
        assert_eq!(served["path"], "/api/x");
        assert_eq!(served["status"], 404);
        assert_eq!(served["error_code"], "not_found");
        let timestamp = served["timestamp"].as_str().expect("a timestamp");
        assert!(
            timestamp.ends_with('Z') && timestamp.contains('T'),
            "{timestamp}"
        );
        let outside = &parsed[1];
        assert_eq!(outside["level"], "WARN");
        assert_eq!(outside["quoted"], "a \"b\"\nc", "escaped, on one line");
        assert_eq!(outside["ratio"], 0.5);
        assert!(outside.get("request_id").is_none());
    }
}
