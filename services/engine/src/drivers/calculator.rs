//! The sample calculator driver with the functions of the original design's metadata: `add`,
//! `future_add` (default `b` 200), `perform_task`, `error_task` (always fails) and `switch_input`.
//! Security as there: `support` for `error_task` and `future_add`, `administrator` for `perform_task`.

use super::{Call, Driver};
use futures::future::BoxFuture;
use serde_json::{json, Value};

/// Driver id `calculator`.
pub struct Calculator;

fn int(call: &Call<'_>, name: &str) -> Result<i64, String> {
    call.arg(name)?
        .as_i64()
        .ok_or_else(|| format!("argument {name} is not an integer"))
}

impl Driver for Calculator {
    fn id(&self) -> &'static str {
        "calculator"
    }

    fn metadata(&self) -> schemas::engine::DriverMetadata {
        super::metadata_from(json!({
            "functions": {
                "switch_input": {"input": ["String"]},
                "add": {"a": ["Int32"], "b": ["Int32"]},
                "perform_task": {"name": ["String|Int32"]},
                "error_task": {},
                "future_add": {"a": ["Int32"], "b": ["Int32", 200]}
            },
            "implements": ["VideoConferenceSpace"],
            "requirements": {"Display_1": ["Powerable"], "Camera": ["Powerable", "Moveable"]},
            "security": {"support": ["error_task", "future_add"], "administrator": ["perform_task"]}
        }))
    }

    fn call<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            match call.method {
                "add" | "future_add" => Ok(json!(int(&call, "a")? + int(&call, "b")?)),
                "perform_task" => {
                    let name = call.arg("name")?;
                    let shown = name
                        .as_str()
                        .map_or_else(|| name.to_string(), str::to_string);
                    Ok(json!(format!("performed task {shown}")))
                }
                "error_task" => Err("error_task failed, as it always does".into()),
                "switch_input" => {
                    let input = call.arg("input")?.clone();
                    call.status.report("input", input.clone()).await?;
                    Ok(input)
                }
                other => Err(format!("calculator has no function {other}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::tests::run;

    #[tokio::test]
    async fn functions_compute() {
        assert_eq!(
            run(&Calculator, "add", json!({"a": 2, "b": 3})).await.0,
            Ok(json!(5))
        );
        assert_eq!(
            run(
                &Calculator,
                "add",
                json!({"a": 2147483647, "b": 2147483647})
            )
            .await
            .0,
            Ok(json!(4294967294_i64))
        );
        assert_eq!(
            run(&Calculator, "future_add", json!({"a": 1})).await.0,
            Ok(json!(201))
        );
        assert_eq!(
            run(&Calculator, "perform_task", json!({"name": 7})).await.0,
            Ok(json!("performed task 7"))
        );
        assert!(run(&Calculator, "error_task", json!({})).await.0.is_err());
    }
}
