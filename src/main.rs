//! The gateway binary: command line (and config file) → config → logging → event loop;
//! errors → exit codes (2: configuration, 1: start-up or run-time failure).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wsgate::cli::Args;
use wsgate::config::Config;
use wsgate::config_file;
use wsgate::event_loop::{Reloader, Server};
use wsgate::logging;
use wsgate::sys::signals::Signals;

/// Loads `path` on top of `base`; warnings go to stderr.
fn load(path: &Path, base: &Config) -> Result<(Config, config_file::ServiceConfig), String> {
    let (service, mut warnings) = config_file::load(path).map_err(|e| e.to_string())?;
    let (config, more) =
        config_file::to_runtime(path, &service, base).map_err(|e| e.to_string())?;
    warnings.extend(more);
    for w in &warnings {
        eprintln!("wsgate: warning: {w}");
    }
    Ok((config, service))
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    let (file, check): (Option<PathBuf>, bool) = (args.config.clone(), args.check);
    let base = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wsgate: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match &file {
        Some(path) => match load(path, &base) {
            Ok((config, service)) => {
                if check {
                    print!("{}", config_file::render(&service));
                    println!("# {}: ok", path.display());
                    return ExitCode::SUCCESS;
                }
                config
            }
            Err(e) => {
                eprintln!("wsgate: {e}");
                return ExitCode::from(2);
            }
        },
        None => {
            if check {
                println!("{base:#?}");
                return ExitCode::SUCCESS;
            }
            base.clone()
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
    if let Some(path) = file {
        server.set_reloader(Reloader(Box::new(move || load(&path, &base).map(|(c, _)| c))));
    }
    for addr in server.local_addrs() {
        match addr {
            Ok(addr) => eprintln!("wsgate: listening on {addr}"),
            Err(e) => eprintln!("wsgate: listening (address unknown: {e})"),
        }
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate: poll: {e}");
            ExitCode::from(1)
        }
    }
}
