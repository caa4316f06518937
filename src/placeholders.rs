//! SQL placeholders across dialects: every statement of this program (and the operator's custom
//! directory SQL) is written once with numbered `$N` placeholders. PostgreSQL reads them as they
//! are; SQLite binds `$N` by number too; MySQL/MariaDB only knows positional `?`, bound in order
//! of appearance. [`positional`] is the one place that bridges the two.

/// A statement rewritten for a dialect, with the order in which to bind its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positional {
    /// The statement text for the dialect.
    pub sql: String,
    /// For each placeholder of `sql`, in order, the index (0-based) of the argument to bind:
    /// `$2` is argument 1.
    pub binds: Vec<usize>,
}

/// The number `N` of every `$N` placeholder of `sql` outside quoted strings and identifiers,
/// in order of appearance. A number too large for `usize` saturates to `usize::MAX`, so any
/// text is scanned without overflow.
pub fn numbers(sql: &str) -> Vec<usize> {
    let mut numbers = Vec::new();
    scan(sql, |token| {
        if let Token::Placeholder(number) = token {
            numbers.push(number);
        }
    });
    numbers
}

/// A piece of a statement, as [`scan`] cuts it.
enum Token<'a> {
    /// Text copied as it is.
    Text(&'a str),
    /// A `$N` placeholder outside quotes, with its number (saturated, see [`numbers`]).
    Placeholder(usize),
}

/// Cuts `sql` into text and `$N` placeholders; quoted strings and identifiers (`'…'`, `"…"`,
/// `` `…` ``) are text.
fn scan<'a>(sql: &'a str, mut each: impl FnMut(Token<'a>)) {
    let bytes = sql.as_bytes();
    let mut quote: Option<u8> = None;
    let mut text_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == q {
                    quote = None;
                }
                i += 1;
            }
            None if matches!(b, b'\'' | b'"' | b'`') => {
                quote = Some(b);
                i += 1;
            }
            None if b == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                each(Token::Text(&sql[text_start..i]));
                let mut number = 0usize;
                i += 1;
                while let Some(digit) = bytes.get(i).filter(|d| d.is_ascii_digit()) {
                    number = number
                        .saturating_mul(10)
                        .saturating_add(usize::from(digit - b'0'));
                    i += 1;
                }
                each(Token::Placeholder(number));
                text_start = i;
            }
            None => i += 1,
        }
    }
    each(Token::Text(&sql[text_start..]));
}

/// Rewrites the `$N` placeholders of `sql` outside quoted strings and identifiers.
///
/// With `question_marks` (MySQL/MariaDB) every `$N` becomes `?`, and `binds` lists the argument
/// of each `?` in order of appearance, so `$2 … $1 … $2` binds arguments 1, 0, 1. Without it
/// (PostgreSQL, SQLite) the placeholders are renumbered `$1, $2, …` in order of first
/// appearance and each argument is bound once: a statement may then leave arguments out,
/// which PostgreSQL would otherwise refuse ("could not determine data type of parameter").
///
/// `$0` stands for no argument: its bind is `usize::MAX`, which no argument list reaches, so
/// the code that binds refuses it instead of binding the first argument.
pub fn positional(sql: &str, question_marks: bool) -> Positional {
    let mut out = String::with_capacity(sql.len());
    let mut binds = Vec::new();
    let mut seen: Vec<usize> = Vec::new();
    scan(sql, |token| match token {
        Token::Text(text) => out.push_str(text),
        Token::Placeholder(number) => {
            let argument = number.checked_sub(1).unwrap_or(usize::MAX);
            if question_marks {
                out.push('?');
                binds.push(argument);
            } else {
                let position = match seen.iter().position(|&a| a == argument) {
                    Some(position) => position,
                    None => {
                        seen.push(argument);
                        binds.push(argument);
                        seen.len() - 1
                    }
                };
                out.push('$');
                out.push_str(&(position + 1).to_string());
            }
        }
    });
    Positional { sql: out, binds }
}

/// The MySQL form of one of this program's own statements, whose placeholders appear in the
/// order `$1, $2, …, $N`, each once, so that the `?` are bound in the same order as the `$N`
/// are on the other dialects. Panics otherwise (a programming error caught by every test run).
pub fn question_marks_in_order(sql: &str) -> String {
    let rewritten = positional(sql, true);
    let in_order = rewritten.binds.iter().enumerate().all(|(i, &a)| i == a);
    assert!(
        in_order,
        "statement binds {:?} instead of $1..$N in order: {sql}",
        rewritten.binds
    );
    rewritten.sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_follow_appearance() {
        let p = positional(
            "SELECT $2, '$1', \"a$1\" WHERE x = $1 AND y = $2 AND z = $10",
            true,
        );
        assert_eq!(
            p.sql,
            "SELECT ?, '$1', \"a$1\" WHERE x = ? AND y = ? AND z = ?"
        );
        assert_eq!(p.binds, vec![1, 0, 1, 9]);
    }

    #[test]
    fn numbers_are_compacted_for_unused_arguments() {
        let p = positional(
            "SELECT u FROM t WHERE c <= $2 AND u > $3 AND c <= $2 LIMIT $4",
            false,
        );
        assert_eq!(
            p.sql,
            "SELECT u FROM t WHERE c <= $1 AND u > $2 AND c <= $1 LIMIT $3"
        );
        assert_eq!(p.binds, vec![1, 2, 3]);
    }

    #[test]
    fn json_paths_and_dollars_without_digits_stay() {
        let p = positional(
            "SELECT $1 FROM JSON_TABLE($2, '$[*]' COLUMNS (u TEXT PATH '$')) j",
            true,
        );
        assert_eq!(
            p.sql,
            "SELECT ? FROM JSON_TABLE(?, '$[*]' COLUMNS (u TEXT PATH '$')) j"
        );
    }

    #[test]
    fn numbers_are_read_outside_quotes_without_overflow() {
        assert_eq!(
            numbers("SELECT $2, '$1', `$7` WHERE a = $10 AND b = $0"),
            vec![2, 10, 0]
        );
        assert_eq!(
            numbers("SELECT $99999999999999999999999999"),
            vec![usize::MAX]
        );
        assert_eq!(numbers("SELECT 'unterminated $1"), Vec::<usize>::new());
        assert_eq!(numbers("SELECT é$1ü"), vec![1]);
    }

    #[test]
    fn placeholder_zero_and_huge_numbers_bind_no_argument() {
        for question_marks in [true, false] {
            let p = positional("SELECT $0, $99999999999999999999999", question_marks);
            assert_eq!(p.binds, vec![usize::MAX, usize::MAX - 1], "{p:?}");
        }
    }

    #[test]
    #[should_panic(expected = "in order")]
    fn own_statements_must_bind_in_order() {
        question_marks_in_order("UPDATE t SET a = $2 WHERE id = $1");
    }
}
