//! The listening socket's backlog: bursts of one-message clients must find
//! room in the kernel's accept queue, and a reload can widen it.

mod common;
use common::*;

/// The backlog of the socket listening on `port`, as `ss` reports it (the
/// Send-Q column of a listening socket).
fn kernel_backlog(port: u16) -> u32 {
    let out = std::process::Command::new("ss").args(["-ltnH", &format!("sport = :{port}")]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().next().unwrap_or_else(|| panic!("ss shows no listener on {port}"));
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

async fn start(config: ListenerConfig) -> (Listener, tokio_util::sync::DropGuard, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let spool: Arc<dyn Spool> =
        Arc::new(RocksSpool::open(&SpoolPaths { meta: dir.path().into(), data: dir.path().into() }).unwrap());
    let (listener, guard) = start_listener(spool, config).await;
    (listener, guard, dir)
}

#[tokio::test]
async fn the_default_backlog_is_far_above_tokios_and_a_reload_changes_it() {
    let config = ListenerConfig::new("127.0.0.1:0".parse().unwrap(), "mx.test");
    assert_eq!(config.listen_backlog, 4096);
    let (listener, _shutdown, _dir) = start(config.clone()).await;
    let port = listener.local_addr().port();
    // The kernel caps the value at net.core.somaxconn.
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap().trim().parse().unwrap();
    assert_eq!(kernel_backlog(port), 4096.min(somaxconn));

    let mut changed = config;
    changed.listen_backlog = 300;
    listener.apply(petrel_smtp_server::Prepared::new(changed).unwrap());
    assert_eq!(kernel_backlog(port), 300);
    // Still accepting on the same socket.
    let mut stream = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut banner = [0u8; 4];
    stream.read_exact(&mut banner).await.unwrap();
    assert_eq!(&banner, b"220 ");
}
