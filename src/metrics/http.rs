//! HTTP request series: by method, route pattern and status, updated by
//! every request without a shared lock or a shared cache line.
//!
//! Each series keeps one histogram per shard and each thread writes to its
//! own shard, so the two cores of a small machine never bounce a counter
//! between them. A thread finds its series through a map of its own, keyed
//! by the address of the router's route pattern (the pattern is compared
//! too, since a dropped router's address can be reused); the shared map is
//! read only the first time a thread meets a series.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, OnceLock, RwLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use foldhash::fast::FixedState;

use super::{BUCKETS, Histogram, MAX_SERIES};

/// Shards per series; threads beyond this share them.
const SHARDS: usize = 8;

/// One shard: its own cache line(s), so shards never share one.
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    /// Per bucket, the requests that fell in it (not cumulative: one add).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Nanoseconds.
    sum: AtomicU64,
}

#[derive(Default)]
pub(super) struct Series {
    shards: [Shard; SHARDS],
}

impl Series {
    fn observe(&self, elapsed: Duration) {
        let shard = &self.shards[shard_index()];
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        shard.count.fetch_add(1, Ordering::Relaxed);
        shard
            .sum
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The shards added up, with cumulative buckets.
    fn snapshot(&self) -> Histogram {
        let mut histogram = Histogram::default();
        let mut nanos = 0u64;
        for shard in &self.shards {
            histogram.count += shard.count.load(Ordering::Relaxed);
            nanos = nanos.wrapping_add(shard.sum.load(Ordering::Relaxed));
            for (to, from) in histogram.buckets.iter_mut().zip(&shard.buckets) {
                *to += from.load(Ordering::Relaxed);
            }
        }
        let mut below = 0;
        for bucket in &mut histogram.buckets {
            below += *bucket;
            *bucket = below;
        }
        histogram.sum = nanos as f64 / 1e9;
        histogram
    }
}

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|index| *index)
}

/// (route pattern, method, status) -> its series. A new series takes the
/// write lock once.
type Shared = RwLock<HashMap<(String, &'static str, u16), Arc<Series>>>;

fn shared() -> &'static Shared {
    static SERIES: OnceLock<Shared> = OnceLock::new();
    SERIES.get_or_init(Default::default)
}

struct Known {
    route: Box<str>,
    series: Arc<Series>,
}

/// (route address, route length, method, status) -> the series this
/// thread already found.
type KnownMap = HashMap<(usize, usize, &'static str, u16), Known, FixedState>;

thread_local! {
    static KNOWN: RefCell<KnownMap> = RefCell::new(HashMap::default());
}

/// The series of one (method, route, status), or `None` past the cap.
fn find(method: &'static str, route: &str, status: u16) -> Option<Arc<Series>> {
    let key = (route.as_ptr() as usize, route.len(), method, status);
    let known = KNOWN.with(|known| {
        known
            .borrow()
            .get(&key)
            .filter(|known| &*known.route == route)
            .map(|known| known.series.clone())
    });
    if known.is_some() {
        return known;
    }
    let wanted = (route.to_owned(), method, status);
    let found = shared()
        .read()
        .ok()
        .and_then(|series| series.get(&wanted).cloned());
    let series = match found {
        Some(series) => series,
        None => {
            let mut series = shared().write().ok()?;
            if series.len() >= MAX_SERIES && !series.contains_key(&wanted) {
                return None;
            }
            series.entry(wanted).or_default().clone()
        }
    };
    KNOWN.with(|known| {
        let mut known = known.borrow_mut();
        if known.len() >= MAX_SERIES {
            known.clear();
        }
        known.insert(
            key,
            Known {
                route: route.into(),
                series: series.clone(),
            },
        );
    });
    Some(series)
}

/// One HTTP request, by method, route pattern and status.
pub fn http_request(method: &'static str, route: &str, status: u16, elapsed: Duration) {
    if let Some(series) = find(method, route, status) {
        series.observe(elapsed);
    }
}

/// The name of a request method as a label (`OTHER` for the unusual ones).
pub fn method_name(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Every series, by (method, route, status).
pub(super) fn snapshot() -> BTreeMap<(String, String, u16), Histogram> {
    shared()
        .read()
        .map(|series| {
            series
                .iter()
                .map(|((route, method, status), series)| {
                    (
                        ((*method).to_owned(), route.clone(), *status),
                        series.snapshot(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_add_up_to_cumulative_buckets() {
        let series = Series::default();
        series.observe(Duration::from_micros(500));
        let other = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    series.observe(Duration::from_millis(20));
                    series.observe(Duration::from_secs(30));
                    shard_index()
                })
                .join()
                .unwrap()
        });
        assert_ne!(other, shard_index());
        let histogram = series.snapshot();
        assert_eq!(histogram.count, 3);
        assert_eq!(histogram.buckets[0], 1, "<= 1 ms");
        assert_eq!(histogram.buckets[4], 2, "<= 25 ms");
        assert_eq!(histogram.buckets[BUCKETS.len() - 1], 2, "<= 10 s");
        assert!((histogram.sum - 30.0205).abs() < 1e-6);
    }

    #[test]
    fn a_reused_address_with_another_pattern_is_another_series() {
        let first = String::from("/a/{id}");
        http_request("GET", &first, 200, Duration::from_millis(1));
        let second = String::from("/b/{id}");
        // Same address and length when the allocator reuses it, or not: either
        // way each pattern counts on its own.
        drop(first);
        http_request("GET", &second, 200, Duration::from_millis(1));
        let all = snapshot();
        assert!(all.contains_key(&("GET".to_owned(), "/a/{id}".to_owned(), 200)));
        assert!(all.contains_key(&("GET".to_owned(), "/b/{id}".to_owned(), 200)));
    }
}
