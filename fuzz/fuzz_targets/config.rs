//! The configuration reader (`libconfig::parse_str` and `config_file::load_str`, then
//! `config_file::to_runtime`): any text gives a configuration or an error that names the file
//! and a line of it; an accepted configuration survives `render` and a second reading.
#![no_main]
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A fuzz harness: a panic is how it reports a broken invariant.

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wsgate::config::Config;
use wsgate::config_file::{self, ConfigFileError};

/// In a directory that does not exist: an `@include` relative to it finds nothing, so the run
/// reads no file of this machine.
const FILE: &str = "/nonexistent-wsgate-fuzz/wsgate.conf";
/// The working directory a relative `config_d` is resolved from, which does not exist either.
const DIR: &str = "/nonexistent-wsgate-fuzz";

fn check_position(e: &ConfigFileError, text: &str, whole_file: bool) {
    let shown = e.to_string();
    assert!(shown.starts_with(&format!("{}:", e.file.display())), "{shown}");
    if e.line == 0 {
        // Only a file that could not be read has no line, or a problem of the whole
        // configuration (sites that do not fit together), found after parsing.
        assert!(whole_file || e.file != Path::new(FILE), "{shown}");
        return;
    }
    assert!(e.col >= 1, "{shown}");
    assert!(shown.starts_with(&format!("{}:{}:{}: ", e.file.display(), e.line, e.col)), "{shown}");
    if e.file == Path::new(FILE) {
        let lines = text.split('\n').count();
        assert!(e.line as usize <= lines, "line {} of {lines}: {shown}", e.line);
        let line = text.split('\n').nth(e.line as usize - 1).unwrap_or_default();
        assert!(e.col as usize <= line.chars().count() + 1, "{shown} / {line:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else { return };
    let (cfg, warnings) = match config_file::load_str_in(text, Path::new(FILE), Path::new(DIR)) {
        Ok(x) => x,
        Err(e) => return check_position(&e, text, false),
    };
    for w in &warnings {
        let shown = w.to_string();
        assert!(shown.starts_with(&format!("{}:", w.file.display())), "{shown}");
    }
    // What `--print-config` shows reads back as the same configuration.
    let rendered = config_file::render(&cfg);
    let (again, _) = match config_file::load_str_in(&rendered, Path::new(FILE), Path::new(DIR)) {
        Ok(x) => x,
        Err(e) => panic!("rendered configuration refused: {e}\n{rendered}"),
    };
    assert_eq!(
        cfg.clone().without_places(),
        again.without_places(),
        "render changed the configuration:\n{rendered}"
    );
    // Without the TLS files: `to_runtime` loads them, and a fuzzed path could name any file
    // of this machine (the configuration is the administrator's, not an attacker's input).
    let mut plain = cfg;
    for s in &mut plain.servers {
        s.tls = None;
    }
    if let Err(e) = config_file::to_runtime(Path::new(FILE), &plain, &Config::default()) {
        check_position(&e, text, true);
    }
});
