//! `cargo xtask cluster test`: forged and malformed input to every port the system's pods
//! listen on, and clients that send slowly or hang up, from outside the pods. Each answer
//! must be a refusal that names the problem; afterwards every pod is still Ready and none
//! restarted.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};

use super::checks::{ServicePod, service_base, service_pods, user_api};
use crate::minikube::Kube;

/// Each service, its app port and the route daprd delivers to (token-checked).
const DELIVERY_ROUTES: [(&str, u16, &str); 4] = [
    ("chat-api", 3000, "/dead-letters/task-events"),
    ("recurring-tasks", 3001, "/events/task-completed"),
    ("notifications", 3002, "/events/reminder"),
    ("reminder-cron", 3003, "/reminder-cron"),
];

/// daprd's HTTP and gRPC API ports in a pod.
const DAPRD_HTTP: u16 = 3500;
const DAPRD_GRPC: u16 = 50001;

/// One HTTP/1.1 exchange over a fresh connection, written as given: the status code and the
/// body (after the headers). The server closes (`Connection: close`) or the read times out.
fn raw_http(addr: SocketAddr, request: &[u8]) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request)?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{addr} answered no HTTP status: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// A request with `body`, closing the connection after the answer.
fn request(method: &str, host: &str, path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The refusals a forged or malformed request must get, and what they must say.
pub fn forged_and_malformed_input(kube: &Kube) -> Result<()> {
    let before = service_pods(kube)?;
    let mut wrong = Vec::new();
    let mut closed: Vec<SocketAddr> = Vec::new();
    let mut refused = 0;
    let mut expect = |what: String, got: Result<(u16, String)>, status: u16, says: &str| match got {
        Ok((s, body)) if s == status && body.contains(says) => refused += 1,
        Ok((s, body)) => wrong.push(format!(
            "{what}: wanted {status} saying {says:?}, got {s}: {}",
            body.chars().take(300).collect::<String>()
        )),
        Err(e) => wrong.push(format!("{what}: {e:#}")),
    };
    let forged_event = br#"{"specversion":"1.0","id":"forged","source":"x","type":"com.dapr.event.sent","datacontenttype":"application/json","data":{"schema_version":1,"event_type":"task.completed"}}"#;

    for ServicePod {
        name: pod, app, ip, ..
    } in &before
    {
        // The app's delivery route without daprd's app token, and with a wrong one.
        let Some((_, port, route)) = DELIVERY_ROUTES.iter().find(|(s, _, _)| s == app) else {
            continue;
        };
        let addr: SocketAddr = format!("{ip}:{port}").parse()?;
        for headers in [
            vec!["Content-Type: application/cloudevents+json"],
            vec![
                "Content-Type: application/cloudevents+json",
                "dapr-api-token: forged",
            ],
        ] {
            expect(
                format!("{pod}: POST {addr}{route} {headers:?}"),
                raw_http(addr, &request("POST", ip, route, &headers, forged_event)),
                401,
                "dapr-api-token",
            );
        }
        // Bytes that are not HTTP/2 to daprd's gRPC port: the connection ends, daprd stays.
        let grpc: SocketAddr = format!("{ip}:{DAPRD_GRPC}").parse()?;
        if let Ok(mut s) = TcpStream::connect_timeout(&grpc, Duration::from_secs(5)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\x00\xff garbage");
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        // The sidecar's HTTP API without the app's API token: no publish, no state (unless
        // it is not reachable from outside the pod at all).
        let daprd: SocketAddr = format!("{ip}:{DAPRD_HTTP}").parse()?;
        if let Err(e) = TcpStream::connect_timeout(&daprd, Duration::from_secs(5))
            && e.kind() == std::io::ErrorKind::ConnectionRefused
        {
            closed.push(daprd);
            continue;
        }
        for (method, path, body) in [
            (
                "POST",
                "/v1.0/publish/pubsub/task-events",
                &forged_event[..],
            ),
            ("GET", "/v1.0/state/statestore/anything", &b""[..]),
            (
                "POST",
                "/v1.0-alpha2/conversation/chat-model/converse",
                &b"{}"[..],
            ),
        ] {
            for token in [None, Some("dapr-api-token: forged")] {
                let headers: Vec<&str> = ["Content-Type: application/json"]
                    .into_iter()
                    .chain(token)
                    .collect();
                expect(
                    format!("{pod}: daprd {method} {daprd}{path} {headers:?}"),
                    raw_http(daprd, &request(method, ip, path, &headers, body)),
                    401,
                    "",
                );
            }
        }
    }

    // chat-api's Service: malformed, mistyped, oversized and unauthenticated requests.
    let (user, api) = user_api(kube, "hostile")?;
    let token = api.token.clone().context("a token")?;
    let base = service_base(kube)?;
    let addr: SocketAddr = base.trim_start_matches("http://").parse()?;
    let host = addr.to_string();
    let tasks = format!("/api/{user}/tasks");
    let auth = format!("Authorization: Bearer {token}");
    let json = "Content-Type: application/json";
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            request("POST", &host, &tasks, &[&auth, json], b"{\"title\": "),
            400,
            "invalid_json",
        ),
        (
            "a number for the title",
            request("POST", &host, &tasks, &[&auth, json], br#"{"title": 5}"#),
            400,
            "title",
        ),
        (
            "an unknown time zone",
            request(
                "POST",
                &host,
                &tasks,
                &[&auth, json],
                br#"{"title": "t", "due_at": "2027-01-04T09:00", "time_zone": "Mars/Olympus"}"#,
            ),
            400,
            "time_zone",
        ),
        (
            "a body over the limit",
            request(
                "POST",
                &host,
                &tasks,
                &[&auth, json],
                format!(r#"{{"title": "{}"}}"#, "x".repeat(70 * 1024)).as_bytes(),
            ),
            413,
            "",
        ),
        (
            "no token",
            request("POST", &host, &tasks, &[json], br#"{"title": "t"}"#),
            401,
            "",
        ),
        (
            "a forged token",
            request(
                "POST",
                &host,
                &tasks,
                &[
                    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.forged",
                    json,
                ],
                br#"{"title": "t"}"#,
            ),
            401,
            "",
        ),
        (
            "another user's tasks",
            request(
                "POST",
                &host,
                "/api/somebody-else/tasks",
                &[&auth, json],
                br#"{"title": "t"}"#,
            ),
            403,
            "",
        ),
        (
            "a malformed task id",
            request("GET", &host, &format!("{tasks}/not-a-uuid"), &[&auth], b""),
            400,
            "",
        ),
    ];
    for (what, req, status, says) in cases {
        expect(
            format!("Service {base}: {what}"),
            raw_http(addr, &req),
            status,
            says,
        );
    }

    // Slow and vanishing clients: one sends half its headers and waits, one sends half its
    // body and hangs up; meanwhile a normal request is answered at once.
    let mut slow = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    slow.write_all(format!("POST {tasks} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n").as_bytes())?;
    let mut vanishing = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    vanishing.write_all(
        &request(
            "POST",
            &host,
            &tasks,
            &[&auth, json],
            br#"{"title": "never finished, never written"}"#,
        )[..120],
    )?;
    drop(vanishing);
    let started = Instant::now();
    let (status, list) = api.call(reqwest::Method::GET, &tasks, None)?;
    ensure!(
        status == 200 && started.elapsed() < Duration::from_secs(3),
        "with a slow client connected, listing took {:?} and answered {status}: {list}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    drop(slow);
    // Nothing of the refused or unfinished writes was stored.
    let (status, list) = api.call(reqwest::Method::GET, &tasks, None)?;
    let items = list["items"].as_array().map_or(0, Vec::len);
    ensure!(
        status == 200 && items == 0,
        "refused writes left tasks behind: {status} {list}"
    );
    let _ = api.call(reqwest::Method::DELETE, &format!("/api/{user}"), None);

    ensure!(
        wrong.is_empty(),
        "answers that were not refusals: {wrong:#?}"
    );

    // Every pod still there, Ready, and no container restarted.
    let after = service_pods(kube)?;
    for pod in &before {
        let now = after.iter().find(|p| p.name == pod.name);
        ensure!(
            now.is_some_and(|p| p.restarts == pod.restarts),
            "{} ({}) restarted or went away: before {:?}, now {now:?}",
            pod.name,
            pod.app,
            pod.restarts
        );
    }
    super::checks::pods_ready_and_injected(kube)?;
    println!(
        "    {refused} forged or malformed requests refused with a clear answer; no pod \
         restarted; daprd's HTTP API not reachable from outside its pod at {closed:?}"
    );
    Ok(())
}
