//! A real `redis-server` for one test, on a free port: started, killed, paused (SIGSTOP), resumed and restarted on the same port; or TLS-only with ACL users and certificates made by `openssl`.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Set for a TLS-only server.
    tls: Option<Tls>,
}

/// A TLS-only server's certificates and its one ACL user.
struct Tls {
    files: TlsFiles,
    user: String,
    password: String,
    /// ACL rules after `on >password`, e.g. `~* +@all`.
    rules: String,
}

/// The test's own user on a TLS server, for assertions (`KEYS`) the user under test may lack.
const TLS_ADMIN: &str = "test-admin";

impl Tls {
    fn admin_url(port: u16) -> String {
        format!("rediss://{TLS_ADMIN}:{TLS_ADMIN}-pw@127.0.0.1:{port}/0")
    }
}

/// `redis-server` from PATH, /usr/bin or /usr/local/bin. Missing is a failure, not a skip:
/// these tests guard an invariant (`.ci/run` installs it).
fn find_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("redis-server not found on PATH, in /usr/bin or /usr/local/bin: install it (apt-get install redis-server; .ci/run does)")
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

impl RedisServer {
    pub fn start() -> Self {
        let mut server = RedisServer {
            binary: find_binary(),
            port: free_port(),
            child: None,
            tls: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        if self.tls.is_some() {
            return self.spawn_tls();
        }
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers_ping(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> String {
        self.child.as_ref().map(|c| c.id().to_string()).expect("running")
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.pid()]).status().expect("kill");
        assert!(status.success(), "kill {signal}");
    }

    /// SIGSTOP: connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// SIGKILL: connections drop, the data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new, empty server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A direct connection for assertions on what groxy stored.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let client = match &self.tls {
            Some(tls) => redis::Client::build_with_tls(
                Tls::admin_url(self.port),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(&tls.files.ca).expect("read the CA")),
                },
            )
            .expect("TLS client"),
            None => redis::Client::open(self.url()).expect("client"),
        };
        let mut connection = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("connect");
        redis::cmd("KEYS").arg(pattern).query(&mut connection).expect("KEYS")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CA and a server certificate for `127.0.0.1` and `localhost` signed by it, made by `openssl`
/// in a directory of their own (removed on drop).
pub struct TlsFiles {
    dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl not runnable ({e}): install it (apt-get install openssl; .ci/run does)"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl TlsFiles {
    pub fn make() -> TlsFiles {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "groxy-redis-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("TLS dir");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut ca = vec![
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=groxy test CA",
            "-keyout",
            "ca.key",
        ];
        ca.extend(ec);
        ca.extend([
            "-out",
            "ca.crt",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&dir, &ca);
        let mut csr = vec![
            "req",
            "-new",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ];
        csr.extend(ec);
        openssl(&dir, &csr);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "server.ext",
                "-out",
                "server.crt",
            ],
        );
        TlsFiles {
            ca: dir.join("ca.crt"),
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            dir,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("redis.log")
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisServer {
    /// A server that speaks TLS only (no plain port), with the default user off and one ACL
    /// user `user` / `password` with `rules` (`~* +@all`: everything). A redis-server without
    /// TLS support fails the test with its own words, never a skip.
    pub fn start_tls(user: &str, password: &str, rules: &str) -> Self {
        let mut server = RedisServer {
            binary: find_binary(),
            port: free_port(),
            child: None,
            tls: Some(Tls {
                files: TlsFiles::make(),
                user: user.to_owned(),
                password: password.to_owned(),
                rules: rules.to_owned(),
            }),
        };
        server.spawn_tls();
        server
    }

    /// `127.0.0.1:PORT`: the test writes the URL, with the credentials it means to try.
    pub fn tls_address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.tls.as_ref().map(|tls| tls.files.ca.clone()).expect("a TLS server")
    }

    fn spawn_tls(&mut self) {
        let Tls {
            files,
            user,
            password,
            rules,
        } = self.tls.as_ref().expect("a TLS server");
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let log = files.log();
        let mut args: Vec<String> = ["--port", "0", "--tls-port", &self.port.to_string()]
            .into_iter()
            .map(str::to_owned)
            .collect();
        args.extend([
            "--tls-cert-file".to_owned(),
            path(&files.cert),
            "--tls-key-file".to_owned(),
            path(&files.key),
        ]);
        args.extend(["--tls-ca-cert-file".to_owned(), path(&files.ca)]);
        args.extend(
            [
                "--tls-auth-clients",
                "no",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            .map(str::to_owned),
        );
        args.extend(["--dir".to_owned(), path(&files.dir), "--logfile".to_owned(), path(&log)]);
        args.extend(["--user", "default", "off", "--user", user, "on"].map(str::to_owned));
        args.push(format!(">{password}"));
        args.extend(rules.split_whitespace().map(str::to_owned));
        args.extend(
            [
                "--user",
                TLS_ADMIN,
                "on",
                &format!(">{TLS_ADMIN}-pw"),
                "~*",
                "&*",
                "+@all",
            ]
            .map(str::to_owned),
        );
        let mut child = Command::new(&self.binary)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "redis-server with --tls-port exited at start ({status}); it needs TLS support \
                     (Debian's redis-server 7 has it):\n{stderr}\n{log}"
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen with TLS on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }
}
