//! The routes daprd and the orchestrator call, over real HTTP: the cron route answers 200
//! with what the scan did, requires the app token when one is set, and the probes answer.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use chrono::{Duration as Span, Utc};
use reminder_cron::{CRON_ROUTE, ScanSettings, Settings};
use serde_json::Value;
use service_kit::testing::Spawned;
use service_kit::{Secret, ServiceSettings};
use support::*;

fn settings(url: &str, token: Option<&str>) -> Settings {
    Settings {
        service: ServiceSettings {
            app_api_token: token.map(Secret::new),
            ..ServiceSettings::for_tests()
        },
        database_url: Secret::new(url),
        db_max_connections: 2,
        state_store: "statestore".into(),
        scan: ScanSettings::default(),
    }
}

async fn serve(bed: &Bed, token: Option<&str>) -> Spawned {
    let app = reminder_cron::build_with(
        &settings(&bed.url, token),
        bed.publisher.clone(),
        bed.keys.clone(),
    )
    .await
    .unwrap();
    Spawned::service(app)
}

#[tokio::test]
async fn a_cron_call_answers_200_with_what_the_scan_did() {
    for bed in beds().await {
        let task = bed
            .task("alice", "Pay rent", Some(Utc::now() + Span::hours(2)))
            .await;
        let served = serve(&bed, None).await;
        let base = &served.base;
        let client = reqwest::Client::new();

        // daprd posts an empty body.
        let res = client
            .post(format!("{base}{CRON_ROUTE}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "[{}]", bed.label);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "scanned", "[{}] {body}", bed.label);
        assert_eq!(body["report"]["published"], 1, "[{}] {body}", bed.label);
        assert_eq!(bed.reminded(), [task.id]);

        let again: Value = client
            .post(format!("{base}{CRON_ROUTE}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            again["report"]["already_sent"], 1,
            "[{}] {again}",
            bed.label
        );

        // A failing scan is still a 200 for daprd.
        bed.publisher.failing(true);
        bed.task("alice", "Another", Some(Utc::now() + Span::hours(3)))
            .await;
        let res = client
            .post(format!("{base}{CRON_ROUTE}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["report"]["failed"], 1, "{body}");

        for probe in ["/healthz", "/readyz"] {
            let status = client
                .get(format!("{base}{probe}"))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "[{}] {probe}", bed.label);
        }
    }
}

#[tokio::test]
async fn with_an_app_token_only_the_sidecar_may_trigger_a_scan() {
    for bed in beds().await {
        bed.task("bob", "Renew passport", Some(Utc::now() + Span::hours(2)))
            .await;
        let served = serve(&bed, Some("sidecar-secret")).await;
        let base = &served.base;
        let client = reqwest::Client::new();
        let url = format!("{base}{CRON_ROUTE}");

        for token in [None, Some("wrong")] {
            let mut req = client.post(&url);
            if let Some(t) = token {
                req = req.header("dapr-api-token", t);
            }
            assert_eq!(
                req.send().await.unwrap().status(),
                401,
                "[{}] token {token:?}",
                bed.label
            );
        }
        assert!(
            bed.publisher.published().is_empty(),
            "[{}] no scan ran",
            bed.label
        );

        let res = client
            .post(&url)
            .header("dapr-api-token", "sidecar-secret")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(bed.publisher.published().len(), 1, "[{}]", bed.label);
        // Probes come from the orchestrator, which has no token.
        assert_eq!(
            client
                .get(format!("{base}/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}

#[tokio::test]
async fn readiness_fails_while_the_database_has_no_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/empty.db", tmp.path().display());
    let publisher = Arc::new(RecordingPublisher::default());
    let keys = Arc::new(service_kit::MemoryIdempotencyStore::new());
    let app = reminder_cron::build_with(&settings(&url, None), publisher, keys)
        .await
        .unwrap();
    let served = Spawned::service(app);
    let base = &served.base;
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A tick still answers 200: daprd has nothing to do about a missing schema.
    let res = client
        .post(format!("{base}{CRON_ROUTE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["report"]["stopped_early"]
            .as_str()
            .unwrap_or_default()
            .starts_with("database"),
        "{body}"
    );
}
