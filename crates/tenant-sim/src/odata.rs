//! The OData query subset the simulated `/users` understands: `$filter` with `eq`, `ne`,
//! `in`, `startswith(...)`, `endswith(...)` (the last one only with `ConsistencyLevel:
//! eventual`, as in Entra ID), `and`, `or`, `not` and parentheses; `$search` with
//! `"property:term"` clauses joined by `AND`/`OR` (token prefix match, as Graph's
//! tokenized search does). A small hand-written parser: the grammar is tiny and no
//! maintained crate covers just this subset without pulling in a full OData stack.

use crate::directory::DemoUser;

/// A parse error; the message goes into Graph's `Request_UnsupportedQuery` / `BadRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// A parsed `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `a and b`.
    And(Box<Filter>, Box<Filter>),
    /// `a or b`.
    Or(Box<Filter>, Box<Filter>),
    /// `not a`.
    Not(Box<Filter>),
    /// `prop eq 'v'` (`None`: `eq null`).
    Eq(String, Option<String>),
    /// `prop ne 'v'`.
    Ne(String, Option<String>),
    /// `prop in ('a','b')`.
    In(String, Vec<String>),
    /// `startswith(prop,'v')`.
    StartsWith(String, String),
    /// `endswith(prop,'v')`.
    EndsWith(String, String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Null,
    LParen,
    RParen,
    Comma,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, QueryError> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '\'' => {
                // OData string literal; '' is an escaped quote.
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(QueryError(
                                "Unterminated string literal in $filter.".into(),
                            ))
                        }
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            v.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            v.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            c if c.is_alphanumeric() || c == '_' || c == '/' || c == '-' || c == '.' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_/-.".contains(chars[i])) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if word.eq_ignore_ascii_case("null") {
                    out.push(Tok::Null);
                } else {
                    out.push(Tok::Ident(word));
                }
            }
            other => {
                return Err(QueryError(format!(
                    "Invalid character '{other}' in $filter."
                )))
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(kw))
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<(), QueryError> {
        if self.next() == Some(t) {
            Ok(())
        } else {
            Err(QueryError(format!(
                "Syntax error in $filter: expected {what}."
            )))
        }
    }
    fn or(&mut self) -> Result<Filter, QueryError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Filter, QueryError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Filter, QueryError> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let inner = self.or()?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(inner);
        }
        let name = match self.next() {
            Some(Tok::Ident(n)) => n,
            _ => {
                return Err(QueryError(
                    "Syntax error in $filter: expected a property or function.".into(),
                ))
            }
        };
        let lower = name.to_ascii_lowercase();
        if (lower == "startswith" || lower == "endswith") && self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let prop = match self.next() {
                Some(Tok::Ident(p)) => p,
                _ => return Err(QueryError(format!("{name} needs a property name first."))),
            };
            self.expect(Tok::Comma, "','")?;
            let value = match self.next() {
                Some(Tok::Str(v)) => v,
                _ => return Err(QueryError(format!("{name} needs a string literal."))),
            };
            self.expect(Tok::RParen, "')'")?;
            return Ok(if lower == "startswith" {
                Filter::StartsWith(prop, value)
            } else {
                Filter::EndsWith(prop, value)
            });
        }
        let op = match self.next() {
            Some(Tok::Ident(op)) => op.to_ascii_lowercase(),
            _ => {
                return Err(QueryError(format!(
                    "Syntax error in $filter after '{name}'."
                )))
            }
        };
        match op.as_str() {
            "eq" | "ne" => {
                let v = match self.next() {
                    Some(Tok::Str(v)) => Some(v),
                    Some(Tok::Null) => None,
                    _ => return Err(QueryError(format!("'{op}' needs a string literal or null."))),
                };
                Ok(if op == "eq" { Filter::Eq(name, v) } else { Filter::Ne(name, v) })
            }
            "in" => {
                self.expect(Tok::LParen, "'('")?;
                let mut values = Vec::new();
                loop {
                    match self.next() {
                        Some(Tok::Str(v)) => values.push(v),
                        _ => return Err(QueryError("'in' needs a list of string literals.".into())),
                    }
                    match self.next() {
                        Some(Tok::Comma) => continue,
                        Some(Tok::RParen) => break,
                        _ => return Err(QueryError("Syntax error in 'in' list.".into())),
                    }
                }
                Ok(Filter::In(name, values))
            }
            other => Err(QueryError(format!("Unsupported or invalid query filter clause specified for property '{name}' of resource 'User' (operator '{other}')."))),
        }
    }
}

/// Properties `$filter` accepts.
const FILTERABLE: &[&str] = &[
    "id",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "userPrincipalName",
    "jobTitle",
    "department",
    "officeLocation",
];

fn check_property(p: &str) -> Result<(), QueryError> {
    if FILTERABLE.contains(&p) {
        Ok(())
    } else {
        Err(QueryError(format!(
            "Property '{p}' does not exist as a declared property or extension property."
        )))
    }
}

impl Filter {
    /// Parses `$filter`. `eventual` is whether `ConsistencyLevel: eventual` was sent
    /// (`endswith` and `ne` need it, as in Entra ID's advanced queries).
    pub fn parse(s: &str, eventual: bool) -> Result<Self, QueryError> {
        let toks = tokenize(s)?;
        let mut p = Parser { toks, pos: 0 };
        let f = p.or()?;
        if p.pos != p.toks.len() {
            return Err(QueryError(
                "Syntax error in $filter: unexpected text at the end.".into(),
            ));
        }
        f.check(eventual)?;
        Ok(f)
    }

    fn check(&self, eventual: bool) -> Result<(), QueryError> {
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.check(eventual)?;
                b.check(eventual)
            }
            Filter::Not(_) if !eventual => Err(QueryError("Operator 'not' is not supported because the 'ConsistencyLevel:eventual' header is missing.".into())),
            Filter::Not(a) => a.check(eventual),
            Filter::Ne(..) if !eventual => Err(QueryError("Operator 'ne' is not supported because the 'ConsistencyLevel:eventual' header is missing.".into())),
            Filter::EndsWith(..) if !eventual => Err(QueryError("Operator 'endsWith' is not supported because the 'ConsistencyLevel:eventual' header is missing.".into())),
            Filter::Eq(p, _) | Filter::Ne(p, _) | Filter::In(p, _) | Filter::StartsWith(p, _) | Filter::EndsWith(p, _) => check_property(p),
        }
    }

    /// Whether a user matches (string comparisons ignore case, as the directory does).
    pub fn matches(&self, u: &DemoUser) -> bool {
        let prop = |p: &str| u.string_property(p).map(str::to_lowercase);
        match self {
            Filter::And(a, b) => a.matches(u) && b.matches(u),
            Filter::Or(a, b) => a.matches(u) || b.matches(u),
            Filter::Not(a) => !a.matches(u),
            Filter::Eq(p, v) => prop(p) == v.as_ref().map(|v| v.to_lowercase()),
            Filter::Ne(p, v) => prop(p) != v.as_ref().map(|v| v.to_lowercase()),
            Filter::In(p, vs) => prop(p).is_some_and(|x| vs.iter().any(|v| v.to_lowercase() == x)),
            Filter::StartsWith(p, v) => prop(p).is_some_and(|x| x.starts_with(&v.to_lowercase())),
            Filter::EndsWith(p, v) => prop(p).is_some_and(|x| x.ends_with(&v.to_lowercase())),
        }
    }
}

/// A parsed `$search`.
#[derive(Debug, Clone, PartialEq)]
pub enum Search {
    /// `"prop:term"`.
    Term(String, String),
    /// `a AND b` (also two clauses side by side).
    And(Box<Search>, Box<Search>),
    /// `a OR b`.
    Or(Box<Search>, Box<Search>),
}

/// Properties `$search` accepts on users.
const SEARCHABLE: &[&str] = &[
    "displayName",
    "givenName",
    "surname",
    "mail",
    "userPrincipalName",
    "jobTitle",
    "department",
    "officeLocation",
];

impl Search {
    /// Parses `"displayName:wa" OR "mail:ad"`.
    pub fn parse(s: &str) -> Result<Self, QueryError> {
        let mut clauses: Vec<(Option<bool>, Search)> = Vec::new(); // (joined with OR?, clause)
        let mut rest = s.trim();
        let mut pending_or: Option<bool> = None;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('"') {
                let end = r
                    .find('"')
                    .ok_or_else(|| QueryError("Unterminated quote in $search.".into()))?;
                let clause = &r[..end];
                let (prop, term) = clause.split_once(':').ok_or_else(|| {
                    QueryError(format!(
                        "$search clause '{clause}' must be \"property:term\"."
                    ))
                })?;
                if !SEARCHABLE.contains(&prop) {
                    return Err(QueryError(format!("Invalid $search property '{prop}'.")));
                }
                let joiner = if clauses.is_empty() {
                    None
                } else {
                    Some(pending_or.unwrap_or(false))
                };
                clauses.push((joiner, Search::Term(prop.to_string(), term.to_lowercase())));
                pending_or = None;
                rest = r[end + 1..].trim_start();
            } else if let Some(r) = rest.strip_prefix("OR").filter(|_| !clauses.is_empty()) {
                pending_or = Some(true);
                rest = r.trim_start();
            } else if let Some(r) = rest.strip_prefix("AND").filter(|_| !clauses.is_empty()) {
                pending_or = Some(false);
                rest = r.trim_start();
            } else {
                return Err(QueryError(
                    "Syntax error in $search: clauses are \"property:term\" joined by AND or OR."
                        .into(),
                ));
            }
        }
        if pending_or.is_some() {
            return Err(QueryError(
                "Syntax error in $search: dangling AND/OR.".into(),
            ));
        }
        // AND binds tighter than OR: split on OR, fold each run with AND.
        let mut ors: Vec<Search> = Vec::new();
        for (joiner, clause) in clauses {
            match (joiner, ors.pop()) {
                (Some(false), Some(prev)) => {
                    ors.push(Search::And(Box::new(prev), Box::new(clause)))
                }
                (_, Some(prev)) => {
                    ors.push(prev);
                    ors.push(clause);
                }
                (_, None) => ors.push(clause),
            }
        }
        ors.into_iter()
            .reduce(|a, b| Search::Or(Box::new(a), Box::new(b)))
            .ok_or_else(|| QueryError("$search is empty.".into()))
    }

    /// Tokenized prefix match: the term matches the start of the value or of any word in it.
    pub fn matches(&self, u: &DemoUser) -> bool {
        match self {
            Search::And(a, b) => a.matches(u) && b.matches(u),
            Search::Or(a, b) => a.matches(u) || b.matches(u),
            Search::Term(p, term) => u.string_property(p).is_some_and(|v| {
                let v = v.to_lowercase();
                v.starts_with(term.as_str())
                    || v.split(|c: char| !c.is_alphanumeric())
                        .any(|w| !w.is_empty() && w.starts_with(term.as_str()))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::seeded_users;

    fn names(f: impl Fn(&DemoUser) -> bool) -> Vec<String> {
        seeded_users()
            .into_iter()
            .filter(|u| f(u))
            .map(|u| u.display_name)
            .collect()
    }

    #[test]
    fn filter_department_and_startswith() {
        let f = Filter::parse(
            "department eq 'Billing' and startswith(displayName,'d')",
            false,
        )
        .unwrap();
        assert_eq!(names(|u| f.matches(u)), vec!["Debra Berger"]);
        let f = Filter::parse("startswith(displayName,'A')", false).unwrap();
        assert_eq!(
            names(|u| f.matches(u)),
            vec![
                "Adele Vance",
                "Alex Wilber",
                "Allan Deyoung",
                "Aaron Fisher"
            ]
        );
    }

    #[test]
    fn filter_or_in_parens_and_escaped_quote() {
        let f = Filter::parse(
            "(department eq 'Legal' or department eq 'IT') and not startswith(displayName,'J')",
            true,
        )
        .unwrap();
        let got = names(|u| f.matches(u));
        assert!(got.contains(&"Liam O'Brien".to_string()));
        assert!(!got.contains(&"Joni Sherman".to_string()));
        let f = Filter::parse("surname eq 'O''Brien'", false).unwrap();
        assert_eq!(names(|u| f.matches(u)), vec!["Liam O'Brien"]);
        let id = seeded_users()[3].id.clone();
        let f = Filter::parse(&format!("id in ('{id}', 'nope')"), false).unwrap();
        assert_eq!(names(|u| f.matches(u)), vec!["Nestor Wilke"]);
    }

    #[test]
    fn advanced_operators_need_eventual() {
        assert!(Filter::parse("endswith(mail,'example')", false)
            .unwrap_err()
            .0
            .contains("ConsistencyLevel"));
        assert!(Filter::parse("endswith(mail,'example')", true).is_ok());
        assert!(Filter::parse("department ne 'IT'", false).is_err());
    }

    #[test]
    fn bad_filters_are_errors_not_panics() {
        for bad in [
            "",
            "department",
            "department eq",
            "department eq 'x",
            "startswith(",
            "foo eq 'x'",
            "department gt 'a'",
            "(department eq 'x'",
            "department eq 'x' )",
            "§",
        ] {
            assert!(Filter::parse(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn search_prefix_tokens_with_or_and() {
        // Graph's documented example: displayName:wa finds "Oscar Ward".
        let s = Search::parse("\"displayName:wa\"").unwrap();
        assert_eq!(names(|u| s.matches(u)), vec!["Oscar Ward", "Ben Walters"]);
        let s = Search::parse("\"displayName:wa\" OR \"displayName:ad\"").unwrap();
        assert_eq!(names(|u| s.matches(u)).len(), 3);
        let s = Search::parse("\"department:billing\" AND \"displayName:de\"").unwrap();
        assert_eq!(
            names(|u| s.matches(u)),
            vec!["Allan Deyoung", "Debra Berger"]
        );
        let s = Search::parse("\"mail:debrab\"").unwrap();
        assert_eq!(names(|u| s.matches(u)), vec!["Debra Berger"]);
        for bad in [
            "",
            "wa",
            "\"wa\"",
            "\"nope:wa\"",
            "\"displayName:wa",
            "\"displayName:wa\" OR",
        ] {
            assert!(Search::parse(bad).is_err(), "{bad}");
        }
    }
}
