//! A raw signalling WebSocket, for tests that speak the protocol by hand
//! (bad input, floods, limits).

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use super::Bridge;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn raw_ws(
    bridge: &Bridge,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    raw_ws_at(bridge.http).await
}

/// A signalling socket to the bridge whose HTTP address is `http`.
pub async fn raw_ws_at(http: std::net::SocketAddr) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/signal"))
        .await
        .expect("ws connect");
    ws
}

/// Next server message as JSON, or None when the socket closed.
pub async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<serde_json::Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("answer in time")
        {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("json")),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

pub async fn expect_error(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    code: &str,
) -> String {
    loop {
        let m = next_json(ws)
            .await
            .unwrap_or_else(|| panic!("closed before error {code}"));
        if m["type"] == "error" {
            assert_eq!(m["code"], code, "{m}");
            return m["message"].as_str().unwrap_or_default().to_string();
        }
    }
}

pub async fn expect_closed(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) {
    while let Some(m) = next_json(ws).await {
        assert_ne!(m["type"], "joined", "must not join: {m}");
    }
}
