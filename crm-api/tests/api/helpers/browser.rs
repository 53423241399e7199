//! Another browser on a test server (its own cookies), for a second user.

use borcelle_store::users::Role;
use serde_json::{Value, json};

use super::{PASSWORD, TestApp, browser_client};

/// Another browser on a test server (its own cookies), for a second user.
pub struct Browser {
    base: String,
    client: reqwest::Client,
    pub csrf: Option<String>,
    /// `name=value` of the session cookie, once logged in (for WebSocket handshakes).
    pub session_cookie: Option<String>,
}

impl Browser {
    pub fn of(app: &TestApp) -> Browser {
        Browser { base: app.url(""), client: browser_client(), csrf: None, session_cookie: None }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a verified user for `email` on `app` and logs a new browser in as it.
    pub async fn signed_in_user(app: &TestApp, email: &str) -> Browser {
        app.verified_user(email, Role::User).await;
        let mut browser = Browser::of(app);
        browser.login(email).await;
        browser
    }

    /// Logs in with the JSON API (asserting success) and keeps the CSRF token and session cookie.
    pub async fn login(&mut self, email: &str) {
        let response = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .header("Origin", &self.base)
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "login of {email}");
        self.session_cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        let body: Value = response.json().await.expect("json");
        self.csrf = body["csrf_token"].as_str().map(str::to_owned);
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.expect("json")
    }

    /// A state-changing call the way the web app makes it (same Origin, CSRF header); the status.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> u16 {
        let mut request = self
            .client
            .request(method, self.url(path))
            .header("Origin", &self.base)
            .header("X-CSRF-Token", self.csrf.clone().unwrap_or_default());
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request").status().as_u16()
    }
}
