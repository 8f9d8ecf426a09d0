//! CPU-bound policy code runs off the network threads: while handlers spin,
//! new clients are greeted and other sessions answered at once.

use petrel_e2e::{TestDaemon, Workspace};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn read_reply(stream: &mut TcpStream) -> String {
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.expect("a reply").unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_handlers_do_not_delay_other_sessions() {
    let ws = Workspace::new();
    let events = r#"kumo.on('smtp_server_ehlo', function(domain)
  if domain == 'spin.example' then
    local stop = os.clock() + 3
    while os.clock() < stop do end
  end
end)"#;
    let daemon = TestDaemon::start(&ws.policy("", events)).unwrap();
    let addr = daemon.smtp[0];

    let mut idle = TcpStream::connect(addr).await.unwrap();
    read_reply(&mut idle).await;
    let mut spinners = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        read_reply(&mut s).await;
        s.write_all(b"EHLO spin.example\r\n").await.unwrap();
        spinners.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let mut fresh = TcpStream::connect(addr).await.unwrap();
        assert!(read_reply(&mut fresh).await.starts_with("220"));
        worst = worst.max(started.elapsed());
        let started = Instant::now();
        idle.write_all(b"NOOP\r\n").await.unwrap();
        assert!(read_reply(&mut idle).await.starts_with("250"));
        worst = worst.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(worst < Duration::from_millis(100), "a greeting or NOOP took {worst:?} while handlers spun");
    for mut s in spinners {
        assert!(read_reply(&mut s).await.starts_with("250"), "the spinning handlers finish in their own time");
    }
    daemon.stop();
}
