//! The deployment files read as groxy and the orchestrators read them: the Kubernetes examples' probes, ports, Secrets, budgets and grace periods against the config groxy would load in that pod; the compose file and the Dockerfile against the issues they fixed. Schemas: `scripts/docker-check` runs kubernetes-validate.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use groxy::Config;
use serde::Deserialize;
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every YAML document of a file, as JSON values, merge keys (`<<: *anchor`) applied.
fn documents(path: &str) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            let mut yaml = serde_norway::Value::deserialize(document).unwrap_or_else(|e| panic!("{path}: {e}"));
            yaml.apply_merge().unwrap_or_else(|e| panic!("{path}: {e}"));
            serde_json::to_value(yaml).expect("YAML as JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile() -> Vec<String> {
    let text = read("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() && current.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    instructions
}

/// The runtime stage's instructions (after the last FROM).
fn runtime_stage() -> Vec<String> {
    let all = dockerfile();
    let last_from = all.iter().rposition(|i| i.starts_with("FROM ")).expect("a FROM");
    all[last_from..].to_vec()
}

/// The environment the image gives groxy (its ENV instructions).
fn image_env() -> HashMap<String, String> {
    runtime_stage()
        .iter()
        .filter_map(|i| i.strip_prefix("ENV "))
        .flat_map(|pairs| pairs.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("ENV k=v");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn entrypoint() -> String {
    let stage = runtime_stage();
    let line = stage
        .iter()
        .find_map(|i| i.strip_prefix("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    serde_json::from_str::<Vec<String>>(line).expect("exec form")[0].clone()
}

/// A file written for one load, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> TempFile {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "groxy-manifest-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).expect("write");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The container's environment as Kubernetes gives it: literal values with `$(VAR)` expanded
/// from earlier entries, Secret references checked against the Secret in the same file.
fn pod_env(docs: &[Value], container: &Value) -> HashMap<String, String> {
    let mut env = image_env();
    for entry in container["env"].as_array().into_iter().flatten() {
        let name = str_of(&entry["name"]).to_owned();
        let value = if let Some(reference) = entry["valueFrom"].get("secretKeyRef") {
            let secret = find(docs, "Secret", str_of(&reference["name"]));
            let key = str_of(&reference["key"]);
            assert!(
                secret["stringData"].get(key).is_some() || secret["data"].get(key).is_some(),
                "{name}: Secret {} has no key {key}",
                reference["name"]
            );
            format!("secret-{key}")
        } else {
            let mut value = str_of(&entry["value"]).to_owned();
            for (k, v) in &env {
                value = value.replace(&format!("$({k})"), v);
            }
            assert!(!value.contains("$("), "{name}: unresolved reference in {value}");
            value
        };
        env.insert(name, value);
    }
    env
}

/// The config groxy loads in `container`: the ConfigMap file at GROXY_CONFIG (through the
/// container's volume mount) and the pod's environment, with the real loader.
fn pod_config(docs: &[Value], pod: &Value, container: &Value) -> (Config, HashMap<String, String>) {
    let env = pod_env(docs, container);
    let file = Path::new(env.get("GROXY_CONFIG").expect("GROXY_CONFIG set"));
    let dir = file.parent().expect("a directory").to_str().expect("utf-8");
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
    assert!(mount.get("subPath").is_none(), "a subPath mount never sees an edit");
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    let configmap = find(docs, "ConfigMap", str_of(&volume["configMap"]["name"]));
    let name = file.file_name().and_then(|n| n.to_str()).expect("file name");
    let text = str_of(&configmap["data"][name]);
    let temp = TempFile::new(text);
    let config = Config::load(Some(&temp.0), &env).unwrap_or_else(|e| panic!("the pod's config: {e}"));
    (config, env)
}

fn containers<'a>(pod: &'a Value, list: &str) -> impl Iterator<Item = &'a Value> {
    pod[list].as_array().into_iter().flatten()
}

fn groxy_container(pod: &Value) -> &Value {
    containers(pod, "containers")
        .chain(containers(pod, "initContainers"))
        .find(|c| c["name"] == "groxy")
        .expect("a groxy container")
}

/// A probe's or Service's port, by number or by the container port's name.
fn port_number(container: &Value, port: &Value) -> u16 {
    if let Some(n) = port.as_u64() {
        return u16::try_from(n).expect("a port");
    }
    let name = str_of(port);
    let declared = container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port named {name}"));
    u16::try_from(declared["containerPort"].as_u64().expect("containerPort")).expect("a port")
}

fn duration_secs(v: &Value) -> Duration {
    Duration::from_secs(v.as_u64().expect("whole seconds"))
}

/// What every groxy container has whatever the layout: resources, a locked-down context.
fn check_hardened(container: &Value) {
    let resources = &container["resources"];
    for field in ["cpu", "memory"] {
        assert!(
            resources["requests"][field].is_string(),
            "requests.{field}: {resources}"
        );
    }
    assert!(resources["limits"]["memory"].is_string(), "limits.memory: {resources}");
    let context = &container["securityContext"];
    assert_eq!(context["readOnlyRootFilesystem"], true);
    assert_eq!(context["runAsNonRoot"], true);
    assert_eq!(context["allowPrivilegeEscalation"], false);
    assert_eq!(context["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let user = runtime_stage()
        .iter()
        .find_map(|i| i.strip_prefix("USER ").map(str::to_owned))
        .expect("USER");
    assert_eq!(format!("{}:{}", context["runAsUser"], context["runAsGroup"]), user);
}

/// A read-only root file system: the SQLite directory groxy will write (the image's
/// GROXY_DATA_DIR) must be a volume of the pod, unless a database URL takes its place.
fn check_data_dir(pod: &Value, container: &Value, config: &Config) {
    if config.database.url.is_some() {
        return;
    }
    let dir = config
        .database
        .data_dir
        .as_ref()
        .expect("the image sets a data directory");
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"] == dir.to_str().expect("utf-8"))
        .unwrap_or_else(|| panic!("nothing mounted at {}: groxy cannot open its database", dir.display()));
    assert_ne!(mount["readOnly"], true, "{mount}");
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    assert!(
        volume.get("emptyDir").is_some() || volume.get("persistentVolumeClaim").is_some(),
        "a writable volume: {volume}"
    );
}

fn assert_selects(selector: &Value, labels: &Value, what: &str) {
    let selector = selector.as_object().expect("matchLabels");
    assert!(!selector.is_empty(), "{what}: an empty selector");
    for (k, v) in selector {
        assert_eq!(&labels[k], v, "{what}: selects {k}={v}, the pods have {}", labels[k]);
    }
}

#[test]
fn the_sidecar_probes_the_port_groxy_listens_on_and_the_app_calls_it_there() {
    let docs = documents("deploy/kubernetes/sidecar.yaml");
    let deployment = find(&docs, "Deployment", "my-app");
    let pod = &deployment["spec"]["template"]["spec"];
    let groxy = groxy_container(pod);
    assert_eq!(
        groxy["restartPolicy"], "Always",
        "a native sidecar: started before the app, stopped after it"
    );
    let (config, env) = pod_config(&docs, pod, groxy);
    let listen: SocketAddr = config.server.listen;
    assert!(
        listen.ip().is_loopback(),
        "a sidecar listens on the pod's loopback, not {listen}"
    );
    assert_eq!(env.get("GROQ_API_KEY").map(String::as_str), Some("secret-GROQ_API_KEY"));
    // The app calls groxy where it listens.
    let app = containers(pod, "containers").find(|c| c["name"] == "app").expect("app");
    let base = pod_env(&docs, app)["OPENAI_BASE_URL"].clone();
    let url = reqwest::Url::parse(&base).expect("a URL");
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    assert_eq!(url.port(), Some(listen.port()), "{base} vs groxy on {listen}");
    // Loopback: the kubelet cannot reach it, so the probes run `groxy health` in the pod,
    // which reads GROXY_CONFIG and GROXY_LISTEN as `serve` does (tests/it/deploy.rs).
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let command = &groxy[probe]["exec"]["command"];
        assert_eq!(
            command,
            &serde_json::json!([entrypoint(), "health", "--path", path]),
            "{probe}"
        );
    }
    check_hardened(groxy);
    check_data_dir(pod, groxy, &config);
    let grace = duration_secs(&pod["terminationGracePeriodSeconds"]);
    assert!(grace > config.server.drain_timeout.0, "{grace:?} vs the drain");
}

#[test]
fn the_gateway_probes_its_port_rolls_without_losing_capacity_and_drains_within_the_grace_period() {
    let docs = documents("deploy/kubernetes/gateway.yaml");
    let deployment = find(&docs, "Deployment", "groxy");
    let spec = &deployment["spec"];
    let template = &spec["template"];
    let pod = &template["spec"];
    let groxy = groxy_container(pod);
    let (config, env) = pod_config(&docs, pod, groxy);
    let port = config.server.listen.port();
    assert!(!config.server.listen.ip().is_loopback(), "a Service must reach it");
    assert!(!config.auth.keys.is_empty(), "a shared gateway takes client keys");
    assert!(config.admin.key_sha256.is_some(), "an admin key");
    assert!(config.redis.url.is_some() && config.redis.replicas == spec["replicas"].as_u64().unwrap());
    for (key, var) in [("GROQ_API_KEY", "GROQ_API_KEY"), ("GROXY_ADMIN_KEY", "GROXY_ADMIN_KEY")] {
        assert_eq!(env[var], format!("secret-{key}"));
    }
    // Probes on the port groxy listens on, the paths it serves.
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &groxy[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(port_number(groxy, &get["port"]), port, "{probe} vs groxy on {port}");
    }
    assert!(spec["replicas"].as_u64().unwrap() >= 3);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    // Budget and Service select exactly these pods.
    let labels = &template["metadata"]["labels"];
    assert_selects(&spec["selector"]["matchLabels"], labels, "the Deployment");
    let pdb = find(&docs, "PodDisruptionBudget", "groxy");
    assert_selects(&pdb["spec"]["selector"]["matchLabels"], labels, "the PDB");
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], spec["selector"]["matchLabels"]);
    assert!(pdb["spec"]["minAvailable"].as_u64().unwrap() < spec["replicas"].as_u64().unwrap());
    let service = find(&docs, "Service", "groxy");
    assert_selects(&service["spec"]["selector"], labels, "the Service");
    assert_eq!(port_number(groxy, &service["spec"]["ports"][0]["targetPort"]), port);
    // The preStop wait, then the whole drain, fit in the grace period.
    let pre_stop = duration_secs(&groxy["lifecycle"]["preStop"]["sleep"]["seconds"]);
    let grace = duration_secs(&pod["terminationGracePeriodSeconds"]);
    assert!(
        grace > pre_stop + config.server.drain_timeout.0,
        "grace {grace:?} <= preStop {pre_stop:?} + drain_timeout {:?}",
        config.server.drain_timeout.0
    );
    check_hardened(groxy);
    check_data_dir(pod, groxy, &config);
    // Redis: persistent, with the password groxy's URL carries.
    let redis = find(&docs, "StatefulSet", "groxy-redis");
    let container = &redis["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(str_of).collect();
    assert!(args.windows(2).any(|w| w == ["--appendonly", "yes"]), "{args:?}");
    let dir = args.windows(2).find(|w| w[0] == "--dir").map(|w| w[1]).expect("--dir");
    assert!(
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == dir)
    );
    assert!(args.windows(2).any(|w| w == ["--requirepass", "$(REDIS_PASSWORD)"]));
    let redis_env = pod_env(&docs, container);
    assert!(
        env["GROXY_REDIS_URL"].contains(&format!(":{}@", redis_env["REDIS_PASSWORD"])),
        "groxy's URL carries Redis's password"
    );
}

/// `${VAR:-default}` and `${VAR}` as compose reads them with nothing set.
fn compose_value(value: &str) -> String {
    let mut out = value.to_owned();
    while let Some(start) = out.find("${") {
        let end = start + out[start..].find('}').expect("closing brace");
        let inner = &out[start + 2..end];
        let default = inner.split_once(":-").map_or("", |(_, d)| d).to_owned();
        out.replace_range(start..=end, &default);
    }
    out
}

#[test]
fn compose_builds_one_image_runs_it_locked_down_and_works_without_the_key_for_down_ps_logs() {
    let text = read("docker-compose.yml");
    assert!(
        !text.contains(":?"),
        "a required variable fails `down`, `ps` and `logs` too"
    );
    let compose = &documents("docker-compose.yml")[0];
    let services = compose["services"].as_object().expect("services");
    let groxy: Vec<_> = services.iter().filter(|(_, s)| s["image"] == "groxy:local").collect();
    assert_eq!(groxy.len(), 2, "two replicas");
    let builders: Vec<_> = groxy.iter().filter(|(_, s)| s.get("build").is_some()).collect();
    assert_eq!(builders.len(), 1, "one image, built once");
    for (name, service) in &groxy {
        if service.get("build").is_none() {
            assert_eq!(service["pull_policy"], "never", "{name} runs the built image");
        }
        assert_eq!(service["read_only"], true, "{name}");
        assert_eq!(service["cap_drop"], serde_json::json!(["ALL"]), "{name}");
        assert_eq!(
            service["security_opt"],
            serde_json::json!(["no-new-privileges:true"]),
            "{name}"
        );
        assert!(
            service.get("ports").is_none(),
            "{name}: only the load balancer is published"
        );
        let environment = service["environment"].as_object().expect("environment");
        for var in ["GROQ_API_KEY", "GROQ_API_KEYS", "GROXY_UPSTREAM_URL", "GROXY_ADMIN_KEY"] {
            assert!(environment.contains_key(var), "{name} passes {var}");
        }
        // The config directory is mounted, and the file GROXY_CONFIG names is in it.
        let config_path = str_of(&environment["GROXY_CONFIG"]);
        let mount = service["volumes"][0].as_str().expect("a volume");
        let mut parts = mount.rsplitn(3, ':').collect::<Vec<_>>();
        parts.reverse();
        let (source, target) = (compose_value(parts[0]), parts[1]);
        assert_eq!(source, "./config");
        assert_eq!(Path::new(config_path).parent(), Some(Path::new(target)));
        let file = Path::new(&source).join(Path::new(config_path).file_name().expect("a file"));
        let mut vars = image_env();
        for (k, v) in environment {
            vars.insert(k.clone(), compose_value(str_of(v)));
        }
        vars.insert("GROQ_API_KEY".to_owned(), "gsk_from_the_environment".to_owned());
        vars.insert(
            "GROXY_CONFIG".to_owned(),
            repo(file.to_str().unwrap()).to_string_lossy().into_owned(),
        );
        let config = Config::load(None, &vars).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            config.admin.key_sha256.is_some(),
            "{name}: /dashboard opens with the default admin key"
        );
        assert!(config.admin.watch_config, "{name}: edits apply");
        assert!(config.redis.url.is_some(), "{name}: shares through Redis");
        // Without the key, groxy itself refuses to start, naming it.
        vars.remove("GROQ_API_KEY");
        let refused = Config::load(None, &vars).expect_err("no key").to_string();
        assert!(refused.contains("GROQ_API_KEY"), "{refused}");
    }
    let published: Vec<_> = services.iter().filter(|(_, s)| s.get("ports").is_some()).collect();
    assert_eq!(published.len(), 1, "one address");
    for port in published[0].1["ports"].as_array().unwrap() {
        assert!(
            str_of(port).starts_with("127.0.0.1:"),
            "published on loopback only: {port}"
        );
    }
    let redis = &services["redis"];
    let command: Vec<&str> = redis["command"].as_array().unwrap().iter().map(str_of).collect();
    assert!(command.windows(2).any(|w| w == ["--appendonly", "yes"]), "{command:?}");
    let dir = command
        .windows(2)
        .find(|w| w[0] == "--dir")
        .map(|w| w[1])
        .expect("--dir");
    assert!(
        redis["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| str_of(v).ends_with(&format!(":{dir}"))),
        "the append-only file lives in a volume"
    );
}

#[test]
fn the_dockerfile_fetches_nothing_but_its_base_and_ships_groxy_alone_as_10001() {
    let text = read("Dockerfile");
    assert!(
        !text
            .lines()
            .any(|l| l.trim_start().starts_with("# syntax") || l.starts_with("#syntax")),
        "a # syntax line makes BuildKit fetch a frontend image"
    );
    let stage = runtime_stage();
    assert_eq!(stage[0], "FROM scratch", "groxy alone: no distribution underneath");
    assert!(stage.iter().any(|i| i == "USER 10001:10001"), "{stage:?}");
    let healthcheck = stage
        .iter()
        .find(|i| i.starts_with("HEALTHCHECK "))
        .expect("HEALTHCHECK");
    assert!(
        healthcheck.ends_with(&format!("CMD [\"{}\", \"health\"]", entrypoint())),
        "{healthcheck}"
    );
    assert!(!dockerfile().iter().any(|i| i.contains("curl")), "no curl in the image");
    let ignore = read(".dockerignore");
    assert_eq!(ignore.lines().find(|l| !l.starts_with('#')), Some("*"), "an allowlist");
}

/// Every file the sources include at compile time from outside `src/` (a migration, the example
/// config) must reach the image's build: copied by the Dockerfile and let through .dockerignore.
#[test]
fn every_file_the_sources_include_is_in_the_docker_build() {
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = repo("");
    let mut files = Vec::new();
    rust_files(&repo("src"), &mut files);
    rust_files(&repo("crates/groq-wire/src"), &mut files);
    let copies: Vec<String> = dockerfile().into_iter().filter(|i| i.starts_with("COPY ")).collect();
    let ignore = read(".dockerignore");
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        for (at, _) in text.match_indices("include_") {
            let rest = &text[at..];
            let Some(arg) = rest
                .strip_prefix("include_str!(\"")
                .or_else(|| rest.strip_prefix("include_bytes!(\""))
            else {
                continue;
            };
            let target = &arg[..arg.find('"').expect("closing quote")];
            let resolved = file.parent().expect("dir").join(target);
            let mut parts = Vec::new();
            for part in resolved.strip_prefix(&root).expect("in the repository").components() {
                match part {
                    std::path::Component::ParentDir => {
                        parts.pop();
                    }
                    std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                    _ => {}
                }
            }
            // Test fixtures are read by tests only, which the image's build does not compile.
            if matches!(parts[0].as_str(), "src" | "tests")
                || (parts[0] == "crates" && parts.get(2).is_some_and(|p| p == "src"))
            {
                continue;
            }
            let top = &parts[0];
            let relative = parts.join("/");
            assert!(
                copies
                    .iter()
                    .any(|c| c.starts_with(&format!("COPY {top} ")) || c.starts_with(&format!("COPY {relative} "))),
                "{} includes {relative}, which the Dockerfile does not copy",
                file.display()
            );
            assert!(
                ignore
                    .lines()
                    .any(|l| l == format!("!{top}/") || l == format!("!{relative}")),
                "{relative} is kept out of the build context by .dockerignore"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "the migrations and the example config, at least");
}

#[test]
fn compose_replicas_share_one_postgres_that_keeps_its_data_in_a_volume_and_is_ready_before_them() {
    let compose = &documents("docker-compose.yml")[0];
    let services = compose["services"].as_object().expect("services");
    let postgres = &services["postgres"];
    // The official image's name by default; docker-check makes a stand-in under it offline.
    assert_eq!(compose_value(str_of(&postgres["image"])), "postgres:15");
    assert!(
        postgres.get("ports").is_none(),
        "PostgreSQL is reached on the project's network only"
    );
    let env = |name: &str| compose_value(str_of(&postgres["environment"][name]));
    let (user, password, db) = (env("POSTGRES_USER"), env("POSTGRES_PASSWORD"), env("POSTGRES_DB"));
    assert!(
        !password.is_empty(),
        "the official image refuses to start without a password"
    );
    // Its data directory in a named volume the file declares.
    let volume = postgres["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(str_of)
        .find(|v| v.ends_with(":/var/lib/postgresql/data"))
        .expect("/var/lib/postgresql/data in a volume");
    let name = volume.split(':').next().expect("a source");
    assert!(
        compose["volumes"].get(name).is_some(),
        "{name} is a named volume (not a directory of the host, not anonymous)"
    );
    // Healthy once it accepts connections for groxy's role and database, over TCP.
    let test: Vec<&str> = postgres["healthcheck"]["test"]
        .as_array()
        .expect("a healthcheck")
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(test[..2], ["CMD", "pg_isready"], "{test:?}");
    for (flag, value) in [("-h", "127.0.0.1"), ("-U", user.as_str()), ("-d", db.as_str())] {
        assert!(test.windows(2).any(|w| w == [flag, value]), "{flag} {value}: {test:?}");
    }
    assert_eq!(postgres["restart"], "unless-stopped");

    let groxy: Vec<_> = services.iter().filter(|(_, s)| s["image"] == "groxy:local").collect();
    assert_eq!(groxy.len(), 2);
    for (service, spec) in groxy {
        assert_eq!(
            spec["depends_on"]["postgres"]["condition"], "service_healthy",
            "{service} starts once PostgreSQL answers"
        );
        let mut vars = image_env();
        for (k, v) in spec["environment"].as_object().expect("environment") {
            vars.insert(k.clone(), compose_value(str_of(v)));
        }
        vars.insert("GROQ_API_KEY".to_owned(), "gsk_test".to_owned());
        vars.remove("GROXY_CONFIG");
        let config = Config::load(None, &vars).unwrap_or_else(|e| panic!("{service}: {e}"));
        // The URL wins over the image's data directory: one database for both replicas.
        let url = config.database.url.as_ref().expect("database.url");
        let url = reqwest::Url::parse(url.expose()).expect("a URL");
        assert_eq!(url.scheme(), "postgres");
        assert_eq!(url.host_str(), Some("postgres"), "the compose service's name");
        assert_eq!(url.port(), Some(5432));
        assert_eq!(url.username(), user, "{service}");
        assert_eq!(url.password(), Some(password.as_str()), "{service}");
        assert_eq!(url.path(), format!("/{db}"), "{service}");
    }
}

#[test]
fn the_image_keeps_its_sqlite_file_in_a_volume_owned_by_its_user() {
    let stage = runtime_stage();
    let env = image_env();
    let dir = env.get("GROXY_DATA_DIR").expect("GROXY_DATA_DIR in the image");
    let volume = stage.iter().find_map(|i| i.strip_prefix("VOLUME ")).expect("a VOLUME");
    assert_eq!(
        serde_json::from_str::<Vec<String>>(volume).expect("exec form"),
        std::slice::from_ref(dir),
        "writable under --read-only, and kept across restarts"
    );
    // Docker starts a new volume as a copy of the image's directory, owner included: made in
    // the build stage's root file system, owned by the runtime user.
    let user = stage.iter().find_map(|i| i.strip_prefix("USER ")).expect("USER");
    let build = dockerfile();
    assert!(
        build
            .iter()
            .any(|i| i.starts_with("RUN ") && i.contains(&format!("chown {user} \"$root{dir}\""))),
        "the build stage chowns {dir} to {user}"
    );
    assert!(
        stage.iter().any(|i| i == "COPY --from=build /rootfs/ /"),
        "the runtime stage takes that root file system"
    );
    // The image run as the README runs it keeps its keys and ledger there (SQLite), not in memory.
    let mut vars = env.clone();
    vars.insert("GROQ_API_KEY".to_owned(), "gsk_test".to_owned());
    vars.insert("GROXY_ALLOW_UNAUTHENTICATED".to_owned(), "true".to_owned());
    let config = Config::load(None, &vars).expect("the image's config");
    assert_eq!(config.database.data_dir.as_deref(), Some(Path::new(dir)));
    assert!(config.database.url.is_none());
}
