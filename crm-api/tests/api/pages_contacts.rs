//! The contacts pages: forms with CSRF, inline field errors, privacy, list, import and compose.

use serde_json::{Value, json};

use crate::helpers::*;

/// A signed-in app whose client holds the session; returns the CSRF token the pages' forms carry.
async fn signed_in(email: &str) -> (TestApp, String) {
    let mut app = spawn_app().await;
    app.signed_in_user(email).await;
    let csrf = app.csrf.clone().expect("csrf token");
    (app, csrf)
}

fn location(response: &reqwest::Response) -> String {
    response.headers().get("location").and_then(|v| v.to_str().ok()).expect("a redirect").to_owned()
}

async fn create_through_form(app: &TestApp, csrf: &str, name: &str, email: &str) -> String {
    let response = app.post_form("/contacts/new", &[("csrf_token", csrf), ("name", name), ("email", email)]).await;
    assert_eq!(response.status(), 303, "creating {email}");
    let to = location(&response);
    let id = to.trim_start_matches("/contacts/").split('?').next().unwrap().to_owned();
    assert!(id.parse::<uuid::Uuid>().is_ok(), "redirected to the new contact: {to}");
    id
}

#[tokio::test]
async fn a_contact_is_created_edited_and_deleted_through_the_forms() {
    let (app, csrf) = signed_in("forms@example.com").await;
    let form = app.get("/contacts/new").await;
    assert_eq!(form.status(), 200);
    let html = form.text().await.unwrap();
    assert!(html.contains(&format!("name=\"csrf_token\" value=\"{csrf}\"")), "the form carries the CSRF token");
    assert!(html.contains("<label for=\"email\">"), "inputs have labels");

    let response = app
        .post_form(
            "/contacts/new",
            &[
                ("csrf_token", &csrf),
                ("name", " Ada Lovelace "),
                ("email", "Ada@Example.com"),
                ("phone", "+44 20 7946 0958"),
                ("company", "Analytical Engines"),
                ("tags", "VIP, math, vip"),
                ("notes", "Met at the Royal Society."),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let page_path = location(&response);
    let id = page_path.trim_start_matches("/contacts/").split('?').next().unwrap().to_owned();
    let page = app.get(&page_path).await.text().await.unwrap();
    assert!(page.contains("<h1>Ada Lovelace</h1>"), "the contact's page: {page}");
    assert!(page.contains("ada@example.com") && page.contains("+442079460958"), "normalised as by the API");
    assert!(page.contains("Contact saved."));

    let edit = app.get(&format!("/contacts/{id}/edit")).await.text().await.unwrap();
    assert!(edit.contains("value=\"vip, math\""), "the form shows the stored tags: {edit}");
    let response = app
        .post_form(
            &format!("/contacts/{id}/edit"),
            &[("csrf_token", &csrf), ("name", "Ada King"), ("email", "ada@example.com"), ("company", "")],
        )
        .await;
    assert_eq!(response.status(), 303);
    let read: Value = app.get(&format!("/api/v1/contacts/{id}")).await.json().await.unwrap();
    assert_eq!(read["name"], "Ada King");
    assert_eq!(read["company"], Value::Null, "an emptied field is cleared");
    assert_eq!(read["tags"], json!([]), "the form is the whole contact");

    let confirm = app.get(&format!("/contacts/{id}/delete")).await;
    assert_eq!(confirm.status(), 200);
    assert!(confirm.text().await.unwrap().contains("Delete Ada King?"), "a confirmation step");
    assert_eq!(app.get(&format!("/api/v1/contacts/{id}")).await.status(), 200, "asking deletes nothing");
    let response = app.post_form(&format!("/contacts/{id}/delete"), &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/contacts?deleted=1");
    assert_eq!(app.get(&format!("/api/v1/contacts/{id}")).await.status(), 404);
    assert_eq!(app.get(&format!("/contacts/{id}")).await.status(), 404);
}

#[tokio::test]
async fn the_form_takes_first_and_last_names_and_splits_the_name_when_both_are_empty() {
    let (app, csrf) = signed_in("form-names@example.com").await;
    let html = app.get("/contacts/new").await.text().await.unwrap();
    assert!(
        html.contains("<label for=\"first_name\">First name") && html.contains("<label for=\"last_name\">Last name")
    );

    let id = create_through_form(&app, &csrf, "Ada Lovelace", "ada@example.com").await;
    let page = app.get(&format!("/contacts/{id}")).await.text().await.unwrap();
    assert!(page.contains("<dt>First name</dt><dd>Ada</dd>") && page.contains("<dt>Last name</dt><dd>Lovelace</dd>"));
    let edit = app.get(&format!("/contacts/{id}/edit")).await.text().await.unwrap();
    assert!(edit.contains("value=\"Ada\"") && edit.contains("value=\"Lovelace\""), "the form shows them: {edit}");

    // An edit stores the form as it is: a new name and an emptied first name are not re-split.
    let response = app
        .post_form(
            &format!("/contacts/{id}/edit"),
            &[
                ("csrf_token", &csrf),
                ("name", "Augusta Ada King"),
                ("email", "ada@example.com"),
                ("first_name", ""),
                ("last_name", "Lovelace"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let read: Value = app.get(&format!("/api/v1/contacts/{id}")).await.json().await.unwrap();
    assert_eq!((&read["first_name"], &read["last_name"]), (&Value::Null, &json!("Lovelace")));

    let response = app
        .post_form(
            "/contacts/new",
            &[
                ("csrf_token", &csrf),
                ("name", "Grace Hopper"),
                ("email", "grace@example.com"),
                ("first_name", &"g".repeat(101)),
                ("last_name", "Hopper"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("<p class=\"error\" id=\"first_name-error\">"), "the error sits next to the field: {html}");
    assert!(html.contains("value=\"Hopper\""), "typed values are kept");

    let response = app
        .post_form(
            "/contacts/new",
            &[
                ("csrf_token", &csrf),
                ("name", "Grace Hopper"),
                ("email", "grace@example.com"),
                ("first_name", "Amazing"),
                ("last_name", ""),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let page = app.get(&location(&response)).await.text().await.unwrap();
    assert!(page.contains("<dd>Amazing</dd>") && !page.contains("<dt>Last name</dt>"), "given: kept, no split");
}

#[tokio::test]
async fn forms_without_the_csrf_token_change_nothing() {
    let (app, _) = signed_in("nocsrf@example.com").await;
    let response = app.post_form("/contacts/new", &[("name", "Eve"), ("email", "eve@example.com")]).await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("<h1>Not allowed</h1>"));
    let list: Value = app.get("/api/v1/contacts").await.json().await.unwrap();
    assert_eq!(list["contacts"], json!([]));
}

#[tokio::test]
async fn a_bad_email_is_shown_next_to_its_field_with_the_values_kept() {
    let (app, csrf) = signed_in("inline@example.com").await;
    let response = app
        .post_form(
            "/contacts/new",
            &[("csrf_token", &csrf), ("name", "Grace Hopper"), ("email", "grace-at-navy"), ("company", "Navy")],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("aria-invalid=\"true\""), "the field is marked invalid");
    assert!(html.contains("aria-describedby=\"email-error"), "the error describes the email field");
    assert!(html.contains("<p class=\"error\" id=\"email-error\">"), "the error sits next to the field: {html}");
    assert!(html.contains("value=\"Grace Hopper\"") && html.contains("value=\"Navy\""), "typed values are kept");
    assert!(!html.contains("id=\"name-error\""), "only the bad field has an error");

    // A duplicate email is also an error of the email field.
    create_through_form(&app, &csrf, "Grace", "grace@example.com").await;
    let response = app
        .post_form("/contacts/new", &[("csrf_token", &csrf), ("name", "Grace 2"), ("email", "GRACE@example.com")])
        .await;
    assert_eq!(response.status(), 409);
    let html = response.text().await.unwrap();
    assert!(html.contains("id=\"email-error\">you already have a contact with this email"), "{html}");
}

#[tokio::test]
async fn another_users_contact_page_is_the_not_found_page() {
    let (mut app, csrf) = signed_in("owner@example.com").await;
    let id = create_through_form(&app, &csrf, "Private Person", "private@example.com").await;

    app.client = browser_client();
    app.signed_in_user("stranger@example.com").await;
    let stranger_csrf = app.csrf.clone().unwrap();
    for path in [format!("/contacts/{id}"), format!("/contacts/{id}/edit"), format!("/contacts/{id}/delete")] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 404, "{path}");
        let html = response.text().await.unwrap();
        assert!(html.contains("<h1>Not found</h1>"), "{path}: {html}");
        assert!(!html.contains("Private Person") && !html.contains("private@example.com"), "{path} leaks");
    }
    let response = app.post_form(&format!("/contacts/{id}/delete"), &[("csrf_token", &stranger_csrf)]).await;
    assert_eq!(response.status(), 404);
    let response = app
        .post_form(
            &format!("/contacts/{id}/messages"),
            &[("csrf_token", &stranger_csrf), ("subject", "Hi"), ("body", "Hello")],
        )
        .await;
    assert_eq!(response.status(), 404);
    for malformed in ["/contacts/not-a-uuid", "/contacts/123/edit"] {
        let response = app.get(malformed).await;
        assert_eq!(response.status(), 404, "{malformed}");
        assert!(response.text().await.unwrap().contains("<h1>Not found</h1>"));
    }
    // The owner still has it.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn the_list_searches_filters_by_tag_and_pages_with_next() {
    let (app, csrf) = signed_in("lists@example.com").await;
    for i in 0..27 {
        let tags = if i % 9 == 0 { "vip" } else { "" };
        let body = json!({ "name": format!("Person {i:02}"), "email": format!("p{i}@example.com"), "tags": [tags] });
        assert_eq!(app.post_json("/api/v1/contacts", &body).await.status(), 201);
    }
    let first = app.get("/contacts").await.text().await.unwrap();
    assert!(first.contains("Person 00") && first.contains("Person 24") && !first.contains("Person 25"));
    let next = first.split("href=\"").filter_map(|s| s.split('"').next()).find(|h| h.contains("cursor=")).unwrap();
    let second = app.get(&next.replace("&#38;", "&").replace("&amp;", "&")).await.text().await.unwrap();
    assert!(second.contains("Person 25") && second.contains("Person 26") && !second.contains("Person 24"));
    assert!(!second.contains("rel=\"next\""), "the last page has no Next");

    let tagged = app.get("/contacts?tag=VIP").await.text().await.unwrap();
    let shown = ["Person 00", "Person 09", "Person 18"].iter().all(|n| tagged.contains(n));
    assert!(shown && !tagged.contains("Person 01"), "{tagged}");
    let searched = app.get("/contacts?q=p13%40&sort=-name").await.text().await.unwrap();
    assert!(searched.contains("Person 13") && !searched.contains("Person 12"));
    assert!(searched.contains("<option value=\"-name\" selected>"), "the sort stays chosen");
    let bad = app.get("/contacts?sort=email").await;
    assert_eq!(bad.status(), 422);
    let _ = csrf;
}

const BOUNDARY: &str = "borcelle-pages-boundary-3kq9Zr";

/// Posts a CSV file to the import page the way the page's script does: a multipart form (CSRF
/// field first) with the X-CSRF-Token header.
async fn import_csv(app: &TestApp, csrf: &str, csv: &str) -> reqwest::Response {
    import_csv_with(app, Some(csrf), csrf, csv).await
}

/// The same form, with the header (`header`: the script) or without it (a browser without
/// JavaScript, which sends only the form's own fields).
async fn import_csv_with(app: &TestApp, header: Option<&str>, csrf: &str, csv: &str) -> reqwest::Response {
    let body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{csrf}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"people.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{csv}\r\n--{BOUNDARY}--\r\n"
    );
    let mut request = app
        .client
        .post(app.url("/contacts/import"))
        .header("Origin", app.origin())
        .header("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}"));
    if let Some(header) = header {
        request = request.header("X-CSRF-Token", header);
    }
    request.body(body).send().await.unwrap()
}

#[tokio::test]
async fn the_import_form_works_without_javascript_and_refuses_a_wrong_token() {
    let (app, csrf) = signed_in("plain-form@example.com").await;
    let csv = "Name,E-mail\nAda,ada@example.com\n";
    let response = import_csv_with(&app, None, &csrf, csv).await;
    assert_eq!(response.status(), 200, "the form's own csrf_token field is enough");
    assert!(response.text().await.unwrap().contains("<strong>1</strong> created"));
    let response = import_csv_with(&app, None, "not-the-token", "Name,E-mail\nBo,bo@example.com\n").await;
    assert_eq!(response.status(), 403);
    let list: Value = app.get("/api/v1/contacts").await.json().await.unwrap();
    assert_eq!(list["contacts"].as_array().unwrap().len(), 1, "nothing imported with a wrong token");
}

#[tokio::test]
async fn a_csv_file_is_imported_and_reported_row_by_row() {
    let (app, csrf) = signed_in("importer@example.com").await;
    let form = app.get("/contacts/import").await.text().await.unwrap();
    assert!(form.contains("enctype=\"multipart/form-data\"") && form.contains("<label for=\"file\">"));

    let csv = "Name,E-mail,Tags\nAda,ada@example.com,vip;math\nNo Email,,\nGrace,grace@example.com,\n";
    let response = import_csv(&app, &csrf, csv).await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("<strong>2</strong> created"), "{html}");
    assert!(html.contains("<td>3</td><td>email</td>"), "the bad row is reported with its line and field: {html}");
    let list: Value = app.get("/api/v1/contacts").await.json().await.unwrap();
    assert_eq!(list["contacts"].as_array().unwrap().len(), 2);
    assert_eq!(list["contacts"][0]["first_name"], "Ada", "names split from the name: {list}");

    let response = import_csv(&app, &csrf, "just,one\n").await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("id=\"file-error\""), "a file-level error sits next to the file");
}

#[tokio::test]
async fn a_message_composed_on_the_contact_page_shows_in_its_timeline() {
    let (app, csrf) = signed_in("composer@example.com").await;
    let id = create_through_form(&app, &csrf, "Linus", "linus@example.com").await;
    let path = format!("/contacts/{id}/messages");
    let response = app.post_form(&path, &[("csrf_token", &csrf), ("subject", ""), ("body", "Hello")]).await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("id=\"subject-error\""), "inline error on the subject");

    let response =
        app.post_form(&path, &[("csrf_token", &csrf), ("subject", "Kernel news"), ("body", "Hello Linus")]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(app.deliver_all().await.sent, 1);
    let page = app.get(&format!("/contacts/{id}")).await.text().await.unwrap();
    assert!(page.contains("Kernel news") && page.contains("class=\"badge\">sent<"), "{page}");
    assert!(page.contains("1 attempt") && !page.contains("1 attempts"), "attempts are shown: {page}");
}

/// A bulk form: the action, the ticked ids, and more fields.
fn bulk_form<'a>(
    csrf: &'a str,
    action: &'a str,
    ids: &'a [String],
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![("csrf_token", csrf), ("action", action)];
    form.extend(ids.iter().map(|id| ("id", id.as_str())));
    form.extend_from_slice(more);
    form
}

async fn tagged(app: &TestApp, owner: &str, tag: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM contacts c JOIN users u ON u.id = c.owner_id WHERE u.email = $1 AND $2 = ANY(c.tags)",
    )
    .bind(owner)
    .bind(tag)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn owned(app: &TestApp, owner: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM contacts c JOIN users u ON u.id = c.owner_id WHERE u.email = $1")
        .bind(owner)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn bulk_actions_confirm_the_count_first_and_never_touch_another_users_contacts() {
    let (app, csrf) = signed_in("bulk@example.com").await;
    let mine = seed_contacts(&app.db, "bulk@example.com", "mine", 12, "team").await;
    app.verified_user("other@example.com", borcelle_store::users::Role::User).await;
    let theirs = seed_contacts(&app.db, "other@example.com", "theirs", 3, "team").await;
    let ticked: Vec<String> = mine[..10].iter().chain(&theirs).map(ToString::to_string).collect();

    // Ten of mine and three of theirs ticked: the confirmation counts ten, and nothing changed yet.
    let form = bulk_form(&csrf, "tag", &ticked, &[("scope", "selected"), ("label", " VIP ")]);
    let response = app.post_form("/contacts/bulk", &form).await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("Add the tag “vip” to 10 contacts?"), "{html}");
    assert_eq!(tagged(&app, "bulk@example.com", "vip").await, 0, "nothing before the confirmation");

    let mut confirmed = form.clone();
    confirmed.push(("confirmed", "1"));
    let response = app.post_form("/contacts/bulk", &confirmed).await;
    assert_eq!(response.status(), 303);
    assert!(location(&response).contains("done=tagged&n=10&of=10&label=vip"), "{}", location(&response));
    assert_eq!(tagged(&app, "bulk@example.com", "vip").await, 10);
    assert_eq!(tagged(&app, "other@example.com", "vip").await, 0, "another user's ids change nothing");
    // Again: those who have it already are not counted as changed.
    let response = app.post_form("/contacts/bulk", &confirmed).await;
    assert!(location(&response).contains("n=0&of=10"), "{}", location(&response));
    let html = app.get(&location(&response)).await.text().await.unwrap();
    assert!(html.contains("Tag “vip” added to 0 contacts. The other 10 needed no change."), "{html}");
    // The list counts the filter's contacts; a page size it does not offer is refused.
    let html = app.get("/contacts?tag=vip").await.text().await.unwrap();
    assert!(html.contains(r#"data-total="10""#), "{html}");
    let response = app.get("/contacts?per=7").await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("per must be 25, 50 or 100"));

    // Only their ids: nothing is selected, for any action.
    let only_theirs: Vec<String> = theirs.iter().map(ToString::to_string).collect();
    for action in ["tag", "untag", "delete", "email"] {
        let form = bulk_form(&csrf, action, &only_theirs, &[("scope", "selected"), ("label", "x"), ("confirmed", "1")]);
        let response = app.post_form("/contacts/bulk", &form).await;
        assert_eq!(response.status(), 422, "{action}");
        assert!(response.text().await.unwrap().contains("Nothing selected"), "{action}");
    }
    assert_eq!(owned(&app, "other@example.com").await, 3);

    // An order or page size the list would refuse does not follow the action back to it.
    let mut odd = bulk_form(&csrf, "untag", &ticked, &[("scope", "selected"), ("label", "vip"), ("confirmed", "1")]);
    odd.extend([("sort", "-nonsense"), ("per", "7")]);
    let response = app.post_form("/contacts/bulk", &odd).await;
    assert_eq!(response.status(), 303);
    assert!(!location(&response).contains("per=") && !location(&response).contains("sort="), "{}", location(&response));
    assert_eq!(app.get(&location(&response)).await.status(), 200);
    assert_eq!(tagged(&app, "bulk@example.com", "vip").await, 0);

    // All matching a search: mine1, mine10, mine11, mine12 (by email), confirmed with their count.
    let all = [("scope", "all"), ("q", "MINE1")];
    let html = app.post_form("/contacts/bulk", &bulk_form(&csrf, "delete", &[], &all)).await.text().await.unwrap();
    assert!(html.contains("Delete 4 contacts?"), "{html}");
    let mut form = bulk_form(&csrf, "delete", &[], &all);
    form.push(("confirmed", "1"));
    let response = app.post_form("/contacts/bulk", &form).await;
    assert!(location(&response).contains("done=deleted&n=4&of=4"), "{}", location(&response));
    assert_eq!(owned(&app, "bulk@example.com").await, 8);
    assert_eq!(owned(&app, "other@example.com").await, 3, "their contacts match the search too, and stay");

    // Bad input is a clear 4xx, never a 500: an unknown action, a malformed id, a missing tag.
    let bad_id = ["not-an-id".to_owned()];
    for (form, want) in [
        (bulk_form(&csrf, "explode", &[], &[("scope", "all")]), "choose an action"),
        (bulk_form(&csrf, "tag", &bad_id, &[("scope", "selected"), ("label", "x")]), "tick the contacts again"),
        (bulk_form(&csrf, "tag", &[], &[("scope", "all"), ("label", "  ")]), "name the tag"),
    ] {
        let response = app.post_form("/contacts/bulk", &form).await;
        assert_eq!(response.status(), 422, "{want}");
        assert!(response.text().await.unwrap().contains(want), "{want}");
    }
}

#[tokio::test]
async fn emailing_selected_contacts_asks_for_the_text_then_the_count_then_queues_one_task() {
    let (app, csrf) = signed_in("sender@example.com").await;
    let mine = seed_contacts(&app.db, "sender@example.com", "to", 5, "team").await;
    let ticked: Vec<String> = mine[..3].iter().map(ToString::to_string).collect();
    let html = app
        .post_form("/contacts/bulk", &bulk_form(&csrf, "email", &ticked, &[("scope", "selected")]))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Email 3 contacts") && html.contains("name=\"subject\""), "the compose step: {html}");

    // A template error is shown on its field, at the compose step.
    let bad = [("scope", "selected"), ("step", "review"), ("subject", "Hi {{ contact.nope }}"), ("body", "x")];
    let response = app.post_form("/contacts/bulk", &bulk_form(&csrf, "email", &ticked, &bad)).await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("id=\"subject-error\""));

    let good =
        [("scope", "selected"), ("step", "review"), ("subject", "Hi {{ contact.first_name }}"), ("body", "News.")];
    let html = app.post_form("/contacts/bulk", &bulk_form(&csrf, "email", &ticked, &good)).await.text().await.unwrap();
    assert!(html.contains("to 3 contacts?"), "{html}");
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM messages").fetch_one(&app.db).await.unwrap();
    assert_eq!(queued, 0, "nothing queued before the confirmation");

    let mut form = bulk_form(&csrf, "email", &ticked, &good);
    form.push(("confirmed", "1"));
    let response = app.post_form("/contacts/bulk", &form).await;
    assert_eq!(response.status(), 303);
    assert!(location(&response).contains("done=emailed&n=3&of=3"), "{}", location(&response));
    let recipients: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT contact_id FROM messages ORDER BY contact_id").fetch_all(&app.db).await.unwrap();
    let mut want = mine[..3].to_vec();
    want.sort();
    assert_eq!(recipients, want, "one ledger row per ticked contact, one task");
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks").fetch_one(&app.db).await.unwrap();
    assert_eq!(tasks, 1);
}

#[tokio::test]
async fn the_message_history_page_lists_only_the_users_own_messages_and_refuses_bad_filters() {
    let (app, _csrf) = signed_in("history@example.com").await;
    message_one_new_contact(&app).await;
    let other = Browser::signed_in_user(&app, "nosy@example.com").await;

    let html = app.get("/messages").await.text().await.unwrap();
    assert!(html.contains("ada@example.com") && html.contains(">Hi<"), "the owner's message: {html}");
    let theirs = other.get("/messages").await.text().await.unwrap();
    assert!(!theirs.contains("ada@example.com"), "another user's history shows nothing of it");
    assert!(theirs.contains("Nothing sent yet"));

    let filtered = app.get("/messages?to=ADA%40&status=queued&kind=message").await.text().await.unwrap();
    assert!(filtered.contains("ada@example.com"), "filters match, case folded: {filtered}");
    let none = app.get("/messages?kind=note").await.text().await.unwrap();
    assert!(none.contains("No messages here."));
    for (query, want) in [
        ("status=lost", "status must be one of"),
        ("kind=fax", "kind must be one of"),
        ("from=yesterday", "from must be a day like 2026-12-31"),
        ("cursor=nonsense", "no page starts at this cursor"),
    ] {
        let response = app.get(&format!("/messages?{query}")).await;
        assert!(response.status().is_client_error(), "{query}: {}", response.status());
        assert!(response.text().await.unwrap().contains(want), "{query}");
    }
}

#[tokio::test]
async fn the_account_time_zone_is_checked_saved_and_on_every_page_at_once() {
    let (app, csrf) = signed_in("zone@example.com").await;
    let html = app.get("/contacts").await.text().await.unwrap();
    assert!(!html.contains("data-tz="), "no zone: the browser's");

    let response = app.post_form("/account/time-zone", &[("csrf_token", &csrf), ("time_zone", "Mars/Olympus")]).await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("is not a time zone") && html.contains(r#"id="time_zone-error""#), "{html}");

    let response = app.post_form("/account/time-zone", &[("csrf_token", &csrf), ("time_zone", " Asia/Tokyo ")]).await;
    assert_eq!(response.status(), 303);
    // The session was read (and cached) before: the next page has the new zone all the same.
    let html = app.get(&location(&response)).await.text().await.unwrap();
    assert!(html.contains("Times now show in Asia/Tokyo.") && html.contains(r#"data-tz="Asia/Tokyo""#), "{html}");
    assert!(app.get("/contacts").await.text().await.unwrap().contains(r#"data-tz="Asia/Tokyo""#));

    let response = app.post_form("/account/time-zone", &[("csrf_token", &csrf), ("time_zone", "")]).await;
    assert_eq!(response.status(), 303);
    assert!(!app.get("/contacts").await.text().await.unwrap().contains("data-tz="), "emptied: the browser's again");
}

#[tokio::test]
async fn the_sign_up_form_shows_every_wrong_field_at_once() {
    let app = spawn_app().await;
    let form = [("email", "nope"), ("display_name", " "), ("password", "short")];
    let response = app.post_form("/register", &form).await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    for field in ["email", "display_name", "password"] {
        assert!(html.contains(&format!(r#"id="{field}-error""#)), "{field}: {html}");
    }
    // The answer page after a sign-up puts back only what could be an address into its resend form.
    let html = app.get("/register/sent?email=a%0Ab%40example.com").await.text().await.unwrap();
    assert!(html.contains("Check your inbox") && !html.contains(r#"name="email""#), "{html}");
    let html = app.get("/register/sent?email=%20ada%40example.com%20").await.text().await.unwrap();
    assert!(html.contains(r#"value="ada@example.com""#), "{html}");
}
