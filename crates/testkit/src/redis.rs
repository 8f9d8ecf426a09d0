//! A real `redis-server` (Debian's package) on a free loopback port, for
//! tests of limits shared between nodes. Stopped when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server without persistence, on its own port.
pub struct RedisServer {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    cluster: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind port 0").local_addr().expect("local addr").port()
}

fn answers_ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

impl RedisServer {
    /// Start one; panics with the reason when `redis-server` is missing
    /// (`make test` installs it).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server =
            Self { child: None, addr: SocketAddr::from(([127, 0, 0, 1], free_port())), dir, cluster: false };
        server.launch();
        server
    }

    /// A Redis Cluster of `n` primaries (no replicas) on free ports, slots
    /// spread over them by `redis-cli --cluster create`.
    pub fn cluster(n: usize) -> Vec<Self> {
        let nodes: Vec<Self> = (0..n)
            .map(|_| {
                let dir = tempfile::tempdir().expect("temp dir");
                let mut node =
                    Self { child: None, addr: SocketAddr::from(([127, 0, 0, 1], free_port())), dir, cluster: true };
                node.launch();
                node
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run redis-cli (Debian package redis-tools, which redis-server brings)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let out = Command::new("redis-cli")
                    .args(["-p", &node.addr.port().to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli");
                if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not come up");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        nodes
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.addr.port().to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(if self.cluster { &["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"][..] } else { &[] })
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server (Debian package redis-server; `make test` installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers_ping(self.addr) {
            assert!(Instant::now() < deadline, "redis-server did not answer on {}", self.addr);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kill it (its data is gone: nothing is persisted).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
