//! Listening sockets for the node's ports (SQL + node transport, HTTP).

use std::io;
use std::net::SocketAddr;
use std::os::fd::FromRawFd;

/// Binds a listener on `addr` for this executor with `SO_REUSEPORT` (every core binds the
/// same port; the kernel spreads connections) and `SO_REUSEADDR`.
///
/// `SO_REUSEADDR` matters for restarts: the sockets a listener accepts inherit it, and
/// when a node is killed its accepted connections linger in TIME-WAIT on the node's port;
/// without the option those sockets make the restarted node's `bind` fail with "address
/// in use" for a minute (glommio's own `TcpListener::bind` sets only `SO_REUSEPORT`).
pub fn bind_listener(addr: SocketAddr) -> io::Result<glommio::net::TcpListener> {
    let (domain, storage, len) = sockaddr(addr);
    // SAFETY: plain socket syscalls on a descriptor this function owns until it is handed
    // to the listener (or closed on error); `storage` outlives the bind call.
    unsafe {
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fail = |fd: libc::c_int| {
            let e = io::Error::last_os_error();
            libc::close(fd);
            Err(e)
        };
        let one: libc::c_int = 1;
        for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            let rc = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            if rc != 0 {
                return fail(fd);
            }
        }
        if libc::bind(fd, &storage as *const _ as *const libc::sockaddr, len) != 0 {
            return fail(fd);
        }
        if libc::listen(fd, 1024) != 0 {
            return fail(fd);
        }
        Ok(glommio::net::TcpListener::from_raw_fd(fd))
    }
}

/// Fails with "address in use" when another socket listens on `addr` — but not for
/// connections of a killed process lingering in TIME-WAIT there, which
/// [`bind_listener`] binds past (both set `SO_REUSEADDR`). For a clear error before the
/// node starts its cores.
pub fn check_port_free(addr: SocketAddr) -> io::Result<()> {
    let (domain, storage, len) = sockaddr(addr);
    // SAFETY: plain socket syscalls on a descriptor this function owns and closes;
    // `storage` outlives the bind call.
    unsafe {
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let result =
            if rc != 0 || libc::bind(fd, &storage as *const _ as *const libc::sockaddr, len) != 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            };
        libc::close(fd);
        result
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::c_int, libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid `sockaddr_storage`.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_in` fits in `sockaddr_storage`, which is aligned for it.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            (
                libc::AF_INET,
                storage,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: `sockaddr_in6` fits in `sockaddr_storage`, which is aligned for it.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            (
                libc::AF_INET6,
                storage,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}
