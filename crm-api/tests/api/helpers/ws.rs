//! A WebSocket to `/ws`, as a browser tab opens it.

use std::time::Duration;

use serde_json::Value;

use super::TestApp;

/// A WebSocket to `/ws` with the client's session cookie, as a browser tab opens it.
pub async fn open_socket(
    app: &TestApp,
    session_cookie: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/ws", app.addr).into_client_request().expect("request");
    request.headers_mut().insert("Cookie", session_cookie.parse().expect("cookie"));
    request.headers_mut().insert("Origin", app.origin().parse().expect("origin"));
    let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket handshake");
    socket
}

/// Reads the next JSON message from a WebSocket (up to 30 s).
pub async fn next_event(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> Option<Value> {
    use futures::StreamExt;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next()).await.ok()??.ok()?;
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).ok();
        }
    }
}
