//! Shared throttles and connection leases in Redis. Each operation is one
//! script on one key, so it is atomic on a single server and routes to one
//! shard in a cluster; the scripts read Redis's clock, so nodes whose
//! clocks drift still agree.

use crate::gcra::{ThrottleResult, parameters, result};
use crate::spec::ThrottleSpec;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Script};
use std::time::Duration;

/// `kumo.configure_redis_throttles`: where the shared limits live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Redis URLs; more than one means a cluster.
    pub nodes: Vec<String>,
    /// Force (or refuse) a cluster client; `None` decides by node count.
    pub cluster: Option<bool>,
    /// Credentials for every cluster node.
    pub username: Option<String>,
    /// Credentials for every cluster node.
    pub password: Option<String>,
    /// How long a connection attempt may take before the node falls back.
    pub connect_timeout: Duration,
    /// How long one operation may take before the node falls back.
    pub response_timeout: Duration,
    /// Nodes sharing the limits: each takes this share of a limit when
    /// Redis cannot be reached.
    pub node_count: u32,
    /// How long a connection lease lives unrenewed: a node that dies
    /// holding leases frees them after this long.
    pub lease_ttl: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            cluster: None,
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(1),
            node_count: 1,
            lease_ttl: crate::LEASE_TTL,
        }
    }
}

/// Redis could not answer: the caller falls back to its local share.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    /// The connection or the command failed.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// No answer in time.
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
}

impl RedisConfig {
    /// Check the URLs (without connecting), as `petrel validate` does.
    pub fn check(&self) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("node: at least one redis URL is needed".into());
        }
        for node in &self.nodes {
            redis::Client::open(node.as_str()).map_err(|e| format!("node {node:?}: {e}"))?;
        }
        Ok(())
    }

    fn is_cluster(&self) -> bool {
        self.cluster.unwrap_or(self.nodes.len() > 1)
    }
}

enum Conn {
    Single(ConnectionManager),
    /// A cluster client connects on first use and again after a failure.
    Cluster {
        client: Box<ClusterClient>,
        conn: tokio::sync::Mutex<Option<ClusterConnection>>,
    },
}

/// One Redis (or cluster) the limits are kept in.
pub(crate) struct RedisStore {
    conn: Conn,
    pub config: RedisConfig,
    reserve: Script,
    check: Script,
    acquire: Script,
    renew: Script,
    release: Script,
}

// Microsecond timestamps stay below 2^53, so Lua's doubles hold them exactly.
const NOW_US: &str = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000000 + tonumber(t[2])";

fn reserve_script() -> Script {
    Script::new(&format!(
        "{NOW_US}
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local next = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.floor((next - now) / 1000) + 1000)
return string.format('%.0f', wait)"
    ))
}

fn check_script() -> Script {
    Script::new(&format!(
        "{NOW_US}
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return {{1, string.format('%.0f', allow_at - now), string.format('%.0f', tat - now)}}
end
local next = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.floor((next - now) / 1000) + 1000)
return {{0, '0', string.format('%.0f', next - now)}}"
    ))
}

// Leases are sorted-set members scored by their expiry (ms): expired ones
// (a node that died holding them) are dropped before counting.
const NOW_MS: &str =
    "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)";

fn acquire_script() -> Script {
    Script::new(&format!(
        "{NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1"
    ))
}

fn renew_script() -> Script {
    Script::new(&format!(
        "{NOW_MS}
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1"
    ))
}

impl RedisStore {
    /// A store that connects on first use: a node starts with Redis down.
    pub fn open(config: &RedisConfig) -> Result<Self, RedisError> {
        let conn = if config.is_cluster() {
            let mut builder = ClusterClient::builder(config.nodes.clone())
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout);
            if let Some(user) = &config.username {
                builder = builder.username(user);
            }
            if let Some(password) = &config.password {
                builder = builder.password(password);
            }
            Conn::Cluster { client: Box::new(builder.build()?), conn: tokio::sync::Mutex::new(None) }
        } else {
            let client = redis::Client::open(config.nodes[0].as_str())?;
            let settings = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.response_timeout))
                .set_number_of_retries(1);
            Conn::Single(ConnectionManager::new_lazy_with_config(client, settings)?)
        };
        Ok(Self {
            conn,
            config: config.clone(),
            reserve: reserve_script(),
            check: check_script(),
            acquire: acquire_script(),
            renew: renew_script(),
            release: Script::new("return redis.call('ZREM', KEYS[1], ARGV[1])"),
        })
    }

    /// Run a script with the connection, bounded by the configured timeouts.
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        key: &str,
        args: &[String],
    ) -> Result<T, RedisFailure> {
        let limit = self.config.connect_timeout + self.config.response_timeout;
        let mut invocation = script.key(key);
        for arg in args {
            invocation.arg(arg);
        }
        let call = async {
            match &self.conn {
                Conn::Single(manager) => invocation.invoke_async(&mut manager.clone()).await,
                Conn::Cluster { client, conn } => {
                    let mut held = conn.lock().await;
                    if held.is_none() {
                        *held = Some(client.get_async_connection().await?);
                    }
                    let mut connection = held.clone().expect("set above");
                    drop(held);
                    let answer = invocation.invoke_async(&mut connection).await;
                    if answer.is_err() {
                        *conn.lock().await = None;
                    }
                    answer
                }
            }
        };
        match tokio::time::timeout(limit, call).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(RedisFailure::Timeout(limit)),
        }
    }

    pub async fn reserve(&self, key: &str, spec: &ThrottleSpec) -> Result<Duration, RedisFailure> {
        let (interval, tolerance) = parameters(spec);
        let wait: String = self.run(&self.reserve, key, &[interval.to_string(), tolerance.to_string()]).await?;
        Ok(Duration::from_micros(wait.parse().unwrap_or(0)))
    }

    pub async fn check(&self, key: &str, spec: &ThrottleSpec) -> Result<ThrottleResult, RedisFailure> {
        let (interval, tolerance) = parameters(spec);
        let (throttled, retry, ahead): (u8, String, String) =
            self.run(&self.check, key, &[interval.to_string(), tolerance.to_string()]).await?;
        Ok(result(spec, throttled == 1, retry.parse().unwrap_or(0), ahead.parse().unwrap_or(0)))
    }

    pub async fn acquire(&self, key: &str, limit: usize, ttl: Duration, member: &str) -> Result<bool, RedisFailure> {
        let granted: u8 =
            self.run(&self.acquire, key, &[limit.to_string(), ttl.as_millis().to_string(), member.to_string()]).await?;
        Ok(granted == 1)
    }

    pub async fn renew(&self, key: &str, ttl: Duration, member: &str) -> Result<(), RedisFailure> {
        let _: u8 = self.run(&self.renew, key, &[ttl.as_millis().to_string(), member.to_string()]).await?;
        Ok(())
    }

    pub async fn release(&self, key: &str, member: &str) -> Result<(), RedisFailure> {
        let _: u8 = self.run(&self.release, key, &[member.to_string()]).await?;
        Ok(())
    }
}
