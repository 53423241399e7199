//! Autocomplete: a user's contacts that best match what was typed, by prefix first and then by
//! similar words, each part reading a bounded number of rows.

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::like_escape;
use crate::Owner;

/// An autocomplete suggestion.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Suggestion {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub company: Option<String>,
}

/// How many suggestions autocomplete answers.
const SUGGESTIONS: usize = 10;

/// Prefix matches ($2: the prefix pattern), best first: names that start with the input, then
/// emails and companies that do, then contacts with any word (of name, email or company) that
/// does. Each group is read in order from a btree range with its own LIMIT, so the cost does not
/// grow with the number of matches; only the ≤ 50 candidates are ranked.
pub const PREFIXES: &str = "WITH hits AS (
         (SELECT id, 0 AS rank FROM contacts
          WHERE owner_id = $1 AND lower(name) LIKE $2 ESCAPE '\\'
          ORDER BY lower(name) USING ~<~, id LIMIT 10)
         UNION ALL
         (SELECT id, 1 FROM contacts
          WHERE owner_id = $1 AND email LIKE $2 ESCAPE '\\' ORDER BY email USING ~<~ LIMIT 10)
         UNION ALL
         (SELECT id, 1 FROM contacts
          WHERE owner_id = $1 AND lower(company) LIKE $2 ESCAPE '\\' ORDER BY lower(company) USING ~<~ LIMIT 10)
         UNION ALL
         (SELECT contact_id, 2 FROM contact_words
          WHERE owner_id = $1 AND word LIKE $2 ESCAPE '\\' ORDER BY word, contact_id LIMIT 20)
     )
     SELECT c.id, c.name, c.email, c.company
     FROM (SELECT id, min(rank) AS rank FROM hits GROUP BY id) h
     JOIN contacts c ON c.id = h.id AND c.owner_id = $1
     ORDER BY h.rank, lower(c.name), c.id
     LIMIT 10";

/// Approximate matches ($2 as typed, $3 the infix pattern): the owner's ten words most like the
/// input (trigram word similarity over `pg_trgm.word_similarity_threshold`, or plain similarity
/// over `pg_trgm.similarity_threshold`, so that a typo or a swapped pair of letters still finds
/// the word; or containing it), then up to ten contacts with each of them. The words come from the
/// owner's vocabulary (distinct words), not from every contact, so a common word costs no more
/// than a rare one.
pub const APPROXIMATE: &str = "WITH near AS (
         SELECT word, greatest(word_similarity($2, word), similarity($2, word),
                               CASE WHEN word LIKE $3 ESCAPE '\\' THEN 0.5 ELSE 0 END) AS score,
                similarity($2, word) AS closeness
         FROM contact_vocabulary
         WHERE owner_id = $1 AND ($2 <% word OR $2 % word OR word LIKE $3 ESCAPE '\\')
         ORDER BY score DESC, closeness DESC, word LIMIT 10
     )
     SELECT c.id, c.name, c.email, c.company
     FROM near n
     CROSS JOIN LATERAL (SELECT contact_id FROM contact_words w WHERE w.owner_id = $1 AND w.word = n.word
                         ORDER BY contact_id LIMIT 10) m
     JOIN contacts c ON c.id = m.contact_id AND c.owner_id = $1
     ORDER BY n.score DESC, n.closeness DESC, lower(c.name), c.id
     LIMIT 20";

/// The owner's ten best matches for what was typed (lower-cased, trimmed, non-empty).
///
/// Prefixes first (of the name, then of the email or company, then of any word in them); from
/// three characters on, when fewer than ten contacts match a prefix, words like the input follow
/// (typos and fragments). Every part reads a bounded number of rows, whatever the number of
/// matches. The statements are not kept prepared: a cached generic plan cannot turn a LIKE pattern
/// it does not know yet into an index range, and would read all of the owner's contacts.
pub async fn autocomplete(db: &mut PgConnection, owner: Owner, typed: &str) -> crate::Result<Vec<Suggestion>> {
    let prefix = format!("{}%", like_escape(typed));
    let mut found: Vec<Suggestion> =
        sqlx::query_as(PREFIXES).bind(owner).bind(&prefix).persistent(false).fetch_all(&mut *db).await?;
    if found.len() == SUGGESTIONS || typed.chars().count() < 3 {
        return Ok(found);
    }
    let anywhere = format!("%{}%", like_escape(typed));
    let near: Vec<Suggestion> = sqlx::query_as(APPROXIMATE)
        .bind(owner)
        .bind(typed)
        .bind(anywhere)
        .persistent(false)
        .fetch_all(&mut *db)
        .await?;
    for suggestion in near {
        if found.len() == SUGGESTIONS {
            break;
        }
        if !found.iter().any(|f| f.id == suggestion.id) {
            found.push(suggestion);
        }
    }
    Ok(found)
}
