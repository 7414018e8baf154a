//! Prometheus metrics: HTTP requests per route, GraphQL operations, jobs.
//!
//! A small registry of counters and latency histograms, rendered in the
//! Prometheus text format at `/metrics`. Labels are bounded: routes are the
//! router's path patterns (never raw paths), operation names are cut to 64
//! characters and capped in number.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

mod http;

pub use http::{http_request, method_name};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Distinct label sets kept per metric at most.
const MAX_SERIES: usize = 2_000;

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Default)]
struct Registry {
    graphql: BTreeMap<(String, String), Histogram>,
    jobs: BTreeMap<(String, String), Histogram>,
    /// (metric, label name, label value) -> count.
    counters: BTreeMap<(&'static str, &'static str, String), u64>,
    /// (metric, label name, label value) -> current value.
    gauges: BTreeMap<(&'static str, &'static str, String), i64>,
}

/// What each counter and gauge means, for `# HELP`.
const HELP: &[(&str, &str)] = &[
    (
        "graphql_refused_total",
        "GraphQL operations refused before or during execution, by the limit that refused them.",
    ),
    (
        "http_connections_dropped_total",
        "HTTP connections closed by the server, by reason (header, body or idle timeout, capacity).",
    ),
    (
        "http_requests_shed_total",
        "HTTP requests answered 503 because too many were in flight.",
    ),
    (
        "rate_limited_total",
        "Requests refused with 429, by rate-limit rule.",
    ),
    (
        "background_restarts_total",
        "Background loops that stopped unexpectedly and were restarted, by loop.",
    ),
    ("http_connections_open", "Open HTTP connections."),
    (
        "background_loop_healthy",
        "1 while a background loop runs, 0 after it stopped unexpectedly until it is restarted.",
    ),
];

/// Add one to a counter with one label.
pub fn count(metric: &'static str, label: &'static str, value: &str) {
    if let Ok(mut registry) = registry().lock() {
        let key = (metric, label, value.chars().take(64).collect::<String>());
        if registry.counters.len() >= MAX_SERIES && !registry.counters.contains_key(&key) {
            return;
        }
        *registry.counters.entry(key).or_default() += 1;
    }
}

/// Set a gauge with one label (an empty label name for none).
pub fn gauge(metric: &'static str, label: &'static str, value: &str, level: i64) {
    if let Ok(mut registry) = registry().lock() {
        registry
            .gauges
            .insert((metric, label, value.chars().take(64).collect()), level);
    }
}

/// Move a gauge without labels by `delta`.
pub fn gauge_add(metric: &'static str, delta: i64) {
    if let Ok(mut registry) = registry().lock() {
        *registry
            .gauges
            .entry((metric, "", String::new()))
            .or_default() += delta;
    }
}

fn render_simple(
    out: &mut String,
    kind: &str,
    series: &BTreeMap<(&'static str, &'static str, String), impl std::fmt::Display>,
) {
    let mut last = "";
    for ((metric, label, value), level) in series {
        if *metric != last {
            last = metric;
            if let Some((_, help)) = HELP.iter().find(|(name, _)| name == metric) {
                let _ = writeln!(out, "# HELP {metric} {help}");
            }
            let _ = writeln!(out, "# TYPE {metric} {kind}");
        }
        if label.is_empty() {
            let _ = writeln!(out, "{metric} {level}");
        } else {
            let _ = writeln!(out, "{metric}{{{label}=\"{}\"}} {level}", escape(value));
        }
    }
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn observe<K: Ord>(map: &mut BTreeMap<K, Histogram>, key: K, elapsed: Duration) {
    if map.len() >= MAX_SERIES && !map.contains_key(&key) {
        return;
    }
    map.entry(key).or_default().observe(elapsed.as_secs_f64());
}

/// One GraphQL operation, by type and name.
pub fn graphql_operation(kind: &str, name: Option<&str>, elapsed: Duration) {
    let name: String = name.unwrap_or("anonymous").chars().take(64).collect();
    if let Ok(mut registry) = registry().lock() {
        observe(&mut registry.graphql, (kind.to_owned(), name), elapsed);
    }
}

/// One job run, by kind and outcome (`success`, `failure`, `retry`).
pub fn job(kind: &str, outcome: &str, elapsed: Duration) {
    if let Ok(mut registry) = registry().lock() {
        observe(
            &mut registry.jobs,
            (kind.to_owned(), outcome.to_owned()),
            elapsed,
        );
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_histograms<K>(
    out: &mut String,
    name: &str,
    help: &str,
    series: &BTreeMap<K, Histogram>,
    labels: impl Fn(&K) -> String,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (key, histogram) in series {
        let labels = labels(key);
        for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"+Inf\"}} {}",
            histogram.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", histogram.count);
    }
}

/// Everything, in the Prometheus text format.
pub fn render() -> String {
    let mut out = String::new();
    let Ok(registry) = registry().lock() else {
        return out;
    };
    let http = http::snapshot();
    render_histograms(
        &mut out,
        "http_request_duration_seconds",
        "HTTP requests by method, route and status, and their latency.",
        &http,
        |(method, route, status)| {
            format!(
                "method=\"{}\",route=\"{}\",status=\"{status}\"",
                escape(method),
                escape(route)
            )
        },
    );
    render_histograms(
        &mut out,
        "graphql_operation_duration_seconds",
        "GraphQL operations by type and name, and their latency.",
        &registry.graphql,
        |(kind, name)| format!("type=\"{}\",operation=\"{}\"", escape(kind), escape(name)),
    );
    render_histograms(
        &mut out,
        "job_duration_seconds",
        "Background jobs by kind and outcome, and their latency.",
        &registry.jobs,
        |(kind, outcome)| format!("kind=\"{}\",outcome=\"{}\"", escape(kind), escape(outcome)),
    );
    render_simple(&mut out, "counter", &registry.counters);
    render_simple(&mut out, "gauge", &registry.gauges);
    render_read_model(&mut out);
    out
}

fn render_read_model(out: &mut String) {
    let stats = &crate::readmodel::STATS;
    let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP read_model_lookups_total Room views asked of the hot-room read model, by \
         result (hit, miss: loaded from the database, bypass: versions unknown, so read from \
         the database and not kept).\n# TYPE read_model_lookups_total counter"
    );
    for (result, n) in [
        ("hit", &stats.hits),
        ("miss", &stats.misses),
        ("bypass", &stats.bypasses),
    ] {
        let _ = writeln!(
            out,
            "read_model_lookups_total{{result=\"{result}\"}} {}",
            load(n)
        );
    }
    let _ = writeln!(
        out,
        "# HELP read_model_fed_total Room views brought up to date by an event, without a \
         database read.\n# TYPE read_model_fed_total counter\nread_model_fed_total {}",
        load(&stats.fed)
    );
    let _ = writeln!(
        out,
        "# HELP read_model_bytes Memory held by the hot-room read model (estimated).\n\
         # TYPE read_model_bytes gauge\nread_model_bytes {}",
        stats.bytes.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP read_model_rooms Rooms held by the hot-room read model.\n\
         # TYPE read_model_rooms gauge\nread_model_rooms {}",
        stats.rooms.load(Ordering::Relaxed)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        http_request("GET", "/users/{id}", 200, Duration::from_millis(3));
        job("send_group_message", "success", Duration::from_millis(12));
        count("rate_limited_total", "rule", "sends_per_user");
        gauge("background_loop_healthy", "loop", "dispatcher", 1);
        let text = render();
        assert!(text.contains("# TYPE rate_limited_total counter"));
        assert!(text.contains("rate_limited_total{rule=\"sends_per_user\"} 1"));
        assert!(text.contains("background_loop_healthy{loop=\"dispatcher\"} 1"));
        assert!(text.contains("# TYPE http_request_duration_seconds histogram"));
        assert!(text.contains(
            "http_request_duration_seconds_count{method=\"GET\",route=\"/users/{id}\",status=\"200\"}"
        ));
        assert!(text.contains("job_duration_seconds_bucket{kind=\"send_group_message\",outcome=\"success\",le=\"0.025\"}"));
    }
}
