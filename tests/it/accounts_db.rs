//! Databases for the accounts tests: a fresh PostgreSQL database per test on the machine's server (127.0.0.1:5432, trust auth), dropped afterwards, and a private PostgreSQL instance a test may stop and start without disturbing any other.

use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use sqlx::{Connection, PgConnection};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The machine's PostgreSQL (`.ci/run` starts it when it is not running).
pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A database of its own on the machine's PostgreSQL, dropped with this value.
pub struct PgDatabase {
    pub url: String,
    name: String,
    server: String,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        Self::create_on(SERVER).await
    }

    pub async fn create_on(server: &str) -> PgDatabase {
        let name = format!(
            "groxy_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = connect(&format!("{server}/postgres")).await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut admin)
            .await
            .expect("drop");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        PgDatabase {
            url: format!("{server}/{name}"),
            name,
            server: server.to_owned(),
        }
    }

    /// Runs SQL on it (to read what groxy wrote).
    pub async fn connection(&self) -> PgConnection {
        connect(&self.url).await
    }
}

async fn connect(url: &str) -> PgConnection {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match PgConnection::connect(url).await {
            Ok(connection) => return connection,
            Err(error) if Instant::now() > deadline => panic!("PostgreSQL at {url}: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Best effort, on a thread of its own (Drop cannot await): a leftover database is
        // dropped by the next run's `DROP DATABASE IF EXISTS` of the same name anyway.
        let (server, name) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&format!("{server}/postgres")).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A PostgreSQL server of the test's own (`initdb` + `pg_ctl` on a free port, as the
/// `postgres` user when the test runs as root), so stopping it disturbs nobody else.
pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
}

/// `initdb` and `pg_ctl` from PATH, or from Debian's versioned directory when not there.
fn tool(program: &str) -> String {
    let in_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if in_path {
        return program.to_owned();
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|versions| {
            versions
                .flatten()
                .map(|v| v.path().join("bin").join(program))
                .filter(|p| p.is_file())
                .max()
        })
        .map_or_else(|| program.to_owned(), |p| p.to_string_lossy().into_owned())
}

fn as_postgres(program: &str) -> Command {
    let program = tool(program);
    let program = program.as_str();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command) {
    let output = command.output().expect("run a PostgreSQL tool");
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PrivatePostgres {
    pub async fn start() -> PrivatePostgres {
        let port = super::process::free_port();
        let dir = std::env::temp_dir().join(format!("groxy-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let _ = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status();
        let data = dir.join("data");
        let mut init = as_postgres("initdb");
        init.args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data);
        run(init);
        let server = PrivatePostgres { port, dir };
        server.start_again();
        connect(&format!("{}/postgres", server.url_base())).await;
        server
    }

    pub fn url_base(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub fn start_again(&self) {
        let mut start = as_postgres("pg_ctl");
        start
            .args(["-w", "-t", "30", "-D"])
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port,
                self.dir.display()
            ))
            .arg("start");
        run(start);
    }

    /// `pg_ctl stop -m fast`: connections are cut, as in an outage.
    pub fn stop(&self) {
        let mut stop = as_postgres("pg_ctl");
        stop.args(["-w", "-m", "fast", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop");
        run(stop);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let mut stop = as_postgres("pg_ctl");
        stop.args(["-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop");
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
