//! The deployment files: docker-compose.yml wires the scaled-out mode with
//! settings the service actually reads; the Dockerfile builds it.

use std::collections::BTreeSet;

use chat_gateway::config::Cli;
use clap::CommandFactory;
use serde_json::Value;

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{}/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every environment variable the command line reads.
fn settings() -> BTreeSet<String> {
    fn collect(command: &clap::Command, into: &mut BTreeSet<String>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                into.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            collect(sub, into);
        }
    }
    let mut names = BTreeSet::new();
    collect(&Cli::command(), &mut names);
    names
}

#[test]
fn compose_file_runs_the_scaled_out_mode() {
    let compose: Value = serde_norway::from_str(&read("docker-compose.yml")).expect("valid YAML");
    let services = compose["services"].as_object().expect("services");
    for name in ["postgres", "redis", "faktory", "gateway", "worker"] {
        assert!(services.contains_key(name), "service {name}");
    }
    assert!(
        services["faktory"]["image"]
            .as_str()
            .unwrap()
            .starts_with("contribsys/faktory"),
    );
    assert!(services["faktory"]["environment"]["FAKTORY_PASSWORD"].is_string());
    assert_eq!(services["gateway"]["command"][0], "serve");
    for (name, service) in services {
        assert_eq!(
            service["restart"], "unless-stopped",
            "{name} restarts when it stops"
        );
    }
    assert_eq!(services["worker"]["command"][0], "worker");

    let known = settings();
    for service in ["gateway", "worker"] {
        let env = services[service]["environment"]
            .as_object()
            .unwrap_or_else(|| panic!("{service} has an environment map"));
        for key in env.keys().filter(|k| *k != "<<") {
            assert!(
                known.contains(key),
                "{service} sets {key}, which the service does not read"
            );
        }
        // The anchor merged in: the scaled-out settings.
        let merged = &env["<<"];
        for key in ["DATABASE_URL", "REDIS_URL", "FAKTORY_URL"] {
            assert!(merged[key].is_string(), "{service} gets {key}");
            assert!(known.contains(key));
        }
        assert!(
            merged["DATABASE_URL"]
                .as_str()
                .unwrap()
                .starts_with("postgres://"),
            "scaled out means PostgreSQL"
        );
        for key in merged.as_object().unwrap().keys() {
            assert!(
                known.contains(key),
                "{service} sets {key}, which the service does not read"
            );
        }
    }
    for service in ["postgres", "redis", "faktory", "gateway"] {
        assert!(
            services[service]["healthcheck"]["test"].is_array(),
            "{service} has a health check"
        );
    }
}

#[test]
fn dockerfile_is_multi_stage() {
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains(" AS build"));
    assert!(dockerfile.contains("COPY --from=build"));
    assert!(dockerfile.contains("ENTRYPOINT [\"chat-gateway\"]"));
    assert!(dockerfile.contains("HEALTHCHECK"));
}
