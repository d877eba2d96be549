//! A real headless Chromium, driven through its WebDriver (chromedriver) over the W3C
//! WebDriver protocol, for the web page's tests. Both come from Debian
//! ([`devstack::provision::browser`]). Everything it starts is stopped when it drops: the
//! session, chromedriver's process group, and any browser process of its own profile.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use devstack::Managed;
use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long [`Browser::wait`] waits by default.
pub const WAIT: Duration = Duration::from_secs(15);

pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    driver: Managed,
    profile: tempfile::TempDir,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless session with a
    /// profile of its own, `width` × `height` pixels.
    pub async fn start(logs: &Path, width: u32, height: u32) -> Result<Browser> {
        let found = devstack::provision::browser()?;
        let port = devstack::free_port();
        let profile = tempfile::Builder::new().prefix("todo-browser-").tempdir()?;
        let mut command = Command::new(&found.chromedriver);
        command
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .env("TZ", "Europe/Berlin");
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = Managed::spawn(
            "chromedriver",
            command,
            &logs.join("chromedriver.log"),
            None,
        )?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        driver
            .wait_http_ok(&format!("{base}/status"), Duration::from_secs(30))
            .await
            .context("chromedriver did not answer /status")?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // A confirm() stays open for the test to read and answer.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": found.chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    "--disable-sync", "--lang=en-US",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await?
            .json()
            .await?;
        let Some(id) = answer["value"]["sessionId"].as_str() else {
            bail!("chromedriver opened no session: {answer}");
        };
        Ok(Browser {
            http,
            session: format!("{base}/session/{id}"),
            driver,
            profile,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await?.json().await?;
        if let Some(error) = answer["value"]["error"].as_str() {
            bail!(
                "WebDriver {method} {path}: {error}: {}",
                answer["value"]["message"].as_str().unwrap_or_default()
            );
        }
        Ok(answer["value"].clone())
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.post("/url", json!({"url": url})).await.map(drop)
    }

    /// The first element matching `css`, now.
    pub async fn find(&self, css: &str) -> Result<Element> {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await?;
        let id = found[ELEMENT_KEY]
            .as_str()
            .with_context(|| format!("no element id for {css}: {found}"))?;
        Ok(Element(id.to_owned()))
    }

    /// The first element matching `css` that is displayed, waiting up to [`WAIT`].
    pub async fn visible(&self, css: &str) -> Result<Element> {
        let script = "const e = document.querySelector(arguments[0]); \
                      return !!e && e.getClientRects().length > 0;";
        self.wait(&format!("{css} displayed"), script, json!([css]))
            .await?;
        self.find(css).await
    }

    pub async fn click(&self, element: &Element) -> Result<()> {
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await
            .map(drop)
    }

    pub async fn click_css(&self, css: &str) -> Result<()> {
        let element = self.visible(css).await?;
        self.click(&element).await
    }

    /// Types `text` into an input as a user would (after clearing it).
    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let element = self.visible(css).await?;
        self.post(&format!("/element/{}/clear", element.0), json!({}))
            .await?;
        self.post(
            &format!("/element/{}/value", element.0),
            json!({"text": text}),
        )
        .await
        .map(drop)
    }

    /// Sets a control's value as a picker would (date and time inputs, selects), firing
    /// `input` and `change`.
    pub async fn set_value(&self, css: &str, value: &str) -> Result<()> {
        let script = "const e = document.querySelector(arguments[0]); \
                      if (!e) return false; e.value = arguments[1]; \
                      e.dispatchEvent(new Event('input', {bubbles: true})); \
                      e.dispatchEvent(new Event('change', {bubbles: true})); \
                      return e.value === arguments[1];";
        let set = self.script(script, json!([css, value])).await?;
        if set != json!(true) {
            bail!("could not set {css} to {value:?}");
        }
        Ok(())
    }

    pub async fn text(&self, css: &str) -> Result<String> {
        let element = self.find(css).await?;
        let text = self.get(&format!("/element/{}/text", element.0)).await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// Runs `script` (a function body) in the page with `args`; answers its return value.
    pub async fn script(&self, script: &str, args: Value) -> Result<Value> {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Waits up to [`WAIT`] for `script` to return something truthy, and answers it.
    pub async fn wait(&self, what: &str, script: &str, args: Value) -> Result<Value> {
        self.wait_for(what, script, args, WAIT).await
    }

    pub async fn wait_for(
        &self,
        what: &str,
        script: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.script(script, args.clone()).await;
            match &last {
                Ok(value) if !matches!(value, Value::Null | Value::Bool(false)) => {
                    return Ok(value.clone());
                }
                _ if Instant::now() >= deadline => {
                    let page = self
                        .script("return document.body.innerText", json!([]))
                        .await
                        .unwrap_or_default();
                    bail!(
                        "waited {timeout:?} for {what}; last answer {last:?}; the page shows:\n{}",
                        page.as_str().unwrap_or_default()
                    );
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The text of an open alert or confirm dialog, if one is open.
    pub async fn alert_text(&self) -> Option<String> {
        self.get("/alert/text")
            .await
            .ok()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
    }

    pub async fn accept_alert(&self) -> Result<()> {
        self.post("/alert/accept", json!({})).await.map(drop)
    }

    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await
            .map(drop)
    }

    /// Saves a PNG of the window to `file`.
    pub async fn screenshot(&self, file: &Path) -> Result<()> {
        let encoded = self.get("/screenshot").await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .context("decoding the screenshot")?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(file, png).with_context(|| format!("writing {}", file.display()))
    }

    /// The profile directory of this browser (its processes name it).
    pub fn profile(&self) -> PathBuf {
        self.profile.path().to_path_buf()
    }

    /// Ends the session, then stops chromedriver and whatever browser processes are left.
    pub async fn close(mut self) {
        let _ = self.call(reqwest::Method::DELETE, "", None).await;
        self.stop_all();
    }

    fn stop_all(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.driver.pid() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        self.driver.kill9();
        for pid in processes_using(self.profile.path()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The processes whose command line names `profile` (the browser and its helpers).
pub fn processes_using(profile: &Path) -> Vec<i32> {
    let needle = profile.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&needle)
                .then_some(pid)
        })
        .collect()
}
