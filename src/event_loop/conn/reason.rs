//! Why a connection ended, and the one mapping from that to the close code the gateway sends.

use std::io::ErrorKind;

use nix::errno::Errno;

use super::super::tls_io::TlsFault;
use crate::relay::codec::{DownlinkError, UplinkError};
use crate::relay::upgrade::Refusal;
use crate::ws::frame::close_code;
use crate::ws::session::ProtocolError;

/// Why a connection ended (the close log line says it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The handshake was refused (with [`Refusal::status`]).
    Refused(Refusal),
    /// The client sent a close frame.
    ClientClose(Option<u16>),
    /// The client broke RFC 6455.
    Protocol(ProtocolError),
    /// The client sent something the mode cannot carry.
    Uplink(UplinkError),
    /// The backend closed its socket.
    BackendEof,
    /// The backend closed its socket in the middle of a message (1011).
    BackendEofMidMessage,
    /// The backend closed its socket while a client message was being relayed to it: the rest
    /// can never arrive (1011).
    BackendEofMidClientMessage,
    /// The backend sent a close record.
    BackendClose(u16),
    /// The backend broke the mode's rules.
    BackendProtocol(DownlinkError),
    /// A backend packet larger than the buffer.
    BackendPacketTooBig,
    /// A socket error on the backend.
    BackendError(Errno),
    /// The client closed TCP without a close frame.
    ClientGone,
    /// A socket error on the client.
    ClientError(ErrorKind),
    /// TLS failed (the rustls detail was logged when it happened).
    Tls(TlsFault),
    /// No complete upgrade request in time.
    HandshakeTimeout,
    /// A ping went unanswered.
    PingTimeout,
    /// No traffic either way for the idle timeout.
    IdleTimeout,
    /// The closing handshake did not finish in time.
    CloseTimeout,
    /// The gateway is shutting down.
    Shutdown,
    /// Direct mode: the client's socket now belongs to the backend.
    HandedOver,
    /// Direct mode: the backend did not take the socket in time.
    HandoverTimeout,
    /// Closed with this code by `wsgate drop`.
    Dropped(u16),
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Refused(r) => write!(f, "refused {}: {r}", r.status()),
            Self::ClientClose(Some(c)) => write!(f, "client closed ({c})"),
            Self::ClientClose(None) => f.write_str("client closed"),
            Self::Protocol(e) => write!(f, "protocol error ({}): {e}", e.close_code()),
            Self::Uplink(UplinkError::NewlineInMessage) => {
                f.write_str("newline in a lines-mode message (1003)")
            }
            Self::BackendEof => f.write_str("backend closed"),
            Self::BackendEofMidMessage => {
                f.write_str("backend closed in the middle of a message (1011)")
            }
            Self::BackendEofMidClientMessage => {
                f.write_str("backend closed while a client message was being relayed (1011)")
            }
            Self::BackendClose(c) => write!(f, "backend sent close ({c})"),
            Self::BackendProtocol(e) => write!(f, "{e} (1011)"),
            Self::BackendPacketTooBig => {
                f.write_str("backend packet larger than the buffer (1011)")
            }
            Self::BackendError(e) => {
                write!(f, "backend error: {} (1011)", crate::sys::ErrnoText(*e))
            }
            Self::ClientGone => f.write_str("client went away without a close frame"),
            Self::ClientError(k) => write!(f, "client error: {k}"),
            Self::Tls(t) => write!(f, "{t}"),
            Self::HandshakeTimeout => f.write_str("handshake timeout"),
            Self::PingTimeout => f.write_str("ping timeout (1011)"),
            Self::IdleTimeout => f.write_str("idle timeout (1001)"),
            Self::CloseTimeout => f.write_str("closing handshake timeout"),
            Self::Shutdown => f.write_str("gateway shutting down (1001)"),
            Self::HandedOver => f.write_str("handed over to the backend (direct)"),
            Self::HandoverTimeout => f.write_str("the backend did not take the socket in time"),
            Self::Dropped(c) => write!(f, "dropped by the operator ({c})"),
        }
    }
}

impl Reason {
    /// A short label, for the status and the metrics (one per variant).
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Refused(_) => "refused",
            Self::ClientClose(_) => "client_close",
            Self::Protocol(_) => "protocol_error",
            Self::Uplink(_) => "unsupported_data",
            Self::BackendEof => "backend_eof",
            Self::BackendEofMidMessage => "backend_eof_mid_message",
            Self::BackendEofMidClientMessage => "backend_eof_mid_client_message",
            Self::BackendClose(_) => "backend_close",
            Self::BackendProtocol(_) => "backend_protocol_error",
            Self::BackendPacketTooBig => "backend_packet_too_big",
            Self::BackendError(_) => "backend_error",
            Self::ClientGone => "client_gone",
            Self::ClientError(_) => "client_error",
            Self::Tls(_) => "tls",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::PingTimeout => "ping_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::CloseTimeout => "close_timeout",
            Self::Shutdown => "shutdown",
            Self::HandedOver => "handed_over",
            Self::HandoverTimeout => "handover_timeout",
            Self::Dropped(_) => "dropped",
        }
    }

    /// The close code the gateway sends when it ends an open connection for this reason:
    /// the one place a reason gets its code. `None` for the reasons that send no close frame
    /// of the gateway's choosing (a client's close is echoed as it came, §5.5.1).
    #[must_use]
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Self::Protocol(e) => Some(e.close_code()),
            Self::Uplink(UplinkError::NewlineInMessage) => Some(close_code::UNSUPPORTED_DATA),
            Self::BackendEof => Some(close_code::NORMAL),
            Self::BackendClose(c) | Self::Dropped(c) => Some(*c),
            Self::IdleTimeout | Self::Shutdown => Some(close_code::GOING_AWAY),
            Self::BackendEofMidMessage
            | Self::BackendEofMidClientMessage
            | Self::BackendProtocol(_)
            | Self::BackendPacketTooBig
            | Self::BackendError(_)
            | Self::PingTimeout => Some(close_code::INTERNAL_ERROR),
            Self::Refused(_)
            | Self::ClientClose(_)
            | Self::ClientGone
            | Self::ClientError(_)
            | Self::Tls(_)
            | Self::HandshakeTimeout
            | Self::CloseTimeout
            | Self::HandedOver
            | Self::HandoverTimeout => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_one_close_code() {
        for (why, code) in [
            (Reason::Protocol(ProtocolError::Unmasked), Some(1002)),
            (Reason::Protocol(ProtocolError::TooBig), Some(1009)),
            (Reason::Protocol(ProtocolError::InvalidUtf8), Some(1007)),
            (Reason::Uplink(UplinkError::NewlineInMessage), Some(1003)),
            (Reason::BackendEof, Some(1000)),
            (Reason::BackendClose(4001), Some(4001)),
            (Reason::IdleTimeout, Some(1001)),
            (Reason::Shutdown, Some(1001)),
            (Reason::BackendEofMidMessage, Some(1011)),
            (Reason::BackendEofMidClientMessage, Some(1011)),
            (Reason::BackendProtocol(DownlinkError::InvalidUtf8), Some(1011)),
            (Reason::BackendPacketTooBig, Some(1011)),
            (Reason::BackendError(Errno::EPIPE), Some(1011)),
            (Reason::PingTimeout, Some(1011)),
            (Reason::ClientClose(Some(1000)), None),
            (Reason::ClientGone, None),
            (Reason::Refused(Refusal::Denied), None),
            (Reason::CloseTimeout, None),
        ] {
            assert_eq!(why.close_code(), code, "{why}");
        }
    }
}
