//! The `groxy` binary as a child process, with its output captured while it runs.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub struct Running {
    child: Option<Child>,
    pub pid: u32,
    pub base: String,
    output: Arc<Mutex<String>>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `groxy` command with none of the environment it reads inherited from the test's.
pub fn groxy_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_groxy"));
    for var in [
        "GROQ_API_KEY",
        "GROQ_API_KEYS",
        "GROXY_LISTEN",
        "GROXY_UPSTREAM_URL",
        "GROXY_CONFIG",
        "GROXY_LOG_FORMAT",
        "GROXY_ADMIN_KEY",
        "GROXY_AUTH_MODE",
        "GROXY_REDIS_URL",
        "RUST_LOG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_RESOURCE_ATTRIBUTES",
        "GROXY_DATA_DIR",
        "XDG_DATA_HOME",
    ] {
        command.env_remove(var);
    }
    // The default store is a SQLite file under the user's home, which tests must not share:
    // every process keeps its accounts in memory unless its test says otherwise.
    command.env("GROXY_DATABASE_URL", "sqlite::memory:");
    command
}

impl Running {
    /// Spawns `command` (which must listen on `port`) and waits until `/readyz` answers.
    pub async fn start(mut command: Command, port: u16) -> Running {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn groxy");
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut out = output.lock().expect("lock");
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        let base = format!("http://127.0.0.1:{port}");
        let running = Running {
            pid: child.id(),
            child: Some(child),
            base,
            output,
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if let Ok(r) = reqwest::get(format!("{}/readyz", running.base)).await {
                if r.status() == 200 {
                    return running;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("groxy did not become ready: {}", running.output());
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Everything the process wrote so far, stdout and stderr interleaved by line.
    pub fn output(&self) -> String {
        self.output.lock().expect("lock").clone()
    }

    /// Waits until the output contains `needle`.
    pub async fn wait_for_output(&self, needle: &str, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if self.output().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// SIGTERM, then waits for the exit and for the output pipes to drain.
    pub async fn stop(mut self) -> String {
        self.signal("TERM");
        let mut child = self.child.take().expect("child");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(status.success(), "groxy exited with {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.output()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
