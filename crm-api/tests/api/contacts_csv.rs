//! CSV import and export of contacts.

use serde_json::{Value, json};

use crate::helpers::*;

async fn import(app: &TestApp, query: &str, csv: impl Into<reqwest::Body>) -> reqwest::Response {
    app.import_csv(query, csv).await
}

async fn count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM contacts").fetch_one(&app.db).await.unwrap()
}

#[tokio::test]
async fn an_import_creates_and_updates_by_email_and_reports_bad_rows() {
    let mut app = spawn_app().await;
    app.signed_in_user("importer@example.com").await;
    app.post_json("/api/v1/contacts", &json!({ "name": "Old Name", "email": "grace@example.com", "company": "Navy" }))
        .await;

    let csv = "Full Name,E-mail,Phone,Company,Tags\n\
               Ada Lovelace,ada@example.com,+44 20 7946 0958,Analytical,vip;math\n\
               Grace Hopper,GRACE@example.com,,,compilers\n\
               Broken Phone,broken@example.com,555,,\n\
               No Email,,,,\n";
    let response = import(&app, "", csv).await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!((report["created"].as_i64(), report["updated"].as_i64()), (Some(1), Some(1)));
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{report}");
    assert_eq!((errors[0]["line"].as_i64(), errors[0]["field"].as_str()), (Some(4), Some("phone")));
    assert_eq!((errors[1]["line"].as_i64(), errors[1]["field"].as_str()), (Some(5), Some("email")));
    assert_eq!(report["columns"]["E-mail"], "email");

    let grace: Value = app.get("/api/v1/contacts?q=grace").await.json().await.unwrap();
    let grace = &grace["contacts"][0];
    assert_eq!(grace["name"], "Grace Hopper", "updated by email");
    assert_eq!(grace["company"], "Navy", "an empty cell keeps what was there");
    assert_eq!(grace["tags"], json!(["compilers"]));
    assert_eq!((&grace["first_name"], &grace["last_name"]), (&json!("Old"), &json!("Name")), "names are kept");
    let ada: Value = app.get("/api/v1/contacts?q=ada").await.json().await.unwrap();
    let ada = &ada["contacts"][0];
    assert_eq!((&ada["first_name"], &ada["last_name"]), (&json!("Ada"), &json!("Lovelace")), "split when created");
    assert_eq!(count(&app).await, 2);
}

#[tokio::test]
async fn first_and_last_name_columns_are_imported_and_empty_cells_keep_existing_names() {
    let mut app = spawn_app().await;
    app.signed_in_user("names-importer@example.com").await;
    for (name, email) in [("Grace Hopper", "grace@example.com"), ("Alan Turing", "alan@example.com")] {
        let response = app.post_json("/api/v1/contacts", &json!({ "name": name, "email": email })).await;
        assert_eq!(response.status(), 201);
    }

    let csv = format!(
        "Name,Email,First Name,Surname\n\
         Ada Lovelace,ada@example.com,Augusta,King\n\
         Linus Torvalds,linus@example.com,,\n\
         Mary Ellis,mary@example.com,,Ellis-Smith\n\
         Rear Admiral Grace Hopper,grace@example.com,Amazing,Grace\n\
         Alan M. Turing,alan@example.com,,\n\
         Too Long,long@example.com,,{}\n",
        "L".repeat(101)
    );
    let report: Value = import(&app, "", csv).await.json().await.unwrap();
    assert_eq!((report["created"].as_i64(), report["updated"].as_i64()), (Some(3), Some(2)), "{report}");
    assert_eq!(report["columns"]["First Name"], "first_name");
    assert_eq!(report["columns"]["Surname"], "last_name");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!((errors[0]["line"].as_i64(), errors[0]["field"].as_str()), (Some(7), Some("last_name")));

    let names = |email: &'static str| {
        let app = &app;
        async move {
            let found: Value = app.get(&format!("/api/v1/contacts?q={email}")).await.json().await.unwrap();
            let contact = &found["contacts"][0];
            (contact["first_name"].as_str().map(str::to_owned), contact["last_name"].as_str().map(str::to_owned))
        }
    };
    let some = |first: &str, last: &str| (Some(first.to_owned()), Some(last.to_owned()));
    assert_eq!(names("ada@").await, some("Augusta", "King"), "given: kept");
    assert_eq!(names("linus@").await, some("Linus", "Torvalds"), "created without: split");
    assert_eq!(names("mary@").await, (None, Some("Ellis-Smith".to_owned())), "one given: no split");
    assert_eq!(names("grace@").await, some("Amazing", "Grace"), "an update writes given names");
    assert_eq!(names("alan@").await, some("Alan", "Turing"), "an update keeps names over empty cells");
}

#[tokio::test]
async fn a_file_level_error_imports_nothing() {
    let mut app = spawn_app().await;
    app.signed_in_user("careful@example.com").await;
    let malformed = "name,email\nAda,ada@example.com\n\"Unclosed,bob@example.com\n";
    let (status, _, field) = error_of(import(&app, "", malformed).await).await;
    assert_eq!((status, field.as_deref()), (422, Some("file")));
    let (status, _, field) = error_of(import(&app, "", b"name,email\n\xff\xfe\n".to_vec()).await).await;
    assert_eq!((status, field.as_deref()), (422, Some("file")));
    let (status, _, field) = error_of(import(&app, "", "name,phone\nAda,+33612345678\n").await).await;
    assert_eq!((status, field.as_deref()), (422, Some("column.email")));
    let (status, _, field) = error_of(import(&app, "?column.email=Courriel", "name,email\n").await).await;
    assert_eq!((status, field.as_deref()), (422, Some("column.email")));
    let (status, _, field) = error_of(import(&app, "?colour=red", "name,email\n").await).await;
    assert_eq!((status, field.as_deref()), (422, Some("colour")));
    assert_eq!(count(&app).await, 0, "nothing half-imported");

    let wrong_type = app
        .client
        .post(app.url("/api/v1/contacts/import"))
        .header("Content-Type", "application/json")
        .header("X-CSRF-Token", app.csrf.clone().unwrap())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(wrong_type).await.0, 415);
    let huge = format!("name,email\n{}", "x,y\n".repeat(3 * 1024 * 1024));
    assert_eq!(error_of(import(&app, "", huge).await).await.0, 413);
}

#[tokio::test]
async fn a_mapping_imports_files_with_other_headers() {
    let mut app = spawn_app().await;
    app.signed_in_user("mapper@example.com").await;
    let response = import(&app, "?column.name=Nom&column.email=Courriel", "Nom,Courriel\nAda,ada@example.com\n").await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["created"], 1);
}

#[tokio::test]
async fn the_export_streams_every_own_contact_and_defuses_formulas() {
    let mut app = spawn_app().await;
    app.signed_in_user("exporter@example.com").await;
    seed_contacts(&app.db, "exporter@example.com", "bulk", 2500, "t").await;
    app.post_json(
        "/api/v1/contacts",
        &json!({ "name": "=HYPERLINK(\"http://evil\")", "email": "formula@example.com" }),
    )
    .await;
    app.post_json("/api/v1/contacts", &json!({ "name": "Ada Lovelace", "email": "ada@example.com" })).await;
    app.client = browser_client();
    app.signed_in_user("other-exporter@example.com").await;
    app.post_json("/api/v1/contacts", &json!({ "name": "Not Yours", "email": "notyours@example.com" })).await;
    app.client = browser_client();
    app.login("exporter@example.com", PASSWORD).await;

    let response = app.get("/api/v1/contacts/export").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(response.headers()["content-disposition"].to_str().unwrap().contains("contacts.csv"));
    let text = response.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("name,first_name,last_name,email,phone,company,address,tax_id,tags,notes,created_at,updated_at")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2502, "every contact once, across chunks");
    assert!(!text.contains("notyours@example.com"), "only the owner's contacts");
    assert!(text.contains("\"'=HYPERLINK(\"\"http://evil\"\")\""), "a formula is defused");
    assert!(text.contains("\nAda Lovelace,Ada,Lovelace,ada@example.com,"), "first and last names are exported");
    assert!(text.contains("\nContact 1,,,bulk1@example.com,"), "absent names are empty cells");

    // What was exported imports back as updates, not duplicates.
    let response = import(&app, "", text).await;
    let report: Value = response.json().await.unwrap();
    assert_eq!((report["created"].as_i64(), report["updated"].as_i64()), (Some(0), Some(2502)), "{report}");
}

/// Imports of the same addresses in different orders, at once: each one succeeds (the rows are
/// written in one order whatever the file's, so the imports wait for each other instead of
/// deadlocking), and nothing is duplicated. (A deadlock that still happened would be a 503 asking
/// to send the request again, never a 500.) An attacker got `[200, 500]` ("deadlock detected") in 5 of 5
/// rounds of two, and up to five 500s out of six.
#[tokio::test]
async fn concurrent_imports_of_the_same_addresses_never_fail_with_a_500() {
    let mut app = spawn_app().await;
    app.signed_in_user("racer@example.com").await;
    let rows: Vec<String> = (0..2000).map(|i| format!("Person {i},person{i}@example.com,,Acme {i},")).collect();
    let header = "name,email,phone,company,tags\n";
    let forward = format!("{header}{}\n", rows.join("\n"));
    let reversed = format!("{header}{}\n", rows.iter().rev().cloned().collect::<Vec<_>>().join("\n"));
    // A third order: interleaved from both ends.
    let mut shuffled_rows: Vec<String> = Vec::with_capacity(rows.len());
    for i in 0..rows.len() / 2 {
        shuffled_rows.push(rows[i].clone());
        shuffled_rows.push(rows[rows.len() - 1 - i].clone());
    }
    let shuffled = format!("{header}{}\n", shuffled_rows.join("\n"));
    let files = [&forward, &reversed, &shuffled];
    for (round, at_once) in [2, 2, 2, 2, 2, 6].into_iter().enumerate() {
        let imports = (0..at_once).map(|i| import(&app, "", files[i % files.len()].clone()));
        let answers = futures::future::join_all(imports).await;
        for answer in answers {
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap();
            assert_eq!(status, 200, "round {round}: {body}");
        }
    }
    assert_eq!(count(&app).await, 2000, "every address once");
}
