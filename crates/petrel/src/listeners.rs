//! The daemon's listeners: starting them, and carrying out a reload's
//! listener changes in two steps. [`Listeners::stage`] checks new settings
//! and binds every added listener without touching the running ones, so a
//! bad certificate or a busy port refuses the reload; [`Listeners::apply`]
//! switches over once the new policy is committed.

use crate::error::DaemonError;
use petrel_http_api::{ApiState, HttpListener, HttpListenerConfig, ListenerChanges, TlsIdentity};
use petrel_lua::InitConfig;
use petrel_smtp_server::{Listener, ListenerConfig, Prepared, ServerHandles};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What starting a listener needs.
pub(crate) struct ListenerContext<'a> {
    pub smtp: &'a Arc<ServerHandles>,
    /// The HTTP state for a listener's settings (its trusted hosts, limits).
    pub api_state: &'a (dyn Fn(&HttpListenerConfig) -> Arc<ApiState> + Sync),
    pub shutdown: &'a CancellationToken,
}

impl ListenerContext<'_> {
    async fn smtp(&self, config: &ListenerConfig) -> Result<Listener, DaemonError> {
        Listener::start(config.clone(), self.smtp.clone(), self.shutdown)
            .await
            .map_err(|e| DaemonError::Listen { addr: config.listen, source: e })
    }

    async fn http(&self, config: &HttpListenerConfig) -> Result<HttpListener, DaemonError> {
        HttpListener::start(config, (self.api_state)(config), self.shutdown)
            .await
            .map_err(|e| DaemonError::Listen { addr: config.listen, source: e })
    }
}

#[derive(Default)]
pub(crate) struct Listeners {
    smtp: Vec<Listener>,
    http: Vec<HttpListener>,
}

/// A reload's listener changes, checked and bound, not yet applied.
pub(crate) struct Staged {
    prepared: Vec<(usize, Prepared)>,
    http_kept: Vec<(usize, usize)>,
    http_tls: Vec<Option<TlsIdentity>>,
    new_smtp: Vec<Listener>,
    new_http: Vec<HttpListener>,
    smtp_removed: Vec<usize>,
    http_removed: Vec<usize>,
}

/// Pair new configurations with running listeners by configured address
/// (in order, for repeated addresses such as port 0): `(new index, running
/// index)` for kept ones, then the new ones to start and running ones to stop.
fn pair<N, R>(
    new: &[N],
    running: &[R],
    key_new: impl Fn(&N) -> SocketAddr,
    key_running: impl Fn(&R) -> SocketAddr,
) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
    let mut taken = vec![false; running.len()];
    let mut kept = Vec::new();
    let mut added = Vec::new();
    for (i, n) in new.iter().enumerate() {
        let key = key_new(n);
        match (0..running.len()).find(|&j| !taken[j] && key_running(&running[j]) == key) {
            Some(j) => {
                taken[j] = true;
                kept.push((i, j));
            }
            None => added.push(i),
        }
    }
    let removed = (0..running.len()).filter(|&j| !taken[j]).collect();
    (kept, added, removed)
}

impl Listeners {
    /// Bind the listeners of the first generation.
    pub async fn start_all(&mut self, config: &InitConfig, ctx: &ListenerContext<'_>) -> Result<(), DaemonError> {
        for c in &config.listeners {
            self.smtp.push(ctx.smtp(c).await?);
        }
        for c in &config.http_listeners {
            self.http.push(ctx.http(c).await?);
        }
        Ok(())
    }

    /// Bound addresses, SMTP then HTTP, in policy order.
    pub fn addrs(&self) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        (self.smtp.iter().map(|l| l.local_addr()).collect(), self.http.iter().map(|l| l.local_addr()).collect())
    }

    /// Check `config`'s listener settings and bind the added listeners.
    /// On error nothing running has changed and anything bound is closed.
    pub async fn stage(&self, config: &InitConfig, ctx: &ListenerContext<'_>) -> Result<Staged, String> {
        let (smtp_kept, smtp_added, smtp_removed) =
            pair(&config.listeners, &self.smtp, |c| c.listen, |l| l.config().listen);
        let (http_kept, http_added, http_removed) =
            pair(&config.http_listeners, &self.http, |c| c.listen, |l| l.config().listen);
        let mut prepared = Vec::new();
        for &(i, j) in &smtp_kept {
            if *self.smtp[j].config() != config.listeners[i] {
                let p = Prepared::new(config.listeners[i].clone())
                    .map_err(|e| format!("listener {}: {e}", config.listeners[i].listen))?;
                prepared.push((j, p));
            }
        }
        let http_tls = http_kept
            .iter()
            .map(|&(i, j)| self.http[j].prepare(&config.http_listeners[i]))
            .collect::<Result<Vec<_>, _>>()?;
        let mut staged = Staged {
            prepared,
            http_kept,
            http_tls,
            new_smtp: Vec::new(),
            new_http: Vec::new(),
            smtp_removed,
            http_removed,
        };
        let bound = async {
            for &i in &smtp_added {
                staged.new_smtp.push(ctx.smtp(&config.listeners[i]).await?);
            }
            for &i in &http_added {
                staged.new_http.push(ctx.http(&config.http_listeners[i]).await?);
            }
            Ok::<_, DaemonError>(())
        }
        .await;
        if let Err(e) = bound {
            staged.new_smtp.iter().for_each(Listener::stop);
            staged.new_http.iter().for_each(HttpListener::stop);
            return Err(e.to_string());
        }
        Ok(staged)
    }

    /// Switch to the staged listeners: kept ones take their new settings,
    /// removed ones stop (sessions in progress finish), added ones join.
    pub fn apply(&mut self, staged: Staged, config: &InitConfig, ctx: &ListenerContext<'_>) -> ListenerChanges {
        let started = staged.new_smtp.iter().map(|l| format!("smtp {}", l.local_addr()));
        let started = started.chain(staged.new_http.iter().map(|l| format!("http {}", l.local_addr()))).collect();
        let mut changes = ListenerChanges { started, ..Default::default() };
        for (j, p) in staged.prepared {
            self.smtp[j].apply(p);
            changes.updated.push(format!("smtp {}", self.smtp[j].local_addr()));
        }
        for (&(i, j), tls) in staged.http_kept.iter().zip(staged.http_tls) {
            let new = &config.http_listeners[i];
            if self.http[j].config() != new {
                changes.updated.push(format!("http {}", self.http[j].local_addr()));
            }
            self.http[j].update(new, (ctx.api_state)(new), tls);
        }
        for j in staged.smtp_removed.into_iter().rev() {
            let l = self.smtp.remove(j);
            l.stop();
            changes.stopped.push(format!("smtp {}", l.local_addr()));
        }
        for j in staged.http_removed.into_iter().rev() {
            let l = self.http.remove(j);
            l.stop();
            changes.stopped.push(format!("http {}", l.local_addr()));
        }
        self.smtp.extend(staged.new_smtp);
        self.http.extend(staged.new_http);
        changes
    }
}
