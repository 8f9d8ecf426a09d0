//! AUTH PLAIN and LOGIN (RFC 4954), checked by `smtp_server_auth_plain`.

use crate::io::{ConnError, Line};
use crate::replies::{policy_reply, reply};
use crate::session::Session;
use base64::Engine;
use petrel_smtp_proto::Reply;

enum Step {
    Answer(String),
    Done(Reply),
}

async fn challenge(session: &mut Session, prompt: &str) -> Result<Step, ConnError> {
    session.conn.send(&Reply::new(334, None, prompt));
    match session.conn.read_line().await? {
        Line::Command(line) if line == b"*" => Ok(Step::Done(reply(501, "5.0.0", "Authentication cancelled"))),
        Line::Command(line) => Ok(Step::Answer(String::from_utf8_lossy(&line).into_owned())),
        Line::TooLong => Ok(Step::Done(reply(500, "5.5.6", "Authentication line too long"))),
        Line::Closed => Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into())),
    }
}

fn decode(text: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// (authorization identity, authentication identity, password)
async fn credentials(
    session: &mut Session,
    mechanism: &str,
    initial: Option<String>,
) -> Result<Result<(String, String, String), Reply>, ConnError> {
    let malformed = || reply(501, "5.5.2", "Malformed authentication data");
    match mechanism {
        "PLAIN" => {
            let encoded = match initial {
                Some(i) if i == "=" => String::new(),
                Some(i) => i,
                None => match challenge(session, "").await? {
                    Step::Answer(a) => a,
                    Step::Done(r) => return Ok(Err(r)),
                },
            };
            let Some(text) = decode(&encoded) else { return Ok(Err(malformed())) };
            let mut parts = text.splitn(3, '\0');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(z), Some(c), Some(p)) => Ok(Ok((z.to_string(), c.to_string(), p.to_string()))),
                _ => Ok(Err(malformed())),
            }
        }
        "LOGIN" => {
            let user = match initial {
                Some(i) => i,
                None => match challenge(session, "VXNlcm5hbWU6").await? {
                    Step::Answer(a) => a,
                    Step::Done(r) => return Ok(Err(r)),
                },
            };
            let password = match challenge(session, "UGFzc3dvcmQ6").await? {
                Step::Answer(a) => a,
                Step::Done(r) => return Ok(Err(r)),
            };
            match (decode(&user), decode(&password)) {
                (Some(u), Some(p)) => Ok(Ok((String::new(), u, p))),
                _ => Ok(Err(malformed())),
            }
        }
        _ => Ok(Err(reply(504, "5.5.4", "Unrecognized authentication type"))),
    }
}

pub(crate) async fn auth(session: &mut Session, mechanism: &str, initial: Option<String>) -> Result<Reply, ConnError> {
    if session.ehlo.is_none() {
        return Ok(reply(503, "5.5.1", "Say EHLO first"));
    }
    if session.authn_id.is_some() {
        return Ok(reply(503, "5.5.1", "Already authenticated"));
    }
    if session.sender.is_some() {
        return Ok(reply(503, "5.5.1", "AUTH is not allowed during a mail transaction"));
    }
    if !session.auth_offered() {
        return Ok(reply(538, "5.7.11", "Encryption required for requested authentication mechanism"));
    }
    let (authz, authc, password) = match credentials(session, mechanism, initial).await? {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    let conn = session.conn_meta();
    // An address that has failed recently waits before it may even try.
    let earlier = session.peers.auth_failures(session.peer.ip());
    if earlier > 0 {
        tokio::time::sleep(crate::peers::auth_delay(earlier)).await;
    }
    Ok(match session.handles.policy.auth_plain(&authz, &authc, &password, &conn).await {
        Ok(true) => {
            session.authn_id = Some(authc);
            reply(235, "2.7.0", "Authentication successful")
        }
        Ok(false) => {
            session.auth_failures += 1;
            let recent = session.peers.auth_failed(session.peer.ip());
            tracing::info!(peer = %session.peer, recent, "AUTH failed");
            tokio::time::sleep(crate::peers::auth_delay(recent.max(session.auth_failures))).await;
            reply(535, "5.7.8", "Authentication credentials invalid")
        }
        Err(e) => policy_reply(e, "smtp_server_auth_plain", session.peer),
    })
}
