//! The gateway binary: command line (and config file) → config → logging → service (init.d
//! scripts, listeners, privilege drop, event loop; see [`wsgate::service`]); errors → exit
//! codes (2: configuration, 1: start-up or run-time failure).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wsgate::cli::Args;
use wsgate::config::Config;
use wsgate::config_file::{self, ServiceConfig, Warning};
use wsgate::event_loop::{ReloadError, Reloader};
use wsgate::logging::{self, WARN};
use wsgate::service::{self, Service, Settings};
use wsgate::sys::signals::Signals;

/// Loads `path` on top of `base`: the runtime configuration and the file's own settings, or
/// why the file cannot run; beside either, the file's warnings (those that explain a failure
/// too: a `config_d` that was not found, servers that do not run).
fn load(path: &Path, base: &Config) -> (Result<(Config, ServiceConfig), String>, Vec<Warning>) {
    let (service, mut warnings) = match config_file::load(path) {
        Ok(x) => x,
        Err(e) => return (Err(e.to_string()), Vec::new()),
    };
    let result = config_file::to_runtime(path, &service, base).map(|(config, more)| {
        warnings.extend(more);
        (config, service)
    });
    (result.map_err(|e| e.to_string()), warnings)
}

/// `-W DIR`: makes `file` absolute (it is named from where wsgate was started), then moves
/// into DIR, from which every other relative path is resolved.
fn enter_workdir(dir: &Path, file: &mut Option<PathBuf>) -> Result<(), String> {
    if let Some(f) = file.as_mut().filter(|f| f.is_relative()) {
        let cwd = std::env::current_dir().map_err(|e| format!("-W: working directory: {e}"))?;
        *f = cwd.join(&*f);
    }
    std::env::set_current_dir(dir).map_err(|e| format!("-W {}: {e}", dir.display()))
}

/// `--check`: the files authentication reads at start (the user database, an existing session
/// key) are read as the start would read them.
fn check_auth_files(config: &Config) -> Result<(), String> {
    for policy in config.sites.iter().filter_map(|s| s.auth.as_ref()) {
        wsgate::auth::users::UserDb::open(&policy.db)?;
        if let Some(session) = policy.session.as_ref().filter(|s| s.key.exists()) {
            wsgate::auth::session::KeyFile::open(&session.key)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // `wsgate status` and `wsgate drop`: a client of a running gateway's control socket.
    let argv: Vec<String> = std::env::args().collect();
    if let Some(code) = wsgate::ctl::main(&argv) {
        return ExitCode::from(code);
    }
    let mut args: Args = argh::from_env();
    let (mut file, check): (Option<PathBuf>, bool) = (args.config.clone(), args.check);
    if let Some(dir) = args.workdir.take() {
        if let Err(e) = enter_workdir(&dir, &mut file) {
            eprintln!("wsgate: {e}");
            return ExitCode::from(2);
        }
    }
    if let Some(key) = args.rotate_session_key.take() {
        return match wsgate::auth::session::rotate_key_file(&key) {
            Ok(()) => {
                println!(
                    "wsgate: {}: a new session key; every session signed with the old one has \
                     ended (a running gateway reads it at its next check)",
                    key.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wsgate: {e}");
                ExitCode::from(1)
            }
        };
    }
    let cli = Settings {
        user: args.user.take(),
        log_file: args.log_file.take(),
        syslog: args.syslog,
        pid_file: args.pid_file.take(),
        init_d: args.init_d.take(),
        control: args.control.take(),
    };
    let log_rate = args.log_rate;
    let base = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wsgate: {e}");
            return ExitCode::from(2);
        }
    };
    let (config, service_config, warnings) = match &file {
        Some(path) => {
            let (result, warnings) = load(path, &base);
            if check || result.is_err() {
                for w in &warnings {
                    eprintln!("wsgate: warning: {w}");
                }
            }
            match result {
                Ok((config, service)) if check => {
                    if let Err(e) = check_auth_files(&config) {
                        eprintln!("wsgate: {e}");
                        return ExitCode::from(2);
                    }
                    print!("{}", config_file::render_check(&service));
                    println!("# {}: ok", path.display());
                    return ExitCode::SUCCESS;
                }
                Ok((config, service)) => (config, service, warnings),
                Err(e) => {
                    eprintln!("wsgate: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        None => {
            if check {
                if let Err(e) = check_auth_files(&base) {
                    eprintln!("wsgate: {e}");
                    return ExitCode::from(2);
                }
                print!("{}", base.summary());
                return ExitCode::SUCCESS;
            }
            (base.clone(), ServiceConfig::default(), Vec::new())
        }
    };
    let settings = Settings::merge(&service_config, cli);
    logging::set_level(config.verbosity);
    logging::set_rate(log_rate);
    // As root, before anything starts: the log file, the syslog socket, the account.
    if let Err(e) = service::open_logs(&settings) {
        eprintln!("wsgate: {e}");
        return ExitCode::from(1);
    }
    for w in &warnings {
        logging::announce(WARN, format_args!("warning: {w}"));
    }
    // Before any thread or child exists, so that the signal mask is everyone's (children get
    // a clean mask from `Command`).
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            logging::announce(WARN, format_args!("signals: {}", wsgate::sys::ErrnoText(e)));
            return ExitCode::from(1);
        }
    };
    let service = match Service::prepare(&settings) {
        Ok(s) => s,
        Err(e) => {
            logging::announce(WARN, format_args!("{e}"));
            return ExitCode::from(1);
        }
    };
    // SIGHUP: the file is read again; without one, the command line's configuration is
    // applied again with its certificates read again, which also reopens the docroots.
    let reloader = match file {
        Some(path) => Reloader(Box::new(move || {
            let (result, warnings) = load(&path, &base);
            for w in &warnings {
                wsgate::log!(WARN, "warning: {w}");
            }
            result.map(|(config, _)| config).map_err(ReloadError::Config)
        })),
        None => Reloader(Box::new(move || base.with_tls_reloaded().map_err(ReloadError::Config))),
    };
    ExitCode::from(service.run(config, signals, Some(reloader)))
}
