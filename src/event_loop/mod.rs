//! The single-threaded poll loop: accepts clients, dispatches readiness to connections, fires
//! timers, and tears connections down. It never parses bytes.
//!
//! Everything it uses is allocated in [`Server::bind`]: the slab, the buffer pool, the event
//! list and the retry queue. Per batch it: (1) records readiness and drives each connection
//! that got an event, (2) accepts waiting clients, (3) drives connections that yielded with
//! work left, (4) fires due timers. A connection that is done is removed at once; its slot's
//! generation changes, so later events of the same batch for it are ignored.
//!
//! A site is judged full only on fresh news. The accept loop runs until `WouldBlock`, and
//! while it runs, clients answered earlier in the loop may already have closed: their EOF
//! waits in the event queue, not yet read, and their slots still count. So a client accepted
//! while the site is at its limit is held (one per listener) and the loop polls again at once;
//! it is refused 503 only if the site is still full after that poll (see [`Held`]).

pub mod children;
pub mod conn;
pub mod control;
pub mod counters;
pub mod metrics;
pub mod status;
pub mod timers;
pub mod tls_io;
pub mod token;
pub mod transport;

use self::transport::Backends;

use std::cell::RefCell;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use self::children::{Children, Shared};
use self::conn::{Ctx, Verdict};
use crate::auth::gate::Gate;

/// A connection as the loop runs it: a TCP client relayed to a socket or a serial line.
type Connection = conn::Connection<mio::net::TcpStream, self::transport::Upstreams>;
use self::token::{Side, SIGNALS};
use crate::buffer::BufPool;
use crate::config::Config;
use crate::logging::{INFO, WARN};
use crate::relay::route::Docroot;
use crate::slab::{Key, Slab};
use crate::sys::signals::{Request, Signals};
use crate::{conn_log, log};

/// Token of the waker used by [`Handle::stop`].
const WAKER: Token = Token(usize::MAX - 2);
/// Events taken per `poll`.
const EVENTS: usize = 256;
/// Buffers per connection slot: one per direction and side.
const BUFFERS_PER_CONNECTION: usize = 4;

/// Stops a running server from another thread.
#[derive(Debug, Clone)]
pub struct Handle {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl Handle {
    /// Asks the loop to return.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// A startup failure.
#[derive(Debug)]
pub enum StartError {
    /// The docroot cannot be opened.
    Docroot(std::path::PathBuf, nix::errno::Errno),
    /// Binding or polling failed.
    Io(&'static str, std::io::Error),
    /// A site's user database cannot be read.
    Auth(String),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Docroot(p, e) => {
                write!(f, "docroot {}: {}", p.display(), crate::sys::ErrnoText(*e))
            }
            Self::Io(what, e) => write!(f, "{what}: {e}"),
            Self::Auth(e) => f.write_str(e),
        }
    }
}

/// Why a SIGHUP left the running configuration as it was.
#[derive(Debug)]
pub enum ReloadError {
    /// The configuration (its file, or a certificate it names) cannot be used; the message
    /// names the file and line.
    Config(String),
    /// The new configuration has other listeners (addresses, count, TLS or not).
    Listeners,
    /// A site's docroot cannot be opened.
    Docroot(std::path::PathBuf, nix::errno::Errno),
    /// A site's document root cannot be opened.
    Document(std::path::PathBuf, nix::errno::Errno),
    /// The exec process limit changed: its table is allocated at start.
    ExecLimit(u32),
    /// A compression setting changed (its key in the file, and its value since start):
    /// permessage-deflate's contexts are made for one window, level and memory at start.
    Compression(&'static str, u64),
    /// The site listening there offers compression, but no site did at start: the gateway
    /// holds no compression contexts.
    NoCompressionContexts(SocketAddr),
}

impl core::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Config(e) => f.write_str(e),
            Self::Listeners => {
                f.write_str("the listeners changed (addresses or count): restart wsgate for that")
            }
            Self::Docroot(p, e) => {
                write!(f, "docroot {}: {}", p.display(), crate::sys::ErrnoText(*e))
            }
            Self::Document(p, e) => {
                write!(f, "document {}: {}", p.display(), crate::sys::ErrnoText(*e))
            }
            Self::ExecLimit(n) => {
                write!(f, "the exec process limit is {n} since start; restart wsgate to change it")
            }
            Self::Compression(key, n) => {
                write!(f, "{key} is {n} since start; restart wsgate to change it")
            }
            Self::NoCompressionContexts(listen) => write!(
                f,
                "{listen}: compression: no site offered it at start, so there are no compression \
                 contexts; restart wsgate to turn it on"
            ),
        }
    }
}

/// One event of a batch, copied out of mio's list.
#[derive(Clone, Copy, Debug)]
struct Readiness {
    token: Token,
    readable: bool,
    writable: bool,
    read_closed: bool,
}

/// Produces a fresh configuration on SIGHUP.
pub struct Reloader(pub Box<dyn FnMut() -> Result<Config, ReloadError>>);

impl core::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Reloader")
    }
}

/// One site's listening socket and its state.
#[derive(Debug)]
struct Listener {
    socket: TcpListener,
    /// Where its connections' backends are: links, then the docroot.
    backends: Backends,
    htdocs: Option<Docroot>,
    /// Its `auth` policy's state, when it has one.
    gate: Option<RefCell<Gate>>,
    /// `wss://`: the configuration every new connection of this listener starts from. A reload
    /// replaces it; connections keep the one they started with.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections of this site that are not answering 503.
    active: usize,
    /// Stopped accepting because the slab or the process was full.
    paused: bool,
    /// A client accepted while the site was at its limit, waiting for the next poll's news.
    held: Option<Held>,
}

/// A client accepted when every slot of its site was taken. Before it is refused 503 the loop
/// polls once more: the events of that poll include the EOF of every client that closed before
/// this one connected (on loopback its FIN is queued before its `close` returns), so a slot
/// that is really free by then is seen free. Without this, a sequential flood of refused
/// clients, each closing before the next connects, fills the site inside one accept loop when
/// the gateway is slower than the client.
#[derive(Debug)]
struct Held {
    stream: mio::net::TcpStream,
    peer: SocketAddr,
    /// [`Server::polls`] when it was accepted: refused only once the count has moved on.
    poll: u32,
}

/// The gateway: listeners, connections, buffers.
#[derive(Debug)]
pub struct Server {
    poll: Poll,
    events: Events,
    batch: Vec<Readiness>,
    listeners: Vec<Listener>,
    conns: Slab<Connection>,
    pool: BufPool,
    /// permessage-deflate's contexts, made at start-up when a site offers compression.
    #[cfg(feature = "deflate")]
    deflate: Option<crate::relay::compress::Contexts>,
    config: Config,
    again: Vec<Key>,
    next_wake: Option<Instant>,
    handle: Handle,
    signals: Option<Signals>,
    reloader: Option<Reloader>,
    /// Polls so far (wrapping): tells whether a poll happened since a client was [`Held`].
    polls: u32,
    /// Set by SIGTERM/SIGINT: no more accepts; return once every connection has closed, or at
    /// this instant.
    draining: Option<Instant>,
    /// Programs of exec links (shared with the sites' backends).
    children: Shared,
    /// What has happened since start, for the status and the metrics.
    counters: counters::Counters,
    /// The control socket, when configured.
    control: Option<control::Control>,
}

impl Server {
    /// Binds the listener and allocates everything.
    ///
    /// # Errors
    /// [`StartError`].
    pub fn bind(mut config: Config) -> Result<Self, StartError> {
        let poll = Poll::new().map_err(|e| StartError::Io("epoll", e))?;
        let registry = poll.registry().try_clone().map_err(|e| StartError::Io("epoll", e))?;
        let children: Shared =
            Rc::new(RefCell::new(Children::new(config.exec_limit as usize, Some(registry))));
        let mut listeners = Vec::with_capacity(config.sites.len());
        let mut slots = 0;
        for (i, site) in config.sites.iter_mut().enumerate() {
            let docroot = Docroot::open(&site.docroot)
                .map_err(|e| StartError::Docroot(site.docroot.clone(), e))?;
            let mut socket =
                TcpListener::bind(site.listen).map_err(|e| StartError::Io("bind", e))?;
            poll.registry()
                .register(&mut socket, token::listener(i), Interest::READABLE)
                .map_err(|e| StartError::Io("register", e))?;
            // With port 0 the kernel picked one: the site says which from now on.
            if let Ok(bound) = socket.local_addr() {
                site.listen = bound;
            }
            let htdocs = match &site.document {
                Some(d) => Some(
                    Docroot::open(&d.root).map_err(|e| StartError::Docroot(d.root.clone(), e))?,
                ),
                None => None,
            };
            let tls = site.tls.as_ref().map(|t| Arc::clone(&t.server));
            let gate = match &site.auth {
                Some(p) => Some(RefCell::new(Gate::open(p).map_err(StartError::Auth)?)),
                None => None,
            };
            listeners.push(Listener {
                gate,
                socket,
                backends: Backends {
                    docroot,
                    links: site.links.clone(),
                    children: Rc::clone(&children),
                    site: i,
                },
                htdocs,
                tls,
                active: 0,
                paused: false,
                held: None,
            });
            slots += site.max_connections + site.overflow_slots();
        }
        let waker = Waker::new(poll.registry(), WAKER).map_err(|e| StartError::Io("waker", e))?;
        let pool = BufPool::new(slots as usize * BUFFERS_PER_CONNECTION, config.buffer_size)
            .map_err(|e| StartError::Io("buffer pool", e))?;
        Ok(Self {
            poll,
            events: Events::with_capacity(EVENTS),
            batch: Vec::with_capacity(EVENTS),
            listeners,
            conns: Slab::with_capacity(slots),
            pool,
            #[cfg(feature = "deflate")]
            deflate: contexts(&config),
            again: Vec::with_capacity(slots as usize),
            next_wake: None,
            handle: Handle { waker: Arc::new(waker), stop: Arc::new(AtomicBool::new(false)) },
            signals: None,
            reloader: None,
            polls: 0,
            draining: None,
            children,
            counters: counters::Counters::new(
                config.sites.iter().map(|s| s.listen),
                slots as usize,
                Instant::now(),
            ),
            control: None,
            config,
        })
    }

    /// The bound address of the first listener (useful with port 0).
    ///
    /// # Errors
    /// The `getsockname` error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.local_addrs().next().unwrap_or_else(|| Err(ErrorKind::NotFound.into()))
    }

    /// The bound addresses of all listeners, in site order.
    pub fn local_addrs(&self) -> impl Iterator<Item = std::io::Result<SocketAddr>> + '_ {
        self.listeners.iter().map(|l| l.socket.local_addr())
    }

    /// A handle that stops [`Self::run`].
    #[must_use]
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Takes SIGTERM/SIGINT (graceful stop) and SIGHUP (reload) from `signals`.
    ///
    /// # Errors
    /// The registration error.
    pub fn watch_signals(&mut self, signals: Signals) -> std::io::Result<()> {
        self.poll.registry().register(
            &mut mio::unix::SourceFd(&signals.raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Opens the control socket at `path`, owned by `owner` (uid, gid) when given (see
    /// [`control`]).
    ///
    /// # Errors
    /// Why it cannot be had.
    pub fn open_control(
        &mut self,
        path: &std::path::Path,
        owner: Option<(u32, u32)>,
    ) -> Result<(), String> {
        self.control = Some(control::Control::bind(path, owner, self.poll.registry())?);
        log!(INFO, "control socket {}", path.display());
        Ok(())
    }

    /// Removes the control socket's file (at exit).
    pub fn remove_control(&self) {
        if let Some(c) = &self.control {
            c.remove();
        }
    }

    /// What SIGHUP runs to get the new configuration.
    pub fn set_reloader(&mut self, reloader: Reloader) {
        self.reloader = Some(reloader);
    }

    /// Applies a reloaded configuration: new policy and limits for the same listeners. Open
    /// connections keep running. A configuration that changes the listeners or what is sized at
    /// start (see [`keeps_startup_sizes`]), or whose docroot cannot be opened, is refused whole
    /// and the old one stays.
    ///
    /// # Errors
    /// Why it was refused.
    pub fn apply(&mut self, mut new: Config) -> Result<(), ReloadError> {
        // Port 0 asked the kernel for a port at start-up: it means the port already bound.
        for (site, bound) in new.sites.iter_mut().zip(&self.config.sites) {
            if site.listen.port() == 0 && site.listen.ip() == bound.listen.ip() {
                site.listen = bound.listen;
            }
        }
        let same = new.sites.len() == self.config.sites.len()
            && new
                .sites
                .iter()
                .zip(&self.config.sites)
                .all(|(a, b)| a.listen == b.listen && a.tls.is_some() == b.tls.is_some());
        if !same {
            return Err(ReloadError::Listeners);
        }
        #[cfg(feature = "deflate")]
        let contexts = self.deflate.is_some();
        #[cfg(not(feature = "deflate"))]
        let contexts = false;
        keeps_startup_sizes(&self.config, contexts, &new)?;
        let mut docroots = Vec::with_capacity(new.sites.len());
        for site in &new.sites {
            let ws = Docroot::open(&site.docroot)
                .map_err(|e| ReloadError::Docroot(site.docroot.clone(), e))?;
            let htdocs = match &site.document {
                Some(d) => Some(
                    Docroot::open(&d.root).map_err(|e| ReloadError::Document(d.root.clone(), e))?,
                ),
                None => None,
            };
            let gate = match &site.auth {
                Some(p) => Some(RefCell::new(Gate::open(p).map_err(ReloadError::Config)?)),
                None => None,
            };
            docroots.push((ws, htdocs, gate));
        }
        let sites = new.sites.iter_mut().zip(&self.config.sites);
        for (i, ((l, (ws, htdocs, gate)), (site, before))) in
            self.listeners.iter_mut().zip(docroots).zip(sites).enumerate()
        {
            l.backends = Backends {
                docroot: ws,
                links: site.links.clone(),
                children: Rc::clone(&self.children),
                site: i,
            };
            l.htdocs = htdocs;
            l.gate = gate;
            if let (Some(fresh), Some(old), Some(was)) =
                (&mut site.tls, l.tls.as_mut(), &before.tls)
            {
                // Resumption skips client authentication: a session made under the old client
                // CAs must not resume under new ones, so the cache is kept only without them.
                let keep_sessions =
                    fresh.files.client_ca.is_none() && was.files.client_ca.is_none();
                reload_tls(site.listen, fresh, old, keep_sessions);
            }
        }
        crate::logging::set_level(new.verbosity);
        let buffer_size = self.config.buffer_size;
        self.config = Config { buffer_size, ..new };
        Ok(())
    }

    /// Live connections (including those answering 503).
    #[must_use]
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Runs until [`Handle::stop`].
    ///
    /// # Errors
    /// A `poll` failure other than `EINTR`.
    pub fn run(&mut self) -> std::io::Result<()> {
        loop {
            let held = self.listeners.iter().any(|l| l.held.is_some())
                || self.control.as_ref().is_some_and(control::Control::busy);
            let kill_due = self.children.borrow().next_deadline();
            let control_due = self.control.as_ref().and_then(control::Control::next_deadline);
            let wake = [self.next_wake, kill_due, control_due].into_iter().flatten().min();
            let timeout = if self.again.is_empty() && !held {
                wake.map(|w| w.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.polls = self.polls.wrapping_add(1);
            if self.handle.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let now = Instant::now();
            let mut accept = 0u32;
            // Copied out first (into a start-up allocation), so that connections can be driven
            // while the batch is walked.
            self.batch.clear();
            self.batch.extend(self.events.iter().map(|e| Readiness {
                token: e.token(),
                readable: e.is_readable() || e.is_read_closed() || e.is_error(),
                writable: e.is_writable() || e.is_write_closed() || e.is_error(),
                read_closed: e.is_read_closed(),
            }));
            for i in 0..self.batch.len() {
                let Some(&Readiness { token: tok, readable, writable, read_closed }) =
                    self.batch.get(i)
                else {
                    break;
                };
                match tok {
                    WAKER => {}
                    SIGNALS => self.on_signals(now),
                    token::CONTROL => {
                        if let Some(c) = self.control.as_mut() {
                            c.accept(self.poll.registry(), now);
                        }
                    }
                    t => {
                        if let Some(i) = token::listener_index(t) {
                            accept |= 1 << i;
                        } else if let Some(i) = token::control_client_index(t) {
                            if let Some(c) = self.control.as_mut().and_then(|c| c.client(i)) {
                                if writable {
                                    c.on_writable();
                                }
                            }
                            self.serve_control(i, false, now);
                        } else if let Some(i) = token::child_log_index(t) {
                            self.children.borrow_mut().on_stderr(i, now);
                        } else if let Some((key, side)) = token::decode(t) {
                            self.on_event(key, side, readable, writable, read_closed, now);
                        }
                    }
                }
            }
            if self.draining.is_none() {
                for i in 0..self.listeners.len() {
                    let waiting =
                        self.listeners.get(i).is_some_and(|l| l.paused || l.held.is_some());
                    if accept & (1 << i) != 0 || waiting {
                        self.accept(i, now);
                    }
                }
            }
            self.retry(now);
            if let Some(i) = self.control.as_mut().and_then(control::Control::next_with_work) {
                self.serve_control(i, true, now);
            }
            if control_due.is_some_and(|d| d <= now) {
                if let Some(c) = self.control.as_mut() {
                    c.expire(self.poll.registry(), now);
                }
            }
            if self.next_wake.is_some_and(|w| w <= now) {
                self.fire_timers(now);
            }
            if kill_due.is_some_and(|d| d <= now) {
                self.children.borrow_mut().reap(now);
            }
            if let Some(deadline) = self.draining {
                // Programs of exec links had their SIGTERM when their connections closed; the
                // loop waits for them to end (or for their SIGKILL, due within the drain), so
                // that a program is not killed for a shutdown it was already honouring.
                let programs = self.children.borrow().live();
                if self.conns.is_empty() && programs == 0 {
                    log!(INFO, "all connections closed; exiting");
                    return Ok(());
                }
                if now >= deadline {
                    log!(WARN, "shutdown timeout: dropping {} connection(s)", self.conns.len());
                    for index in 0..self.conns.capacity() {
                        if let Some(key) = self.conns.key_at(index) {
                            self.close(key, now);
                        }
                    }
                    return Ok(());
                }
            }
        }
    }

    fn on_signals(&mut self, now: Instant) {
        let request = match self.signals.as_ref().map(Signals::read) {
            Some(Ok(p)) => {
                if p.child_exited {
                    self.children.borrow_mut().reap(now);
                }
                p.request
            }
            Some(Err(e)) => {
                log!(WARN, "signalfd: {}", crate::sys::ErrnoText(e));
                None
            }
            None => None,
        };
        match request {
            Some(Request::Stop(name)) if self.draining.is_none() => {
                log!(
                    INFO,
                    "{name}: closing {} connection(s) with 1001, no new ones",
                    self.conns.len()
                );
                for l in &mut self.listeners {
                    let _ = self.poll.registry().deregister(&mut l.socket);
                    if let Some(h) = l.held.take() {
                        conn_log!(
                            INFO,
                            "peer={} dropped: shutting down before a slot was free",
                            h.peer
                        );
                    }
                }
                // Each connection closes within its own close timeout (the one it was admitted
                // with, see `timers`); the last of them sets how long the drain may take.
                let mut grace = Duration::ZERO;
                for index in 0..self.conns.capacity() {
                    let Some(key) = self.conns.key_at(index) else { continue };
                    if let Some(c) = self.conns.get_mut(key) {
                        grace = grace.max(c.timeouts().close);
                    }
                }
                let deadline = now + grace + Duration::from_secs(1);
                self.draining = Some(deadline);
                self.next_wake = Some(self.next_wake.map_or(deadline, |w| w.min(deadline)));
                for index in 0..self.conns.capacity() {
                    let Some(key) = self.conns.key_at(index) else { continue };
                    let Some(site) = self.conns.get_mut(key).map(|c| c.site) else { continue };
                    let Some((mut cx, conns)) = self.ctx(site, now) else { continue };
                    if let Some(c) = conns.get_mut(key) {
                        c.shutdown(&mut cx);
                    }
                    self.drive(key, now);
                }
            }
            Some(Request::Stop(_)) | None => {}
            Some(Request::Reload) => {
                let Some(reloader) = self.reloader.as_mut() else {
                    log!(WARN, "SIGHUP: no configuration file to reload (started without -f)");
                    return;
                };
                match (reloader.0)().and_then(|c| self.apply(c)) {
                    Ok(()) => log!(INFO, "SIGHUP: configuration reloaded; open connections kept"),
                    Err(e) => {
                        log!(WARN, "SIGHUP: new configuration refused, the old one stays: {e}")
                    }
                }
            }
        }
    }

    /// What a drive of a connection of site `site` needs, and the slab.
    fn ctx(
        &mut self,
        site: usize,
        now: Instant,
    ) -> Option<(Ctx<'_, self::transport::Upstreams>, &mut Slab<Connection>)> {
        let cx = Ctx {
            pool: &mut self.pool,
            site: self.config.sites.get(site)?,
            backends: &self.listeners.get(site)?.backends,
            htdocs: self.listeners.get(site)?.htdocs.as_ref(),
            gate: self.listeners.get(site)?.gate.as_ref(),
            registry: self.poll.registry(),
            now,
            #[cfg(feature = "deflate")]
            deflate: self.deflate.as_mut(),
            counters: &self.counters,
        };
        Some((cx, &mut self.conns))
    }

    fn on_event(
        &mut self,
        key: Key,
        side: Side,
        readable: bool,
        writable: bool,
        read_closed: bool,
        now: Instant,
    ) {
        let Some(c) = self.conns.get_mut(key) else { return };
        c.on_event(side, readable, writable, read_closed);
        self.drive(key, now);
    }

    fn drive(&mut self, key: Key, now: Instant) {
        let Some(site) = self.conns.get_mut(key).map(|c| c.site) else { return };
        let Some((mut cx, conns)) = self.ctx(site, now) else { return };
        let Some(c) = conns.get_mut(key) else { return };
        let verdict = c.drive(&mut cx);
        let deadline = c.next_deadline();
        match verdict {
            Verdict::Continue => {}
            Verdict::Again => {
                if !c.queued {
                    c.queued = true;
                    self.again.push(key);
                }
            }
            Verdict::Done => {
                self.close(key, now);
                return;
            }
        }
        if let Some(d) = deadline {
            self.next_wake = Some(self.next_wake.map_or(d, |w| w.min(d)));
        }
    }

    fn close(&mut self, key: Key, now: Instant) {
        let registry = self.poll.registry();
        let Some(mut c) = self.conns.remove(key) else { return };
        c.deregister(registry);
        c.release(&mut self.pool);
        #[cfg(feature = "deflate")]
        if let Some(z) = self.deflate.as_mut() {
            c.release_deflate(z);
        }
        let site = c.site;
        if let Some(l) = self.listeners.get_mut(site) {
            if !c.overflow {
                l.active = l.active.saturating_sub(1);
            }
        }
        let s = c.stats;
        self.count_close(&c);
        let secs = crate::logging::Seconds(now.duration_since(c.opened));
        match c.reason() {
            Some(conn::Reason::Refused(..)) | None => {
                conn_log!(INFO, "conn={key} peer={} close /{} {} ({secs}s)", c.peer, c.name, DisplayReason(c.reason()));
            }
            Some(r) => conn_log!(
                INFO,
                "conn={key} peer={} close /{} {r}; client in {} out {} bytes, {} msgs up, {} frames down ({secs}s)",
                c.peer,
                c.name,
                s.client_in,
                s.client_out,
                s.msgs_up,
                s.frames_down
            ),
        }
        drop(c);
        if self.draining.is_none() {
            for i in 0..self.listeners.len() {
                if self.listeners.get(i).is_some_and(|l| l.paused) {
                    self.accept(i, now);
                }
            }
        }
    }

    fn accept(&mut self, site: usize, now: Instant) {
        loop {
            let full = self.conns.len() >= self.conns.capacity();
            let polls = self.polls;
            let Some(l) = self.listeners.get_mut(site) else { return };
            if full {
                l.paused = true;
                return;
            }
            let Held { stream, peer, poll } = match l.held.take() {
                Some(h) => h,
                None => match l.socket.accept() {
                    Ok((stream, peer)) => {
                        l.paused = false;
                        let _ = stream.set_nodelay(true);
                        Held { stream, peer, poll: polls }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        l.paused = false;
                        return;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // EMFILE and friends: stop accepting until a connection closes.
                        conn_log!(WARN, "accept: {e}");
                        l.paused = true;
                        return;
                    }
                },
            };
            let max = self.config.sites.get(site).map_or(0, |s| s.max_connections);
            let overflow = l.active >= max as usize;
            if overflow && poll == polls {
                // Full, but maybe only on old news: poll first (see `Held`).
                l.held = Some(Held { stream, peer, poll });
                return;
            }
            let tls = match l.tls.as_ref().map(crate::tls::new_connection) {
                None => None,
                // The one allocation per TLS connection: rustls' state lives on the
                // heap, bounded by its buffer limit (see `crate::tls`).
                Some(Ok(t)) => Some(Box::new(t)),
                Some(Err(e)) => {
                    conn_log!(WARN, "peer={peer} accept: TLS: {e}");
                    continue;
                }
            };
            let Some((mut cx, conns)) = self.ctx(site, now) else { return };
            match conns.try_insert_with(|key| {
                Connection::accept(key, stream, peer, &mut cx, site, overflow, tls)
            }) {
                Some(Ok(key)) => {
                    if !overflow {
                        if let Some(l) = self.listeners.get_mut(site) {
                            l.active += 1;
                        }
                    }
                    if let Some(l) = self.counters.site(site) {
                        counters::bump(&l.accepted);
                    }
                    self.drive(key, now);
                }
                Some(Err(e)) => conn_log!(WARN, "peer={peer} accept: {e}"),
                None => {}
            }
        }
    }

    /// Counts a connection that ended: its listener, its endpoint, why it ended.
    fn count_close(&self, c: &Connection) {
        let k = &self.counters;
        if let Some(l) = k.site(c.site) {
            counters::bump(&l.closed);
            l.bytes_in.set(l.bytes_in.get().saturating_add(c.stats.client_in));
            l.bytes_out.set(l.bytes_out.get().saturating_add(c.stats.client_out));
            match c.tls_resumed() {
                Some(true) => counters::bump(&l.tls_resumed),
                Some(false) => counters::bump(&l.tls_full),
                None => {}
            }
        }
        if let Some(row) = c.endpoint_row {
            k.ended(usize::from(row), &c.stats);
        }
        match c.reason() {
            Some(conn::Reason::Refused(why)) => k.refused(c.site, why.status(), why.label()),
            Some(r) => {
                let code = match r {
                    conn::Reason::ClientClose(code) => code.unwrap_or_default(),
                    r => r.close_code().unwrap_or_default(),
                };
                k.closed(code, r.label());
            }
            None => k.closed(0, "closed"),
        }
    }

    /// Serves control client `i`: reads its request, acts on it, writes what is buffered of
    /// the answer, and with `fill` adds the report's next buffer; closes it when done. The loop
    /// passes `fill` to one client per turn (see [`control::Control::next_with_work`]).
    fn serve_control(&mut self, i: usize, fill: bool, now: Instant) {
        let Some(ctl) = self.control.as_mut() else { return };
        let Some(client) = ctl.client(i) else { return };
        if client.job == control::Job::Reading {
            let mut line = heapless::String::<64>::new();
            let request = match client.read_line() {
                None => return,
                Some(Ok(l)) => {
                    let _ = line.push_str(l);
                    control::parse(&line)
                }
                Some(Err(e)) => Err(e),
            };
            match request {
                Err(e) => client.answer(format_args!("error: {e}\n")),
                Ok(control::Command::Status(json)) => {
                    client.job = control::Job::Status { json, cursor: status::Cursor::default() };
                }
                Ok(control::Command::Drop(id, code)) => {
                    let done = self.drop_connection(id, code, now);
                    let Some(client) = self.control.as_mut().and_then(|c| c.client(i)) else {
                        return;
                    };
                    match done {
                        Ok(()) => client.answer(format_args!("dropped {id} with {code}\n")),
                        Err(e) => client.answer(format_args!("error: {e}\n")),
                    }
                }
            }
        }
        let view = status::View {
            counters: &self.counters,
            sites: &self.config.sites,
            conns: &self.conns,
            buffers: (
                self.pool.count().saturating_sub(self.pool.available()),
                self.pool.count(),
                self.pool.buf_size(),
            ),
            exec: (self.children.borrow().live(), self.children.borrow().capacity()),
            now,
        };
        let Some(ctl) = self.control.as_mut() else { return };
        let mut close = false;
        if let Some(client) = ctl.client(i) {
            let mut fill = fill;
            loop {
                match client.flush() {
                    Err(_) => {
                        close = true;
                        break;
                    }
                    Ok(false) => break,
                    Ok(true) => client.progress(now),
                }
                match &mut client.job {
                    control::Job::Status { json, cursor } if !cursor.done() => {
                        if !fill {
                            break;
                        }
                        fill = false;
                        status::fill(&mut client.out, cursor, *json, &view);
                    }
                    control::Job::Reading => break,
                    _ => {
                        close = true;
                        break;
                    }
                }
            }
        }
        if close {
            ctl.close(i, self.poll.registry());
        }
    }

    /// `drop ID CODE` from the control socket.
    fn drop_connection(&mut self, id: &str, code: u16, now: Instant) -> Result<(), &'static str> {
        let key = id
            .split_once(':')
            .and_then(|(i, g)| Some(Key { index: i.parse().ok()?, gen: g.parse().ok()? }))
            .ok_or("a connection ID is INDEX:GENERATION, as status shows it")?;
        let site = self.conns.get(key).map(|c| c.site).ok_or("no such connection")?;
        let (mut cx, conns) = self.ctx(site, now).ok_or("no such connection")?;
        let c = conns.get_mut(key).ok_or("no such connection")?;
        if !c.drop_with(&mut cx, code) {
            return Err("that connection is closing already");
        }
        conn_log!(INFO, "conn={key} peer={} dropped with {code} by the control socket", c.peer);
        counters::bump(&self.counters.dropped);
        self.drive(key, now);
        Ok(())
    }

    fn retry(&mut self, now: Instant) {
        let n = self.again.len();
        for i in 0..n {
            let Some(&key) = self.again.get(i) else { break };
            if let Some(c) = self.conns.get_mut(key) {
                c.queued = false;
            }
            self.drive(key, now);
        }
        self.again.drain(..n);
    }

    fn fire_timers(&mut self, now: Instant) {
        self.next_wake = None;
        for index in 0..self.conns.capacity() {
            let Some(key) = self.conns.key_at(index) else { continue };
            let Some(site) = self.conns.get_mut(key).map(|c| c.site) else { continue };
            let Some((mut cx, conns)) = self.ctx(site, now) else { continue };
            let Some(c) = conns.get_mut(key) else { continue };
            let due = c.next_deadline().is_some_and(|d| d <= now);
            if due && c.on_timers(&mut cx) {
                self.drive(key, now);
            } else if let Some(d) = c.next_deadline() {
                self.next_wake = Some(self.next_wake.map_or(d, |w| w.min(d)));
            }
        }
    }
}

/// Puts a listener on the TLS configuration loaded with the new [`Config`] (a renewed
/// certificate, a new client CA). With `keep_sessions` the session cache and ticket keys carry
/// over, so clients resume as before. Files that cannot be used never get here: the new
/// configuration is refused whole and the old one stays (see [`ReloadError::Config`]).
fn reload_tls(
    listen: SocketAddr,
    fresh: &mut crate::config::SiteTls,
    current: &mut Arc<rustls::ServerConfig>,
    keep_sessions: bool,
) {
    if let (true, Some(cfg)) = (keep_sessions, Arc::get_mut(&mut fresh.server)) {
        cfg.session_storage = Arc::clone(&current.session_storage);
        cfg.ticketer = Arc::clone(&current.ticketer);
    }
    *current = Arc::clone(&fresh.server);
    log!(INFO, "SIGHUP: {listen}: certificate reloaded from {}", fresh.files.crtfile.display());
}

struct DisplayReason(Option<conn::Reason>);

impl core::fmt::Display for DisplayReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Some(r) => write!(f, "{r}"),
            None => f.write_str("closed"),
        }
    }
}

/// Refuses a reloaded configuration `new` that changes what `running` sized at start-up: the
/// exec process table, and permessage-deflate's contexts, made for one window, level and memory,
/// and only when a site offered compression at start (`contexts`). Turning compression on or
/// off per endpoint is policy, and reloads while there are contexts to compress with.
///
/// # Errors
/// The first setting that needs a restart.
fn keeps_startup_sizes(running: &Config, contexts: bool, new: &Config) -> Result<(), ReloadError> {
    if new.exec_limit != running.exec_limit {
        return Err(ReloadError::ExecLimit(running.exec_limit));
    }
    let (was, now) = (running.deflate, new.deflate);
    for (key, was, now) in [
        ("compression_window", u64::from(was.window_bits), u64::from(now.window_bits)),
        ("compression_level", u64::from(was.level), u64::from(now.level)),
        ("compression_memory", was.memory, now.memory),
    ] {
        if now != was {
            return Err(ReloadError::Compression(key, was));
        }
    }
    match new.sites.iter().find(|s| s.compression.any()) {
        Some(s) if !contexts => Err(ReloadError::NoCompressionContexts(s.listen)),
        _ => Ok(()),
    }
}

/// permessage-deflate's contexts for `config`, when one of its sites offers compression.
#[cfg(feature = "deflate")]
fn contexts(config: &Config) -> Option<crate::relay::compress::Contexts> {
    use crate::relay::compress::{Contexts, Sizes};
    if !config.sites.iter().any(|s| s.compression.any()) {
        return None;
    }
    let d = config.deflate;
    let sizes = Sizes::of(usize::try_from(d.memory).unwrap_or(usize::MAX), d.window_bits)?;
    log!(
        INFO,
        "compression: {} + {} narrow compressors, decompressors for {} connections ({} bytes)",
        sizes.deflaters,
        sizes.narrow,
        sizes.inflaters,
        d.memory
    );
    Some(Contexts::new(sizes, d.level, d.window_bits, config.buffer_size))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::config::{Compression, Site};

    fn site(compression: Compression) -> Site {
        Site {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            docroot: std::env::temp_dir(),
            compression,
            ..Site::default()
        }
    }

    fn on(endpoint: &str) -> Compression {
        Compression { all: false, endpoints: vec![(endpoint.into(), true)] }
    }

    #[test]
    fn startup_sizes_need_a_restart() {
        let running = Config::single(site(on("chat")));
        let with = |f: &dyn Fn(&mut Config)| {
            let mut c = running.clone();
            f(&mut c);
            c
        };
        let refused = |contexts, new: &Config| {
            keeps_startup_sizes(&running, contexts, new).unwrap_err().to_string()
        };
        assert!(keeps_startup_sizes(&running, true, &running).is_ok());
        assert_eq!(
            refused(true, &with(&|c| c.deflate.window_bits = 12)),
            "compression_window is 15 since start; restart wsgate to change it"
        );
        assert_eq!(
            refused(true, &with(&|c| c.deflate.level = 1)),
            "compression_level is 6 since start; restart wsgate to change it"
        );
        assert_eq!(
            refused(true, &with(&|c| c.deflate.memory = 1 << 20)),
            "compression_memory is 2097152 since start; restart wsgate to change it"
        );
        assert_eq!(
            refused(true, &with(&|c| c.exec_limit = 3)),
            "the exec process limit is 16 since start; restart wsgate to change it"
        );
        // Per endpoint, within the contexts: policy. Without contexts, only "off" is.
        let everywhere = with(&|c| c.sites[0].compression = Compression { all: true, ..on("x") });
        let nowhere = with(&|c| c.sites[0].compression = Compression::default());
        assert!(keeps_startup_sizes(&running, true, &everywhere).is_ok());
        assert!(keeps_startup_sizes(&running, true, &nowhere).is_ok());
        assert!(keeps_startup_sizes(&running, false, &nowhere).is_ok());
        assert_eq!(
            refused(false, &running),
            "127.0.0.1:0: compression: no site offered it at start, so there are no compression \
             contexts; restart wsgate to turn it on"
        );
        // A window or level nobody uses yet is still the one the contexts would need.
        assert!(keeps_startup_sizes(
            &nowhere,
            false,
            &with(&|c| {
                c.sites[0].compression = Compression::default();
                c.deflate.level = 9;
            })
        )
        .is_err());
    }

    /// The contexts are made at start: a reload that would need others is refused and the
    /// running configuration stays; one that moves compression between endpoints is applied.
    #[cfg(feature = "deflate")]
    #[test]
    fn reload_keeps_the_compression_contexts_made_at_start() {
        let mut off = Server::bind(Config::single(site(Compression::default()))).unwrap();
        let e = off.apply(Config::single(site(on("chat")))).unwrap_err().to_string();
        assert!(e.ends_with(": compression: no site offered it at start, so there are no compression contexts; restart wsgate to turn it on"), "{e}");
        assert!(!off.config.sites[0].compression.any());

        let mut s = Server::bind(Config::single(site(on("chat")))).unwrap();
        s.apply(Config::single(site(on("echo")))).unwrap();
        assert!(s.config.sites[0].compression.on("echo"));
        assert!(!s.config.sites[0].compression.on("chat"));
        let mut level = Config::single(site(on("chat")));
        level.deflate.level = 9;
        let e = s.apply(level).unwrap_err().to_string();
        assert_eq!(e, "compression_level is 6 since start; restart wsgate to change it");
        assert_eq!(s.config.deflate.level, 6);
        assert!(s.config.sites[0].compression.on("echo"));
        let mut memory = Config::single(site(on("echo")));
        memory.deflate.memory = 4 << 20;
        let e = s.apply(memory).unwrap_err().to_string();
        assert_eq!(e, "compression_memory is 2097152 since start; restart wsgate to change it");
        // Off everywhere keeps the contexts, so on again reloads too.
        s.apply(Config::single(site(Compression::default()))).unwrap();
        s.apply(Config::single(site(on("chat")))).unwrap();
        assert!(s.config.sites[0].compression.on("chat"));
    }
}
