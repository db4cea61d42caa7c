//! The repository's own promises: migrations for both backends, the compose
//! file, the README's commands.

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn migration_names(backend: &str) -> BTreeSet<String> {
    std::fs::read_dir(root().join("migrations").join(backend))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn both_backends_have_the_same_migrations() {
    let sqlite = migration_names("sqlite");
    let postgres = migration_names("postgres");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres);
    for name in &sqlite {
        for backend in ["sqlite", "postgres"] {
            for file in ["up.sql", "down.sql"] {
                let path = root()
                    .join("migrations")
                    .join(backend)
                    .join(name)
                    .join(file);
                assert!(path.is_file(), "{} is missing", path.display());
            }
        }
    }
}

#[test]
fn compose_runs_the_collector_against_postgres_16() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let compose: Value = serde_yaml::from_str(&text).unwrap();
    let services = &compose["services"];

    let postgres = &services["postgres"];
    let image = postgres["image"].as_str().unwrap();
    assert!(image.starts_with("postgres:16"), "{image}");
    let env = &postgres["environment"];
    let (user, password, database) = (
        env["POSTGRES_USER"].as_str().unwrap(),
        env["POSTGRES_PASSWORD"].as_str().unwrap(),
        env["POSTGRES_DB"].as_str().unwrap(),
    );
    assert!(postgres["healthcheck"]["test"].is_sequence());
    let volumes: Vec<&str> = postgres["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let named = volumes
        .iter()
        .find_map(|v| v.strip_suffix(":/var/lib/postgresql/data"))
        .expect("the data directory is a volume");
    assert!(
        compose["volumes"].get(named).is_some(),
        "{named} is a named volume declared at the top level"
    );

    let collector = &services["collector"];
    assert!(collector["build"].is_string() || collector["build"].is_mapping());
    assert!(root().join("Dockerfile").is_file());
    assert_eq!(
        collector["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy"),
        "the collector waits for a healthy database"
    );
    let url = collector["environment"]["ANONSTATS_DATABASE_URL"]
        .as_str()
        .unwrap();
    assert_eq!(
        url,
        format!("postgres://{user}:{password}@postgres:5432/{database}")
    );
    let bind = collector["environment"]["ANONSTATS_BIND"].as_str().unwrap();
    assert!(
        bind.starts_with("0.0.0.0:"),
        "reachable from outside the container"
    );
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let blocks: Vec<&str> = readme.split("```").skip(1).step_by(2).collect();
    let commands: Vec<&str> = blocks
        .iter()
        .flat_map(|b| b.lines())
        .filter(|l| l.starts_with("cargo "))
        .collect();
    assert!(
        commands.len() >= 2,
        "README shows a serve and a test command"
    );
    assert!(
        commands[0].contains(" serve"),
        "first command starts the collector: {}",
        commands[0]
    );
    let test_command = commands[1];
    assert!(test_command.starts_with("cargo test"), "{test_command}");
    assert!(
        ci.lines().any(|l| l.trim() == test_command),
        ".ci/run runs exactly `{test_command}`"
    );
}
