//! Who owns a TCP socket on this machine, asked of the kernel by the
//! socket's addresses: one exact `NETLINK_SOCK_DIAG` lookup, as `ss` makes.
//! Reading `/proc/net/tcp*` instead makes the kernel print every socket of
//! the network namespace for each question: 13 ms at 5,000 sockets, paid on
//! an async worker by every connection that brings no credentials (a JVM's).
//! This answers in one round trip whatever the table's size.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `nlmsghdr` (16 bytes), then `inet_diag_req_v2`: family, protocol, ext,
/// pad, states (8), and the `inet_diag_sockid` (48).
const REQUEST_LEN: usize = 16 + 8 + 48;
/// Where the sockid starts in a request.
const ID_AT: usize = 24;
/// Where `idiag_uid` and `idiag_inode` sit in an answer: after the
/// `nlmsghdr` (16), family, state, timer, retrans (4), the sockid (48), and
/// expires, rqueue, wqueue (12).
const UID_AT: usize = 16 + 4 + 48 + 12;
const INODE_AT: usize = UID_AT + 4;

/// The uid and inode of the TCP socket whose local end is `local` and
/// remote end `remote`. `Ok(None)`: no such socket in this network
/// namespace. `Err`: the kernel cannot be asked this way (no netlink, a
/// filter); the caller reads the socket table instead.
pub fn owner(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<(u32, u64)>> {
    let sock = open()?;
    for (family, src, dst) in forms(local.ip(), remote.ip()) {
        if let Some(found) = ask(&sock, family, (&src, local.port()), (&dst, remote.port()))? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The address families and forms a socket with these addresses may have
/// (also what the `/proc` fallback looks for): an IPv4 client of a
/// dual-stack listener is a plain IPv4 socket on its own side though the
/// listener sees it v4-mapped, and an IPv6 socket may talk to a v4-mapped
/// address itself.
pub(super) fn forms(local: IpAddr, remote: IpAddr) -> Vec<(u8, Vec<u8>, Vec<u8>)> {
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V4(a) => Some(a.octets()),
        IpAddr::V6(a) => a.to_ipv4_mapped().map(|m| m.octets()),
    };
    let v6 = |ip: IpAddr| match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    let mut out = Vec::with_capacity(2);
    if let (Some(l), Some(r)) = (v4(local), v4(remote)) {
        out.push((libc::AF_INET as u8, l.to_vec(), r.to_vec()));
    }
    out.push((
        libc::AF_INET6 as u8,
        v6(local).to_vec(),
        v6(remote).to_vec(),
    ));
    out
}

fn open() -> io::Result<OwnedFd> {
    // SAFETY: a plain socket call; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // The kernel answers at once; a second is a bound on a broken one, not
    // a wait anybody should see.
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a valid timeval and its size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// One exact lookup (no dump: the kernel finds the socket by its four
/// addresses and ports).
fn ask(
    sock: &OwnedFd,
    family: u8,
    (src, sport): (&[u8], u16),
    (dst, dport): (&[u8], u16),
) -> io::Result<Option<(u32, u64)>> {
    let mut req = [0u8; REQUEST_LEN];
    // nlmsghdr: length, type, flags (seq and port id stay 0: the kernel).
    req[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[16] = family;
    req[17] = libc::IPPROTO_TCP as u8;
    // Every TCP state.
    req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    // inet_diag_sockid: ports and addresses in network order, no
    // interface, and INET_DIAG_NOCOOKIE (all ones): match by address.
    let id = &mut req[ID_AT..];
    id[0..2].copy_from_slice(&sport.to_be_bytes());
    id[2..4].copy_from_slice(&dport.to_be_bytes());
    id[4..4 + src.len()].copy_from_slice(src);
    id[20..20 + dst.len()].copy_from_slice(dst);
    id[40..48].fill(0xff);
    // SAFETY: sockaddr_nl is plain data; zeroed is the kernel's address.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: sendto with a buffer and an address valid for their sizes.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const kernel).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut answer = [0u8; 512];
    // SAFETY: recv into a buffer valid for its size.
    let got = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            answer.as_mut_ptr().cast(),
            answer.len(),
            0,
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    parse(&answer[..got as usize])
}

/// The kernel's answer: the socket's `inet_diag_msg`, or an error.
fn parse(answer: &[u8]) -> io::Result<Option<(u32, u64)>> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(answer.get(at..at + 4)?.try_into().ok()?))
    };
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "a short sock_diag answer");
    let kind = answer
        .get(4..6)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        .ok_or_else(bad)?;
    if kind == libc::NLMSG_ERROR as u16 {
        // nlmsgerr: a negative errno after the header.
        let errno = -(u32_at(16).ok_or_else(bad)? as i32);
        return match errno {
            libc::ENOENT => Ok(None),
            e => Err(io::Error::from_raw_os_error(e)),
        };
    }
    if kind != SOCK_DIAG_BY_FAMILY {
        return Err(bad());
    }
    let uid = u32_at(UID_AT).ok_or_else(bad)?;
    let inode = u32_at(INODE_AT).ok_or_else(bad)?;
    Ok(Some((uid, u64::from(inode))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::MetadataExt;

    fn me() -> u32 {
        // SAFETY: geteuid never fails.
        unsafe { libc::geteuid() }
    }

    /// A socket's inode, as `fstat` gives it.
    fn inode(s: &TcpStream) -> u64 {
        let fd = s.as_raw_fd();
        std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino()
    }

    #[test]
    fn the_kernel_names_a_loopback_clients_owner_and_inode() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, remote) = listener.accept().unwrap();
        // The client's socket, from the server's side: its local end is
        // the server's remote.
        let found = owner(remote, server.local_addr().unwrap()).unwrap();
        assert_eq!(found, Some((me(), inode(&client))));
        // The server's own socket too.
        let found = owner(server.local_addr().unwrap(), remote).unwrap();
        assert_eq!(found, Some((me(), inode(&server))));
    }

    #[test]
    fn an_ipv4_client_of_a_dual_stack_listener_is_found_from_its_mapped_address() {
        let Ok(listener) = TcpListener::bind("[::]:0") else {
            return; // no IPv6 here
        };
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server, remote) = listener.accept().unwrap();
        let local = server.local_addr().unwrap();
        assert!(matches!(remote.ip(), IpAddr::V6(a) if a.to_ipv4_mapped().is_some()));
        let found = owner(remote, local).unwrap();
        assert_eq!(found, Some((me(), inode(&client))));
    }

    #[test]
    fn an_ipv6_client_is_found() {
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            return; // no IPv6 loopback here
        };
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, remote) = listener.accept().unwrap();
        let found = owner(remote, server.local_addr().unwrap()).unwrap();
        assert_eq!(found, Some((me(), inode(&client))));
    }

    #[test]
    fn no_such_socket_is_none_not_a_guess() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        assert_eq!(owner("127.0.0.1:1".parse().unwrap(), local).unwrap(), None);
    }

    #[test]
    fn answers_are_read_by_their_kind() {
        let mut err = [0u8; 36];
        err[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(parse(&err).unwrap(), None);
        err[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(parse(&err).unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert!(parse(&err[..3]).is_err());
        let mut msg = [0u8; INODE_AT + 4];
        msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg[UID_AT..UID_AT + 4].copy_from_slice(&1000u32.to_ne_bytes());
        msg[INODE_AT..INODE_AT + 4].copy_from_slice(&77u32.to_ne_bytes());
        assert_eq!(parse(&msg).unwrap(), Some((1000, 77)));
        assert!(
            parse(&msg[..INODE_AT]).is_err(),
            "a cut answer is no answer"
        );
    }
}
