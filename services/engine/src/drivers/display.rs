//! The sample display driver: `power(state: Bool)`, `switch_input(input: String)`; statuses `power`
//! and `input`.

use super::{Call, Driver};
use futures::future::BoxFuture;
use serde_json::{json, Value};

/// Driver id `display`.
pub struct Display;

impl Driver for Display {
    fn id(&self) -> &'static str {
        "display"
    }

    fn metadata(&self) -> schemas::engine::DriverMetadata {
        super::metadata_from(json!({
            "functions": {
                "power": {"state": ["Bool"]},
                "switch_input": {"input": ["String"]}
            },
            "implements": ["Powerable"],
            "requirements": {},
            "security": {"support": [], "administrator": []}
        }))
    }

    fn call<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            match call.method {
                "power" => {
                    let state = call.arg("state")?.clone();
                    call.status.report("power", state.clone()).await?;
                    Ok(state)
                }
                "switch_input" => {
                    let input = call.arg("input")?.clone();
                    call.status.report("input", input.clone()).await?;
                    Ok(input)
                }
                other => Err(format!("display has no function {other}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn power_reports_the_power_status() {
        let (r, reports) =
            crate::drivers::tests::run(&Display, "power", json!({"state": true})).await;
        assert_eq!(r, Ok(json!(true)));
        assert_eq!(reports, vec![("power".to_string(), json!(true))]);
    }

    #[tokio::test]
    async fn switch_input_reports_the_input_status() {
        let (r, reports) =
            crate::drivers::tests::run(&Display, "switch_input", json!({"input": "hdmi2"})).await;
        assert_eq!(r, Ok(json!("hdmi2")));
        assert_eq!(reports, vec![("input".to_string(), json!("hdmi2"))]);
    }
}
