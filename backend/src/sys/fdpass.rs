//! Receiving a descriptor passed with `SCM_RIGHTS` (direct mode: the gateway hands a client's
//! TCP socket to its backend). The only `unsafe` is taking ownership of the received number.
use std::io::IoSliceMut;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// What one [`recv_with_fd`] call got.
#[derive(Debug)]
pub struct Received {
    /// Data bytes read into the buffer; 0 is end of stream.
    pub len: usize,
    /// The first descriptor that came with them.
    pub fd: Option<OwnedFd>,
    /// More descriptors came than one (they are closed), or the control data was truncated.
    pub extra: bool,
}

/// One non-blocking `recvmsg` on a UNIX stream socket, taking at most one `SCM_RIGHTS`
/// descriptor (close-on-exec). Every received descriptor is owned at once, so none leaks.
///
/// # Errors
/// The `recvmsg` error (`EAGAIN` when nothing is waiting).
#[allow(unsafe_code)]
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<Received> {
    use std::os::fd::AsRawFd as _;
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut got =
        Received { len: msg.bytes, fd: None, extra: msg.flags.contains(MsgFlags::MSG_CTRUNC) };
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                // SAFETY: the kernel just installed `raw` in our table for this message
                // (SCM_RIGHTS); nothing else knows the number, so we are its only owner.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if got.fd.is_none() {
                    got.fd = Some(owned);
                } else {
                    got.extra = true;
                }
            }
        }
    }
    Ok(got)
}
