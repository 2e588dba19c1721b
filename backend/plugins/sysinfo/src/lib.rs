//! `libwsgate_rpc_sysinfo.so`: read-only system information for a router's status page, for
//! `websocket_jsonrpc -L ...`. Safe by design: it takes no input but method names, reads a
//! fixed list of files under `/proc` (and `/proc/sys/kernel`), and changes nothing.
//!
//! Methods (no params):
//! * `uptime` → `{"seconds": 12345.6}`
//! * `load` → `{"1m": 0.1, "5m": 0.2, "15m": 0.3}`
//! * `memory` → `{"total_kb": .., "free_kb": .., "available_kb": ..}`
//! * `network` → `[{"name": "eth0", "rx_bytes": .., "tx_bytes": .., "rx_packets": ..,
//!   "tx_packets": ..}, ...]` (at most 64 interfaces)
//! * `system` → `{"hostname": .., "kernel": .., "uptime": .., "load": .., "memory": ..}`
//!
//! `-C` may name another root than `/proc` (for tests); the client's connection context is
//! not used.
use std::io::Read as _;
use std::path::PathBuf;

use serde_json::{json, Map, Value};
use wsgate_rpc_plugin::{export_plugin, Plugin, RpcError, INTERNAL_ERROR};

/// Largest file read from `/proc`.
const MAX_READ: u64 = 64 * 1024;
/// Most interfaces listed.
const MAX_INTERFACES: usize = 64;

/// The plugin: the `/proc` it reads.
#[derive(Debug)]
pub struct SysInfo {
    proc: PathBuf,
}

impl Plugin for SysInfo {
    type Conn = ();

    fn init(config: &str) -> Result<Self, String> {
        let proc = PathBuf::from(if config.is_empty() { "/proc" } else { config });
        if !proc.join("uptime").exists() {
            return Err(format!("sysinfo: {}/uptime not found", proc.display()));
        }
        Ok(Self { proc })
    }

    fn open(&self, _context: &str) -> Option<()> {
        Some(())
    }

    fn call(&self, _conn: &mut (), method: &str, params: &Value) -> Result<Value, RpcError> {
        let empty = match params {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if !empty && ["uptime", "load", "memory", "network", "system"].contains(&method) {
            return Err(RpcError::invalid_params("this method takes no params"));
        }
        match method {
            "uptime" => self.uptime(),
            "load" => self.load(),
            "memory" => self.memory(),
            "network" => self.network(),
            "system" => Ok(json!({
                "hostname": self.read("sys/kernel/hostname")?.trim(),
                "kernel": self.read("sys/kernel/osrelease")?.trim(),
                "uptime": self.uptime()?,
                "load": self.load()?,
                "memory": self.memory()?,
            })),
            _ => Err(RpcError::method_not_found(method)),
        }
    }
}

export_plugin!(SysInfo);

impl SysInfo {
    fn read(&self, name: &str) -> Result<String, RpcError> {
        let path = self.proc.join(name);
        let mut text = String::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_READ).read_to_string(&mut text))
            .map_err(|e| RpcError::new(INTERNAL_ERROR, format!("{}: {e}", path.display())))?;
        Ok(text)
    }

    fn uptime(&self) -> Result<Value, RpcError> {
        let text = self.read("uptime")?;
        Ok(json!({ "seconds": number(text.split_whitespace().next()) }))
    }

    fn load(&self) -> Result<Value, RpcError> {
        let text = self.read("loadavg")?;
        let mut f = text.split_whitespace();
        Ok(json!({ "1m": number(f.next()), "5m": number(f.next()), "15m": number(f.next()) }))
    }

    fn memory(&self) -> Result<Value, RpcError> {
        let text = self.read("meminfo")?;
        let mut out = Map::new();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let key = match f.next() {
                Some("MemTotal:") => "total_kb",
                Some("MemFree:") => "free_kb",
                Some("MemAvailable:") => "available_kb",
                _ => continue,
            };
            out.insert(key.into(), json!(f.next().and_then(|n| n.parse::<u64>().ok())));
        }
        Ok(Value::Object(out))
    }

    fn network(&self) -> Result<Value, RpcError> {
        let text = self.read("net/dev")?;
        let mut list = Vec::new();
        // Two header lines, then "  name: rx_bytes rx_packets ... (8 rx fields) tx_bytes
        // tx_packets ...".
        for line in text.lines().skip(2).take(MAX_INTERFACES) {
            let Some((name, counters)) = line.split_once(':') else { continue };
            let n: Vec<u64> =
                counters.split_whitespace().map(|c| c.parse().unwrap_or_default()).collect();
            let at = |i: usize| n.get(i).copied().unwrap_or_default();
            list.push(json!({
                "name": name.trim(),
                "rx_bytes": at(0), "rx_packets": at(1), "tx_bytes": at(8), "tx_packets": at(9),
            }));
        }
        Ok(Value::Array(list))
    }
}

/// A decimal from `/proc` as a JSON number, `null` when it is not one.
fn number(s: Option<&str>) -> Value {
    s.and_then(|s| s.parse::<f64>().ok()).map_or(Value::Null, |f| json!(f))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn reads_this_machine() {
        let s = SysInfo::init("").unwrap();
        let up = s.call(&mut (), "uptime", &Value::Null).unwrap();
        assert!(up["seconds"].as_f64().unwrap() > 0.0);
        let sys = s.call(&mut (), "system", &json!({})).unwrap();
        assert!(sys["memory"]["total_kb"].as_u64().unwrap() > 0);
        let net = s.call(&mut (), "network", &Value::Null).unwrap();
        assert!(net.as_array().unwrap().iter().any(|i| i["name"] == "lo"));
        assert_eq!(s.call(&mut (), "reboot", &Value::Null).unwrap_err().code, -32601);
        assert_eq!(s.call(&mut (), "load", &json!([1])).unwrap_err().code, -32602);
    }
}
