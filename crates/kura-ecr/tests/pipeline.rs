//! The AWS pipeline as a seam: a service registered through
//! `kura_ecr::app_with` is routed by its target prefix, authenticated,
//! authorized and answered by the same pipeline as ECR, IAM and STS, and
//! every call (failed authentication included) reaches the call recorder
//! once, before the answer is sent.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use kura_aws::service::OpTable;
use kura_aws::{AwsError, AwsService, Call, CallRecord, CallRecorder, OpSpec, Protocol, Scope};
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::{sign_post, ACCOUNT, KEY_ID, REGION, SECRET};

const PREFIX: &str = "KuraTest_20261207";
const ECR: &str = "AmazonEC2ContainerRegistry_V20150921";

/// A service with three operations: `Echo` answers its input, `Denied` is
/// refused by `authorize`, `Later` is not built.
struct TestService;

fn table() -> &'static OpTable {
    static T: std::sync::OnceLock<OpTable> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        OpTable::build(
            "kuratest",
            [
                ("Echo", Scope::None, true),
                ("Denied", Scope::None, true),
                ("DescribeLater", Scope::None, false),
            ],
        )
    })
}

#[async_trait]
impl AwsService for TestService {
    fn protocol(&self) -> Protocol {
        Protocol::Json11 { target_prefix: PREFIX }
    }
    fn signing_name(&self) -> &'static str {
        "kuratest"
    }
    fn event_source(&self) -> &'static str {
        "kuratest.amazonaws.com"
    }
    fn operation(&self, name: &str) -> Option<OpSpec> {
        table().get(name)
    }
    fn validate(&self, _op: &OpSpec, input: &Value) -> Result<(), AwsError> {
        if input.get("bad").is_some() {
            return Err(AwsError::invalid_parameter("bad is bad"));
        }
        Ok(())
    }
    async fn authorize(&self, _call: &Call, op: &OpSpec, _input: &Value) -> Result<(), AwsError> {
        if op.name == "Denied" {
            return Err(AwsError::new("AccessDeniedException", "no").with_status(StatusCode::FORBIDDEN));
        }
        Ok(())
    }
    async fn run(&self, call: &Call, op: &OpSpec, input: Value) -> Result<Value, AwsError> {
        if !op.built {
            return Err(AwsError::unsupported(op.name, "later"));
        }
        Ok(json!({"input": input, "account": call.caller.account, "action": op.action}))
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<CallRecord>>);

#[async_trait]
impl CallRecorder for Recorder {
    async fn record(&self, record: CallRecord) {
        self.0.lock().unwrap().push(record);
    }
}

impl Recorder {
    fn take(&self) -> Vec<CallRecord> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct T {
    app: Router,
    rec: Arc<Recorder>,
    _s: common::Server,
}

async fn t() -> T {
    let s = common::server().await;
    let rec = Arc::new(Recorder::default());
    let options = kura_ecr::AppOptions {
        services: vec![Arc::new(TestService)],
        recorder: Some(rec.clone()),
        ..Default::default()
    };
    T {
        app: kura_ecr::app_with(s.ecr.clone(), s.registry.clone(), options),
        rec,
        _s: s,
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn rid(&self) -> String {
        self.headers["x-amzn-requestid"].to_str().unwrap().to_string()
    }
}

impl T {
    async fn post(&self, headers: HeaderMap, body: Vec<u8>) -> Resp {
        let mut req = Request::post("/").body(Body::from(body)).unwrap();
        *req.headers_mut() = headers;
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
        Resp { status, headers, body }
    }

    async fn json(&self, target: &str, input: Value, service: &str, secret: &str) -> Resp {
        let body = serde_json::to_vec(&input).unwrap();
        let mut h = HeaderMap::new();
        h.insert("host", "localhost:5000".parse().unwrap());
        h.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
        h.insert("x-amz-target", target.parse().unwrap());
        h.insert("user-agent", "pipeline-test/1".parse().unwrap());
        sign_post(&mut h, &body, (KEY_ID, secret), REGION, service, SystemTime::now());
        self.post(h, body).await
    }

    async fn query(&self, form: &str, service: &str) -> Resp {
        let body = form.as_bytes().to_vec();
        let mut h = HeaderMap::new();
        h.insert("host", "localhost:5000".parse().unwrap());
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8".parse().unwrap(),
        );
        sign_post(&mut h, &body, (KEY_ID, SECRET), REGION, service, SystemTime::now());
        self.post(h, body).await
    }
}

/// Guards: a registered service is routed by its prefix and answered by the
/// pipeline (authenticated caller, the OpSpec's action), and its call is
/// recorded with the service's event source, the request id answered, the
/// input and output.
#[tokio::test]
async fn a_registered_service_is_served_and_recorded() {
    let t = t().await;
    let r = t
        .json(&format!("{PREFIX}.Echo"), json!({"a": 1}), "kuratest", SECRET)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"input": {"a": 1}, "account": ACCOUNT, "action": "kuratest:Echo"})
    );
    let recs = t.rec.take();
    assert_eq!(recs.len(), 1);
    let c = &recs[0];
    assert_eq!(c.event_source, "kuratest.amazonaws.com");
    assert_eq!(c.event_name, "Echo");
    assert_eq!(c.aws_region, REGION);
    assert_eq!(c.caller.as_ref().unwrap().access_key_id, KEY_ID);
    assert_eq!(c.user_agent.as_deref(), Some("pipeline-test/1"));
    assert_eq!(c.request_parameters, Some(json!({"a": 1})));
    assert_eq!(c.response_elements.as_ref().unwrap()["action"], "kuratest:Echo");
    assert_eq!(c.request_id, r.rid());
    assert_eq!(c.error_code, None);
    assert!(!c.read_only);
    assert_eq!(c.status, 200);
}

/// Guards: validate, authorize and "not built" answer in the JSON 1.1 error
/// format, and are recorded with their codes; an unknown operation of a
/// registered prefix is UnknownOperationException, recorded by name.
#[tokio::test]
async fn each_stage_refuses_in_the_protocols_format_and_is_recorded() {
    let t = t().await;
    let cases = [
        ("Echo", json!({"bad": 1}), 400, "InvalidParameterException"),
        ("Denied", json!({}), 403, "AccessDeniedException"),
        ("DescribeLater", json!({}), 400, "UnsupportedOperationException"),
        ("Nope", json!({}), 400, "UnknownOperationException"),
    ];
    for (op, input, status, code) in cases {
        let r = t.json(&format!("{PREFIX}.{op}"), input, "kuratest", SECRET).await;
        assert_eq!(r.status.as_u16(), status, "{op}: {}", r.text());
        assert_eq!(r.json()["__type"], code, "{op}");
        assert_eq!(r.headers["x-amzn-errortype"], code);
        let recs = t.rec.take();
        assert_eq!(recs.len(), 1, "{op}");
        assert_eq!(recs[0].event_name, op);
        assert_eq!(recs[0].error_code.as_deref(), Some(code));
        assert_eq!(recs[0].request_id, r.rid());
    }
    // The read-only flag comes from the operation table.
    t.json(&format!("{PREFIX}.DescribeLater"), json!({}), "kuratest", SECRET)
        .await;
    assert!(t.rec.take()[0].read_only);
}

/// Guards: failed authentication is recorded too, without a caller, with
/// the operation and the access key the request claimed; a request signed
/// for another service is refused.
#[tokio::test]
async fn failed_authentication_is_recorded() {
    let t = t().await;
    let r = t
        .json(
            &format!("{ECR}.CreateRepository"),
            json!({"repositoryName": "x"}),
            "ecr",
            "wrong-secret",
        )
        .await;
    assert_eq!(r.json()["__type"], "InvalidSignatureException", "{}", r.text());
    let recs = t.rec.take();
    assert_eq!(recs.len(), 1);
    let c = &recs[0];
    assert_eq!(c.event_source, "ecr.amazonaws.com");
    assert_eq!(c.event_name, "CreateRepository");
    assert!(c.caller.is_none());
    assert_eq!(c.claimed_access_key_id.as_deref(), Some(KEY_ID));
    assert_eq!(c.error_code.as_deref(), Some("InvalidSignatureException"));

    // Signed for ECR, sent to the test service.
    let r = t.json(&format!("{PREFIX}.Echo"), json!({}), "ecr", SECRET).await;
    assert_eq!(r.json()["__type"], "InvalidSignatureException", "{}", r.text());
    let recs = t.rec.take();
    assert_eq!(recs[0].event_source, "kuratest.amazonaws.com");
    assert!(recs[0].caller.is_none());
}

/// Guards: ECR, IAM and STS go through the same pipeline and recorder (JSON
/// and Query), with their own event sources and error codes.
#[tokio::test]
async fn ecr_iam_and_sts_calls_are_recorded() {
    let t = t().await;
    let r = t
        .json(
            &format!("{ECR}.CreateRepository"),
            json!({"repositoryName": "app"}),
            "ecr",
            SECRET,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let c = t.rec.take().remove(0);
    assert_eq!(
        (c.event_source.as_str(), c.event_name.as_str()),
        ("ecr.amazonaws.com", "CreateRepository")
    );
    assert_eq!(c.response_elements.unwrap()["repository"]["repositoryName"], "app");

    let r = t.query("Action=ListUsers&Version=2010-05-08", "iam").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("<ListUsersResponse"), "{}", r.text());
    let c = t.rec.take().remove(0);
    assert_eq!(
        (c.event_source.as_str(), c.event_name.as_str()),
        ("iam.amazonaws.com", "ListUsers")
    );
    assert!(c.read_only);
    assert_eq!(c.request_parameters.unwrap()["Action"], "ListUsers");

    let r = t.query("Action=GetCallerIdentity&Version=2011-06-15", "sts").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let c = t.rec.take().remove(0);
    assert_eq!(c.event_source, "sts.amazonaws.com");
    assert_eq!(c.request_id, r.rid());

    let r = t.query("Action=NoSuchThing&Version=2010-05-08", "iam").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("<Code>InvalidAction</Code>"), "{}", r.text());
    let c = t.rec.take().remove(0);
    assert_eq!(c.event_name, "NoSuchThing");
    assert_eq!(c.error_code.as_deref(), Some("InvalidAction"));
}
