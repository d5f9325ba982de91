//! A real `redis-server` for tests: started on a free loopback port in its
//! own temp directory, without persistence, killed with SIGKILL and
//! restarted on the same port to test outages.
//!
//! ```no_run
//! # use gateway_e2e::redis::RedisServer;
//! let mut redis = RedisServer::start();
//! let url = redis.url();          // redis://127.0.0.1:<port>
//! redis.kill();                   // SIGKILL: connections drop at once
//! redis.restart();                // same port, empty data set
//! assert_eq!(redis.cli(&["PING"]), "PONG");
//! ```

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the server is set up beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// An ACL user (name, password) with every permission; the default
    /// user is then turned off, so a client must authenticate as this one.
    pub acl_user: Option<(String, String)>,
    /// Serve TLS only, with this certificate chain, key and CA (`rediss://`).
    pub tls: Option<RedisTls>,
}

#[derive(Debug, Clone)]
pub struct RedisTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A running `redis-server`; killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    options: RedisOptions,
}

impl RedisServer {
    /// A plain server (no auth, no TLS).
    pub fn start() -> RedisServer {
        Self::start_with(RedisOptions::default())
    }

    pub fn start_with(options: RedisOptions) -> RedisServer {
        // A free port can be taken between our probe and redis binding it:
        // try a few.
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                dir: tempfile::tempdir().expect("temp dir"),
                port: free_port(),
                options: options.clone(),
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start; is it installed (scripts/test.sh installs it)?");
    }

    /// `redis://127.0.0.1:<port>` or, with TLS, `rediss://localhost:<port>`
    /// (the name the test certificate carries).
    pub fn url(&self) -> String {
        match self.options.tls {
            Some(_) => format!("rediss://localhost:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL, and wait until it is gone: clients see their connections
    /// reset, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 redis-server");
            child.wait().expect("reap redis-server");
        }
    }

    /// SIGSTOP: the server keeps its connections but answers nothing, as a
    /// hung or unreachable host would.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("redis-server running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
            .expect("signal redis-server");
    }

    /// Starts it again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Runs one command with `redis-cli` (authenticated, over TLS when the
    /// server needs it) and returns its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some((user, password)) = &self.options.acl_user {
            cmd.args(["--user", user, "--pass", password, "--no-auth-warning"]);
        }
        if let Some(tls) = &self.options.tls {
            cmd.arg("--tls")
                .arg("--cacert")
                .arg(&tls.ca)
                .args(["--sni", "localhost"]);
        }
        let out = cmd.args(args).output().expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Spawns the server and waits (up to 5 s) for its port; `false` when
    /// it exits first (port taken).
    fn spawn(&mut self) -> bool {
        let conf = self.write_config();
        let child = Command::new("redis-server")
            .arg(&conf)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (is it installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.is_running() {
                self.child = None;
                return false;
            }
            if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(100)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    fn write_config(&self) -> PathBuf {
        let dir = self.dir.path();
        let mut conf = format!(
            "bind 127.0.0.1\nprotected-mode no\ndaemonize no\nsave \"\"\nappendonly no\n\
             dir {dir}\nlogfile {log}\nloglevel notice\n",
            dir = dir.display(),
            log = dir.join("redis.log").display(),
        );
        match &self.options.tls {
            Some(tls) => conf.push_str(&format!(
                "port 0\ntls-port {port}\ntls-cert-file {cert}\ntls-key-file {key}\n\
                 tls-ca-cert-file {ca}\ntls-auth-clients no\n",
                port = self.port,
                cert = tls.cert.display(),
                key = tls.key.display(),
                ca = tls.ca.display(),
            )),
            None => conf.push_str(&format!("port {}\n", self.port)),
        }
        if let Some((user, password)) = &self.options.acl_user {
            conf.push_str(&format!(
                "user default off\nuser {user} on >{password} ~* &* +@all\n"
            ));
        }
        let path = dir.join("redis.conf");
        std::fs::write(&path, conf).expect("write redis.conf");
        path
    }

    /// The directory the server runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.resume();
        }
        self.kill();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The `[cache]` section of a gateway config using this Redis, for
/// end-to-end tests through the binary (append to `pipeline_config`).
pub fn cache_config(url: &str, ttl: &str) -> String {
    format!(
        "[cache]\nkind = \"redis\"\nttl = \"{ttl}\"\n\n[cache.redis]\nurl = \"{url}\"\ntimeout = \"200ms\"\n"
    )
}

/// `gateway_cache_requests_total{backend, outcome}` of a running gateway
/// now (0 when absent); outcome is `hit`, `miss` or `bypass`.
pub fn cache_requests(gw: &crate::TestGateway, backend: &str, outcome: &str) -> f64 {
    gw.metric_now(&format!(
        "gateway_cache_requests_total{{backend=\"{backend}\",outcome=\"{outcome}\"}}"
    ))
}

/// Every `gateway_cache_bypass_total` sample of a running gateway, summed.
pub fn cache_bypasses(gw: &crate::TestGateway) -> f64 {
    gw.metrics_text()
        .lines()
        .filter(|line| line.starts_with("gateway_cache_bypass_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
