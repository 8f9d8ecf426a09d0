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

/// Seconds from the end of DATA to its reply, for `count` messages.
async fn timed_sends(addr: std::net::SocketAddr, domain: &'static str, count: usize) -> Vec<Duration> {
    let opts = petrel_smtp_client::ConnectOptions::new(Some("127.0.0.1".parse().unwrap()), addr, "injector.test");
    let mut client = petrel_smtp_client::SmtpClient::connect(&opts).await.unwrap();
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        client.send("s@a.example", &format!("r{i}@{domain}"), b"Subject: t\r\n\r\nx\r\n").await.expect("accepted");
        times.push(started.elapsed());
    }
    client.quit().await;
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_sleeping_in_kumo_sleep_do_not_hold_up_other_mail() {
    let ws = Workspace::new();
    let events = r#"kumo.on('smtp_server_message_received', function(msg)
  if msg:recipient().domain == 'slow.example' then kumo.sleep(2) end
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '127.0.0.1:9' } } }, retry_interval = '1h' }
end)"#;
    let daemon = TestDaemon::start(&ws.policy("", events)).unwrap();
    let addr = daemon.smtp[0];
    // More sleepers than the runtime has worker threads.
    let slow: Vec<_> = (0..4).map(|_| tokio::spawn(timed_sends(addr, "slow.example", 1))).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fast: Vec<_> = (0..10).map(|_| tokio::spawn(timed_sends(addr, "fast.example", 20))).collect();
    let mut latencies = Vec::new();
    for f in fast {
        latencies.extend(f.await.unwrap());
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    println!("200 messages beside 4 sleeping handlers: p50 {:?}, p99 {:?}", latencies[latencies.len() / 2], p99);
    assert_eq!(latencies.len(), 200);
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    for s in slow {
        let took = s.await.unwrap()[0];
        assert!(took >= Duration::from_secs(2), "the sleepers really slept: {took:?}");
    }
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_loop_is_stopped_at_the_limit_with_451_while_others_are_served() {
    let ws = Workspace::new();
    let events = r#"kumo.on('smtp_server_message_received', function(msg)
  if msg:recipient().domain == 'loop.example' then while true do end end
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '127.0.0.1:9' } } }, retry_interval = '1h' }
end)"#;
    let lua = petrel::LuaSettings { event_time_limit: Duration::from_millis(500), ..Default::default() };
    let options =
        petrel_e2e::DaemonOptions { watch_policy: false, lua, ..petrel_e2e::DaemonOptions::new(ws.policy("", events)) };
    let daemon = TestDaemon::start_with(options).unwrap();
    let addr = daemon.smtp[0];
    let looping = tokio::spawn(async move {
        let opts = petrel_smtp_client::ConnectOptions::new(Some("127.0.0.1".parse().unwrap()), addr, "i.test");
        let mut client = petrel_smtp_client::SmtpClient::connect(&opts).await.unwrap();
        let started = Instant::now();
        let result = client.send("s@a.example", "r@loop.example", b"Subject: t\r\n\r\nx\r\n").await;
        (result, started.elapsed())
    });
    let others = timed_sends(addr, "fine.example", 20).await;
    assert!(others.iter().all(|t| *t < Duration::from_millis(400)), "served while the loop ran: {others:?}");
    let (result, took) = looping.await.unwrap();
    let reply = result.unwrap_err().reply().cloned().expect("a reply");
    assert_eq!((reply.code, reply.enhanced.map(|e| e.to_string())), (451, Some("4.3.0".into())));
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(3), "stopped at the limit: {took:?}");
    daemon.stop();
}
