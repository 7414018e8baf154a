//! Says which halves of the test suite ran: every scenario runs on SQLite;
//! the PostgreSQL and Redis halves only when `TEST_DATABASE_URL` and
//! `TEST_REDIS_URL` name servers (`.ci/run` sets both). Without them those
//! scenarios end at once and count as passed, so this line says so.

fn main() {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    let half = |name: &str, var: &str| {
        if set(var) {
            format!("{name} ran")
        } else {
            format!("{name} SKIPPED ({var} is not set)")
        }
    };
    println!(
        "\ntest suite backends: SQLite ran; {}; {}\n",
        half("PostgreSQL", "TEST_DATABASE_URL"),
        half("Redis", "TEST_REDIS_URL"),
    );
}
