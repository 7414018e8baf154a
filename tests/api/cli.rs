//! The command line: subcommands, help, and start-up failures that must be
//! one clear line and a non-zero exit, never a panic.

use std::process::{Command, Output};

fn gateway(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-gateway"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("FAKTORY_URL")
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("DB_CONNECT_TIMEOUT_SECS", "2")
        .env("LOG_FORMAT", "text")
        .env("RUST_LOG", "error");
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_clear_failure(output: &Output, setting: &str) {
    let err = stderr(output);
    assert!(!output.status.success(), "must fail: {err}");
    assert!(!err.contains("panicked"), "no panic: {err}");
    assert!(!err.contains("RUST_BACKTRACE"), "no backtrace: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    assert!(lines[0].contains(setting), "names {setting}: {err}");
}

#[test]
fn unsupported_database_url_is_one_clear_line() {
    let output = gateway(
        &["serve"],
        &[("DATABASE_URL", "mysql://root@localhost/chat")],
    );
    assert_clear_failure(&output, "DATABASE_URL");
}

#[test]
fn malformed_database_url_is_one_clear_line() {
    let output = gateway(&["serve"], &[("DATABASE_URL", "postgres://[broken")]);
    assert_clear_failure(&output, "DATABASE_URL");
}

#[test]
fn unreachable_database_is_one_clear_line() {
    let output = gateway(
        &["serve"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/chat")],
    );
    assert_clear_failure(&output, "DATABASE_URL");
}

#[test]
fn unwritable_sqlite_path_is_one_clear_line() {
    let output = gateway(
        &["serve"],
        &[("DATABASE_URL", "sqlite:///no/such/dir/chat.db?mode=rwc")],
    );
    assert_clear_failure(&output, "DATABASE_URL");
}

#[test]
fn unreachable_redis_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let output = gateway(
        &["serve"],
        &[("DATABASE_URL", &url), ("REDIS_URL", "redis://127.0.0.1:1")],
    );
    assert_clear_failure(&output, "REDIS_URL");
}

#[test]
fn invalid_flag_values_are_refused_by_name() {
    let output = gateway(&["serve", "--seed-users", "many"], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--seed-users"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn help_documents_every_setting() {
    let output = gateway(&["--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "DATABASE_URL",
        "REDIS_URL",
        "FAKTORY_URL",
        "BIND_ADDR",
        "SEED_USERS",
        "LEGACY_IDENTITY",
        "LOG_FORMAT",
        "DB_MAX_CONNECTIONS",
        "SQLITE_BUSY_TIMEOUT_MS",
        "serve",
        "worker",
        "migrate",
        "seed",
        "schema",
    ] {
        assert!(help.contains(needle), "--help mentions {needle}");
    }
}

#[test]
fn migrate_and_seed_commands() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let env = [("DATABASE_URL", url.as_str())];

    let output = gateway(&["migrate", "status"], &env);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Pending"));

    let output = gateway(&["migrate", "up"], &env);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = gateway(&["migrate", "status"], &env);
    assert!(String::from_utf8_lossy(&output.stdout).contains("Applied"));

    let output = gateway(&["seed"], &env);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "created 15 users"
    );
    let output = gateway(&["seed"], &env);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "created 0 users"
    );

    let output = gateway(&["migrate", "down"], &env);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = gateway(&["migrate", "status"], &env);
    assert!(String::from_utf8_lossy(&output.stdout).contains("Pending"));

    let output = gateway(&["migrate", "fresh"], &env);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn schema_file_matches_the_code() {
    let output = gateway(&["schema"], &[]);
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql exists at the repository root");
    assert_eq!(
        committed, printed,
        "schema.graphql is out of date: run `cargo run -- schema > schema.graphql`"
    );
}

#[test]
fn worker_needs_faktory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let output = gateway(&["worker"], &[("DATABASE_URL", &url)]);
    assert_clear_failure(&output, "FAKTORY_URL");
    let output = gateway(
        &["worker"],
        &[("DATABASE_URL", &url), ("FAKTORY_URL", "http://nope")],
    );
    assert_clear_failure(&output, "FAKTORY_URL");
}

/// SIGTERM is the normal way a service stops: it logs no error, whatever
/// the order its parts wind down in, and exits cleanly.
#[test]
fn a_normal_shutdown_logs_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for round in 0..3 {
        let child = Command::new(env!("CARGO_BIN_EXE_chat-gateway"))
            .arg("serve")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.path().join("chat.db").display()),
            )
            .env_remove("REDIS_URL")
            .env_remove("FAKTORY_URL")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("SEED_USERS", "2")
            .env("SHUTDOWN_GRACE_SECS", "5")
            .env("LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "never listened");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let output = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "round {round}: {err}");
        assert!(!err.contains("ERROR"), "round {round}: {err}");
        assert!(!err.contains("WARN"), "round {round}: {err}");
        assert!(err.contains("server stopped"), "round {round}: {err}");
    }
}
