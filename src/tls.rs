//! TLS configuration for `wss://` listeners: certificate files → [`rustls::ServerConfig`].
//!
//! [`load`] reads a server's `tls` files ([`TlsFiles`]) and builds the configuration every
//! TLS connection of that listener shares: rustls 0.23 with the *ring* provider, TLS 1.3 and
//! 1.2, ALPN `http/1.1`, no 0-RTT, a session cache of [`SESSION_CACHE_ENTRIES`] entries, and
//! client certificates required and verified when `client_ca` is set. The certificate is not
//! put into the configuration directly but served by a [`CertStore`], whose
//! [`reload`](CertStore::reload) swaps it at run time (SIGHUP): new handshakes see the new
//! certificate, established connections keep theirs, and the session cache survives. A failed
//! reload leaves the old certificate in place.
//!
//! Files are PEM. The certificate file may hold the whole chain (server certificate first);
//! `cachain` is appended to it. Keys: RSA (PKCS#1 or PKCS#8, 2048 to 8192 bits), ECDSA P-256 or
//! P-384 (SEC1 or PKCS#8), Ed25519 (PKCS#8); not encrypted. Every error names the file and
//! what is wrong with it; no input reaches a panic, and a file larger than [`MAX_FILE_SIZE`]
//! is refused before it is parsed.
//!
//! # Memory per connection
//!
//! A `rustls::ServerConnection` owns, besides about 2 KiB of fixed state (keys, handshake
//! state, the shared `Arc`s), four buffers that grow on demand:
//!
//! * incoming TLS records (the deframer): grows in 4 KiB steps to one record, at most
//!   16 KiB + 2 KiB + 5; during the handshake up to 64 KiB for one huge handshake message. It
//!   shrinks back to 4 KiB only in a `read_tls` call that finds it empty, so the event loop must
//!   read until `WouldBlock` (edge-triggered mio does) or an idle connection keeps up to 18 KiB;
//! * decrypted plaintext not yet read by the application: `read_tls` refuses to read more
//!   ("received plaintext buffer full") past 16 KiB;
//! * plaintext written before the handshake completed, and
//! * encrypted records not yet written to the socket: both bounded by `set_buffer_limit`,
//!   64 KiB each by default.
//!
//! The event loop creates connections with [`new_connection`], which sets the limit to
//! [`BUFFER_LIMIT`] (16 KiB): `writer().write` then accepts no more than the room left, which is
//! wsgate's backpressure signal, as a full socket buffer is for `ws://`. The limits are soft by
//! at most one record (16 KiB + 22 bytes), so the worst case of an established connection is
//! about 18 + 32 + 32 KiB ≈ 82 KiB plus the fixed state (wsgate writes nothing before the
//! handshake completes), and an idle, drained connection holds 6 KiB.
//!
//! Measured by `tests/tls_config.rs` (`heap_per_connection`; a counting global allocator
//! attributes to the server what its calls allocate; x86_64, rustls 0.23.46, P-256 certificate,
//! a rustls client in memory), heap owned by one `ServerConnection`:
//!
//! | | after the handshake | after 16 KiB each way, drained | 16 KiB unread + output at the limit | peak during the handshake |
//! |---|---|---|---|---|
//! | TLS 1.3 | 6.0 KiB | 6.1 KiB | 38 KiB | 10 KiB |
//! | TLS 1.2 | 5.9 KiB | 6.0 KiB | 38 KiB | 9 KiB |
//!
//! 4 KiB of the 6 is the deframer's minimum. Each session-cache entry (one per TLS 1.2
//! handshake, one per TLS 1.3 ticket) holds about 0.2 KiB more, shared by all connections and
//! bounded by [`SESSION_CACHE_ENTRIES`] (≈ 13 KiB in all). 32-bit targets use somewhat less.
//!
//! # Binary size
//!
//! `examples/tls_size.rs` (load + one TLS echo connection) against the same echo without TLS,
//! x86_64 release profile (opt-level "s", LTO, stripped): 1,231,992 vs 307,592 bytes, so TLS
//! adds about 900 KiB (`cargo bloat`: rustls 252 KiB, ring 182 KiB + its tables, webpki
//! 43 KiB of code). TLS 1.2 is 43 KiB of that. The `wsgate` binary (x86_64, stripped) went
//! from 655 KB without TLS to 1,344,032 B when the configuration was validated with this
//! module, and to 1,584,832 B once connections were served over TLS.
//!
//! [`UnbufferedServerConnection`](rustls::server::UnbufferedServerConnection) would let the
//! event loop lend its own buffers, but in 0.23.46 it allocates per record just the same
//! (see `event_loop::tls_io`), so the buffered connection is used.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore, ServerConfig, ServerConnection};

/// The one ALPN protocol offered: WebSocket upgrades are HTTP/1.1 (RFC 6455).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Entries of the server-side session cache (TLS 1.2 session IDs and TLS 1.3 tickets).
pub const SESSION_CACHE_ENTRIES: usize = 64;

/// TLS 1.3 tickets sent after each full handshake (rustls sends 2 by default; browsers use one).
pub const TLS13_TICKETS: usize = 1;

/// What [`new_connection`] passes to `ServerConnection::set_buffer_limit`.
pub const BUFFER_LIMIT: usize = 16 * 1024;

/// Largest certificate, chain or key file read; larger ones are refused unparsed.
pub const MAX_FILE_SIZE: u64 = 256 * 1024;

/// A server's TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate, optionally followed by its chain (PEM).
    pub crtfile: PathBuf,
    /// The private key of the first certificate in `crtfile` (PEM).
    pub keyfile: PathBuf,
    /// More chain certificates, sent after those of `crtfile`.
    pub cachain: Option<PathBuf>,
    /// CA certificates for client authentication: when set, every client must present a
    /// certificate that chains to one of them.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS configuration could not be built. Every variant names the file at fault.
#[derive(Debug)]
pub enum TlsError {
    /// The file cannot be opened or read.
    Read {
        /// The file.
        path: PathBuf,
        /// The error from the system.
        source: io::Error,
    },
    /// The file is larger than [`MAX_FILE_SIZE`].
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file has a malformed PEM section.
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file holds no `CERTIFICATE` section.
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no unencrypted private key section.
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is of a type or size that cannot be used.
    BadKey {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// The server certificate cannot be parsed.
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// The private key is not the key of the server certificate.
    KeyMismatch {
        /// The certificate file.
        crtfile: PathBuf,
        /// The key file.
        keyfile: PathBuf,
    },
    /// The client CA file cannot be used.
    ClientCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the configuration (not expected with the fixed settings used here).
    Config(rustls::Error),
}

impl TlsError {
    /// The file at fault (the key file for a key that does not match its certificate).
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match self {
            TlsError::Read { path, .. }
            | TlsError::TooLarge { path }
            | TlsError::Pem { path, .. }
            | TlsError::NoCertificate { path }
            | TlsError::NoKey { path }
            | TlsError::BadKey { path, .. }
            | TlsError::BadCertificate { path, .. }
            | TlsError::ClientCa { path, .. } => Some(path),
            TlsError::KeyMismatch { keyfile, .. } => Some(keyfile),
            TlsError::Config(_) => None,
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, source } => {
                write!(f, "{}: cannot read: {source}", path.display())
            }
            TlsError::TooLarge { path } => write!(
                f,
                "{}: larger than {} KiB, not a certificate or key file",
                path.display(),
                MAX_FILE_SIZE / 1024
            ),
            TlsError::Pem { path, detail } => {
                write!(f, "{}: not a valid PEM file: {detail}", path.display())
            }
            TlsError::NoCertificate { path } => write!(
                f,
                "{}: no certificate (expected a PEM \"BEGIN CERTIFICATE\" section)",
                path.display()
            ),
            TlsError::NoKey { path } => write!(
                f,
                "{}: no private key (expected a PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE \
                 KEY\" or \"BEGIN EC PRIVATE KEY\" section; encrypted keys are not supported)",
                path.display()
            ),
            TlsError::BadKey { path, detail } => write!(
                f,
                "{}: unusable private key ({detail}); supported: RSA 2048-8192 bits, ECDSA \
                 P-256/P-384, Ed25519",
                path.display()
            ),
            TlsError::BadCertificate { path, detail } => {
                write!(f, "{}: the first certificate cannot be parsed: {detail}", path.display())
            }
            TlsError::KeyMismatch { crtfile, keyfile } => write!(
                f,
                "{}: the private key does not match the certificate in {} (the server's own \
                 certificate must come first)",
                keyfile.display(),
                crtfile.display()
            ),
            TlsError::ClientCa { path, detail } => {
                write!(f, "{}: client CA: {detail}", path.display())
            }
            TlsError::Config(e) => write!(f, "TLS configuration: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { source, .. } => Some(source),
            TlsError::Config(e) => Some(e),
            _ => None,
        }
    }
}

/// The server certificate and key, swappable while the configuration that serves them is in
/// use. The lock is taken once per handshake, for an `Arc` clone.
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl CertStore {
    /// Loads the certificate chain and key of `files` (`client_ca` is not used here).
    pub fn new(files: &TlsFiles) -> Result<CertStore, TlsError> {
        CertStore::with_provider(files, provider())
    }

    fn with_provider(
        files: &TlsFiles,
        provider: Arc<CryptoProvider>,
    ) -> Result<CertStore, TlsError> {
        let key = certified_key(files, &provider)?;
        Ok(CertStore { current: RwLock::new(Arc::new(key)), provider })
    }

    /// Loads `files` again and, if they are good, serves them from the next handshake on. On
    /// error the certificate served so far stays. `client_ca` is not reloaded: it belongs to
    /// the `ServerConfig` (build a new one with [`load`] to change it).
    pub fn reload(&self, files: &TlsFiles) -> Result<(), TlsError> {
        let key = Arc::new(certified_key(files, &self.provider)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
        Ok(())
    }

    /// The certificate and key served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Its name only: rustls requires `Debug` of a certificate resolver, so the vtable keeps this
/// `Debug` in the binary whether or not anything prints it, and a derived one would keep the
/// `Debug` of the key, the certificates and the whole crypto provider.
impl core::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CertStore").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Builds the configuration of a TLS listener; see the module documentation.
pub fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    load_reloadable(files).map(|(config, _)| config)
}

/// [`load`], also returning the [`CertStore`] the configuration serves its certificate from,
/// for [`CertStore::reload`].
pub fn load_reloadable(files: &TlsFiles) -> Result<(Arc<ServerConfig>, Arc<CertStore>), TlsError> {
    let provider = provider();
    let store = Arc::new(CertStore::with_provider(files, Arc::clone(&provider))?);
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?;
    let builder = match &files.client_ca {
        Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::clone(&store) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    config.send_tls13_tickets = TLS13_TICKETS;
    config.max_early_data_size = 0;
    config.send_half_rtt_data = false;
    Ok((Arc::new(config), store))
}

/// A server connection with wsgate's buffer limit ([`BUFFER_LIMIT`]).
pub fn new_connection(config: &Arc<ServerConfig>) -> Result<ServerConnection, rustls::Error> {
    let mut conn = ServerConnection::new(Arc::clone(config))?;
    conn.set_buffer_limit(Some(BUFFER_LIMIT));
    Ok(conn)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let mut chain = certificates(&files.crtfile)?;
    if let Some(cachain) = &files.cachain {
        chain.extend(certificates(cachain)?);
    }
    let der = private_key(&files.keyfile)?;
    let key = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::BadKey { path: files.keyfile.clone(), detail: e.to_string() })?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        // Unknown: the key cannot tell its public half; the handshake will show.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                crtfile: files.crtfile.clone(),
                keyfile: files.keyfile.clone(),
            })
        }
        Err(e) => {
            Err(TlsError::BadCertificate { path: files.crtfile.clone(), detail: e.to_string() })
        }
    }
}

fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::ClientCa { path: path.to_owned(), detail: e.to_string() })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsError::ClientCa { path: path.to_owned(), detail: e.to_string() })
}

/// Every `CERTIFICATE` section of the file, in order; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_bounded(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

/// The first private key section of the file.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut bytes = read_bounded(path)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey { path: path.to_owned() },
        e => pem_error(path, &e),
    });
    // The decoded key wipes itself on drop; wipe the PEM text as well.
    bytes.fill(0);
    std::hint::black_box(&bytes);
    key
}

fn pem_error(path: &Path, e: &pem::Error) -> TlsError {
    // pem::Error's own text quotes the offending line, which may be binary garbage.
    let detail = match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line".to_owned(),
        pem::Error::Base64Decode(d) => format!("bad base64 ({d})"),
        other => other.to_string(),
    };
    TlsError::Pem { path: path.to_owned(), detail }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_err = |source| TlsError::Read { path: path.to_owned(), source };
    let file = File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes).map_err(read_err)?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > MAX_FILE_SIZE) {
        return Err(TlsError::TooLarge { path: path.to_owned() });
    }
    Ok(bytes)
}
