//! The C side: the exported libc symbols, the real functions behind them, `errno`, and the
//! few system calls the shim makes itself. The crate's only `unsafe` code.
//!
//! Every exported call runs its body through [`as_libc`], the one place that decides what the
//! caller finds in `errno`.
//!
//! Internal I/O never calls a name the shim exports (`recv`, `send`, `read`, `write`, ...):
//! inside a preloaded object those resolve to the shim itself. It uses `recvmsg`/`sendmsg`
//! (not replaced), and the real `close`/`accept4`/`socket` through their `dlsym(RTLD_NEXT)`
//! pointers.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{BorrowedFd, IntoRawFd as _, OwnedFd};
use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libc::{size_t, sockaddr, socklen_t, ssize_t};
use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessageOwned, MsgFlags};

/// A libc function found with `dlsym(RTLD_NEXT)`, resolved on first use (a constructor would
/// run after other libraries' constructors may already have called it).
struct Real {
    name: &'static core::ffi::CStr,
    addr: AtomicUsize,
}

impl Real {
    const fn new(name: &'static core::ffi::CStr) -> Self {
        Self { name, addr: AtomicUsize::new(0) }
    }

    /// The function's address, or 0 when the C library has none by that name.
    fn addr(&self) -> usize {
        let a = self.addr.load(Ordering::Relaxed);
        if a != 0 {
            return a;
        }
        let name: *const c_char = self.name.as_ptr();
        // SAFETY: `name` is a NUL-terminated string that lives forever; RTLD_NEXT asks for the
        // next definition after this object, i.e. the C library's. dlsym has no other
        // precondition, and two threads racing here store the same value.
        let a = unsafe { libc::dlsym(libc::RTLD_NEXT, name) } as usize;
        self.addr.store(a, Ordering::Relaxed);
        a
    }
}

static SOCKET: Real = Real::new(c"socket");
static ACCEPT4: Real = Real::new(c"accept4");
static RECV: Real = Real::new(c"recv");
static RECVFROM: Real = Real::new(c"recvfrom");
static READ: Real = Real::new(c"read");
static SEND: Real = Real::new(c"send");
static SENDTO: Real = Real::new(c"sendto");
static WRITE: Real = Real::new(c"write");
static CLOSE: Real = Real::new(c"close");

type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
type RecvFn = unsafe extern "C" fn(c_int, *mut c_void, size_t, c_int) -> ssize_t;
type RecvfromFn = unsafe extern "C" fn(
    c_int,
    *mut c_void,
    size_t,
    c_int,
    *mut sockaddr,
    *mut socklen_t,
) -> ssize_t;
type ReadFn = unsafe extern "C" fn(c_int, *mut c_void, size_t) -> ssize_t;
type SendFn = unsafe extern "C" fn(c_int, *const c_void, size_t, c_int) -> ssize_t;
type SendtoFn = unsafe extern "C" fn(
    c_int,
    *const c_void,
    size_t,
    c_int,
    *const sockaddr,
    socklen_t,
) -> ssize_t;
type WriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t) -> ssize_t;
type CloseFn = unsafe extern "C" fn(c_int) -> c_int;

/// Casts a resolved address to its function type, `None` when it was not found.
macro_rules! real {
    ($slot:ident as $ty:ty) => {{
        let a = $slot.addr();
        if a == 0 {
            None
        } else {
            // SAFETY: `a` is the address of the C library's function named as the slot, whose
            // C prototype is `$ty` (the POSIX/glibc/musl declaration of that name).
            Some(unsafe { core::mem::transmute::<usize, $ty>(a) })
        }
    }};
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot, valid for the
    // thread's life (glibc and musl).
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e };
}

/// Runs the body of an exported call with `errno` as libc leaves it: set by a call that fails
/// (by the real call, or by [`fail`]), untouched by one that succeeds, whatever the shim's own
/// system calls did to it on the way. Those may fail harmlessly: the read that drains a closed
/// connection ends in `EAGAIN`, the shutdown of a connection the client already ended in
/// `ENOTCONN`, a contended lock's futex wait in `EAGAIN`. ouistiti's servers test
/// `ret <= 0 && errno != EAGAIN` after an end of stream (0), so a stray `EAGAIN` there makes
/// them keep a departed client for ever.
///
/// `body` gets the caller's value, the one a success leaves; only [`received`] changes it.
fn as_libc<T: PartialOrd + From<i8>>(body: impl FnOnce(&mut c_int) -> T) -> T {
    let mut caller = errno();
    let r = body(&mut caller);
    if r >= T::from(0) {
        set_errno(caller);
    }
    r
}

thread_local! {
    /// What `errno` was before the last `recv` of this thread that only control frames
    /// answered (see [`received`]), until the next `recv` on a client socket.
    static CUT_SHORT: Cell<Option<c_int>> = const { Cell::new(None) };
}

/// The result of a `recv`/`read` the shim answered on a client socket; `caller` as in
/// [`as_libc`].
///
/// Where libc's blocking `recv` would go on waiting after control frames, the shim's returns
/// -1 with `EAGAIN` (a server with one `select` over every client must get back to the others),
/// an `EAGAIN` that libc would never have set on a blocking socket. ouistiti's servers read
/// `errno` after a 0 too (`ret <= 0 && errno != EAGAIN`): left there, it would make them take
/// the end of the stream for "nothing yet" and spin for ever. So the next `recv` on a client
/// socket of this thread takes up from the call that was cut short: when it succeeds, `errno`
/// is what the caller had before that call, as if it had waited for this result (unless the
/// caller set `errno` to something else since).
fn received(r: Result<crate::Received, Errno>, caller: &mut c_int) -> ssize_t {
    let before = match CUT_SHORT.take() {
        Some(before) if *caller == libc::EAGAIN => before,
        _ => *caller,
    };
    match r {
        Ok(crate::Received::Bytes(n)) => {
            *caller = before;
            ssize_t::try_from(n).unwrap_or(ssize_t::MAX)
        }
        Ok(crate::Received::OnlyControl) => {
            CUT_SHORT.set(Some(before));
            fail(Errno::EAGAIN)
        }
        Err(e) => fail(e),
    }
}

/// -1 with `errno`, as the real call fails.
fn fail<T: From<i8>>(e: Errno) -> T {
    set_errno(e as c_int);
    T::from(-1)
}

fn size_result(r: Result<usize, Errno>) -> ssize_t {
    match r {
        Ok(n) => ssize_t::try_from(n).unwrap_or(ssize_t::MAX),
        Err(e) => fail(e),
    }
}

/// The caller's buffer of `read(2)`/`recv(2)`. `None` for a null pointer with a length, or a
/// length no object can have (the real call answers `EFAULT`).
///
/// # Safety
/// `buf` must point to `len` writable bytes not used elsewhere during the call: the contract
/// of the libc function being replaced.
unsafe fn buf_mut<'a>(buf: *mut c_void, len: size_t) -> Option<&'a mut [u8]> {
    if len == 0 {
        return Some(&mut []);
    }
    if buf.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: the caller's contract above; non-null and at most isize::MAX bytes.
    Some(unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) })
}

/// The caller's buffer of `write(2)`/`send(2)`.
///
/// # Safety
/// `buf` must point to `len` readable bytes, as for the libc function being replaced.
unsafe fn buf_ref<'a>(buf: *const c_void, len: size_t) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if buf.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: the caller's contract above; non-null and at most isize::MAX bytes.
    Some(unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) })
}

// ------------------------------------------------------------------------------------------
// The shim's own system calls
// ------------------------------------------------------------------------------------------

/// Runs `f` with `fd` borrowed.
pub(crate) fn with_fd<R>(fd: c_int, f: impl FnOnce(BorrowedFd<'_>) -> R) -> R {
    // SAFETY: callers pass a descriptor they hold open for the whole call (an accepted UNIX
    // connection not yet closed); the borrow does not outlive `f`.
    f(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Closes `fd` with the real `close` (no shim bookkeeping).
pub(crate) fn real_close(fd: c_int) {
    if let Some(close) = real!(CLOSE as CloseFn) {
        // SAFETY: closing a descriptor number has no memory-safety precondition; callers own it.
        unsafe { close(fd) };
    }
}

/// One `recvmsg` into `dst`: `Ok(0)` at end of stream.
pub(crate) fn recv(fd: c_int, dst: &mut [u8], nonblock: bool) -> Result<usize, Errno> {
    let flags = if nonblock { MsgFlags::MSG_DONTWAIT } else { MsgFlags::empty() };
    let mut iov = [IoSliceMut::new(dst)];
    recvmsg::<()>(fd, &mut iov, None, flags).map(|m| m.bytes)
}

/// Sends all of `parts` (one frame). With `MSG_DONTWAIT` in `flags`, "would block" before the
/// first byte fails with `EAGAIN`; once some bytes are out, waits for the rest (at most `wait`).
/// On error: the errno and how many bytes had gone out.
pub(crate) fn send_all(
    fd: c_int,
    parts: &[&[u8]],
    flags: c_int,
    wait: Duration,
) -> Result<(), (Errno, usize)> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut flags = MsgFlags::from_bits_truncate(flags);
    let mut sent = 0usize;
    let deadline = Instant::now() + wait;
    while sent < total {
        let mut skip = sent;
        let mut iov: [IoSlice<'_>; 2] = [IoSlice::new(&[]), IoSlice::new(&[])];
        let mut n = 0;
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            if let Some(slot) = iov.get_mut(n) {
                *slot = IoSlice::new(part.get(skip..).unwrap_or_default());
                n += 1;
            }
            skip = 0;
        }
        match sendmsg::<()>(fd, iov.get(..n).unwrap_or_default(), &[], flags, None) {
            Ok(k) => {
                sent += k;
                flags.remove(MsgFlags::MSG_DONTWAIT);
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) if sent == 0 && flags.contains(MsgFlags::MSG_DONTWAIT) => {
                return Err((Errno::EAGAIN, 0));
            }
            Err(Errno::EAGAIN) => {
                // A non-blocking socket with part of the frame out: wait for room.
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || !wait_ready(fd, libc::POLLOUT, Some(left)).unwrap_or(false) {
                    return Err((Errno::ETIMEDOUT, sent));
                }
            }
            Err(e) => return Err((e, sent)),
        }
    }
    Ok(())
}

/// `shutdown(how)`.
pub(crate) fn shutdown(fd: c_int, how: c_int) -> Result<(), Errno> {
    // SAFETY: shutdown takes plain integers.
    Errno::result(unsafe { libc::shutdown(fd, how) }).map(drop)
}

fn wait_ready(fd: c_int, events: i16, wait: Option<Duration>) -> Result<bool, Errno> {
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                c_int::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(c_int::MAX)
            }
        };
        let mut p = libc::pollfd { fd, events, revents: 0 };
        // SAFETY: one pollfd on our stack, count 1.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        match Errno::result(r) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Waits until `fd` is readable (or at end of stream); `None`: without a time limit.
pub(crate) fn wait_readable(fd: c_int, wait: Option<Duration>) -> Result<bool, Errno> {
    wait_ready(fd, libc::POLLIN, wait)
}

/// Whether the first bytes waiting on the UNIX connection `fd` carry a descriptor
/// (`MSG_PEEK`: nothing is consumed; the peeked copy of a descriptor is closed).
pub(crate) fn peek_has_fd(fd: c_int) -> Result<bool, Errno> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([c_int; 2]);
    let msg = recvmsg::<()>(
        fd,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut found = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                found = true;
                real_close(raw);
            }
        }
    }
    Ok(found)
}

/// Sets `O_NONBLOCK` and `FD_CLOEXEC` as asked.
pub(crate) fn set_flags(fd: c_int, nonblock: bool, cloexec: bool) -> Result<(), Errno> {
    // SAFETY: fcntl with F_GETFL/F_SETFL/F_GETFD/F_SETFD takes and returns integers.
    unsafe {
        let fl = Errno::result(libc::fcntl(fd, libc::F_GETFL))?;
        let fl = if nonblock { fl | libc::O_NONBLOCK } else { fl & !libc::O_NONBLOCK };
        Errno::result(libc::fcntl(fd, libc::F_SETFL, fl))?;
        let fd_fl = Errno::result(libc::fcntl(fd, libc::F_GETFD))?;
        let fd_fl = if cloexec { fd_fl | libc::FD_CLOEXEC } else { fd_fl & !libc::FD_CLOEXEC };
        Errno::result(libc::fcntl(fd, libc::F_SETFD, fd_fl))?;
    }
    Ok(())
}

/// Puts `client` under the number `fd` (closing what `fd` was), as `dup2` does.
pub(crate) fn replace(client: OwnedFd, fd: c_int, cloexec: bool) -> Result<(), Errno> {
    let raw = client.into_raw_fd();
    // SAFETY: dup2 takes integers; `raw` is ours (from `client`), `fd` the caller's.
    let r = Errno::result(unsafe { libc::dup2(raw, fd) });
    real_close(raw);
    r?;
    if cloexec {
        // SAFETY: as in `set_flags`.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

unsafe extern "C" fn fork_happened() {
    crate::on_fork();
}

/// Counts forks in both processes (`pthread_atfork` parent and child handlers).
pub(crate) fn register_atfork() {
    // SAFETY: the handlers are plain functions that touch one atomic; registration has no
    // other precondition.
    unsafe { libc::pthread_atfork(None, Some(fork_happened), Some(fork_happened)) };
}

// ------------------------------------------------------------------------------------------
// The exported symbols (not in the unit tests, whose own I/O must stay libc's)
// ------------------------------------------------------------------------------------------

// `pub` with `no_mangle` is what puts a function in the shared object's dynamic symbol table.
#[cfg(not(test))]
#[allow(unreachable_pub)]
mod exports {
    use super::*;

    /// `socket(2)`: `AF_UNIX` stream sockets are remembered; `protocol` 153 (`WS_TEXT`) asks
    /// for text messages.
    ///
    /// # Safety
    /// As `socket(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
        as_libc(|_| {
            let Some(real) = real!(SOCKET as SocketFn) else { return fail(Errno::ENOSYS) };
            let (protocol, remember) = crate::on_socket(domain, ty, protocol);
            // SAFETY: the real socket(2) with the caller's integers.
            let fd = unsafe { real(domain, ty, protocol) };
            if fd >= 0 {
                crate::forget(fd);
                if remember {
                    crate::insert(fd, crate::Kind::Listen);
                }
            }
            fd
        })
    }

    /// `accept(2)`: on a remembered socket, a direct-mode hand-over is taken (see the crate
    /// documentation).
    ///
    /// # Safety
    /// As `accept(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
        // `accept4` keeps errno as libc does.
        // SAFETY: the caller's contract, passed on.
        unsafe { accept4(fd, addr, len, 0) }
    }

    /// `accept4(2)`, as [`accept`].
    ///
    /// # Safety
    /// As `accept4(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn accept4(
        fd: c_int,
        addr: *mut sockaddr,
        len: *mut socklen_t,
        flags: c_int,
    ) -> c_int {
        as_libc(|_| {
            let Some(real) = real!(ACCEPT4 as Accept4Fn) else { return fail(Errno::ENOSYS) };
            let listener = matches!(crate::lookup(fd), Some(crate::Kind::Listen));
            // The caller's address room: the UNIX accept overwrites *len with its own length.
            let room = if len.is_null() {
                0
            } else {
                // SAFETY: accept(2)'s contract: a non-null len points to a socklen_t.
                unsafe { *len }
            };
            loop {
                // SAFETY: the real accept4(2) with the caller's pointers, under its contract.
                let u = unsafe { real(fd, addr, len, flags) };
                if u < 0 || !listener {
                    return u;
                }
                crate::forget(u);
                let nonblock = flags & libc::SOCK_NONBLOCK != 0;
                let cloexec = flags & libc::SOCK_CLOEXEC != 0;
                match crate::after_accept(u, nonblock, cloexec) {
                    crate::Accepted::Same => return u,
                    crate::Accepted::Retry => {}
                    crate::Accepted::Direct(c) => {
                        if !addr.is_null() && !len.is_null() {
                            // The client's address, as accept(2) gives it (truncated to the room).
                            // SAFETY: the caller's addr (`room` bytes) and len, per accept(2).
                            unsafe {
                                *len = room;
                                libc::getpeername(c, addr, len);
                            }
                        }
                        return c;
                    }
                }
            }
        })
    }

    /// `recv(2)`: on a client socket, one message (or its next part).
    ///
    /// # Safety
    /// As `recv(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn recv(
        fd: c_int,
        buf: *mut c_void,
        len: size_t,
        flags: c_int,
    ) -> ssize_t {
        as_libc(|caller| {
            if let Some(kind) = crate::lookup(fd) {
                // SAFETY: recv(2)'s contract on buf/len.
                let Some(b) = (unsafe { buf_mut(buf, len) }) else { return fail(Errno::EFAULT) };
                if let Some(r) = crate::on_recv(fd, kind, b, flags) {
                    return received(r, caller);
                }
            }
            let Some(real) = real!(RECV as RecvFn) else { return fail(Errno::ENOSYS) };
            // SAFETY: the real recv(2) with the caller's arguments.
            unsafe { real(fd, buf, len, flags) }
        })
    }

    /// `recvfrom(2)`: as [`recv`] on a client socket (no address is written for a connected
    /// TCP socket).
    ///
    /// # Safety
    /// As `recvfrom(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn recvfrom(
        fd: c_int,
        buf: *mut c_void,
        len: size_t,
        flags: c_int,
        addr: *mut sockaddr,
        addrlen: *mut socklen_t,
    ) -> ssize_t {
        as_libc(|caller| {
            if let Some(kind) = crate::lookup(fd) {
                // SAFETY: recvfrom(2)'s contract on buf/len.
                let Some(b) = (unsafe { buf_mut(buf, len) }) else { return fail(Errno::EFAULT) };
                if let Some(r) = crate::on_recv(fd, kind, b, flags) {
                    return received(r, caller);
                }
            }
            let Some(real) = real!(RECVFROM as RecvfromFn) else { return fail(Errno::ENOSYS) };
            // SAFETY: the real recvfrom(2) with the caller's arguments.
            unsafe { real(fd, buf, len, flags, addr, addrlen) }
        })
    }

    /// `read(2)`: as [`recv`] on a client socket.
    ///
    /// # Safety
    /// As `read(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t {
        as_libc(|caller| {
            if let Some(kind) = crate::lookup(fd) {
                // SAFETY: read(2)'s contract on buf/len.
                let Some(b) = (unsafe { buf_mut(buf, len) }) else { return fail(Errno::EFAULT) };
                if let Some(r) = crate::on_recv(fd, kind, b, 0) {
                    return received(r, caller);
                }
            }
            let Some(real) = real!(READ as ReadFn) else { return fail(Errno::ENOSYS) };
            // SAFETY: the real read(2) with the caller's arguments.
            unsafe { real(fd, buf, len) }
        })
    }

    /// `send(2)`: on a client socket, the buffer as one message.
    ///
    /// # Safety
    /// As `send(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn send(
        fd: c_int,
        buf: *const c_void,
        len: size_t,
        flags: c_int,
    ) -> ssize_t {
        as_libc(|_| {
            if let Some(kind) = crate::lookup(fd) {
                // SAFETY: send(2)'s contract on buf/len.
                let Some(b) = (unsafe { buf_ref(buf, len) }) else { return fail(Errno::EFAULT) };
                if let Some(r) = crate::on_send(fd, kind, b, flags) {
                    return size_result(r);
                }
            }
            let Some(real) = real!(SEND as SendFn) else { return fail(Errno::ENOSYS) };
            // SAFETY: the real send(2) with the caller's arguments.
            unsafe { real(fd, buf, len, flags) }
        })
    }

    /// `sendto(2)`: as [`send`] on a client socket (the address is ignored, as TCP does).
    ///
    /// # Safety
    /// As `sendto(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn sendto(
        fd: c_int,
        buf: *const c_void,
        len: size_t,
        flags: c_int,
        addr: *const sockaddr,
        addrlen: socklen_t,
    ) -> ssize_t {
        as_libc(|_| {
            if let Some(kind) = crate::lookup(fd) {
                // SAFETY: sendto(2)'s contract on buf/len.
                let Some(b) = (unsafe { buf_ref(buf, len) }) else { return fail(Errno::EFAULT) };
                if let Some(r) = crate::on_send(fd, kind, b, flags) {
                    return size_result(r);
                }
            }
            let Some(real) = real!(SENDTO as SendtoFn) else { return fail(Errno::ENOSYS) };
            // SAFETY: the real sendto(2) with the caller's arguments.
            unsafe { real(fd, buf, len, flags, addr, addrlen) }
        })
    }

    /// `write(2)`: as [`send`] on a client socket.
    ///
    /// # Safety
    /// As `write(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
        as_libc(|_| {
            if let Some(kind) = crate::lookup(fd) {
                // SAFETY: write(2)'s contract on buf/len.
                let Some(b) = (unsafe { buf_ref(buf, len) }) else { return fail(Errno::EFAULT) };
                if let Some(r) = crate::on_send(fd, kind, b, 0) {
                    return size_result(r);
                }
            }
            let Some(real) = real!(WRITE as WriteFn) else { return fail(Errno::ENOSYS) };
            // SAFETY: the real write(2) with the caller's arguments.
            unsafe { real(fd, buf, len) }
        })
    }

    /// `close(2)`: on a client socket, a close frame first (see the crate documentation).
    ///
    /// # Safety
    /// As `close(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn close(fd: c_int) -> c_int {
        as_libc(|_| {
            crate::on_close(fd);
            let Some(real) = real!(CLOSE as CloseFn) else { return fail(Errno::ENOSYS) };
            // SAFETY: the real close(2) with the caller's descriptor.
            unsafe { real(fd) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_is_set_by_a_failure_and_kept_by_a_success() {
        set_errno(12345);
        // successes, after internal calls that failed on the way
        let r: c_int = as_libc(|_| {
            set_errno(libc::EAGAIN);
            0
        });
        assert_eq!((r, errno()), (0, 12345));
        let r: ssize_t = as_libc(|_| {
            set_errno(libc::ENOTCONN);
            7
        });
        assert_eq!((r, errno()), (7, 12345));
        // a failure: its own errno
        let r: ssize_t = as_libc(|_| fail(Errno::EPIPE));
        assert_eq!((r, errno()), (-1, libc::EPIPE));
    }

    #[test]
    fn the_recv_after_one_cut_short_leaves_errno_as_before_that_one() {
        use crate::Received::{Bytes, OnlyControl};
        let recv = |r| as_libc(|caller| received(r, caller));
        // a ping alone, then the end of the stream: the caller's errno from before the ping
        set_errno(777);
        assert_eq!((recv(Ok(OnlyControl)), errno()), (-1, libc::EAGAIN));
        assert_eq!((recv(Ok(OnlyControl)), errno()), (-1, libc::EAGAIN));
        assert_eq!((recv(Ok(Bytes(0))), errno()), (0, 777));
        // a success with nothing cut short before it: untouched
        set_errno(libc::EAGAIN);
        assert_eq!((recv(Ok(Bytes(4))), errno()), (4, libc::EAGAIN));
        // the caller set errno since: its value stays
        set_errno(777);
        recv(Ok(OnlyControl));
        set_errno(555);
        assert_eq!((recv(Ok(Bytes(3))), errno()), (3, 555));
        // a real failure in between ends the cut-short call: its EAGAIN is libc's
        set_errno(777);
        recv(Ok(OnlyControl));
        assert_eq!((recv(Err(Errno::EAGAIN)), errno()), (-1, libc::EAGAIN));
        assert_eq!((recv(Ok(Bytes(0))), errno()), (0, libc::EAGAIN));
    }
}
