//! A listed contact's row written as JSON straight from PostgreSQL's binary values: the same
//! bytes as `serde_json` makes of the [`super::Contact`] the row decodes to (the tests compare
//! the two for any text, tags and time).

use chrono::DateTime;
use sqlx::postgres::{PgRow, PgValueFormat};
use sqlx::{Column, Postgres, Row, Type, TypeInfo, ValueRef};
use uuid::Uuid;

use crate::{json, rfc3339};

/// How a column's binary value is read and written.
#[derive(Clone, Copy)]
enum Kind {
    Uuid,
    Text,
    /// Text or `null`.
    OptionalText,
    /// `text[]`, one dimension, no null element.
    Tags,
    /// `timestamptz`.
    Time,
}

/// The page's columns (`list::COLUMNS`, in its order) and each one's key, as serde writes the
/// field of [`super::Contact`].
const FIELDS: [(&[u8], Kind); 13] = [
    (b"{\"id\":", Kind::Uuid),
    (b",\"name\":", Kind::Text),
    (b",\"first_name\":", Kind::OptionalText),
    (b",\"last_name\":", Kind::OptionalText),
    (b",\"email\":", Kind::Text),
    (b",\"phone\":", Kind::OptionalText),
    (b",\"company\":", Kind::OptionalText),
    (b",\"address\":", Kind::OptionalText),
    (b",\"tax_id\":", Kind::OptionalText),
    (b",\"tags\":", Kind::Tags),
    (b",\"notes\":", Kind::Text),
    (b",\"created_at\":", Kind::Time),
    (b",\"updated_at\":", Kind::Time),
];

/// Fails unless each of the first columns has a type whose binary value [`write_contact`] reads.
pub(super) fn check_columns(row: &PgRow) -> sqlx::Result<()> {
    for (index, (_, kind)) in FIELDS.iter().enumerate() {
        let column =
            row.columns().get(index).ok_or(sqlx::Error::ColumnIndexOutOfBounds { index, len: row.columns().len() })?;
        let ty = column.type_info();
        let fits = match kind {
            Kind::Uuid => <Uuid as Type<Postgres>>::compatible(ty),
            Kind::Text | Kind::OptionalText => <String as Type<Postgres>>::compatible(ty),
            Kind::Tags => <Vec<String> as Type<Postgres>>::compatible(ty),
            Kind::Time => <DateTime<chrono::Utc> as Type<Postgres>>::compatible(ty),
        };
        if !fits {
            return Err(bad(index, format!("a contact page cannot write a column of type {}", ty.name())));
        }
    }
    Ok(())
}

/// Writes the row as a JSON object into `out`.
pub(super) fn write_contact(row: &PgRow, out: &mut Vec<u8>) -> sqlx::Result<()> {
    for (index, (key, kind)) in FIELDS.iter().enumerate() {
        out.extend_from_slice(key);
        let value = raw(row, index)?;
        match (kind, value) {
            (Kind::OptionalText, None) => out.extend_from_slice(b"null"),
            (_, None) => return Err(bad(index, "unexpected null".to_owned())),
            (Kind::Uuid, Some(bytes)) => {
                let id = Uuid::from_slice(bytes).map_err(|err| bad(index, err.to_string()))?;
                let mut text = Uuid::encode_buffer();
                out.push(b'"');
                out.extend_from_slice(id.hyphenated().encode_lower(&mut text).as_bytes());
                out.push(b'"');
            }
            (Kind::Text | Kind::OptionalText, Some(bytes)) => json::write_str(out, text(index, bytes)?),
            (Kind::Tags, Some(bytes)) => write_tags(index, bytes, out)?,
            (Kind::Time, Some(bytes)) => {
                let micros = <[u8; 8]>::try_from(bytes).map(i64::from_be_bytes).map_err(|_| short(index))?;
                // Microseconds since 2000-01-01, PostgreSQL's epoch (`infinity` is out of range).
                let written =
                    micros.checked_add(946_684_800_000_000).is_some_and(|unix| rfc3339::write_json_micros(unix, out));
                if !written {
                    return Err(bad(index, format!("{micros} µs from 2000 is out of range")));
                }
            }
        }
    }
    out.push(b'}');
    Ok(())
}

/// The value's bytes in binary format (what prepared statements return), `None` for null.
fn raw(row: &PgRow, index: usize) -> sqlx::Result<Option<&[u8]>> {
    let value = row.try_get_raw(index)?;
    if value.is_null() {
        return Ok(None);
    }
    if value.format() != PgValueFormat::Binary {
        return Err(bad(index, "the value came in text format".to_owned()));
    }
    value.as_bytes().map(Some).map_err(|source| sqlx::Error::ColumnDecode { index: index.to_string(), source })
}

/// A one-dimensional `text[]` in binary format (PostgreSQL's `array_send`): dimensions, a flag for
/// nulls, the element type, each dimension's length and lower bound, then each element's length
/// and bytes.
fn write_tags(index: usize, bytes: &[u8], out: &mut Vec<u8>) -> sqlx::Result<()> {
    let mut rest = bytes;
    let dimensions = take_i32(&mut rest, index)?;
    let _has_nulls = take_i32(&mut rest, index)?;
    let _element_type = take_i32(&mut rest, index)?;
    let count = match dimensions {
        0 => 0,
        1 => {
            let count = take_i32(&mut rest, index)?;
            let _lower_bound = take_i32(&mut rest, index)?;
            count
        }
        n => return Err(bad(index, format!("an array of {n} dimensions, where tags have one"))),
    };
    out.push(b'[');
    for n in 0..count {
        if n > 0 {
            out.push(b',');
        }
        let len = take_i32(&mut rest, index)?;
        let len = usize::try_from(len).map_err(|_| bad(index, "a null tag".to_owned()))?;
        if rest.len() < len {
            return Err(short(index));
        }
        let (tag, tail) = rest.split_at(len);
        json::write_str(out, text(index, tag)?);
        rest = tail;
    }
    out.push(b']');
    Ok(())
}

/// The next four bytes as a big-endian `i32`.
fn take_i32(rest: &mut &[u8], index: usize) -> sqlx::Result<i32> {
    let (head, tail) = rest.split_first_chunk::<4>().ok_or_else(|| short(index))?;
    *rest = tail;
    Ok(i32::from_be_bytes(*head))
}

fn text(index: usize, bytes: &[u8]) -> sqlx::Result<&str> {
    std::str::from_utf8(bytes).map_err(|err| bad(index, err.to_string()))
}

fn short(index: usize) -> sqlx::Error {
    bad(index, "the value is shorter than its type".to_owned())
}

fn bad(index: usize, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: index.to_string(), source: message.into() }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::postgres::PgRow;

    use super::*;
    use crate::testing::TestDb;

    /// The columns of a listed contact with some replaced by `replace` (column, SQL): a row of
    /// the page's shape, or of a shape this writer must refuse.
    async fn row(db: &TestDb, replace: &[(usize, &str)]) -> PgRow {
        let mut columns = vec![
            "gen_random_uuid()",
            "'Zoë'",
            "NULL::text",
            "'Ünal'",
            "'zoe@example.com'",
            "NULL::text",
            "'Acme'",
            "NULL::text",
            "NULL::text",
            "ARRAY['vip','paris']",
            "''",
            "'2026-01-02T03:04:05.678901Z'::timestamptz",
            "'2026-01-02T03:04:05Z'::timestamptz",
        ];
        for (index, sql) in replace {
            columns[*index] = sql;
        }
        // Prepared (as the page's statement is), so values come in binary format.
        let sql = format!("SELECT {}", columns.join(", "));
        sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(&db.pool).await.unwrap()
    }

    fn written(row: &PgRow) -> sqlx::Result<String> {
        check_columns(row)?;
        let mut out = Vec::new();
        write_contact(row, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn refused(result: sqlx::Result<String>, column: &str, says: &str) {
        match result {
            Err(sqlx::Error::ColumnDecode { index, source }) => {
                assert_eq!(index, column);
                assert!(source.to_string().contains(says), "{source}");
            }
            other => panic!("column {column} should be refused ({says}), got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_row_of_the_pages_shape_is_written_and_any_other_is_refused_by_column() {
        let db = TestDb::new("borcelle_store_test").await;
        let fine = written(&row(&db, &[]).await).unwrap();
        let value: serde_json::Value = serde_json::from_str(&fine).unwrap();
        assert_eq!(value["name"], "Zoë");
        assert_eq!(value["first_name"], serde_json::Value::Null);
        assert_eq!(value["tags"], serde_json::json!(["vip", "paris"]));
        assert_eq!(value["created_at"], "2026-01-02T03:04:05.678901Z");
        assert_eq!(value["updated_at"], "2026-01-02T03:04:05Z");
        assert!(fine.starts_with("{\"id\":\"") && fine.ends_with("Z\"}"), "{fine}");
        assert!(written(&row(&db, &[(9, "ARRAY[]::text[]")]).await).unwrap().contains(",\"tags\":[],"));

        // Another type where the writer reads a time, a text or an array: refused as it is.
        refused(written(&row(&db, &[(11, "'2026-01-02'::text")]).await), "11", "type TEXT");
        refused(written(&row(&db, &[(1, "42")]).await), "1", "type INT4");
        refused(written(&row(&db, &[(9, "ARRAY[1,2]")]).await), "9", "type INT4[]");
        refused(written(&row(&db, &[(0, "'x'")]).await), "0", "type TEXT");
        // Values the types allow but a contact never holds.
        refused(written(&row(&db, &[(1, "NULL::text")]).await), "1", "unexpected null");
        refused(written(&row(&db, &[(9, "ARRAY['a', NULL]")]).await), "9", "a null tag");
        refused(written(&row(&db, &[(9, "ARRAY[ARRAY['a'],ARRAY['b']]")]).await), "9", "2 dimensions");
        refused(written(&row(&db, &[(12, "'infinity'::timestamptz")]).await), "12", "out of range");
        // Fewer columns than a contact has.
        let short: PgRow = sqlx::query("SELECT gen_random_uuid()").fetch_one(&db.pool).await.unwrap();
        assert!(matches!(written(&short), Err(sqlx::Error::ColumnIndexOutOfBounds { index: 1, len: 1 })));
    }
}
