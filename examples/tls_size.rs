//! What TLS adds to a release binary: loads a certificate with `wsgate::tls::load` and serves
//! one TLS echo connection on 127.0.0.1, so that the whole server handshake and record layer
//! are linked in, as they will be in `wsgate`. Also a manual check against other clients:
//!
//! ```text
//! cargo run --release --example tls_size -- server.crt server.key 127.0.0.1:8443
//! openssl s_client -connect 127.0.0.1:8443 -alpn http/1.1 [-tls1_2]
//! ```

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use wsgate::tls::{self, TlsFiles};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(crtfile), Some(keyfile)) = (args.next(), args.next()) else {
        return Err("usage: tls_size CRTFILE KEYFILE [ADDR]".into());
    };
    let addr = args.next().and_then(|a| a.into_string().ok());
    let files = TlsFiles {
        crtfile: PathBuf::from(crtfile),
        keyfile: PathBuf::from(keyfile),
        cachain: None,
        client_ca: None,
    };
    let config = tls::load(&files)?;
    let listener = TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8443"))?;
    let (tcp, _) = listener.accept()?;
    let conn = tls::new_connection(&config)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        let Some(data) = buf.get(..n).filter(|d| !d.is_empty()) else {
            return Ok(());
        };
        stream.write_all(data)?;
    }
}
