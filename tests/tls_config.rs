//! `wsgate::tls`: certificate and key loading, error messages, in-memory handshakes (TLS 1.2 and
//! 1.3) against a rustls client, client certificates, `CertStore::reload`, and the heap one
//! `ServerConnection` holds (`cargo test --test tls_config -- --nocapture` prints it).
//!
//! Certificates are made at test time with rcgen (a CA, server and client certificates); RSA
//! keys, and the PKCS#1 / SEC1 encodings, come from `openssl` (rcgen cannot make RSA keys with
//! its ring backend).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unsafe_code
)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, RootCertStore, ServerConnection};
use wsgate::tls::{self, TlsError, TlsFiles};

mod common;

use common::counting::{counted, Counting, LIVE, PEAK};

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---- test files -------------------------------------------------------------------------

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("wsgate-tls-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl must be installed for the RSA/PKCS#1/SEC1 tests");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// One 2048-bit RSA key per test run: (PKCS#1 PEM, PKCS#8 PEM).
fn rsa_key() -> &'static (String, String) {
    static KEY: OnceLock<(String, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        let pkcs1 = openssl(&["genrsa", "-traditional", "2048"], b"");
        let pkcs8 = openssl(&["pkcs8", "-topk8", "-nocrypt"], pkcs1.as_bytes());
        assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY") && pkcs8.contains("BEGIN PRIVATE KEY"));
        (pkcs1, pkcs8)
    })
}

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn make_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ca { cert: params.self_signed(&key).unwrap(), key }
}

/// A certificate for `localhost` (server) or a client, signed by `ca`.
fn leaf(ca: &Ca, key: &KeyPair, cn: &str, client: bool) -> Certificate {
    let names = if client { vec![] } else { vec!["localhost".to_owned()] };
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    params.signed_by(key, &ca.cert, &ca.key).unwrap()
}

/// Writes a server certificate signed by `ca` with `key` (whose file content is `key_pem`).
fn server_files(
    dir: &TempDir,
    tag: &str,
    ca: &Ca,
    key: &KeyPair,
    key_pem: &str,
) -> (TlsFiles, CertificateDer<'static>) {
    let cert = leaf(ca, key, tag, false);
    let files = TlsFiles {
        crtfile: dir.write(&format!("{tag}.crt"), cert.pem()),
        keyfile: dir.write(&format!("{tag}.key"), key_pem),
        cachain: Some(dir.write(&format!("{tag}-ca.crt"), ca.cert.pem())),
        client_ca: None,
    };
    (files, cert.der().clone())
}

fn ecdsa_server(dir: &TempDir, tag: &str, ca: &Ca) -> (TlsFiles, CertificateDer<'static>) {
    let key = KeyPair::generate().unwrap();
    let pem = key.serialize_pem();
    server_files(dir, tag, ca, &key, &pem)
}

// ---- in-memory handshake ----------------------------------------------------------------

fn client_config(
    ca: &Ca,
    version: &'static rustls::SupportedProtocolVersion,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client_cert {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The two directions of a socket pair; big enough never to grow inside a counted call.
struct Wire {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
}

impl Wire {
    fn new() -> Wire {
        Wire { to_server: Vec::with_capacity(1 << 20), to_client: Vec::with_capacity(1 << 20) }
    }
}

/// A socket with nothing to read.
struct WouldBlock;

impl Read for WouldBlock {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

#[derive(Debug)]
enum Failed {
    Client(rustls::Error),
    Server(rustls::Error),
}

/// Moves bytes both ways until neither side has anything to send. Server calls are counted.
fn pump(c: &mut ClientConnection, s: &mut ServerConnection, w: &mut Wire) -> Result<(), Failed> {
    for _ in 0..64 {
        w.to_server.clear();
        while c.wants_write() {
            c.write_tls(&mut w.to_server).unwrap();
        }
        let mut rd = &w.to_server[..];
        while !rd.is_empty() {
            counted(|| s.read_tls(&mut rd)).unwrap();
            counted(|| s.process_new_packets()).map_err(Failed::Server)?;
        }
        // An event loop reads until EAGAIN; that read lets rustls shrink its input buffer.
        let again = counted(|| s.read_tls(&mut WouldBlock));
        assert!(again.is_err());
        w.to_client.clear();
        counted(|| {
            while s.wants_write() {
                s.write_tls(&mut w.to_client).unwrap();
            }
        });
        let mut rd = &w.to_client[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().map_err(Failed::Client)?;
        }
        if !c.wants_write() && !counted(|| s.wants_write()) {
            return Ok(());
        }
    }
    panic!("handshake did not settle");
}

fn handshake(
    server: &Arc<rustls::ServerConfig>,
    client: Arc<ClientConfig>,
) -> Result<(ClientConnection, ServerConnection), Failed> {
    let mut s = tls::new_connection(server).unwrap();
    let mut c = ClientConnection::new(client, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut w = Wire::new();
    pump(&mut c, &mut s, &mut w)?;
    assert!(!c.is_handshaking() && !s.is_handshaking());
    Ok((c, s))
}

fn load_err(files: &TlsFiles) -> String {
    match tls::load(files) {
        Ok(_) => panic!("{files:?} loaded"),
        Err(e) => e.to_string(),
    }
}

// ---- loading ----------------------------------------------------------------------------

#[test]
fn ecdsa_keys_load_pkcs8_and_sec1_and_p384_and_ed25519() {
    let dir = TempDir::new("ecdsa");
    let ca = make_ca("test CA");
    let (files, _) = ecdsa_server(&dir, "p256", &ca);
    tls::load(&files).unwrap();

    let key = KeyPair::generate().unwrap();
    let sec1 = openssl(&["ec"], key.serialize_pem().as_bytes());
    assert!(sec1.contains("BEGIN EC PRIVATE KEY"), "{sec1}");
    let (files, _) = server_files(&dir, "sec1", &ca, &key, &sec1);
    tls::load(&files).unwrap();

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let (files, _) = server_files(&dir, "p384", &ca, &key, &key.serialize_pem());
    tls::load(&files).unwrap();

    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let (files, _) = server_files(&dir, "ed25519", &ca, &key, &key.serialize_pem());
    let config = tls::load(&files).unwrap();
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        handshake(&config, client_config(&ca, v, None)).unwrap();
    }
}

#[test]
fn rsa_keys_load_pkcs1_and_pkcs8() {
    let dir = TempDir::new("rsa");
    let ca = make_ca("test CA");
    let (pkcs1, pkcs8) = rsa_key();
    let key = KeyPair::from_pem(pkcs8).unwrap();
    let (files, _) = server_files(&dir, "rsa1", &ca, &key, pkcs1);
    let config = tls::load(&files).unwrap();
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        handshake(&config, client_config(&ca, v, None)).unwrap();
    }
    let (files, _) = server_files(&dir, "rsa8", &ca, &key, pkcs8);
    tls::load(&files).unwrap();
}

#[test]
fn chain_in_one_file_and_key_in_the_certificate_file() {
    let dir = TempDir::new("onefile");
    let ca = make_ca("test CA");
    let key = KeyPair::generate().unwrap();
    let cert = leaf(&ca, &key, "combined", false);
    // ouistiti's "pemfile": certificate, chain and key in one file.
    let all = format!("{}{}{}", cert.pem(), ca.cert.pem(), key.serialize_pem());
    let path = dir.write("all.pem", all);
    let files = TlsFiles { crtfile: path.clone(), keyfile: path, cachain: None, client_ca: None };
    let config = tls::load(&files).unwrap();
    let (c, _) = handshake(&config, client_config(&ca, &rustls::version::TLS13, None)).unwrap();
    let seen = c.peer_certificates().unwrap();
    assert_eq!(seen.len(), 2, "server certificate and its CA");
    assert_eq!(seen[0], *cert.der());
    assert_eq!(c.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn key_of_another_certificate_is_refused_naming_both_files() {
    let dir = TempDir::new("mismatch");
    let ca = make_ca("test CA");
    let (mut files, _) = ecdsa_server(&dir, "a", &ca);
    let other = KeyPair::generate().unwrap();
    files.keyfile = dir.write("other.key", other.serialize_pem());
    let e = load_err(&files);
    assert!(e.contains("does not match the certificate"), "{e}");
    assert!(e.contains("other.key") && e.contains("a.crt"), "{e}");
    assert!(matches!(tls::load(&files), Err(TlsError::KeyMismatch { .. })));

    // The CA first: the key matches a certificate, but not the first one.
    let (files, _) = ecdsa_server(&dir, "b", &ca);
    let leaf_pem = std::fs::read_to_string(&files.crtfile).unwrap();
    let files = TlsFiles {
        crtfile: dir.write("b-reversed.crt", format!("{}{leaf_pem}", ca.cert.pem())),
        cachain: None,
        ..files
    };
    let e = load_err(&files);
    assert!(e.contains("must come first"), "{e}");

    // An RSA key for an ECDSA certificate.
    let (files, _) = ecdsa_server(&dir, "c", &ca);
    let files = TlsFiles { keyfile: dir.write("rsa.key", &rsa_key().0), ..files };
    assert!(matches!(tls::load(&files), Err(TlsError::KeyMismatch { .. })));
}

#[test]
fn garbage_and_missing_files_are_refused_with_the_file_named() {
    let dir = TempDir::new("garbage");
    let ca = make_ca("test CA");
    let (good, _) = ecdsa_server(&dir, "good", &ca);
    let with = |f: &dyn Fn(&mut TlsFiles)| {
        let mut files = good.clone();
        f(&mut files);
        load_err(&files)
    };
    let noise: Vec<u8> =
        (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let noise_path = dir.write("noise.bin", &noise);
    let empty = dir.write("empty", "");
    let bad_b64 =
        dir.write("bad64.pem", "-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n");
    let unended = dir.write("unended.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    let not_der =
        dir.write("notder.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let bad_key =
        dir.write("badkey.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    let big = dir.write("big.pem", vec![b'A'; 300 * 1024]);
    let missing = dir.0.join("missing.crt");

    let cases: Vec<(String, &[&str])> = vec![
        (with(&|f| f.crtfile = noise_path.clone()), &["noise.bin", "no certificate"]),
        (with(&|f| f.crtfile = empty.clone()), &["empty", "no certificate"]),
        (with(&|f| f.crtfile = bad_b64.clone()), &["bad64.pem", "not a valid PEM file"]),
        (with(&|f| f.crtfile = unended.clone()), &["unended.pem", "no END line"]),
        (with(&|f| f.crtfile = not_der.clone()), &["notder.pem", "cannot be parsed"]),
        (with(&|f| f.crtfile = big.clone()), &["big.pem", "larger than 256 KiB"]),
        (with(&|f| f.crtfile = missing.clone()), &["missing.crt", "cannot read"]),
        (with(&|f| f.crtfile = dir.0.clone()), &["cannot read"]),
        (with(&|f| f.cachain = Some(noise_path.clone())), &["noise.bin", "no certificate"]),
        (with(&|f| f.keyfile = noise_path.clone()), &["noise.bin", "no private key"]),
        (with(&|f| f.keyfile = good.crtfile.clone()), &["good.crt", "no private key"]),
        (with(&|f| f.keyfile = bad_key.clone()), &["badkey.pem", "unusable private key"]),
        (with(&|f| f.keyfile = missing.clone()), &["missing.crt", "cannot read"]),
        (with(&|f| f.client_ca = Some(noise_path.clone())), &["noise.bin", "no certificate"]),
        (with(&|f| f.client_ca = Some(not_der.clone())), &["notder.pem", "client CA"]),
    ];
    for (message, wanted) in &cases {
        for w in *wanted {
            assert!(message.contains(w), "{message:?} lacks {w:?}");
        }
    }
    // Every prefix of a good certificate file, and every byte of it flipped, fails cleanly
    // or loads; nothing panics.
    let pem = std::fs::read(&good.crtfile).unwrap();
    for cut in (0..pem.len()).step_by(7) {
        let mut files = good.clone();
        files.crtfile = dir.write("cut.pem", &pem[..cut]);
        let _ = tls::load(&files);
    }
    for i in (0..pem.len()).step_by(3) {
        let mut bytes = pem.clone();
        bytes[i] ^= 0x55;
        let mut files = good.clone();
        files.crtfile = dir.write("flip.pem", &bytes);
        let _ = tls::load(&files);
    }
}

// ---- handshakes ---------------------------------------------------------------------------

#[test]
fn handshake_tls12_and_tls13_verifies_against_the_test_ca() {
    let dir = TempDir::new("hs");
    let ca = make_ca("test CA");
    let (files, cert) = ecdsa_server(&dir, "srv", &ca);
    let config = tls::load(&files).unwrap();
    for (v, p) in [
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
    ] {
        let (mut c, mut s) = handshake(&config, client_config(&ca, v, None)).unwrap();
        assert_eq!(c.protocol_version(), Some(p));
        assert_eq!(s.protocol_version(), Some(p));
        assert_eq!(c.peer_certificates().unwrap()[0], cert);
        assert_eq!(s.alpn_protocol(), Some(&b"http/1.1"[..]));
        // Application data both ways.
        c.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        pump(&mut c, &mut s, &mut Wire::new()).unwrap();
        let mut got = [0u8; 18];
        s.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n");
    }
    // A client trusting another CA refuses the server.
    let other = make_ca("other CA");
    let e = handshake(&config, client_config(&other, &rustls::version::TLS13, None)).unwrap_err();
    assert!(matches!(e, Failed::Client(rustls::Error::InvalidCertificate(_))), "{e:?}");
}

#[test]
fn client_ca_requires_a_client_certificate_signed_by_it() {
    let dir = TempDir::new("mtls");
    let ca = make_ca("test CA");
    let clients = make_ca("client CA");
    let (mut files, _) = ecdsa_server(&dir, "srv", &ca);
    files.client_ca = Some(dir.write("clients.crt", clients.cert.pem()));
    let config = tls::load(&files).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let client_cert = leaf(&clients, &client_key, "device 1", true);
    let stranger = make_ca("stranger CA");
    let stranger_cert = leaf(&stranger, &client_key, "device 2", true);
    let key_der = || PrivateKeyDer::try_from(client_key.serialize_der()).unwrap();

    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let e = handshake(&config, client_config(&ca, v, None)).unwrap_err();
        assert!(
            matches!(e, Failed::Server(rustls::Error::NoCertificatesPresented)),
            "{v:?}: {e:?}"
        );

        let id = Some((vec![stranger_cert.der().clone()], key_der()));
        let e = handshake(&config, client_config(&ca, v, id)).unwrap_err();
        assert!(matches!(e, Failed::Server(rustls::Error::InvalidCertificate(_))), "{v:?}: {e:?}");

        let id = Some((vec![client_cert.der().clone()], key_der()));
        let (_, s) = handshake(&config, client_config(&ca, v, id)).unwrap();
        assert_eq!(s.peer_certificates().unwrap()[0], *client_cert.der());
    }
}

#[test]
fn reload_swaps_the_certificate_and_a_broken_reload_keeps_the_old_one() {
    let dir = TempDir::new("reload");
    let ca = make_ca("test CA");
    let (first, first_cert) = ecdsa_server(&dir, "first", &ca);
    let (config, store) = tls::load_reloadable(&first).unwrap();
    let seen = |config: &Arc<rustls::ServerConfig>| {
        // A fresh client config each time: no session to resume.
        let (c, _) = handshake(config, client_config(&ca, &rustls::version::TLS13, None)).unwrap();
        c.peer_certificates().unwrap()[0].clone()
    };
    assert_eq!(seen(&config), first_cert);

    // An established connection keeps working across the reload.
    let (mut c, mut s) =
        handshake(&config, client_config(&ca, &rustls::version::TLS12, None)).unwrap();

    let (rsa_pkcs1, rsa_pkcs8) = rsa_key();
    let rsa = KeyPair::from_pem(rsa_pkcs8).unwrap();
    let (second, second_cert) = server_files(&dir, "second", &ca, &rsa, rsa_pkcs1);
    store.reload(&second).unwrap();
    assert_eq!(seen(&config), second_cert);
    assert_eq!(store.current().cert[0], second_cert);

    c.writer().write_all(b"still here").unwrap();
    pump(&mut c, &mut s, &mut Wire::new()).unwrap();
    let mut got = [0u8; 10];
    s.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"still here");

    // Broken reloads: a mismatched key, a garbage certificate, a missing file.
    let broken = [
        TlsFiles { keyfile: first.keyfile.clone(), ..second.clone() },
        TlsFiles { crtfile: dir.write("junk.crt", "junk"), ..second.clone() },
        TlsFiles { crtfile: dir.0.join("gone.crt"), ..second.clone() },
    ];
    for files in &broken {
        let e = store.reload(files).unwrap_err();
        assert!(!e.to_string().is_empty());
        assert_eq!(seen(&config), second_cert, "after {e}");
    }
    store.reload(&first).unwrap();
    assert_eq!(seen(&config), first_cert);
}

// ---- memory -----------------------------------------------------------------------------

static MEASURING: Mutex<()> = Mutex::new(());

#[derive(Debug)]
struct Figures {
    /// Most heap the server side held at once during the handshake.
    peak_handshake: isize,
    /// Owned by the connection right after the handshake.
    after_handshake: isize,
    /// Left behind in the shared ServerConfig (the session cache entry).
    cache: isize,
    /// Owned after 16 KiB each way, all read and written out.
    after_traffic: isize,
    /// Owned with 16 KiB received and unread, and output written until the limit refused more.
    full_buffers: isize,
}

/// What dropping the connection frees: the heap it owns.
fn owned(s: ServerConnection) -> isize {
    let before = LIVE.load(Ordering::SeqCst);
    counted(|| drop(s));
    before - LIVE.load(Ordering::SeqCst)
}

fn connect(
    config: &Arc<rustls::ServerConfig>,
    client: &dyn Fn() -> Arc<ClientConfig>,
    wire: &mut Wire,
) -> (ClientConnection, ServerConnection) {
    let mut c =
        ClientConnection::new(client(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = counted(|| tls::new_connection(config)).unwrap();
    pump(&mut c, &mut s, wire).unwrap();
    assert!(!s.is_handshaking() && !c.is_handshaking());
    (c, s)
}

fn measure(config: &Arc<rustls::ServerConfig>, client: &dyn Fn() -> Arc<ClientConfig>) -> Figures {
    let _guard = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let mut wire = Wire::new();
    let message = vec![0x5a_u8; 16 * 1024];
    let mut received = vec![0_u8; 64 * 1024];
    drop(connect(config, client, &mut wire)); // warm-up: lazy statics, first cache entry

    LIVE.store(0, Ordering::SeqCst);
    PEAK.store(0, Ordering::SeqCst);
    let (_c, s) = connect(config, client, &mut wire);
    let peak_handshake = PEAK.load(Ordering::SeqCst);
    let after_handshake = owned(s);
    let cache = LIVE.load(Ordering::SeqCst);

    let (mut c, mut s) = connect(config, client, &mut wire);
    c.writer().write_all(&message).unwrap();
    pump(&mut c, &mut s, &mut wire).unwrap();
    let mut n = 0;
    while n < message.len() {
        n += counted(|| s.reader().read(&mut received[n..])).unwrap();
    }
    let mut sent = 0;
    while sent < message.len() {
        sent += counted(|| s.writer().write(&message[sent..])).unwrap();
        pump(&mut c, &mut s, &mut wire).unwrap();
    }
    let mut n = 0;
    while n < message.len() {
        n += c.reader().read(&mut received[n..]).unwrap();
    }
    let after_traffic = owned(s);

    let (mut c, mut s) = connect(config, client, &mut wire);
    c.writer().write_all(&message).unwrap();
    pump(&mut c, &mut s, &mut wire).unwrap(); // the server reads it but the application does not
    let mut sent = 0;
    for _ in 0..16 {
        sent += counted(|| s.writer().write(&message)).unwrap();
    }
    assert!(sent < 2 * tls::BUFFER_LIMIT, "the limit holds: {sent}");
    let full_buffers = owned(s);

    Figures { peak_handshake, after_handshake, cache, after_traffic, full_buffers }
}

#[test]
fn heap_per_connection() {
    let dir = TempDir::new("heap");
    let ca = make_ca("test CA");
    let (files, _) = ecdsa_server(&dir, "srv", &ca);
    let config = tls::load(&files).unwrap();
    let kib = |n: isize| n as f64 / 1024.0;
    for (name, v) in [("TLS 1.3", &rustls::version::TLS13), ("TLS 1.2", &rustls::version::TLS12)] {
        let f = measure(&config, &|| client_config(&ca, v, None));
        println!(
            "heap per ServerConnection, {name} (P-256): {:.1} KiB after the handshake, \
             {:.1} KiB after 16 KiB each way, {:.1} KiB with full buffers (limit {} KiB), \
             peak {:.1} KiB during the handshake; {:.2} KiB left in the session cache",
            kib(f.after_handshake),
            kib(f.after_traffic),
            kib(f.full_buffers),
            tls::BUFFER_LIMIT / 1024,
            kib(f.peak_handshake),
            kib(f.cache),
        );
        // Bounds that catch a regression (a buffer kept, a limit lost), not exact figures.
        assert!(f.after_handshake > 0 && f.after_handshake < 16 * 1024, "{f:?}");
        assert!(f.after_traffic < 24 * 1024, "{f:?}");
        assert!(f.full_buffers < 128 * 1024, "{f:?}");
        assert!(f.cache >= 0 && f.cache < 4 * 1024, "{f:?}");
    }
}
