//! Opening the TCP connection from a chosen source address.

use crate::error::ClientError;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};

/// Bind `source` (if any) and connect to `target`.
///
/// With a source address we ask the kernel to pick the local port only at
/// connect time (`IP_BIND_ADDRESS_NO_PORT`): otherwise every `bind` reserves a
/// port for the address alone and a busy source runs out of ports long before
/// the 4-tuple space is used up.
pub async fn connect_from(source: Option<IpAddr>, target: SocketAddr) -> Result<TcpStream, ClientError> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| ClientError::Connect { target, source: e })?;
    socket.set_nonblocking(true).map_err(|e| ClientError::Connect { target, source: e })?;
    socket.set_tcp_nodelay(true).map_err(|e| ClientError::Connect { target, source: e })?;
    if let Some(address) = source {
        if address.is_ipv4() != target.is_ipv4() {
            let e =
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("address family differs from {target}"));
            return Err(ClientError::Bind { address, source: e });
        }
        set_bind_no_port(&socket);
        socket.bind(&SocketAddr::new(address, 0).into()).map_err(|e| ClientError::Bind { address, source: e })?;
    }
    let socket = TcpSocket::from_std_stream(socket.into());
    socket.connect(target).await.map_err(|e| match source {
        Some(address) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => ClientError::Bind { address, source: e },
        _ => ClientError::Connect { target, source: e },
    })
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // socket2 has no setter for IP_BIND_ADDRESS_NO_PORT
fn set_bind_no_port(socket: &Socket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to an int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "IP_BIND_ADDRESS_NO_PORT not set");
    }
}

#[cfg(not(target_os = "linux"))]
fn set_bind_no_port(_socket: &Socket) {}
