//! `patch`/`upgrade` `match` rules: the XPath-like subset real packages use, evaluated with
//! dotted-version comparison (plain XPath would compare `'5.2.3'` as NaN).
//!
//! Grammar: `expr := and ('or' and)*`, `and := term ('and' term)*`,
//! `term := '(' expr ')' | 'not' '(' expr ')' | operand OP operand`, `OP := = != < <= > >=`,
//! `operand := /application/version | /application/release | 'text' | "text" | number`.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Version,
    Release,
    Literal(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, Op, Operand),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {position}: expected {expected}, found {found}")]
pub struct MatchParseError {
    /// 0-based character offset in the rule.
    pub position: usize,
    pub expected: &'static str,
    pub found: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Path(Operand),
    Lit(String),
    Op(Op),
    And,
    Or,
    Not,
    LParen,
    RParen,
}

fn tokenize(s: &str) -> Result<Vec<(usize, Tok)>, MatchParseError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => {
                out.push((start, Tok::LParen));
                i += 1;
            }
            ')' => {
                out.push((start, Tok::RParen));
                i += 1;
            }
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == c)
                    .ok_or(MatchParseError {
                        position: start,
                        expected: "a closing quote",
                        found: "end of rule".into(),
                    })?;
                out.push((start, Tok::Lit(chars[i + 1..i + 1 + end].iter().collect())));
                i += end + 2;
            }
            '=' => {
                out.push((start, Tok::Op(Op::Eq)));
                i += 1;
            }
            '!' | '<' | '>' => {
                let eq = chars.get(i + 1) == Some(&'=');
                let op = match (c, eq) {
                    ('!', true) => Op::Ne,
                    ('<', true) => Op::Le,
                    ('<', false) => Op::Lt,
                    ('>', true) => Op::Ge,
                    ('>', false) => Op::Gt,
                    _ => {
                        return Err(MatchParseError {
                            position: start,
                            expected: "an operator (= != < <= > >=)",
                            found: "!".into(),
                        });
                    }
                };
                out.push((start, Tok::Op(op)));
                i += if eq { 2 } else { 1 };
            }
            _ => {
                let mut j = i;
                while j < chars.len()
                    && !chars[j].is_whitespace()
                    && !matches!(chars[j], '(' | ')' | '=' | '!' | '<' | '>' | '\'' | '"')
                {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                let tok = match word.as_str() {
                    "/application/version" => Tok::Path(Operand::Version),
                    "/application/release" => Tok::Path(Operand::Release),
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    w if w.chars().all(|c| c.is_ascii_digit() || c == '.') => {
                        Tok::Lit(w.to_string())
                    }
                    _ => {
                        return Err(MatchParseError {
                            position: start,
                            expected: "/application/version, /application/release, a quoted value, and, or, not",
                            found: format!("{word:?}"),
                        });
                    }
                };
                out.push((start, tok));
                i = j;
            }
        }
    }
    Ok(out)
}

struct P {
    toks: Vec<(usize, Tok)>,
    i: usize,
    len: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.1)
    }
    fn err(&self, expected: &'static str) -> MatchParseError {
        match self.toks.get(self.i) {
            Some((p, t)) => MatchParseError {
                position: *p,
                expected,
                found: format!("{t:?}"),
            },
            None => MatchParseError {
                position: self.len,
                expected,
                found: "end of rule".into(),
            },
        }
    }
    fn or(&mut self) -> Result<Expr, MatchParseError> {
        let mut v = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.i += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::Or(v)
        })
    }
    fn and(&mut self) -> Result<Expr, MatchParseError> {
        let mut v = vec![self.term()?];
        while self.peek() == Some(&Tok::And) {
            self.i += 1;
            v.push(self.term()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::And(v)
        })
    }
    fn term(&mut self) -> Result<Expr, MatchParseError> {
        match self.peek() {
            Some(Tok::LParen) => {
                self.i += 1;
                let e = self.or()?;
                self.close()?;
                Ok(e)
            }
            Some(Tok::Not) => {
                self.i += 1;
                if self.peek() != Some(&Tok::LParen) {
                    return Err(self.err("( after not"));
                }
                self.i += 1;
                let e = self.or()?;
                self.close()?;
                Ok(Expr::Not(Box::new(e)))
            }
            _ => {
                let l = self.operand()?;
                let op = match self.peek() {
                    Some(Tok::Op(op)) => *op,
                    _ => return Err(self.err("an operator (= != < <= > >=)")),
                };
                self.i += 1;
                let r = self.operand()?;
                Ok(Expr::Cmp(l, op, r))
            }
        }
    }
    fn close(&mut self) -> Result<(), MatchParseError> {
        if self.peek() == Some(&Tok::RParen) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(")"))
        }
    }
    fn operand(&mut self) -> Result<Operand, MatchParseError> {
        let o = match self.peek() {
            Some(Tok::Path(p)) => p.clone(),
            Some(Tok::Lit(s)) => Operand::Literal(s.clone()),
            _ => return Err(self.err("/application/version, /application/release or a value")),
        };
        self.i += 1;
        Ok(o)
    }
}

/// Parses a `match` rule.
pub fn parse(rule: &str) -> Result<Expr, MatchParseError> {
    let toks = tokenize(rule)?;
    let mut p = P {
        toks,
        i: 0,
        len: rule.chars().count(),
    };
    let e = p.or()?;
    if p.i != p.toks.len() {
        return Err(p.err("and, or, or the end of the rule"));
    }
    Ok(e)
}

/// Evaluates a parsed rule against an installed package's version and release.
pub fn evaluate(expr: &Expr, version: &str, release: &str) -> bool {
    let val = |o: &Operand| -> String {
        match o {
            Operand::Version => version.to_string(),
            Operand::Release => release.to_string(),
            Operand::Literal(s) => s.clone(),
        }
    };
    match expr {
        Expr::Or(v) => v.iter().any(|e| evaluate(e, version, release)),
        Expr::And(v) => v.iter().all(|e| evaluate(e, version, release)),
        Expr::Not(e) => !evaluate(e, version, release),
        Expr::Cmp(l, op, r) => {
            let ord = compare_versions(&val(l), &val(r));
            match op {
                Op::Eq => ord == Ordering::Equal,
                Op::Ne => ord != Ordering::Equal,
                Op::Lt => ord == Ordering::Less,
                Op::Le => ord != Ordering::Greater,
                Op::Gt => ord == Ordering::Greater,
                Op::Ge => ord != Ordering::Less,
            }
        }
    }
}

/// Parses and evaluates in one call.
pub fn matches(rule: &str, version: &str, release: &str) -> Result<bool, MatchParseError> {
    Ok(evaluate(&parse(rule)?, version, release))
}

/// Dotted-version order: components split on `.`, `-`, `_`; each compared numerically by its
/// leading digits, then by the rest as text; missing components count as 0 (`2.0` = `2`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let split = |s: &str| -> Vec<String> {
        s.trim()
            .split(['.', '-', '_'])
            .map(str::to_string)
            .collect()
    };
    let (pa, pb) = (split(a), split(b));
    for i in 0..pa.len().max(pb.len()) {
        let x = pa.get(i).map_or("0", String::as_str);
        let y = pb.get(i).map_or("0", String::as_str);
        let o = compare_component(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn compare_component(x: &str, y: &str) -> Ordering {
    let digits = |s: &str| s.chars().take_while(char::is_ascii_digit).count();
    let (dx, dy) = (digits(x), digits(y));
    fn num(s: &str, d: usize) -> (usize, &str) {
        let t = s[..d].trim_start_matches('0');
        (t.len(), t)
    }
    // Compare digit runs as big integers (length, then text) so no overflow is possible.
    let (nx, ny) = (num(x, dx), num(y, dy));
    nx.cmp(&ny).then_with(|| {
        // A bare number sorts after the same number with a suffix (1.0 > 1.0rc1)?
        // No: keep it simple and predictable: empty suffix sorts first.
        x[dx..].cmp(&y[dy..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_versions_compare_by_component() {
        assert_eq!(compare_versions("5.10", "5.9"), Ordering::Greater);
        assert_eq!(compare_versions("2.0", "2"), Ordering::Equal);
        assert_eq!(compare_versions("2.0.1", "2.0"), Ordering::Greater);
        assert_eq!(compare_versions("010", "10"), Ordering::Equal);
        assert_eq!(compare_versions("1.2a", "1.2"), Ordering::Greater);
        assert_eq!(
            compare_versions("99999999999999999999999", "1"),
            Ordering::Greater
        );
    }

    #[test]
    fn real_rules_evaluate() {
        let r = "/application/version > '2.0' or /application/version = '2.0' and /application/release >= '1'";
        assert!(matches(r, "2.1", "0").unwrap());
        assert!(matches(r, "2.0", "1").unwrap());
        assert!(!matches(r, "2.0", "0").unwrap());
        assert!(!matches(r, "1.9.9", "5").unwrap());
        let r = "/application/version = '5.5.0' or /application/version = '5.5.1'";
        assert!(matches(r, "5.5.1", "1").unwrap());
        assert!(!matches(r, "5.5.2", "1").unwrap());
        assert!(matches("/application/version >= '1.5.1'", "1.10", "1").unwrap());
        assert!(matches("/application/version != \"3\"", "3.1", "1").unwrap());
        assert!(
            matches(
                "not(/application/version < 2) and (/application/release <= 4)",
                "2",
                "4"
            )
            .unwrap()
        );
    }

    #[test]
    fn bad_rules_say_where() {
        let e = parse("/application/version => '1'").unwrap_err();
        assert_eq!(e.position, 22);
        let e = parse("version = '1'").unwrap_err();
        assert_eq!(e.position, 0);
        assert!(parse("/application/version = '1").is_err());
        assert!(parse("/application/version = '1' and").is_err());
        assert!(parse("version =ge= 1.0").is_err());
    }
}
