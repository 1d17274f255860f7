//! The local end of a forward: a TCP or a Unix stream socket behind one type
//! ([`LocalStream`]: read, write, half-close, abort), the listener that accepts either
//! ([`LocalListener`]), and binding a Unix socket's file safely ([`bind_unix`]: mode,
//! stale sockets, removal on drop). Speaks no protocol and knows nothing of tunnels.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[cfg(unix)]
pub(crate) use self::unix::connect_unix;
#[cfg(unix)]
pub use self::unix::{MAX_SOCKET_PATH, UnixSocketFile, bind_unix};

/// How a Unix socket is written where a target or a bind address is expected.
pub const UNIX_SCHEME: &str = "unix:";

/// One local connection: TCP, or a Unix stream socket.
#[derive(Debug)]
pub enum LocalStream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl LocalStream {
    /// Reads what the connection has already sent, without waiting (`WouldBlock` if nothing).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.try_read(buf),
            #[cfg(unix)]
            Self::Unix(s) => s.try_read(buf),
        }
    }

    /// Ends the connection so that its application sees an error, not a clean end of
    /// data, as far as the kind of socket allows. TCP: a reset (SO_LINGER 0, an RST).
    /// A Unix stream socket has no reset: it is closed, and on Linux its peer then reads
    /// ECONNRESET if it had sent bytes not yet read here (else the end of data), and a
    /// write gets EPIPE.
    pub fn abort(self) {
        match self {
            Self::Tcp(s) => crate::net::reset(s),
            #[cfg(unix)]
            Self::Unix(s) => drop(s),
        }
    }
}

impl AsyncRead for LocalStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for LocalStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(unix)]
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Forwards a poll to whichever kind of socket `$self` holds.
macro_rules! either {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Self::Tcp($s) => $e,
            #[cfg(unix)]
            Self::Unix($s) => $e,
        }
    };
}

/// A [`LocalStream`]'s read side, owned apart from its write side ([`LocalStream::into_split`]).
#[derive(Debug)]
pub enum LocalReadHalf {
    Tcp(tokio::net::tcp::OwnedReadHalf),
    #[cfg(unix)]
    Unix(tokio::net::unix::OwnedReadHalf),
}

/// A [`LocalStream`]'s write side, owned apart from its read side.
#[derive(Debug)]
pub enum LocalWriteHalf {
    Tcp(tokio::net::tcp::OwnedWriteHalf),
    #[cfg(unix)]
    Unix(tokio::net::unix::OwnedWriteHalf),
}

impl LocalStream {
    /// Its read and write sides, each owned, with no lock between them.
    pub fn into_split(self) -> (LocalReadHalf, LocalWriteHalf) {
        match self {
            Self::Tcp(s) => {
                let (r, w) = s.into_split();
                (LocalReadHalf::Tcp(r), LocalWriteHalf::Tcp(w))
            }
            #[cfg(unix)]
            Self::Unix(s) => {
                let (r, w) = s.into_split();
                (LocalReadHalf::Unix(r), LocalWriteHalf::Unix(w))
            }
        }
    }
}

impl LocalReadHalf {
    /// Reads what has already arrived, without waiting (`WouldBlock` if nothing).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        either!(self, s => s.try_read(buf))
    }
}

impl AsyncRead for LocalReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for LocalWriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        either!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Where `hyco connect --bind` accepts local connections: a TCP port, or a Unix socket
/// whose file is removed when this is dropped.
#[derive(Debug)]
pub enum LocalListener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener, UnixSocketFile),
}

impl From<TcpListener> for LocalListener {
    fn from(listener: TcpListener) -> Self {
        Self::Tcp(listener)
    }
}

/// The mode of a socket `hyco connect --bind unix:PATH` creates, unless told otherwise:
/// its owner only, as ssh's StreamLocalBindMask 0177 gives.
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;

impl LocalListener {
    /// Binds what a `--bind` value names: `unix:PATH` (with `mode`, default
    /// [`DEFAULT_SOCKET_MODE`]; see [`bind_unix`]), else a TCP port (`PORT` or
    /// `HOST:PORT`). Errors carry their exit code: 3 a bad value, 7 cannot bind.
    /// `flag` names the option that gave it, for the message when the port is taken.
    pub async fn bind(spec: &str, mode: Option<u32>, flag: &str) -> anyhow::Result<Self> {
        use crate::error::{Kind, failure};
        if let Some(path) = spec.strip_prefix(UNIX_SCHEME) {
            #[cfg(unix)]
            {
                let (listener, file) = bind_unix(std::path::Path::new(path), mode.unwrap_or(DEFAULT_SOCKET_MODE))?;
                return Ok(Self::Unix(listener, file));
            }
            #[cfg(not(unix))]
            return Err(failure(Kind::Config, format!("cannot listen on {path:?}: no Unix sockets on this system")));
        }
        let addr = crate::cli::parse_bind(spec).map_err(|e| failure(Kind::Config, format!("{flag}: {e}")))?;
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            failure(Kind::LocalPort, format!("cannot listen on {addr}: {e}; choose another port with {flag}"))
        })?;
        Ok(Self::Tcp(listener))
    }

    /// Where it accepts, as the user gives it: `127.0.0.1:9000` or `unix:/tmp/hyco.sock`.
    pub fn label(&self) -> String {
        match self {
            Self::Tcp(l) => l.local_addr().map_or_else(|e| format!("(unknown: {e})"), |a| a.to_string()),
            #[cfg(unix)]
            Self::Unix(_, file) => format!("{UNIX_SCHEME}{}", file.path().display()),
        }
    }

    /// Accepts the next connection (TCP with Nagle off) and a label for its peer, or
    /// `None` once `shutdown` fires; errors are retried as [`crate::net::accept`] does.
    pub async fn accept(&self, shutdown: &CancellationToken, what: &str) -> Option<(LocalStream, String)> {
        match self {
            Self::Tcp(l) => {
                let (tcp, peer) = crate::net::accept(l, shutdown, what).await?;
                let _ = tcp.set_nodelay(true);
                Some((LocalStream::Tcp(tcp), peer.to_string()))
            }
            #[cfg(unix)]
            Self::Unix(l, file) => {
                let (unix, _) = crate::net::accept_with(|| l.accept(), shutdown, what).await?;
                // The peer's process, when the kernel says (an unnamed socket has no address).
                let pid = unix.peer_cred().ok().and_then(|c| c.pid());
                let peer = match pid {
                    Some(pid) => format!("{UNIX_SCHEME}{} (pid {pid})", file.path().display()),
                    None => format!("{UNIX_SCHEME}{}", file.path().display()),
                };
                Some((LocalStream::Unix(unix), peer))
            }
        }
    }
}

#[cfg(unix)]
mod unix {
    use std::io;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    use tokio::net::{UnixListener, UnixStream};

    use super::UNIX_SCHEME;
    use crate::error::{Kind, failure};

    /// The longest path a Unix socket may have, in bytes: `sun_path` holds 108 bytes on
    /// Linux (104 on the BSDs and macOS), the last a NUL.
    #[cfg(target_os = "linux")]
    pub const MAX_SOCKET_PATH: usize = 107;
    #[cfg(not(target_os = "linux"))]
    pub const MAX_SOCKET_PATH: usize = 103;

    /// Backlog of a bound Unix socket, as tokio's TCP listeners have.
    const BACKLOG: i32 = 1024;

    /// `Err` (a configuration error, exit 3) when `path` cannot be a Unix socket's.
    pub fn check_path(path: &Path) -> anyhow::Result<()> {
        let len = path.as_os_str().len();
        if len == 0 {
            return Err(failure(Kind::Config, "a Unix socket needs a path (unix:PATH)"));
        }
        if len > MAX_SOCKET_PATH {
            return Err(failure(
                Kind::Config,
                format!(
                    "the Unix socket path {} is {len} bytes; at most {MAX_SOCKET_PATH} fit (sun_path): choose a shorter one",
                    path.display()
                ),
            ));
        }
        Ok(())
    }

    /// Connects to the Unix socket at `path`.
    pub(crate) async fn connect_unix(path: &Path) -> io::Result<UnixStream> {
        UnixStream::connect(path).await
    }

    /// The file of a bound Unix socket: removed on drop, if it is still the one bound
    /// (not a file someone put in its place meanwhile).
    #[derive(Debug)]
    pub struct UnixSocketFile {
        path: PathBuf,
        id: (u64, u64),
    }

    impl UnixSocketFile {
        pub fn path(&self) -> &Path {
            &self.path
        }
    }

    impl Drop for UnixSocketFile {
        fn drop(&mut self) {
            let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
            if ours && let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!("cannot remove the socket {}: {e}", self.path.display());
            }
        }
    }

    /// Binds a Unix stream socket at `path` with permissions `mode` (e.g. `0o600`) and
    /// listens on it; the file goes when the [`UnixSocketFile`] is dropped.
    ///
    /// What is at `path` already: a socket nobody listens on (a connect is refused) is
    /// stale, and replaced (said in the log); a socket in use, or anything that is not a
    /// socket (a file, a directory, a symbolic link), is left alone: `Err`, exit 7. A path
    /// longer than [`MAX_SOCKET_PATH`]: `Err`, exit 3.
    ///
    /// The mode is set with no window in which the socket takes connections it should
    /// not: the unbound socket's own mode is set first (Linux creates the file with it,
    /// less the umask, so the file is never more open than asked), the bits the umask took
    /// are added to the file after `bind`, and only then does it `listen`: until then a
    /// connect is refused whatever the file's mode. The umask is not touched (it is the
    /// whole process's, and other threads create files).
    pub fn bind_unix(path: &Path, mode: u32) -> anyhow::Result<(UnixListener, UnixSocketFile)> {
        check_path(path)?;
        let shown = path.display();
        let in_use = |text: String| failure(Kind::LocalPort, format!("cannot listen on {UNIX_SCHEME}{shown}: {text}"));
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(in_use(format!("{e}"))),
            Ok(meta) if meta.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(in_use("it is in use by another process; choose another path".into())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)
                        .map_err(|e| in_use(format!("a stale socket is there and cannot be removed: {e}")))?;
                    tracing::info!("removed the stale socket {shown} (nothing listened on it)");
                }
                Err(e) => {
                    return Err(in_use(format!(
                        "a socket is there and cannot be checked ({e}); remove it or choose another path"
                    )));
                }
            },
            Ok(meta) => {
                let what = match meta.file_type() {
                    t if t.is_symlink() => "a symbolic link",
                    t if t.is_dir() => "a directory",
                    t if t.is_file() => "a regular file",
                    _ => "not a socket",
                };
                return Err(in_use(format!("{shown} is {what}, not a socket; remove it or choose another path")));
            }
        }
        let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
        // fchmod on the unbound socket: Linux creates the file with this mode (less the
        // umask). Elsewhere it may fail, and the chmod below (before listen) is what counts.
        let file = std::fs::File::from(std::os::fd::OwnedFd::from(socket));
        let _ = file.set_permissions(std::fs::Permissions::from_mode(mode));
        let socket = socket2::Socket::from(std::os::fd::OwnedFd::from(file));
        socket.set_nonblocking(true)?;
        socket.set_cloexec(true)?;
        socket.bind(&socket2::SockAddr::unix(path)?).map_err(|e| in_use(format!("{e}")))?;
        let meta = std::fs::symlink_metadata(path)?;
        let guard = UnixSocketFile { path: path.to_owned(), id: (meta.dev(), meta.ino()) };
        if meta.mode() & 0o7777 != mode {
            set_mode(path, guard.id, mode).map_err(|e| in_use(format!("cannot set its mode to {mode:04o}: {e}")))?;
        }
        socket.listen(BACKLOG)?;
        let listener =
            UnixListener::from_std(std::os::unix::net::UnixListener::from(std::os::fd::OwnedFd::from(socket)))?;
        Ok((listener, guard))
    }

    /// Sets the mode of the socket file this process just bound at `path`, the one with
    /// inode `id`: on Linux through a handle opened without following links (a name that
    /// another user swapped for a link, in a directory open to others, is not followed:
    /// the inode differs, an error); elsewhere by its path.
    fn set_mode(path: &Path, id: (u64, u64), mode: u32) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            use std::os::unix::fs::OpenOptionsExt;
            let handle =
                std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_NOFOLLOW).open(path)?;
            let meta = handle.metadata()?;
            if (meta.dev(), meta.ino()) != id || !meta.file_type().is_socket() {
                return Err(io::Error::other("the socket file was replaced while it was being made"));
            }
            let by_handle = format!("/proc/self/fd/{}", handle.as_raw_fd());
            std::fs::set_permissions(by_handle, std::fs::Permissions::from_mode(mode))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = id;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        }
    }
}

#[cfg(unix)]
pub use self::unix::check_path;

/// `Err`: no Unix sockets on this system.
#[cfg(not(unix))]
pub fn check_path(_: &std::path::Path) -> anyhow::Result<()> {
    Err(crate::error::failure(crate::error::Kind::Config, "Unix sockets are not supported on this system"))
}
