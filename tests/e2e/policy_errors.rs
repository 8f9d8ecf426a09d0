//! A policy that fails or refuses at reception: the client is told, and
//! nothing is spooled.

use petrel_e2e::{Sink, TestDaemon, Workspace, eventually, smart_host_events};
use petrel_smtp_client::{ClientError, ConnectOptions, Phase, SmtpClient};

async fn send(server: std::net::SocketAddr, sender: &str) -> Result<(), ClientError> {
    let opts = ConnectOptions::new(Some("127.0.0.1".parse().unwrap()), server, "client.test");
    let mut client = SmtpClient::connect(&opts).await?;
    client.send(sender, "r@dest.example", b"Subject: x\r\n\r\nx\r\n").await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_error_defers_and_reject_refuses_without_spooling() {
    let sink = Sink::start().await;
    let ws = Workspace::new();
    let events = format!(
        r#"kumo.on('smtp_server_message_received', function(msg, conn_meta)
  if msg:sender().domain == 'broken.example' then
    local missing = nil
    return missing.field
  elseif msg:sender().domain == 'blocked.example' then
    kumo.reject(550, '5.7.1 sender blocked by policy')
  end
end)
{}"#,
        smart_host_events(sink.addr(), "")
    );
    let policy = ws.policy("", &events);
    let daemon = TestDaemon::start(&policy).unwrap();

    match send(daemon.smtp[0], "a@broken.example").await {
        Err(ClientError::Rejected { phase: Phase::DataDot, reply }) => {
            assert_eq!((reply.code, reply.enhanced.unwrap().to_string().as_str()), (451, "4.3.0"));
        }
        other => panic!("expected 451 4.3.0 after DATA, got {other:?}"),
    }
    match send(daemon.smtp[0], "a@blocked.example").await {
        Err(ClientError::Rejected { phase: Phase::DataDot, reply }) => {
            assert_eq!(reply.code, 550);
            assert_eq!(reply.text, "sender blocked by policy");
        }
        other => panic!("expected 550 after DATA, got {other:?}"),
    }
    send(daemon.smtp[0], "a@fine.example").await.unwrap();
    assert!(eventually(std::time::Duration::from_secs(10), || sink.received_count() == 1).await);
    daemon.stop();

    let records = ws.records();
    let kinds: Vec<_> = records.iter().map(|r| (r.kind, r.sender.as_str())).collect();
    use petrel_telemetry::RecordType::*;
    assert!(kinds.contains(&(Rejection, "a@blocked.example")));
    assert!(!kinds.iter().any(|(k, s)| *k == Reception && *s != "a@fine.example"), "{kinds:?}");
    let again = TestDaemon::start(&policy).unwrap();
    assert_eq!(again.recovered, 0, "the good message was delivered, the others never spooled");
    again.stop();
}
