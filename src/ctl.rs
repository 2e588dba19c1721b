//! `wsgate status` and `wsgate drop`: the client side of the control socket
//! ([`crate::event_loop::control`]). It sends one request line and copies the answer to
//! standard output; an answer starting `error: ` goes to standard error and exits 1.
//!
//! ```text
//! wsgate status [--json] [--control PATH | -f CONFIG]
//! wsgate drop ID [CODE] [--control PATH | -f CONFIG]
//! ```
//!
//! The socket is `--control`'s, else the `control` setting of `-f`'s configuration file,
//! else [`DEFAULT_CONTROL`] (where the packages' init scripts put it).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// The control socket the packages' init scripts configure.
pub const DEFAULT_CONTROL: &str = "/var/run/wsgate.ctl";

const USAGE: &str = "usage: wsgate status [--json] [--control PATH | -f CONFIG]\n       \
                     wsgate drop ID [CODE] [--control PATH | -f CONFIG]\n";

/// Runs `wsgate status` or `wsgate drop` when `argv` asks for one: the exit status; `None`
/// for any other command line (the gateway's own).
#[must_use]
pub fn main(argv: &[String]) -> Option<u8> {
    let command = argv.get(1)?.as_str();
    if command != "status" && command != "drop" {
        return None;
    }
    let mut json = false;
    let mut control: Option<PathBuf> = None;
    let mut file: Option<PathBuf> = None;
    let mut words: Vec<&str> = Vec::new();
    let mut rest = argv.iter().skip(2);
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--json" if command == "status" => json = true,
            "--control" | "-f" | "--config" => {
                let Some(value) = rest.next().map(PathBuf::from) else {
                    eprint!("{USAGE}");
                    return Some(2);
                };
                if a == "--control" {
                    control = Some(value);
                } else {
                    file = Some(value);
                }
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return Some(0);
            }
            w if !w.starts_with('-') && command == "drop" && words.len() < 2 => words.push(w),
            _ => {
                eprint!("{USAGE}");
                return Some(2);
            }
        }
    }
    if command == "drop" && words.is_empty() {
        eprint!("{USAGE}");
        return Some(2);
    }
    let path = match (control, file) {
        (Some(p), _) => p,
        (None, Some(f)) => match crate::config_file::load(&f) {
            Ok((service, _)) => match service.control {
                Some(p) => p,
                None => {
                    eprintln!("wsgate: {}: no control socket configured", f.display());
                    return Some(1);
                }
            },
            Err(e) => {
                eprintln!("wsgate: {e}");
                return Some(2);
            }
        },
        (None, None) => PathBuf::from(DEFAULT_CONTROL),
    };
    let request = match command {
        "status" if json => "status json\n".to_owned(),
        "status" => "status\n".to_owned(),
        _ => format!("drop {}\n", words.join(" ")),
    };
    match ask(&path, &request) {
        Ok(answer) => {
            if let Some(e) = answer.strip_prefix(b"error: ") {
                eprint!("wsgate: {}", String::from_utf8_lossy(e));
                return Some(1);
            }
            let mut out = std::io::stdout().lock();
            if out.write_all(&answer).and_then(|()| out.flush()).is_err() {
                return Some(1);
            }
            Some(0)
        }
        Err(e) => {
            eprintln!("wsgate: control socket {}: {e}", path.display());
            Some(1)
        }
    }
}

/// Sends `request` to the socket at `path` and reads the whole answer.
fn ask(path: &std::path::Path, request: &str) -> std::io::Result<Vec<u8>> {
    let mut sock = UnixStream::connect(path)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    // A gateway that is busy answers and closes without waiting for the request: the write
    // may then fail, and the answer is still there to read.
    let sent = sock.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let read = sock.read_to_end(&mut answer);
    if answer.is_empty() {
        sent?;
        read?;
    }
    Ok(answer)
}
