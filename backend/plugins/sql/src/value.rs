//! SQLite values to JSON and back, without losing any:
//!
//! | SQLite | JSON |
//! |---|---|
//! | NULL | `null` |
//! | INTEGER within ±(2^53 − 1) | a number |
//! | INTEGER beyond | a string of its decimal digits (a JSON number that big loses digits in JavaScript) |
//! | REAL | a number; `"Infinity"` or `"-Infinity"` for the infinities JSON cannot write |
//! | TEXT | a string (bytes that are not UTF-8 become U+FFFD) |
//! | BLOB | `{"base64": "..."}` (RFC 4648, padded) |
//!
//! Parameters go the other way: `null`, `true`/`false` (1/0), numbers (integers within
//! i64, else reals), strings, and `{"base64": "..."}` for a blob.
use rusqlite::types::{Value as Sql, ValueRef};
use serde_json::{json, Map, Number, Value};
use wsgate::http::handshake::{base64_decode, base64_encode};
use wsgate_rpc_plugin::RpcError;

/// The largest integer a JavaScript number holds exactly.
pub(crate) const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A column's value as JSON.
pub(crate) fn to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) if i.unsigned_abs() <= MAX_SAFE_INTEGER => json!(i),
        ValueRef::Integer(i) => Value::String(i.to_string()),
        ValueRef::Real(f) => Number::from_f64(f).map_or_else(
            || Value::String(if f < 0.0 { "-Infinity" } else { "Infinity" }.into()),
            Value::Number,
        ),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => {
            let mut out = vec![0u8; b.len().div_ceil(3) * 4];
            let n = base64_encode(b, &mut out).unwrap_or_default();
            out.truncate(n);
            let mut obj = Map::new();
            obj.insert("base64".into(), Value::String(String::from_utf8_lossy(&out).into_owned()));
            Value::Object(obj)
        }
    }
}

/// A JSON parameter as a value to bind; `what` names it in the error.
///
/// # Errors
/// -32602 for an array, an object other than `{"base64": "..."}`, bad base64, or an integer
/// beyond i64.
pub(crate) fn to_sql(v: &Value, what: &str) -> Result<Sql, RpcError> {
    let bad = |why: &str| RpcError::invalid_params(format!("{what}: {why}"));
    Ok(match v {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Sql::Integer(i),
            (None, _) if n.is_u64() => return Err(bad("an integer beyond 2^63 - 1")),
            (None, Some(f)) => Sql::Real(f),
            (None, None) => return Err(bad("not a number SQLite can hold")),
        },
        Value::String(s) => Sql::Text(s.clone()),
        Value::Object(o) => match (o.len(), o.get("base64")) {
            (1, Some(Value::String(s))) => {
                let mut out = vec![0u8; s.len() / 4 * 3];
                let n = base64_decode(s.as_bytes(), &mut out)
                    .ok_or_else(|| bad("not padded base64 (RFC 4648)"))?;
                out.truncate(n);
                Sql::Blob(out)
            }
            _ => return Err(bad("an object must be {\"base64\": \"...\"}, a blob")),
        },
        Value::Array(_) => return Err(bad("an array is not an SQL value")),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn integers_beyond_javascript_become_strings() {
        assert_eq!(
            to_json(ValueRef::Integer(9_007_199_254_740_991)),
            json!(9_007_199_254_740_991_i64)
        );
        assert_eq!(to_json(ValueRef::Integer(9_007_199_254_740_992)), json!("9007199254740992"));
        assert_eq!(to_json(ValueRef::Integer(-9_007_199_254_740_992)), json!("-9007199254740992"));
        assert_eq!(to_json(ValueRef::Integer(i64::MIN)), json!("-9223372036854775808"));
    }

    #[test]
    fn reals_blobs_and_text() {
        assert_eq!(to_json(ValueRef::Real(1.5)), json!(1.5));
        assert_eq!(to_json(ValueRef::Real(f64::INFINITY)), json!("Infinity"));
        assert_eq!(to_json(ValueRef::Real(f64::NEG_INFINITY)), json!("-Infinity"));
        assert_eq!(to_json(ValueRef::Blob(b"\x00\xffab")), json!({"base64": "AP9hYg=="}));
        assert_eq!(to_json(ValueRef::Blob(b"")), json!({"base64": ""}));
        assert_eq!(to_json(ValueRef::Text(b"a\xffb")), json!("a\u{fffd}b"));
    }

    #[test]
    fn parameters() {
        assert_eq!(to_sql(&json!(true), "p").unwrap(), Sql::Integer(1));
        assert_eq!(to_sql(&json!(-7), "p").unwrap(), Sql::Integer(-7));
        assert_eq!(to_sql(&json!(0.25), "p").unwrap(), Sql::Real(0.25));
        assert_eq!(
            to_sql(&json!({"base64": "AP9hYg=="}), "p").unwrap(),
            Sql::Blob(b"\x00\xffab".to_vec())
        );
        assert_eq!(to_sql(&json!(u64::MAX), "p").unwrap_err().code, -32602);
        for bad in [json!([1]), json!({"base64": "A"}), json!({"x": 1}), json!({"base64": 1})] {
            assert_eq!(to_sql(&bad, "p").unwrap_err().code, -32602, "{bad}");
        }
    }
}
