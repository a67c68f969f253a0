//! IAM and STS on Kura: the AWS Query protocol (form-encoded `Action=...`,
//! XML answers).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::EcrError;
use crate::Ecr;

/// Answer one IAM or STS Query call.
pub async fn handle(_ecr: &Ecr, _parts: &http::request::Parts, _body: &[u8], rid: &str) -> Response {
    error_response(
        &EcrError::new("InvalidAction", "IAM and STS are not available yet").with_status(StatusCode::BAD_REQUEST),
        rid,
    )
}

/// An error in the Query protocol's XML form.
pub fn error_response(e: &EcrError, rid: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        xml_escape(e.kind),
        xml_escape(&e.message),
        xml_escape(rid)
    );
    let mut r = (e.status, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    r
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
