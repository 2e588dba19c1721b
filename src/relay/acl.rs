//! ouistiti's allow / deny / denylast access lists, matched against the decoded URL path.
//!
//! This module owns the pattern language of ouistiti's `utils_searchexp` as wsgate documents
//! it, and the order in which the `allow`, `deny` and `denylast` settings are applied. It
//! runs after [`path`](super::path) has decoded and checked the path.
//!
//! # Patterns
//!
//! * A pattern string is a comma-separated list of alternatives; the first alternative that
//!   matches wins. An empty string never matches, and neither does an empty alternative
//!   (`"a,,b"` is `"a,b"`).
//! * Without a leading `^` an alternative is unanchored at the start: it may match anywhere
//!   in the haystack (`abc` matches `ababc`). ouistiti's matcher does not backtrack and would
//!   miss that; see [`matches_one`] for why wsgate does not copy it.
//! * With a leading `^` the match starts at the first byte of the haystack.
//! * `*` matches any run of bytes, possibly empty.
//! * There is no implicit end anchor: the match succeeds as soon as the pattern is used up. A
//!   trailing `$` requires the haystack to end there. A `$` anywhere else is a literal.
//! * Matching is case-sensitive and byte-wise (UTF-8 stays UTF-8: a lead byte never equals a
//!   continuation byte).
//!
//! The haystack is the decoded path with its leading `/`, so `echo` matches `/echo`,
//! `/echolink` and `/x/echo/y`.
//!
//! # Order
//!
//! 1. `deny` matches and not `denylast`: reject.
//! 2. `allow` matches: accept.
//! 3. `deny` matches and `denylast`: reject.
//! 4. Otherwise: accept.
//!
//! Matching allocates nothing; an [`AccessList`] is built once at start-up.

/// True when one of the comma-separated alternatives in `patterns` matches `haystack`.
///
/// See the [module documentation](self) for the pattern language. An empty `patterns` never
/// matches.
#[must_use]
pub fn matches(patterns: &str, haystack: &str) -> bool {
    patterns
        .split(',')
        .any(|alt| !alt.is_empty() && matches_one(alt.as_bytes(), haystack.as_bytes()))
}

/// Matches one non-empty alternative: a glob over the whole haystack, where an unanchored
/// start acts as a leading `*` and a missing `$` as a trailing `*`.
///
/// ouistiti's own matcher does not backtrack (after a partial match it gives up on that
/// position), so `deny = "internal/*"` there misses `/api/internal/x`. That is a bug, and one
/// that lets requests through a deny list: wsgate backtracks, so a pattern matches wherever
/// a reader of the pattern would expect it to.
fn matches_one(pattern: &[u8], haystack: &[u8]) -> bool {
    let (lead, core) = match pattern.split_first() {
        Some((b'^', rest)) => (false, rest),
        _ => (true, pattern),
    };
    let (core, trail) = match core.split_last() {
        Some((b'$', rest)) => (rest, false),
        _ => (core, true),
    };
    // The virtual pattern is `[*] core [*]`; `at(i)` reads it without building it.
    let len = core.len() + usize::from(lead) + usize::from(trail);
    let at = |i: usize| -> u8 {
        if lead && i == 0 || trail && i + 1 == len {
            return b'*';
        }
        core.get(i - usize::from(lead)).copied().unwrap_or(b'*')
    };
    // Classic wildcard matching with one backtrack point: linear in practice, O(n·m) at worst
    // (paths are at most 256 bytes, patterns short).
    let (mut pi, mut hi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&h) = haystack.get(hi) {
        if pi < len && at(pi) == b'*' {
            star = Some((pi, hi));
            pi += 1;
        } else if pi < len && at(pi) == h {
            pi += 1;
            hi += 1;
        } else if let Some((sp, sh)) = star {
            pi = sp + 1;
            hi = sh + 1;
            star = Some((sp, sh + 1));
        } else {
            return false;
        }
    }
    while pi < len && at(pi) == b'*' {
        pi += 1;
    }
    pi == len
}

/// The allow / deny / denylast settings of one route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessList {
    /// Patterns that accept a path (default `"*"`: everything).
    pub allow: String,
    /// Patterns that reject a path (default `""`: nothing).
    pub deny: String,
    /// Apply `deny` after `allow` instead of before (default `false`).
    pub denylast: bool,
}

impl Default for AccessList {
    /// The documented defaults: allow `"*"`, deny `""`, denylast `false` (not ouistiti's code
    /// defaults).
    fn default() -> Self {
        Self { allow: "*".to_owned(), deny: String::new(), denylast: false }
    }
}

impl AccessList {
    /// True when `path` (the decoded path, leading `/` included) may be relayed.
    #[must_use]
    pub fn permits(&self, path: &str) -> bool {
        let denied = matches(&self.deny, path);
        if denied && !self.denylast {
            return false;
        }
        if matches(&self.allow, path) {
            return true;
        }
        !denied
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, clippy::expect_used)]
    use super::*;

    fn acl(allow: &str, deny: &str, denylast: bool) -> AccessList {
        AccessList { allow: allow.to_owned(), deny: deny.to_owned(), denylast }
    }

    #[test]
    fn unanchored_patterns_match_anywhere_once() {
        assert!(matches("echo", "/echo"));
        assert!(matches("echo", "/echolink"));
        assert!(matches("echo", "/x/echo/y"));
        assert!(!matches("echo", "/ech"));
        assert!(!matches("echo", "/chat"));
        assert!(matches("/echo", "/echo"));
        assert!(matches("abc", "abc"));
        assert!(matches("abc", "xxabc"));
    }

    #[test]
    fn backtracks_where_ouistiti_did_not() {
        assert!(matches("abc", "ababc"));
        assert!(matches("echo", "/eecho"));
        assert!(!matches("abc", "abxbc"));
        assert!(matches("a*bc", "abxbc"));
        assert!(matches("a*bc", "axxbc"));
    }

    #[test]
    fn caret_anchors_at_the_start() {
        assert!(matches("^/echo", "/echo"));
        assert!(matches("^/echo", "/echolink"));
        assert!(!matches("^/echo", "/x/echo"));
        assert!(!matches("^echo", "/echo"));
        assert!(matches("^/ws_*", "/ws_chat"));
        assert!(matches("^/ws_*", "/ws_"));
        assert!(!matches("^/ws_*", "/a/ws_chat"));
        assert!(!matches("^/ws_*", "/ws"));
    }

    #[test]
    fn star_matches_any_run() {
        assert!(matches("*", "/anything"));
        assert!(matches("*", ""));
        assert!(matches("^/a*c", "/abbbc"));
        assert!(matches("^/a*c", "/ac"));
        assert!(!matches("^/a*c", "/abbb"));
        assert!(matches("internal/*", "/internal/x"));
        assert!(matches("internal/*", "/x/internal/y"));
        assert!(!matches("internal/*", "/internal"));
        assert!(matches("^*/b", "/b"));
        assert!(matches("^*/b", "/a/b"));
        assert!(matches("**", "/a"));
    }

    #[test]
    fn dollar_anchors_at_the_end() {
        assert!(matches("echo$", "/echo"));
        assert!(!matches("echo$", "/echolink"));
        assert!(matches("^/echo$", "/echo"));
        assert!(!matches("^/echo$", "/echo/x"));
        assert!(matches("^/a*$", "/abc"));
        assert!(matches("*$", "/abc"));
        assert!(matches(".json$", "/x.json"));
        assert!(!matches(".json$", "/x.json.bak"));
        // Only a trailing '$' is special.
        assert!(matches("a$b", "/a$b"));
        assert!(!matches("a$b", "/a"));
        assert!(matches("^$", ""));
        assert!(!matches("^$", "/"));
    }

    #[test]
    fn case_sensitive() {
        assert!(!matches("echo", "/ECHO"));
        assert!(!matches("ECHO", "/echo"));
    }

    #[test]
    fn lists_and_empty_alternatives() {
        assert!(matches("chat,echo", "/echo"));
        assert!(matches("chat,echo", "/chat"));
        assert!(!matches("chat,echo", "/time"));
        assert!(matches("a,,b", "/b"));
        assert!(matches("a,,b", "/a"));
        assert!(!matches("a,,b", "/zzz"));
        assert!(!matches(",", "/zzz"));
        assert!(!matches("", "/echo"));
        assert!(!matches("", ""));
        assert!(matches("^/x,echo", "/a/echo"));
        assert!(matches("é", "/café"));
    }

    #[test]
    fn defaults_accept_everything() {
        let d = AccessList::default();
        assert_eq!(d, acl("*", "", false));
        assert!(d.permits("/echo"));
        assert!(d.permits("/a/b"));
    }

    #[test]
    fn allow_star_with_denylast_accepts_all() {
        let a = acl("*", "", true);
        assert!(a.permits("/echo"));
        assert!(a.permits("/internal/x"));
        let a = acl("*", "*", true);
        assert!(a.permits("/echo"));
        assert!(a.permits("/internal/x"));
    }

    #[test]
    fn allow_echo_deny_all_denylast_only_echo() {
        let a = acl("echo", "*", true);
        assert!(a.permits("/echo"));
        assert!(a.permits("/echolink"));
        assert!(a.permits("/x/echo/y"));
        assert!(!a.permits("/chat"));
        assert!(!a.permits("/ech"));
        // Without denylast the deny wins first.
        let a = acl("echo", "*", false);
        assert!(!a.permits("/echo"));
    }

    #[test]
    fn empty_deny_accepts_all() {
        let a = acl("", "", false);
        assert!(a.permits("/echo"));
        let a = acl("echo", "", false);
        assert!(a.permits("/chat"), "allow alone does not restrict");
        let a = acl("", "", true);
        assert!(a.permits("/chat"));
    }

    #[test]
    fn allow_prefix() {
        let a = acl("^/ws_*", "*", true);
        assert!(a.permits("/ws_chat"));
        assert!(!a.permits("/chat"));
        assert!(!a.permits("/a/ws_chat"));
    }

    #[test]
    fn deny_subtree() {
        let a = acl("*", "internal/*", false);
        assert!(!a.permits("/internal/x"));
        assert!(!a.permits("/a/internal/x"));
        assert!(a.permits("/internal"));
        assert!(a.permits("/echo"));
        // ouistiti would let this through (its skip stops at the 'i' of "api"); wsgate denies.
        assert!(!a.permits("/api/internal/x"));
        // denylast: allow "*" is checked first and accepts.
        let a = acl("*", "internal/*", true);
        assert!(a.permits("/internal/x"));
        // denylast with a narrower allow.
        let a = acl("^/internal/echo", "internal/*", true);
        assert!(a.permits("/internal/echo"));
        assert!(!a.permits("/internal/x"));
        assert!(a.permits("/chat"));
        // allow "echo" matches "/internal/echo" and is checked before the last deny.
        let a = acl("echo", "internal/*", true);
        assert!(a.permits("/internal/echo"));
    }

    /// A plain recursive reading of the pattern language, written apart from `matches_one`.
    fn reference(alt: &str, hay: &str) -> bool {
        fn glob(p: &[u8], h: &[u8]) -> bool {
            match p.split_first() {
                None => h.is_empty(),
                Some((b'*', rest)) => (0..=h.len()).any(|i| glob(rest, &h[i..])),
                Some((c, rest)) => h.first() == Some(c) && glob(rest, &h[1..]),
            }
        }
        let (anchored, body) = alt.strip_prefix('^').map_or((false, alt), |b| (true, b));
        let (body, end) = body.strip_suffix('$').map_or((body, false), |b| (b, true));
        let pattern =
            format!("{}{body}{}", if anchored { "" } else { "*" }, if end { "" } else { "*" });
        glob(pattern.as_bytes(), hay.as_bytes())
    }

    #[test]
    fn agrees_with_a_reference_reading() {
        const PAT: &[u8] = b"ab*^$";
        const HAY: &[u8] = b"ab/";
        let mut seed = 0x853c_49e6_748f_ea9b_u64;
        for _ in 0..50_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bits = seed;
            let mut take = |pool: &[u8], n: u64| -> std::string::String {
                (0..n)
                    .map(|_| {
                        let c = pool[(bits % pool.len() as u64) as usize] as char;
                        bits /= pool.len() as u64;
                        c
                    })
                    .collect()
            };
            let alt = take(PAT, seed % 5 + 1);
            let hay = take(HAY, (seed >> 60) % 6);
            assert_eq!(matches(&alt, &hay), reference(&alt, &hay), "{alt:?} on {hay:?}");
        }
    }

    #[test]
    fn deny_exact_with_dollar() {
        let a = acl("*", "^/admin$", false);
        assert!(!a.permits("/admin"));
        assert!(a.permits("/admin2"));
        assert!(a.permits("/x/admin"));
    }
}
