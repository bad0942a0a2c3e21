//! The cluster delta path applier: any delta on any tree is applied or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (path, rest) = s.split_once('\n').unwrap_or((s, ""));
    let value: serde_json::Value = serde_json::from_str(rest).unwrap_or(serde_json::Value::Null);
    let mut tree = serde_json::json!({"state": 0, "workers": [{"id": "w1", "nodes": [{"id": "n1", "running": false}]}],
        "graph": {"nodes": [], "edges": []}, "worker_graph_map": {}, "version": 1});
    for op in [cluster::domain::Op::Upsert, cluster::domain::Op::Remove] {
        let delta = cluster::domain::Delta { version: 2, op, path: path.to_string(), value: value.clone() };
        let _ = cluster::domain::apply_delta(&mut tree, &delta);
    }
});
