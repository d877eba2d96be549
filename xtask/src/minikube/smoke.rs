//! Step 6 of `cargo xtask minikube`: the smoke test through `kubectl port-forward`.

use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use reqwest::Method;
use serde_json::{Value, json};

use super::{Kube, NAMESPACE, done, output, show, step};

/// `kubectl port-forward`, stopped (by its own pid) when dropped.
struct PortForward {
    child: Child,
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_forward(kube: &Kube, api: &mut Api) -> Result<PortForward> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut cmd = kube.ns(&["port-forward", "svc/chat-api", &format!("{port}:3000")]);
    println!("    $ {}", show(&cmd));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting kubectl port-forward")?;
    let mut forward = PortForward { child };
    api.base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if matches!(api.call(Method::GET, "/healthz", None), Ok((200, _))) {
            return Ok(forward);
        }
        if let Some(status) = forward.child.try_wait()? {
            bail!("kubectl port-forward exited ({status})");
        }
        if Instant::now() > deadline {
            bail!("chat-api did not answer through the port-forward within 30 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// chat-api's REST API (through a port-forward, or a Service's address), for the tests.
pub(crate) struct Api {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: Option<String>,
}

impl Api {
    pub(crate) fn new() -> Result<Api> {
        Ok(Api {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting an async runtime for the HTTP client")?,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .context("building the HTTP client")?,
            base: String::new(),
            token: None,
        })
    }

    /// (status, JSON body; `null` when empty, the text as a string when it is not JSON).
    pub(crate) fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        self.request(method, path, body, &[])
    }

    /// [`Api::call`] with extra request headers.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value)> {
        self.runtime.block_on(async {
            let mut request = self.client.request(method, format!("{}{path}", self.base));
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await?;
            let status = response.status().as_u16();
            let text = response.text().await?;
            let value = if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            Ok((status, value))
        })
    }
}

/// A token for `user`, minted by the chat-api binary in its own pod (which holds
/// JWT_SECRET), valid for 15 minutes.
pub(crate) fn mint_token(kube: &Kube, user: &str) -> Result<String> {
    chat_api_token(kube, user, &[])
        .ok()
        .filter(|t| t.split('.').count() == 3)
        .context("minting a token in the chat-api pod failed")
}

/// What `chat-api token <user> 900 <extra>` prints in the chat-api pod (a token valid for
/// 15 minutes, or with `--link <address>` a sign-in link).
pub(crate) fn chat_api_token(kube: &Kube, user: &str, extra: &[&str]) -> Result<String> {
    let mut mint = kube.ns(&[
        "exec",
        "deploy/chat-api",
        "-c",
        "chat-api",
        "--",
        "/usr/local/bin/chat-api",
        "token",
        user,
        "900",
    ]);
    mint.args(extra);
    println!("    $ {}", show(&mint));
    output(&mut mint).context("`chat-api token` failed in the chat-api pod")
}

/// A pending task of `list` (a page of tasks) other than `first`: (id, due_at).
fn next_instance(list: &Value, first: &str) -> Option<(String, String)> {
    list["items"].as_array()?.iter().find_map(|task| {
        let id = task["id"].as_str()?;
        (id != first).then(|| {
            (
                id.to_owned(),
                task["due_at"].as_str().unwrap_or("?").to_owned(),
            )
        })
    })
}

pub(crate) fn smoke_test(kube: &Kube) -> Result<()> {
    let t = step("smoke test: create a daily task, complete it, wait for the next instance");
    let mut api = Api::new()?;
    let forward = port_forward(kube, &mut api)?;
    let user = format!("smoke-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);

    api.token = Some(mint_token(kube, &user)?);

    let title = format!("Minikube smoke test {user}");
    let body = json!({"title": title, "recurrence": "daily", "tags": ["smoke"]});
    let (status, created) = api.call(Method::POST, &format!("/api/{user}/tasks"), Some(&body))?;
    if status != 201 {
        bail!("creating a task answered {status}: {created}");
    }
    let first = created["id"]
        .as_str()
        .context("the created task has no id")?
        .to_owned();
    println!("    created task {first} for user {user}");

    let (status, completed) = api.call(
        Method::POST,
        &format!("/api/{user}/tasks/{first}/complete"),
        None,
    )?;
    if status != 200 {
        bail!("completing the task answered {status}: {completed}");
    }
    println!("    completed it; waiting for recurring-tasks to create the next instance");

    // chat-api publishes task.completed; recurring-tasks consumes it and writes the next
    // instance; only the next instance is pending.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (next, due) = loop {
        let (status, list) = api.call(
            Method::GET,
            &format!("/api/{user}/tasks?status=pending"),
            None,
        )?;
        if status != 200 {
            bail!("listing tasks answered {status}: {list}");
        }
        if let Some(found) = next_instance(&list, &first) {
            break found;
        }
        if Instant::now() > deadline {
            bail!(
                "no next instance within 120 s. Look at: {kubectl} -n {NAMESPACE} logs deploy/recurring-tasks -c recurring-tasks; \
                 ... -c daprd; {kubectl} -n {NAMESPACE} logs deploy/chat-api -c chat-api (the outbox relay)",
                kubectl = kube.shown
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    println!("    next instance {next} (due {due})");

    // Leave nothing behind.
    let _ = api.call(Method::DELETE, &format!("/api/{user}"), None);
    drop(forward);
    println!("    smoke test passed");
    done(t);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_instance_is_the_pending_task_that_is_not_the_first() {
        let page = json!({"items": [
            {"id": "a", "due_at": "2026-12-01T09:00:00Z", "recurrence": {"series_id": "a"}},
            {"id": "b", "due_at": "2026-12-02T09:00:00Z", "recurrence": {"series_id": "a"}}
        ], "next_cursor": null});
        assert_eq!(
            next_instance(&page, "a"),
            Some(("b".to_owned(), "2026-12-02T09:00:00Z".to_owned()))
        );
        assert_eq!(next_instance(&page["items"][0], "a"), None);
        assert_eq!(next_instance(&json!({"items": [{"id": "a"}]}), "a"), None);
    }
}
