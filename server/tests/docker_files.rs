//! The container files under `docker/` checked against the code they configure, for the drift a
//! rename or a new setting causes (a machine without Docker cannot run the images):
//!
//! - `compose.yml`, parsed as YAML (merge keys applied): every service is health-checked and
//!   waited for until healthy, and the files it mounts exist;
//! - every `CONFAB_*` variable the nodes and the image set is one `confab serve` declares (read
//!   from clap's definition of the command), and together they resolve to a valid configuration
//!   of a Redis + MongoDB + Kafka node whose backends are services of the file (the fan-out
//!   sharded over three Redis, listed alike by every node);
//! - the Dockerfile builds with the workspace's toolchain and copies files that exist;
//! - Prometheus and nginx reach exactly the nodes; the Grafana dashboard queries only metrics
//!   of the server's one list (`confab_server::metrics::ALL`);
//! - `select-features.sh` keeps the image's features, and `healthcheck.sh` probes a real
//!   `confab serve`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::{CommandFactory, Parser};
use confab_server::config::{
    Cli, CliCommand, Config, EventsBackend, HubBackend, JwtSource, MediaBackend, StoreBackend,
};
use confab_server::metrics::{self, Kind};
use confab_testkit::ConfabServer;
use yaml_serde::Value as Yaml;

/// The cargo features the image is built with (the Dockerfile's `ARG FEATURES`, compose's
/// `FEATURES` build argument).
const IMAGE_FEATURES: &str = "kafka mongo s3";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_owned()
}

fn docker(file: &str) -> PathBuf {
    repo_root().join("docker").join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(file: &str) -> Yaml {
    let mut value: Yaml = yaml_serde::from_str(&read(&docker(file)))
        .unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{file}: bad merge key: {e}"));
    value
}

/// What the tests give a required variable (`${NAME:?message}`), as an operator's `.env` would.
const REQUIRED_VALUE: &str = "an-operator-chosen-secret-0123456789abcdef0123456789";

/// A YAML scalar as compose reads it, with `${NAME:-default}` replaced by its default (what
/// compose uses when nothing is set) and `${NAME:?message}` by [`REQUIRED_VALUE`].
fn text(value: &Yaml) -> String {
    let mut text = match value {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    };
    while let Some(start) = text.find("${") {
        let end = start + text[start..].find('}').expect("a closing `}`");
        let inner = &text[start + 2..end];
        let default = match (inner.split_once(":-"), inner.split_once(":?")) {
            (Some((_, default)), _) => default.to_owned(),
            (None, Some(_)) => REQUIRED_VALUE.to_owned(),
            (None, None) => panic!("{text:?}: give every variable a default or require it"),
        };
        text.replace_range(start..=end, &default);
    }
    text
}

fn mapping<'a>(value: &'a Yaml, key: &str) -> BTreeMap<String, &'a Yaml> {
    value
        .get(key)
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str().expect("string keys").to_owned(), v))
        .collect()
}

fn list(value: &Yaml, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .map(text)
        .collect()
}

/// The Confab nodes of compose.yml (the services built from docker/Dockerfile) and their
/// `environment`.
fn nodes(compose: &Yaml) -> BTreeMap<String, BTreeMap<String, String>> {
    mapping(compose, "services")
        .into_iter()
        .filter(|(_, service)| {
            service
                .get("build")
                .and_then(|build| build.get("dockerfile"))
                .and_then(Yaml::as_str)
                == Some("docker/Dockerfile")
        })
        .map(|(name, service)| {
            let env = mapping(service, "environment")
                .into_iter()
                .map(|(key, value)| (key, text(value)))
                .collect();
            (name, env)
        })
        .collect()
}

/// The Dockerfile's instructions, continuation lines joined and comments dropped.
fn dockerfile() -> Vec<String> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read(&docker("Dockerfile")).lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => instructions.push(std::mem::take(&mut current) + line),
        }
    }
    instructions
}

/// The image's `ENV KEY=value …` pairs.
fn image_env() -> BTreeMap<String, String> {
    dockerfile()
        .iter()
        .filter_map(|instruction| instruction.strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("ENV KEY=value");
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// `CONFAB_*` variable → `--flag` of `confab serve`, from clap's definition of the command.
fn serve_env_flags() -> BTreeMap<String, String> {
    let cli = Cli::command();
    let serve = cli
        .find_subcommand("serve")
        .expect("confab has a serve command");
    serve
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_owned();
            Some((env, format!("--{}", arg.get_long()?)))
        })
        .collect()
}

/// The configuration `confab serve` resolves from these variables, given as the flags they
/// stand for (the tests cannot set the process environment safely).
fn resolve(env: &BTreeMap<String, String>) -> Config {
    let flags = serve_env_flags();
    let mut argv = vec!["confab".to_owned(), "serve".to_owned()];
    for (key, value) in env {
        let flag = flags
            .get(key)
            .unwrap_or_else(|| panic!("confab serve does not declare {key}"));
        argv.push(format!("{flag}={value}"));
    }
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?} is refused: {e}"));
    let CliCommand::Serve(args) = cli.command else {
        unreachable!("parsed `serve`")
    };
    Config::resolve(*args).unwrap_or_else(|e| panic!("{argv:?} is not a valid configuration: {e}"))
}

#[test]
fn every_service_is_health_checked_and_waits_for_healthy_services() {
    let compose = yaml("compose.yml");
    let services = mapping(&compose, "services");
    for (name, service) in &services {
        let healthcheck = service
            .get("healthcheck")
            .unwrap_or_else(|| panic!("{name} has no healthcheck"));
        let test = list(healthcheck, "test");
        assert!(
            test.len() >= 2 && ["CMD", "CMD-SHELL"].contains(&test[0].as_str()),
            "{name}: healthcheck test is [CMD|CMD-SHELL, …]: {test:?}"
        );
        for (dependency, condition) in mapping(service, "depends_on") {
            assert!(services.contains_key(&dependency), "{name} → {dependency}");
            assert_eq!(
                condition.get("condition").and_then(Yaml::as_str),
                Some("service_healthy"),
                "{name} waits for {dependency} to be healthy"
            );
        }
    }
}

#[test]
fn mounted_files_exist_and_named_volumes_are_declared() {
    let compose = yaml("compose.yml");
    let declared = mapping(&compose, "volumes");
    for (name, service) in mapping(&compose, "services") {
        for volume in list(service, "volumes") {
            let source = volume.split(':').next().unwrap_or_default();
            if source.starts_with("./") {
                assert!(
                    docker(source).exists(),
                    "{name} mounts {source}: no such file"
                );
            } else {
                assert!(
                    declared.contains_key(source),
                    "{name}: volume {source} undeclared"
                );
            }
        }
    }
}

#[test]
fn the_nodes_resolve_to_a_valid_cluster_configuration() {
    let compose = yaml("compose.yml");
    let services = mapping(&compose, "services");
    let known = serve_env_flags();
    let image = image_env();
    let nodes = nodes(&compose);
    assert!(nodes.len() >= 2, "two Confab nodes: {nodes:?}");
    let mut hubs = BTreeSet::new();
    for (name, node_env) in &nodes {
        let mut env = image.clone();
        env.extend(node_env.clone());
        // S3 credentials come in the standard AWS variables, which the SDK reads itself.
        let aws: BTreeMap<String, String> = env
            .extract_if(.., |key, _| key.starts_with("AWS_"))
            .collect();
        assert_eq!(
            aws.keys().collect::<Vec<_>>(),
            ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
            "{name}: S3 credentials"
        );
        let unknown: Vec<&String> = env.keys().filter(|key| !known.contains_key(*key)).collect();
        assert!(
            unknown.is_empty(),
            "{name}: confab serve declares no {unknown:?}"
        );

        let config = resolve(&env);
        assert!(
            config.listen.ip().is_unspecified(),
            "{name} listens on all interfaces"
        );
        assert!(
            matches!(config.jwt(), JwtSource::Secret(secret) if secret == REQUIRED_VALUE),
            "{name}: the shared secret, required from the operator (no committed default)"
        );
        let HubBackend::Redis(hub) = &config.hub else {
            panic!("{name} fans out over Redis")
        };
        assert_eq!(
            hub.urls().len(),
            3,
            "{name} shards its fan-out over three Redis"
        );
        hubs.insert(hub.urls().to_vec());
        let StoreBackend::Mongo(store) = &config.store else {
            panic!("{name} stores in MongoDB")
        };
        let EventsBackend::Kafka(events) = &config.events else {
            panic!("{name} publishes events to Kafka")
        };
        let MediaBackend::S3(media) = &config.media else {
            panic!("{name} keeps media in S3")
        };
        let media = url::Url::parse(media).unwrap_or_else(|e| panic!("{media}: {e}"));
        let endpoint = media
            .query_pairs()
            .find(|(key, _)| key == "endpoint")
            .map(|(_, endpoint)| endpoint.into_owned())
            .expect("an S3 endpoint");
        let urls = hub.urls().iter().map(String::as_str);
        for url in urls.chain([store.as_str(), events.as_str(), endpoint.as_str()]) {
            let url = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            let host = url.host_str().expect("a host");
            assert!(
                services.contains_key(host),
                "{name} uses {url}: no such service"
            );
            assert!(
                mapping(services[name], "depends_on").contains_key(host),
                "{name} waits for {host}"
            );
        }
    }
    // The position in the list is the shard number: every node must list the same servers in
    // the same order.
    assert_eq!(
        hubs.len(),
        1,
        "every node lists the same Redis shards: {hubs:?}"
    );
}

#[test]
fn the_dockerfile_builds_with_the_workspace_toolchain_and_copies_files_that_exist() {
    let workspace: toml::Table = toml::from_str(&read(&repo_root().join("Cargo.toml"))).unwrap();
    let rust_version = workspace["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("workspace rust-version");
    let instructions = dockerfile();
    assert!(
        instructions.contains(&format!("ARG RUST_IMAGE=rust:{rust_version}-bookworm")),
        "the builder image is the workspace's rust-version {rust_version}"
    );
    assert!(instructions.contains(&format!("ARG FEATURES=\"{IMAGE_FEATURES}\"")));
    for copy in instructions.iter().filter_map(|i| i.strip_prefix("COPY ")) {
        if copy.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = copy.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(
                repo_root().join(source).exists(),
                "COPY {source}: no such file"
            );
        }
    }
}

#[test]
fn prometheus_and_nginx_reach_exactly_the_nodes() {
    let compose = yaml("compose.yml");
    let port = image_env()["CONFAB_LISTEN"]
        .rsplit_once(':')
        .expect("host:port")
        .1
        .to_owned();
    let nodes: BTreeSet<String> = nodes(&compose)
        .into_iter()
        .map(|(name, env)| {
            let listen = env.get("CONFAB_LISTEN").map_or(port.as_str(), |listen| {
                listen.rsplit_once(':').expect("host:port").1
            });
            format!("{name}:{listen}")
        })
        .collect();

    let prometheus = yaml("prometheus.yml");
    let scraped: BTreeSet<String> = prometheus["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| job["static_configs"].as_sequence().expect("static_configs"))
        .flat_map(|config| list(config, "targets"))
        .collect();
    assert_eq!(scraped, nodes, "Prometheus scrapes the nodes");

    let nginx = read(&docker("nginx.conf"));
    // Tokens travel in `?token=` on WebSocket upgrades: the access log must not carry them.
    assert!(
        nginx.contains("access_log /dev/stdout confab;") && !nginx.contains("$request "),
        "nginx logs paths without query strings"
    );
    let upstream: BTreeSet<String> = nginx
        .lines()
        .filter_map(|line| line.trim().strip_prefix("server "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|server| *server != "{")
        .map(|server| server.trim_end_matches(';').to_owned())
        .collect();
    assert_eq!(upstream, nodes, "nginx balances the nodes");
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let path = docker("grafana/dashboards/confab.json");
    let dashboard: serde_json::Value = serde_json::from_str(&read(&path)).expect("valid JSON");
    let exported: BTreeMap<&str, Kind> = metrics::ALL.iter().map(|m| (m.name, m.kind)).collect();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("confab_") || word.starts_with("process_"));
            for name in names {
                queried += 1;
                let histogram = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .filter(|base| exported.get(base) == Some(&Kind::Histogram));
                assert!(
                    histogram.is_some() || exported.contains_key(name),
                    "the dashboard queries {name}, which metrics::ALL does not declare"
                );
            }
        }
    }
    assert!(queried > 10, "the dashboard queries Confab's metrics");
}

#[test]
fn select_features_keeps_the_image_features() {
    let compose = yaml("compose.yml");
    for (name, _) in nodes(&compose) {
        let features = text(&compose["services"][name.as_str()]["build"]["args"]["FEATURES"]);
        assert_eq!(features, IMAGE_FEATURES, "{name}: build argument FEATURES");
    }
    let output = Command::new("sh")
        .arg(docker("select-features.sh"))
        .arg(IMAGE_FEATURES)
        .arg(repo_root().join("server/Cargo.toml"))
        .output()
        .expect("run docker/select-features.sh");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        IMAGE_FEATURES,
        "confab-server declares every image feature: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn healthcheck(listen: &str, path: Option<&str>) -> Output {
    let mut command = Command::new("bash");
    command
        .arg(docker("healthcheck.sh"))
        .env("CONFAB_LISTEN", listen)
        .args(path);
    command.output().expect("run docker/healthcheck.sh")
}

#[test]
fn the_healthcheck_script_probes_a_real_server() {
    let mut server = ConfabServer::start(env!("CARGO_BIN_EXE_confab"), ["--log", "warn"])
        .expect("start confab serve");
    let listen = server.addr().to_string();
    assert!(healthcheck(&listen, None).status.success(), "/health");
    let wildcard = format!("0.0.0.0:{}", server.port());
    assert!(
        healthcheck(&wildcard, None).status.success(),
        "0.0.0.0 → loopback"
    );
    assert!(
        healthcheck(&listen, Some("/ready")).status.success(),
        "/ready"
    );
    let missing = healthcheck(&listen, Some("/no-such-page"));
    assert!(!missing.status.success(), "a 404 is unhealthy");

    server.kill9().expect("kill the server");
    assert!(
        !healthcheck(&listen, None).status.success(),
        "a stopped server is unhealthy"
    );
}
