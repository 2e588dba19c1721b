#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
use std::path::PathBuf;

use super::*;

fn parse(text: &str) -> Document {
    parse_str(text, Path::new("t.conf")).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    match parse_str(text, Path::new("t.conf")) {
        Ok(d) => panic!("parsed: {d:?}"),
        Err(e) => e.to_string(),
    }
}

fn one(text: &str) -> Kind {
    let d = parse(text);
    assert_eq!(d.root.len(), 1, "{d:?}");
    d.root[0].value.kind.clone()
}

#[test]
fn settings_with_both_assignments_and_all_terminators() {
    let d = parse("a = 1; b : 2, c = 3\nd=4");
    let names: Vec<_> = d.root.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    assert_eq!(d.root[3].value.kind, Kind::Int(4));
    assert!(parse("").root.is_empty());
    assert!(parse("  # only a comment\n").root.is_empty());
}

#[test]
fn names() {
    let d = parse("log-file = 1; *star_x-9 = 2; A = 3;");
    assert_eq!(d.root[0].name, "log-file");
    assert_eq!(d.root[1].name, "*star_x-9");
    assert!(is_name("log-file"));
    assert!(!is_name("9a"));
    assert!(!is_name("TRUE"));
    assert!(!is_name(""));
    assert!(err("_a = 1;").contains("expected a setting name, found character '_'"));
}

#[test]
fn positions_of_names_and_values() {
    let d = parse("a = 1;\n  bb = { c = \"x\"; };\nl = ( 1, [ 2 ] );");
    assert_eq!(d.root[0].pos, Pos { file: 0, line: 1, col: 1 });
    assert_eq!(d.root[0].value.pos, Pos { file: 0, line: 1, col: 5 });
    let bb = &d.root[1];
    assert_eq!((bb.pos.line, bb.pos.col), (2, 3));
    assert_eq!((bb.value.pos.line, bb.value.pos.col), (2, 8));
    let c = &bb.value.as_group().unwrap()[0];
    assert_eq!((c.pos.line, c.pos.col, c.value.pos.col), (2, 10, 14));
    let l = d.root[2].value.items().unwrap();
    assert_eq!((l[0].pos.line, l[0].pos.col), (3, 7));
    assert_eq!(l[1].pos.col, 10);
    assert_eq!(l[1].items().unwrap()[0].pos.col, 12);
}

#[test]
fn columns_count_characters() {
    let d = parse("a = \"é€\"; b = 1;");
    assert_eq!(d.root[1].pos.col, 11);
}

#[test]
fn booleans_any_case() {
    assert_eq!(one("a = true;"), Kind::Bool(true));
    assert_eq!(one("a = FALSE;"), Kind::Bool(false));
    assert_eq!(one("a = TrUe;"), Kind::Bool(true));
    assert!(err("true = 1;").contains("expected a setting name, found true"));
}

#[test]
fn integers() {
    assert_eq!(one("a = 42;"), Kind::Int(42));
    assert_eq!(one("a = -7;"), Kind::Int(-7));
    assert_eq!(one("a = +3;"), Kind::Int(3));
    assert_eq!(one("a = 0x1F;"), Kind::Int(31));
    assert_eq!(one("a = 0Xff;"), Kind::Int(255));
    assert_eq!(one("a = 0x7FFFFFFFFFFFFFFFL;"), Kind::Int(i64::MAX));
    assert_eq!(one("a = 5000000000L;"), Kind::Int(5_000_000_000));
    assert_eq!(one("a = 5000000000;"), Kind::Int(5_000_000_000));
    assert_eq!(one("a = 12LL;"), Kind::Int(12));
    assert!(err("a = 99999999999999999999;").contains("1:5: expected a 64-bit integer"));
    assert!(err("a = 0xFFFFFFFFFFFFFFFFF;").contains("expected a 64-bit integer"));
    assert!(err("a = 0x;").contains("expected a number, found \"0x\""));
    assert!(err("a = 80abc;").contains("1:5: expected a number, found \"80abc\""));
    assert!(err("a = 1.2.3;").contains("expected a number"));
}

#[test]
fn floats() {
    assert_eq!(one("a = 1.5;"), Kind::Float("1.5".into()));
    assert_eq!(one("a = .5;"), Kind::Float(".5".into()));
    assert_eq!(one("a = 2.;"), Kind::Float("2.".into()));
    assert_eq!(one("a = -1e3;"), Kind::Float("-1e3".into()));
    assert_eq!(one("a = 1.5E-2;"), Kind::Float("1.5e-2".into()));
    assert!(err("a = 1e999;").contains("expected a finite float"));
    assert!(err("a = -1.7976931348623159e308;").contains("expected a finite float"));
    assert_eq!(one("a = 1.7976931348623158e308;"), Kind::Float("1.7976931348623158e308".into()));
    assert_eq!(one("a = 1e-999;"), Kind::Float("1e-999".into()));
    assert!(err("a = -;").contains("expected a value, found character '-'"));
    assert!(err("a = 1e;").contains("expected a number, found \"1e\""));
}

/// A float literal is refused exactly when Rust's correctly rounded parser makes it infinite.
#[test]
fn float_range_matches_f64_parsing() {
    let mut literals: Vec<String> = Vec::new();
    for mantissa in [
        "1", "0", "0.0", "000.000", ".5", "5.", "9", "10", "0.1", "00017976931348623158",
        "1.7976931348623157", "1.7976931348623158", "1.79769313486231580793728971405303",
        "1.797693134862315807937289714053034150799341327100378269361737789804449682927647509466490179775872070963302864166928879109465555478519404026306574886715058206819089020007083836762738548458177115317644757302700698555713669596228429148198608349364752927190741684443655107043427115596995080930428801779041744977",
        "1.797693134862315807937289714053034150799341327100378269361737789804449682927647509466490179775872070963302864166928879109465555478519404026306574886715058206819089020007083836762738548458177115317644757302700698555713669596228429148198608349364752927190741684443655107043427115596995080930428801779041744978",
        "1.7976931348623158079372897140530341507993413271003782693617377898044496829276475094664901797758720709633028641669288791094655554785194040263065748867150582068190890200070838367627385484581771153176447573027006985557136695962284291481986083493647529271907416844436551070434271155969950809304288017790417449779",
        "1.79769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497791",
        "1.7976931348623159", "1.8", "17976931348623157", "0.00017976931348623159", "179769313486231570000000000",
    ] {
        for exp in ["", "e308", "e307", "e309", "e292", "e291", "e312", "e-5", "e-400", "e+308", "e99999999999999999999", "e-99999999999999999999"] {
            for sign in ["", "-", "+"] {
                literals.push(format!("{sign}{mantissa}{exp}"));
            }
        }
    }
    for lit in literals {
        let Some(text) = Some(lit.as_str()).filter(|t| t.contains(['.', 'e'])) else { continue };
        let finite = text.parse::<f64>().unwrap().is_finite();
        match parse_str(&format!("a = {text};"), Path::new("t.conf")) {
            Ok(_) => assert!(
                finite,
                "{text} accepted, but it parses to {}",
                text.parse::<f64>().unwrap()
            ),
            Err(e) => {
                assert!(!finite, "{text} refused: {e}");
                assert!(e.to_string().contains("expected a finite float"), "{e}");
            }
        }
    }
}

#[test]
fn strings_escapes_and_concatenation() {
    assert_eq!(one(r#"a = "x\n\r\t\f\\\"y";"#), Kind::Str("x\n\r\t\u{c}\\\"y".into()));
    assert_eq!(one(r#"a = "\x41\x7a";"#), Kind::Str("Az".into()));
    assert_eq!(one(r#"a = "\q\x4";"#), Kind::Str("\\q\\x4".into()));
    assert_eq!(one("a = \"ab\" \"cd\"\n  /* c */ \"ef\";"), Kind::Str("abcdef".into()));
    assert_eq!(one("a = \"multi\nline\";"), Kind::Str("multi\nline".into()));
    assert_eq!(one("a = \"é\";"), Kind::Str("é".into()));
    assert_eq!(one("a = \"\";"), Kind::Str(String::new()));
    assert!(err("a = \"\\xff\";").contains("1:5: expected UTF-8 text"));
    let e = err("a = 1;\nb = \"open\n;\n");
    assert!(
        e.starts_with("t.conf:2:5: expected '\"' to close this string, found end of file"),
        "{e}"
    );
}

#[test]
fn arrays() {
    let Kind::Array(v) = one("a = [1, 2, 3,];") else { panic!() };
    assert!(v.iter().map(Value::as_int).eq([Some(1), Some(2), Some(3)]));
    let Kind::Array(v) = one("a = [\"x\", \"y\" \"z\"];") else { panic!() };
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].as_str(), Some("yz"));
    assert_eq!(one("a = [];"), Kind::Array(vec![]));
    assert!(err("a = [1, \"x\"];").contains("1:9: expected a integer like the first element"));
    assert!(err("a = [1, {}];").contains("expected a scalar in an array"));
    assert!(err("a = [1, [2]];").contains("expected a scalar in an array"));
    assert!(err("a = [1 2];")
        .contains("1:8: expected ',' or ']' to close the array opened at 1:5, found integer 2"));
    assert!(
        err("a = [1,").contains("expected ']' to close the array opened at 1:5, found end of file")
    );
    assert!(err("a = [,];").contains("expected a value, found ','"));
}

#[test]
fn lists() {
    let Kind::List(v) = one("a = ( 1, \"x\", { b = 2; }, [ true ], ( ), );") else { panic!() };
    assert_eq!(v.len(), 5);
    assert_eq!(v[2].as_group().unwrap()[0].name, "b");
    assert_eq!(v[4].items().unwrap().len(), 0);
    assert!(err("a = ( 1; );")
        .contains("expected ',' or ')' to close the list opened at 1:5, found ';'"));
    assert!(
        err("a = (").contains("expected ')' to close the list opened at 1:5, found end of file")
    );
}

#[test]
fn groups() {
    let d = parse("g = { a = 1; b = { c = 2 } }; h = {};");
    let g = d.root[0].value.as_group().unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g[1].value.as_group().unwrap()[0].value.as_int(), Some(2));
    assert_eq!(d.root[1].value.as_group().unwrap().len(), 0);
    let e = err("g = {\n a = 1;\n");
    assert!(e.contains("t.conf:3:1: expected a setting name or '}' to close the group opened at 1:5, found end of file"), "{e}");
    assert!(err("g = { a = 1; ];").contains("1:14: expected a setting name or '}'"));
    assert!(err("} ").contains("1:1: expected a setting name, found '}'"));
}

#[test]
fn syntax_errors_name_what_was_expected() {
    assert!(err("a 1;").contains("1:3: expected '=' or ':' after \"a\", found integer 1"));
    assert!(err("a = ;").contains("1:5: expected a value, found ';'"));
    assert!(err("a = b;").contains("found name \"b\" (strings need double quotes)"));
    assert!(err("a = 1; %").contains("1:8: expected a setting name, found character '%'"));
    assert!(err("a = 1 2;").contains("1:7: expected a setting name, found integer 2"));
    assert!(err("a = 1;\na = 2;").contains("2:1: duplicate setting \"a\" (first set at 1:1)"));
    assert!(err("a = =").contains("expected a value, found '='"));
    assert!(err("a = \u{1}").contains("found character '\\u{1}'"));
}

#[test]
fn comments() {
    let d = parse(
        "# hash\n// slashes\n/* block\n spanning */ a = /* inline */ 1; // trailing\nb = 2; # x",
    );
    assert_eq!(d.root.len(), 2);
    assert_eq!((d.root[0].pos.line, d.root[0].pos.col), (4, 14));
    assert_eq!(one("a = \"# not a comment\";"), Kind::Str("# not a comment".into()));
    let e = err("a = 1;\n/* open\n\n");
    assert!(
        e.starts_with("t.conf:2:1: expected '*/' to close this comment, found end of file"),
        "{e}"
    );
    assert!(err("a = 1 / 2;").contains("found character '/'"));
}

#[test]
fn bom_and_crlf() {
    let d = parse("\u{feff}a = 1;\r\nb = 2;\r\n");
    assert_eq!(d.root.len(), 2);
    assert_eq!((d.root[0].pos.line, d.root[0].pos.col), (1, 1));
    assert_eq!(d.root[1].pos.line, 2);
}

#[test]
fn nesting_limit() {
    let deep = format!("a = {}{};", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    parse(&deep);
    let deeper = format!("a = {}{};", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
    assert!(err(&deeper).contains("expected nesting at most 32 deep"));
    // No stack overflow on absurd input either.
    let absurd = format!("a = {}", "[".repeat(100_000));
    assert!(err(&absurd).contains("nesting"));
}

#[test]
fn value_limit() {
    let ok = format!("a = [{}];", "1,".repeat(MAX_VALUES - 1));
    parse(&ok);
    let too_many = format!("a = [{}];", "1,".repeat(MAX_VALUES));
    assert!(err(&too_many).contains("expected at most 20000 values"));
}

#[test]
fn size_limit() {
    let big = format!("a = \"{}\";", "x".repeat(MAX_FILE_SIZE));
    assert!(err(&big).contains("expected at most"));
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wsgate-libconfig-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn include_relative_to_including_file() {
    let d = tmpdir("inc");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("top.conf"), "a = 1;\n@include \"sub/one.conf\"\nd = 4;\n").unwrap();
    std::fs::write(d.join("sub/one.conf"), "b = {\n  @include \"two.conf\"\n};\n").unwrap();
    std::fs::write(d.join("sub/two.conf"), "c = 3;").unwrap();
    let doc = parse_file(&d.join("top.conf")).unwrap();
    let names: Vec<_> = doc.root.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "d"]);
    let c = &doc.root[1].value.as_group().unwrap()[0];
    assert_eq!(doc.path(c.pos), d.join("sub").join("two.conf"));
    assert_eq!((c.pos.line, c.pos.col), (1, 1));
    assert_eq!(doc.path(doc.root[2].pos), d.join("top.conf"));
    assert_eq!(doc.root[2].pos.line, 3);
    assert_eq!(doc.files.len(), 3);
    // The same file twice, not nested, is fine.
    std::fs::write(
        d.join("twice.conf"),
        "x = ({\n@include \"sub/two.conf\"\n}, {\n@include \"sub/two.conf\"\n});",
    )
    .unwrap();
    parse_file(&d.join("twice.conf")).unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn include_errors() {
    let d = tmpdir("incerr");
    std::fs::write(d.join("a.conf"), "x = 1;\n@include \"b.conf\"\n").unwrap();
    std::fs::write(d.join("b.conf"), "\n\n@include \"a.conf\"\n").unwrap();
    let e = parse_file(&d.join("a.conf")).unwrap_err();
    assert_eq!(e.file, d.join("b.conf"));
    assert_eq!((e.line, e.col), (3, 1));
    assert!(e.message.starts_with("include loop: "), "{e}");
    std::fs::write(d.join("self.conf"), "@include \"self.conf\"").unwrap();
    assert!(parse_file(&d.join("self.conf")).unwrap_err().message.contains("include loop"));
    std::fs::write(d.join("missing.conf"), "\n  @include \"nope.conf\"").unwrap();
    let e = parse_file(&d.join("missing.conf")).unwrap_err();
    assert_eq!((e.line, e.col), (2, 3));
    assert!(e.message.contains("cannot include"), "{e}");
    std::fs::write(d.join("bad.conf"), "@include nope.conf").unwrap();
    assert!(parse_file(&d.join("bad.conf"))
        .unwrap_err()
        .message
        .contains("expected a quoted file name"));
    std::fs::write(d.join("inner.conf"), "y = (1,").unwrap();
    std::fs::write(d.join("outer.conf"), "@include \"inner.conf\"\n2);").unwrap();
    // Textual inclusion: the list continues in the including file.
    let doc = parse_file(&d.join("outer.conf")).unwrap();
    assert_eq!(doc.root[0].value.items().unwrap().len(), 2);
    // Depth limit: a chain of distinct files.
    for i in 0..=MAX_INCLUDE_DEPTH {
        std::fs::write(d.join(format!("c{i}.conf")), format!("@include \"c{}.conf\"", i + 1))
            .unwrap();
    }
    let e = parse_file(&d.join("c0.conf")).unwrap_err();
    assert!(e.message.contains("includes nested at most"), "{e}");
    let e = parse_file(&d.join("absent.conf")).unwrap_err();
    assert!(e
        .to_string()
        .starts_with(&format!("{}: cannot read", d.join("absent.conf").display())));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn quote_round_trips() {
    for s in ["plain", "q\"b\\s", "nl\ncr\rtab\tff\u{c}", "ctl\u{1}\u{7f}", "é€", ""] {
        let d = parse(&format!("a = {};", quote(s)));
        assert_eq!(d.root[0].value.as_str(), Some(s));
    }
}

#[test]
fn never_panics_on_junk() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let alphabet = b"a=:;,{}[]()\"\\x0#/*@ \n1.eE+-Lt";
    for _ in 0..20_000 {
        let mut s = Vec::new();
        for _ in 0..(seed % 40) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        let _ = parse_str(&String::from_utf8_lossy(&s), Path::new("fuzz.conf"));
    }
}
