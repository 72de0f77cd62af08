//! Who may use the proxy: the run that started it, and nobody else.
//!
//! A local port is open to every user of the machine; without a check,
//! another user could record into the victim's content, read its replayed
//! store, or use it as a TLS-terminating forward proxy with the victim's
//! network identity. Two keys open it, checked per request at the listener
//! (a CONNECT tunnel, once admitted, is the client's):
//!
//! - the run's secret, a fresh random password in the exported proxy URL
//!   (`http://buildproxy:SECRET@127.0.0.1:PORT`), which curl, wget, Python,
//!   pip, git, npm, cargo and Go send as `Proxy-Authorization: Basic` on
//!   plain requests and on CONNECT;
//! - or a peer socket owned by our own uid, asked of the kernel by the
//!   connection's addresses (`sock_diag`; SO_PEERCRED exists only for Unix
//!   sockets).
//!   This admits the JVM, which has no standard way to take proxy
//!   credentials from its environment (an Authenticator is code), and
//!   whose `JAVA_TOOL_OPTIONS` it prints to the build log, where a secret
//!   must not go. A same-uid process can read the run's environment from
//!   `/proc/PID/environ` anyway, so the secret would not keep it out.
//!
//! A wrong secret is refused whoever sends it. `--require-secret` drops the
//! uid key. The secret lives in memory, in the exported variables and in
//! the run's private (0700) temp dir; `Proxy-Authorization` is hop-by-hop
//! (`headers.rs`), so it never reaches a plugin, an upstream, a log line or
//! a recorded file.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::OnceLock;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::body::{self, ProxyBody};

/// The user name in the exported URL; only the password is checked.
pub const USER: &str = "buildproxy";

pub struct Access {
    secret: String,
    uid: u32,
    /// `--require-secret`: a same-uid peer needs the secret too.
    require_secret: bool,
}

impl Access {
    pub fn new(require_secret: bool) -> std::io::Result<Self> {
        let mut raw = [0u8; 16];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut raw)?;
        Ok(Self {
            secret: raw.iter().map(|b| format!("{b:02x}")).collect(),
            // SAFETY: geteuid never fails.
            uid: unsafe { libc::geteuid() },
            require_secret,
        })
    }

    /// The URL clients are given: credentials, then the listener.
    pub fn proxy_url(&self, addr: SocketAddr) -> String {
        format!("http://{USER}:{}@{addr}", self.secret)
    }

    /// Whether a request may go on. `peer` is asked only when the request
    /// carries no credentials, so most clients cost no socket-table read.
    pub fn admits(&self, headers: &HeaderMap, peer: &Peer) -> bool {
        match headers.get(header::PROXY_AUTHORIZATION) {
            Some(v) => self.password_matches(v),
            None => !self.require_secret && peer.uid() == Some(self.uid),
        }
    }

    fn password_matches(&self, value: &HeaderValue) -> bool {
        let Some(b64) = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let password = match decoded.iter().position(|&b| b == b':') {
            Some(i) => &decoded[i + 1..],
            None => return false,
        };
        constant_time_eq(password, self.secret.as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The other end of one client connection, its owner looked up at most once.
pub struct Peer {
    local: SocketAddr,
    remote: SocketAddr,
    /// The client socket's owner and inode, from the socket table.
    socket: OnceLock<Option<(u32, u64)>>,
    process: OnceLock<Option<u32>>,
}

impl Peer {
    pub fn new(local: SocketAddr, remote: SocketAddr) -> Self {
        Self {
            local,
            remote,
            socket: OnceLock::new(),
            process: OnceLock::new(),
        }
    }

    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// The uid owning the client's socket: known when the client is on this
    /// machine, in this network namespace.
    pub fn uid(&self) -> Option<u32> {
        self.socket().map(|(uid, _)| uid)
    }

    fn socket(&self) -> Option<(u32, u64)> {
        *self
            .socket
            .get_or_init(|| socket_owner(self.remote, self.local))
    }

    /// The process holding the client's socket (the lowest pid when it is
    /// shared, e.g. across a fork): which client a redirect was relayed to.
    /// Scans `/proc/PID/fd` (our process tree first), so it is asked only
    /// when redirects are involved.
    pub fn process(&self) -> Option<u32> {
        *self.process.get_or_init(|| {
            let (_, inode) = self.socket()?;
            socket_process(inode)
        })
    }
}

/// The lowest pid holding the socket `inode`. Our own process tree first
/// (a capture's clients are the COMMAND's processes): each pid's open files
/// are a directory to list and a link to read per file, and as root the
/// whole machine's come to tens of thousands. The rest of the machine only
/// when the tree does not hold it (`proxy` mode's clients).
fn socket_process(inode: u64) -> Option<u32> {
    let want = format!("socket:[{inode}]");
    let holds = |pid: &u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.filter_map(Result::ok).any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str())
            })
        })
    };
    let mut ours = process_tree(std::process::id());
    ours.sort_unstable();
    if let Some(pid) = ours.iter().copied().find(holds) {
        return Some(pid);
    }
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid| ours.binary_search(pid).is_err())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find(holds)
}

/// `root` and its descendants, from each thread's `children` file (empty
/// where the kernel does not keep them: the caller then scans everything).
fn process_tree(root: u32) -> Vec<u32> {
    let mut out = vec![root];
    let mut next = 0;
    while next < out.len() {
        let pid = out[next];
        next += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.filter_map(Result::ok) {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !out.contains(&child) {
                    out.push(child);
                }
            }
        }
    }
    out
}

/// The uid and inode of the socket whose local end is `local` and remote
/// end `remote`: asked of the kernel (`sock_diag`), or read from its socket
/// table where netlink is not available.
pub fn socket_owner(local: SocketAddr, remote: SocketAddr) -> Option<(u32, u64)> {
    match super::sock_diag::owner(local, remote) {
        Ok(found) => found,
        Err(e) => {
            tracing::debug!("sock_diag: {e}; reading /proc/net/tcp* instead");
            socket_table(local, remote)
        }
    }
}

/// [`socket_owner`] from `/proc/net/tcp` and `/proc/net/tcp6`: the kernel
/// prints every socket of the namespace for each read.
fn socket_table(local: SocketAddr, remote: SocketAddr) -> Option<(u32, u64)> {
    let want: Vec<(String, String)> = super::sock_diag::forms(local.ip(), remote.ip())
        .iter()
        .map(|(_, l, r)| (table_form(l, local.port()), table_form(r, remote.port())))
        .collect();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            if want
                .iter()
                .any(|(l, r)| l.eq_ignore_ascii_case(f[1]) && r.eq_ignore_ascii_case(f[2]))
            {
                return Some((f[7].parse().ok()?, f[9].parse().ok()?));
            }
        }
    }
    None
}

/// An address as the kernel prints it in `/proc/net/tcp*`: each 32-bit
/// word of the address in host order, then the port.
fn table_form(octets: &[u8], port: u16) -> String {
    let mut out = String::with_capacity(37);
    for w in octets.chunks(4) {
        let word = u32::from_ne_bytes(w.try_into().expect("4-byte words"));
        let _ = write!(out, "{word:08X}");
    }
    let _ = write!(out, ":{port:04X}");
    out
}

/// The answer to a request that holds no key: what the proxy is, and how
/// to get the environment that makes a client use it.
pub fn refusal() -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(
        "buildproxy: 407: this proxy serves only the run that started it. Run your \
         command under buildproxy (`buildproxy capture -- CMD`), or take its client \
         environment with `eval \"$(buildproxy … --print-env)\"`: the proxy URL it \
         exports carries this run's credentials.\n",
    ));
    *resp.status_mut() = StatusCode::PROXY_AUTHENTICATION_REQUIRED;
    resp.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"buildproxy\""),
    );
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        );
        h.insert(header::PROXY_AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn the_secret_admits_and_a_wrong_one_never_does() {
        let access = Access::new(true).unwrap();
        let nobody = Peer::new(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let _ = nobody.socket.set(Some((access.uid, 0)));
        assert!(access.admits(&basic(&format!("x:{}", access.secret)), &nobody));
        assert!(!access.admits(&basic("buildproxy:guess"), &nobody));
        assert!(!access.admits(&basic(&access.secret), &nobody));
        // --require-secret: our own uid without the secret is refused.
        assert!(!access.admits(&HeaderMap::new(), &nobody));
        let lenient = Access {
            require_secret: false,
            ..access
        };
        assert!(lenient.admits(&HeaderMap::new(), &nobody));
        assert!(!lenient.admits(&basic("buildproxy:guess"), &nobody));
        let other = Peer::new(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let _ = other.socket.set(Some((lenient.uid + 1, 0)));
        assert!(!lenient.admits(&HeaderMap::new(), &other));
        assert!(
            lenient
                .proxy_url("127.0.0.1:9".parse().unwrap())
                .starts_with("http://buildproxy:")
        );
    }

    /// A loopback connection, open: the client and server sockets, and the
    /// server's local and remote ends.
    fn connected() -> ([std::net::TcpStream; 2], SocketAddr, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, remote) = listener.accept().unwrap();
        let local = server.local_addr().unwrap();
        ([client, server], local, remote)
    }

    #[test]
    fn the_socket_table_names_the_owner_of_a_loopback_client() {
        let ([client, _server], local, remote) = connected();
        assert_eq!(remote, client.local_addr().unwrap());
        // SAFETY: geteuid never fails.
        let me = unsafe { libc::geteuid() };
        let peer = Peer::new(local, remote);
        assert_eq!(peer.uid(), Some(me));
        // This test process holds the client socket.
        assert_eq!(peer.process(), Some(std::process::id()));
        // No such socket: unknown, never guessed.
        assert_eq!(socket_owner("127.0.0.1:1".parse().unwrap(), local), None);
        assert_eq!(socket_table("127.0.0.1:1".parse().unwrap(), local), None);
    }

    #[test]
    fn a_child_process_holding_the_client_socket_is_found_in_our_tree() {
        use std::os::fd::AsRawFd;
        let ([client, server], local, remote) = connected();
        // A forked child keeps the client socket and we close ours, as a
        // client process of a capture holds its own connection. No program
        // is run: the package's check phase has none.
        // SAFETY: the child only calls `close`, `poll` and `_exit`, all
        // async-signal-safe, so forking a threaded process is sound.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: closing the server end it inherited (so our close of
            // it is the connection's end), then waiting for that end, at
            // most 20 s; then the child ends.
            unsafe {
                libc::close(server.as_raw_fd());
                let mut wait = libc::pollfd {
                    fd: client.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                libc::poll(&raw mut wait, 1, 20_000);
                libc::_exit(0);
            }
        }
        drop(client);
        let child = pid as u32;
        let in_tree = process_tree(std::process::id()).contains(&child);
        let found = Peer::new(local, remote).process();
        // The child sees the connection end, and ends.
        drop(server);
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        assert!(in_tree);
        assert_eq!(found, Some(child));
        assert!(process_tree(std::process::id()).contains(&std::process::id()));
    }

    #[test]
    fn the_kernels_answer_and_the_socket_table_agree() {
        let (_open, local, remote) = connected();
        let asked = super::super::sock_diag::owner(remote, local).unwrap();
        assert!(asked.is_some());
        assert_eq!(asked, socket_table(remote, local));
    }
}
