//! The gateway binary: command line → config → logging → event loop; errors → exit codes.

use std::process::ExitCode;

use wsgate::cli::Args;
use wsgate::event_loop::Server;
use wsgate::logging;
use wsgate::sys::signals::Signals;

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wsgate: {e}");
            return ExitCode::from(2);
        }
    };
    logging::set_level(config.verbosity);
    // Before any thread exists, so that the signal mask is everyone's.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wsgate: signals: {e}");
            return ExitCode::from(1);
        }
    };
    let mut server = match Server::bind(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wsgate: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = server.watch_signals(signals) {
        eprintln!("wsgate: signals: {e}");
        return ExitCode::from(1);
    }
    match server.local_addr() {
        Ok(addr) => eprintln!("wsgate: listening on {addr}"),
        Err(e) => eprintln!("wsgate: listening (address unknown: {e})"),
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate: poll: {e}");
            ExitCode::from(1)
        }
    }
}
