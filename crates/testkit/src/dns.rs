//! A small authoritative DNS server for tests, speaking real DNS over UDP
//! (and TCP for truncated answers) on loopback. It serves MX and A/AAAA
//! records from a fixed zone, can answer SERVFAIL for chosen names, and
//! counts the queries it receives so tests can see caching.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// Records to serve, keyed by lower-case name without the trailing dot.
#[derive(Default, Clone)]
pub struct Zone {
    records: HashMap<String, Vec<Record>>,
    servfail: HashSet<String>,
    ttl: u32,
}

fn name(n: &str) -> Name {
    Name::from_str(&format!("{}.", n.trim_end_matches('.'))).expect("valid test name")
}

impl Zone {
    /// An empty zone.
    pub fn new() -> Self {
        Self { ttl: 300, ..Default::default() }
    }

    /// TTL for the records added after this call.
    pub fn ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    fn add(mut self, owner: &str, rdata: RData) -> Self {
        let record = Record::from_rdata(name(owner), self.ttl, rdata);
        self.records.entry(owner.to_ascii_lowercase()).or_default().push(record);
        self
    }

    /// Add an MX record.
    pub fn mx(self, domain: &str, preference: u16, exchange: &str) -> Self {
        self.add(domain, RData::MX(MX::new(preference, name(exchange))))
    }

    /// RFC 7505: `MX 0 .`
    pub fn null_mx(self, domain: &str) -> Self {
        self.add(domain, RData::MX(MX::new(0, Name::root())))
    }

    /// Add an A or AAAA record.
    pub fn addr(self, host: &str, ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => self.add(host, RData::A(A(v4))),
            IpAddr::V6(v6) => self.add(host, RData::AAAA(AAAA(v6))),
        }
    }

    /// Add a TXT record holding `text`, split into character-strings of
    /// at most 255 octets as DNS requires (a DKIM key record is longer).
    pub fn txt(self, owner: &str, text: &str) -> Self {
        let parts = text.as_bytes().chunks(255).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        self.add(owner, RData::TXT(TXT::new(parts)))
    }

    /// Answer SERVFAIL for `domain`.
    pub fn servfail(mut self, domain: &str) -> Self {
        self.servfail.insert(domain.to_ascii_lowercase());
        self
    }

    fn answer(&self, query: &Message) -> Message {
        let mut response = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = query.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        let Some(q) = query.queries.first() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return response;
        };
        response.add_query(q.clone());
        let owner = q.name.to_utf8().trim_end_matches('.').to_ascii_lowercase();
        if self.servfail.contains(&owner) {
            response.metadata.response_code = ResponseCode::ServFail;
            return response;
        }
        match self.records.get(&owner) {
            None => response.metadata.response_code = ResponseCode::NXDomain,
            Some(records) => {
                let wanted = q.query_type;
                response.add_answers(
                    records.iter().filter(|r| r.record_type() == wanted || wanted == RecordType::ANY).cloned(),
                );
            }
        }
        response
    }
}

/// A running server; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl DnsServer {
    /// Serve `zone` on a loopback UDP port.
    pub async fn start(zone: Zone) -> DnsServer {
        // The kernel picks a free UDP port; the same TCP port may be in use
        // (by any test's outgoing connection), so try again until both bind.
        let mut attempts = 0;
        let (udp, tcp, addr) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("dns udp bind");
            let addr = udp.local_addr().unwrap();
            match TcpListener::bind(addr).await {
                Ok(tcp) => break (udp, tcp, addr),
                Err(e) if attempts < 50 => {
                    attempts += 1;
                    let _ = e;
                }
                Err(e) => panic!("dns tcp bind: {e}"),
            }
        };
        let zone = Arc::new(zone);
        let queries = Arc::new(AtomicUsize::new(0));
        let (z, q) = (zone.clone(), queries.clone());
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                if let Ok(query) = Message::from_vec(&buf[..n]) {
                    q.fetch_add(1, Ordering::SeqCst);
                    if let Ok(bytes) = z.answer(&query).to_vec() {
                        let _ = udp.send_to(&bytes, peer).await;
                    }
                }
            }
        });
        let (z, q) = (zone, queries.clone());
        let tcp_task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let (z, q) = (z.clone(), q.clone());
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    while stream.read_exact(&mut len).await.is_ok() {
                        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                        if stream.read_exact(&mut buf).await.is_err() {
                            return;
                        }
                        let Ok(query) = Message::from_vec(&buf) else { return };
                        q.fetch_add(1, Ordering::SeqCst);
                        let Ok(bytes) = z.answer(&query).to_vec() else { return };
                        let _ = stream.write_all(&(bytes.len() as u16).to_be_bytes()).await;
                        let _ = stream.write_all(&bytes).await;
                    }
                });
            }
        });
        DnsServer { addr, queries, tasks: vec![udp_task, tcp_task] }
    }

    /// The address to send queries to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries answered so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}
