//! Calling a Switchyard subject as a client: used by the gateway and the command-line tools.

use serde_json::Value;
use std::time::Duration;

/// A reply: the status (200 for success, else the `Nats-Service-Error-Code`) and the JSON body.
#[derive(Debug, Clone)]
pub struct JsonReply {
    pub status: u16,
    pub body: Value,
}

/// Sends `body` as JSON to `subject` and reads the reply. No responder or a timeout is 503.
pub async fn request_json(client: &async_nats::Client, subject: &str, body: &Value) -> JsonReply {
    let payload = match serde_json::to_vec(body) {
        Ok(p) => p,
        Err(e) => return error(500, "internal", &e.to_string()),
    };
    let req = async_nats::Request::new()
        .payload(payload.into())
        .timeout(Some(Duration::from_secs(10)));
    match client.send_request(subject.to_string(), req).await {
        Ok(msg) => {
            let status = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Service-Error-Code"))
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(200);
            let body = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
            JsonReply { status, body }
        }
        Err(e) => error(
            503,
            "unavailable",
            &format!("{subject} did not answer: {e}"),
        ),
    }
}

fn error(status: u16, code: &str, message: &str) -> JsonReply {
    JsonReply {
        status,
        body: serde_json::json!({"error": {"code": code, "message": message}}),
    }
}

/// Renames every object key from `snake_case` to `camelCase`, recursively (for the REST routes).
#[must_use]
pub fn camel_case(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let mut out = String::with_capacity(k.len());
                    let mut up = false;
                    for c in k.chars() {
                        if c == '_' {
                            up = true;
                        } else if up {
                            out.extend(c.to_uppercase());
                            up = false;
                        } else {
                            out.push(c);
                        }
                    }
                    (out, camel_case(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(camel_case).collect()),
        other => other,
    }
}
