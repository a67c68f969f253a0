//! A small HTTP receiver on 127.0.0.1 for delivery tests: records every request and answers
//! the statuses it is told to (then 200).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Received>>>,
    pub statuses: Arc<Mutex<VecDeque<u16>>>,
    /// Answer every request with this status (after the queued ones).
    pub always: Arc<Mutex<Option<u16>>>,
}

impl Receiver {
    /// Start on a free port; the base URL.
    pub async fn start(&self) -> String {
        let me = self.clone();
        let app = Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let me = me.clone();
            async move {
                me.got.lock().unwrap().push(Received {
                    path: uri.to_string(),
                    headers,
                    body,
                });
                let next = me.statuses.lock().unwrap().pop_front();
                let status = next.or(*me.always.lock().unwrap()).unwrap_or(200);
                StatusCode::from_u16(status).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}
