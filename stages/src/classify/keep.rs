//! `keep:` of `classify`: a predicate over the score columns the stage
//! writes, parsed at configure time (the stages crate has no SQL engine).
//!
//! ```text
//! "score_hq >= 0.018112 and (score_lq < 0.5 or score_hq > 0.9)"
//!   ──tokens──► column op number, and, or, ( )  ──parse──► Predicate (columns as slots) ──eval(row scores)──► keep?
//! ```
//! Grammar: `expr := conj (or conj)*`, `conj := atom (and atom)*`,
//! `atom := ( expr ) | column op number`, with `op` one of `>= > <= < == !=`
//! (`=` is `==`), `and`/`or` in any case (or `&&`, `||`). A column is one of
//! the stage's score columns; a number is a decimal or exponent literal.
//! Comparisons are made in f64 on the score as written to its column.

use std::fmt;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `<`
    Lt,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// A parsed `keep:` expression; columns are slots into a row's scores.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// `column op value`.
    Cmp {
        /// Index of the column among the score columns.
        slot: usize,
        /// The operator.
        op: Op,
        /// The number compared with.
        value: f64,
    },
    /// Every one holds.
    And(Vec<Predicate>),
    /// At least one holds.
    Or(Vec<Predicate>),
}

/// Why an expression does not parse: what, and where (a 1-based character position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepError {
    /// Character position in the expression, from 1.
    pub at: usize,
    /// What is wrong.
    pub message: String,
    /// A suggestion, if any.
    pub help: Option<String>,
}

impl fmt::Display for KeepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.at, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Op(Op),
    And,
    Or,
    Open,
    Close,
}

/// Splits `text` into tokens with their 1-based character positions.
fn tokens(text: &str) -> Result<Vec<(usize, Tok)>, KeepError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let (tok, len) = match (c, two.as_str()) {
            (c, _) if c.is_whitespace() => {
                i += 1;
                continue;
            }
            (_, ">=") => (Tok::Op(Op::Ge), 2),
            (_, "<=") => (Tok::Op(Op::Le), 2),
            (_, "==") => (Tok::Op(Op::Eq), 2),
            (_, "!=") => (Tok::Op(Op::Ne), 2),
            (_, "&&") => (Tok::And, 2),
            (_, "||") => (Tok::Or, 2),
            ('>', _) => (Tok::Op(Op::Gt), 1),
            ('<', _) => (Tok::Op(Op::Lt), 1),
            ('=', _) => (Tok::Op(Op::Eq), 1),
            ('(', _) => (Tok::Open, 1),
            (')', _) => (Tok::Close, 1),
            (c, _) if c.is_ascii_digit() || c == '.' || c == '-' || c == '+' => {
                // A number: digits, sign, point, exponent (with its own sign).
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_alphanumeric()
                        || chars[j] == '.'
                        || (matches!(chars[j], '-' | '+') && matches!(chars[j - 1], 'e' | 'E')))
                {
                    j += 1;
                }
                let s: String = chars[i..j].iter().collect();
                match s.parse::<f64>() {
                    Ok(v) if v.is_finite() => (Tok::Num(v), j - i),
                    _ => return Err(KeepError { at, message: format!("`{s}` is not a number"), help: None }),
                }
            }
            (c, _) if c.is_alphabetic() || c == '_' => {
                // A column name: letters, digits, `_`, `-`, `.` (labels such as `money-fx`).
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_alphanumeric() || matches!(chars[j], '_' | '-' | '.')) {
                    j += 1;
                }
                let s: String = chars[i..j].iter().collect();
                let tok = match s.to_ascii_lowercase().as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    _ => Tok::Ident(s),
                };
                (tok, j - i)
            }
            (c, _) => return Err(KeepError { at, message: format!("unexpected `{c}`"), help: None }),
        };
        out.push((at, tok));
        i += len;
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    /// Position just past the end of the text, for "expected ... at the end".
    end: usize,
    columns: &'a [String],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(at, _)| *at)
    }

    fn fail<T>(&self, expected: &str) -> Result<T, KeepError> {
        let found = match self.peek() {
            None => "the end".to_string(),
            Some(Tok::Ident(s)) => format!("`{s}`"),
            Some(Tok::Num(v)) => format!("`{v}`"),
            Some(Tok::Op(_)) => "an operator".to_string(),
            Some(Tok::And) => "`and`".to_string(),
            Some(Tok::Or) => "`or`".to_string(),
            Some(Tok::Open) => "`(`".to_string(),
            Some(Tok::Close) => "`)`".to_string(),
        };
        Err(KeepError { at: self.at(), message: format!("expected {expected}, found {found}"), help: None })
    }

    fn expr(&mut self) -> Result<Predicate, KeepError> {
        let mut any = vec![self.conj()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            any.push(self.conj()?);
        }
        Ok(if any.len() == 1 { any.pop().expect("one") } else { Predicate::Or(any) })
    }

    fn conj(&mut self) -> Result<Predicate, KeepError> {
        let mut all = vec![self.atom()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            all.push(self.atom()?);
        }
        Ok(if all.len() == 1 { all.pop().expect("one") } else { Predicate::And(all) })
    }

    fn atom(&mut self) -> Result<Predicate, KeepError> {
        match self.peek().cloned() {
            Some(Tok::Open) => {
                self.pos += 1;
                let inner = self.expr()?;
                if self.peek() != Some(&Tok::Close) {
                    return self.fail("`)`");
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Tok::Ident(name)) => {
                let at = self.at();
                let Some(slot) = self.columns.iter().position(|c| *c == name) else {
                    let help = match smelt_engine::diagnostic::closest(&name, self.columns.iter().map(String::as_str)) {
                        Some(c) => format!("did you mean `{c}`? The score columns are: {}", self.columns.join(", ")),
                        None => format!("the score columns are: {}", self.columns.join(", ")),
                    };
                    return Err(KeepError {
                        at,
                        message: format!("`{name}` is not a score column of this stage"),
                        help: Some(help),
                    });
                };
                self.pos += 1;
                let Some(Tok::Op(op)) = self.peek().cloned() else {
                    return self.fail("a comparison (>=, >, <=, <, ==, !=)");
                };
                self.pos += 1;
                let Some(Tok::Num(value)) = self.peek().cloned() else {
                    return self.fail("a number");
                };
                self.pos += 1;
                Ok(Predicate::Cmp { slot, op, value })
            }
            _ => self.fail("a score column or `(`"),
        }
    }
}

impl Predicate {
    /// Parses `text`; `columns` are the names of the score columns, in slot order.
    ///
    /// # Errors
    /// A syntax error, an unknown column or a bad number, with its position.
    pub fn parse(text: &str, columns: &[String]) -> Result<Predicate, KeepError> {
        let toks = tokens(text)?;
        let mut p = Parser { toks, pos: 0, end: text.chars().count() + 1, columns };
        let pred = p.expr()?;
        if p.pos < p.toks.len() {
            return p.fail("`and`, `or` or the end");
        }
        Ok(pred)
    }

    /// Whether a row whose score columns hold `scores` (in slot order) is kept.
    pub fn eval(&self, scores: &[f64]) -> bool {
        match self {
            Predicate::Cmp { slot, op, value } => {
                let x = scores[*slot];
                match op {
                    Op::Ge => x >= *value,
                    Op::Gt => x > *value,
                    Op::Le => x <= *value,
                    Op::Lt => x < *value,
                    Op::Eq => x == *value,
                    Op::Ne => x != *value,
                }
            }
            Predicate::And(all) => all.iter().all(|p| p.eval(scores)),
            Predicate::Or(any) => any.iter().any(|p| p.eval(scores)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<String> {
        vec!["score_hq".into(), "score_money-fx".into()]
    }

    fn parse(text: &str) -> Result<Predicate, KeepError> {
        Predicate::parse(text, &cols())
    }

    #[test]
    fn parses_comparisons_with_and_or_and_parentheses() {
        use Predicate::*;
        assert_eq!(parse("score_hq >= 0.018112").unwrap(), Cmp { slot: 0, op: Op::Ge, value: 0.018112 });
        assert_eq!(parse("score_money-fx<1e-3").unwrap(), Cmp { slot: 1, op: Op::Lt, value: 1e-3 });
        let p = parse("score_hq > 0.5 AND score_money-fx = 0 or (score_hq<=-1E+2 && score_hq != .5)").unwrap();
        assert_eq!(
            p,
            Or(vec![
                And(vec![Cmp { slot: 0, op: Op::Gt, value: 0.5 }, Cmp { slot: 1, op: Op::Eq, value: 0.0 }]),
                And(vec![Cmp { slot: 0, op: Op::Le, value: -100.0 }, Cmp { slot: 0, op: Op::Ne, value: 0.5 }]),
            ])
        );
        // `and` binds tighter than `or`.
        assert!(p.eval(&[0.6, 0.0]));
        assert!(!p.eval(&[0.6, 0.1]));
        assert!(p.eval(&[-100.0, 7.0]));
        assert!(!p.eval(&[0.5, 0.0]));
    }

    #[test]
    fn compares_the_widened_score_with_the_number_as_written() {
        // fastText's float32 0.018112 widens to 0.018112000077962875, above the f64 0.018112
        // (Python's `p >= 0.018112` on the float predict returns says the same); the next
        // float32 below it is below.
        let p = parse("score_hq >= 0.018112").unwrap();
        let at = 0.018112_f32;
        assert_eq!(f64::from(at), 0.018112000077962875);
        assert!(p.eval(&[f64::from(at), 0.0]));
        assert!(!p.eval(&[f64::from(f32::from_bits(at.to_bits() - 1)), 0.0]));
        assert!(p.eval(&[0.018112, 0.0]));
    }

    #[test]
    fn errors_name_the_position_and_what_was_expected() {
        let e = |t: &str| parse(t).unwrap_err();
        assert_eq!(e("score_hq >= high").to_string(), "at character 13: expected a number, found `high`");
        assert_eq!(
            e("score_hq 0.5").to_string(),
            "at character 10: expected a comparison (>=, >, <=, <, ==, !=), found `0.5`"
        );
        assert_eq!(
            e("score_hq >= 0.5 and").to_string(),
            "at character 20: expected a score column or `(`, found the end"
        );
        assert_eq!(e("(score_hq >= 0.5").to_string(), "at character 17: expected `)`, found the end");
        assert_eq!(
            e("score_hq >= 0.5 score_hq").to_string(),
            "at character 17: expected `and`, `or` or the end, found `score_hq`"
        );
        assert_eq!(e("score_hq >= 1..2").to_string(), "at character 13: `1..2` is not a number");
        assert_eq!(e("score_hq >= 0.5 ; drop").to_string(), "at character 17: unexpected `;`");
        let unknown = e("score_hg >= 0.5");
        assert_eq!(unknown.to_string(), "at character 1: `score_hg` is not a score column of this stage");
        assert_eq!(
            unknown.help.as_deref(),
            Some("did you mean `score_hq`? The score columns are: score_hq, score_money-fx")
        );
        assert_eq!(e("").to_string(), "at character 1: expected a score column or `(`, found the end");
    }
}
