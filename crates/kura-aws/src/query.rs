//! The AWS Query protocol's wire format: a form body in, XML out.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::error::AwsError;

/// A form body's fields as a JSON object of strings (`+` is a space, `%XX`
/// escapes; a repeated field keeps its last value).
pub fn form_input(body: &[u8]) -> Value {
    let fields: Map<String, Value> = form_urlencoded::parse(body)
        .into_owned()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Value::Object(fields)
}

/// `<ActionResponse xmlns=…><ActionResult>result</ActionResult><ResponseMetadata>…`.
pub fn success_response(namespace: &str, action: &str, result: Option<&str>, rid: &str) -> Response {
    let mut body = format!("<{action}Response xmlns=\"{namespace}\">");
    if let Some(r) = result {
        let _ = write!(body, "<{action}Result>{r}</{action}Result>");
    }
    let _ = write!(
        body,
        "<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        xml_escape(rid)
    );
    xml_response(StatusCode::OK, body)
}

fn xml_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    r
}

/// The `Code` an error answers in the Query protocol.
pub fn error_code(e: &AwsError) -> &'static str {
    if e.kind == "ServerException" {
        "ServiceFailure"
    } else {
        e.kind
    }
}

/// An error as `<ErrorResponse xmlns=namespace>`.
pub fn error_response(namespace: &str, e: &AwsError, rid: &str) -> Response {
    let kind = if e.status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        xml_escape(error_code(e)),
        xml_escape(&e.message),
        xml_escape(rid)
    );
    xml_response(e.status, body)
}

/// Escape text for an XML element.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
