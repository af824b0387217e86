//! DynamoDB expressions: condition (also filter and key condition),
//! update and projection expressions, parsed against
//! `ExpressionAttributeNames` / `ExpressionAttributeValues`, and evaluated
//! on items.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::attr::{Attr, Item, attr_cmp, attr_eq, num_add, num_sub};
use crate::error::{DynamoError, Result, invalid};

/// One step of a document path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Name(String),
    Index(usize),
}

pub type Path = Vec<Step>;

/// Renders a path as DynamoDB prints it in messages: `[a, b, [0]]`.
fn path_text(p: &Path) -> String {
    let parts: Vec<String> = p
        .iter()
        .map(|s| match s {
            Step::Name(n) => n.clone(),
            Step::Index(i) => format!("[{i}]"),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Path(Path),
    Value(Attr),
    Size(Path),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Cmp(Operand, CmpOp, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Exists(Path),
    NotExists(Path),
    BeginsWith(Operand, Operand),
    Contains(Operand, Operand),
    AttrType(Path, Operand),
}

/// Right-hand side of a SET action.
#[derive(Debug, Clone, PartialEq)]
pub enum SetValue {
    Operand(Box<UOperand>),
    Plus(Box<UOperand>, Box<UOperand>),
    Minus(Box<UOperand>, Box<UOperand>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum UOperand {
    Path(Path),
    Value(Attr),
    IfNotExists(Path, Box<UOperand>),
    ListAppend(Box<UOperand>, Box<UOperand>),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    pub set: Vec<(Path, SetValue)>,
    pub remove: Vec<Path>,
    pub add: Vec<(Path, Attr)>,
    pub delete: Vec<(Path, Attr)>,
}

// ------------------------------------------------------------ tokenizer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Name(String),
    Value(String),
    Num(String),
    Sym(&'static str),
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Ident(s) | Tok::Name(s) | Tok::Value(s) | Tok::Num(s) => s.clone(),
            Tok::Sym(s) => s.to_string(),
        }
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }
}

fn tokenize(kind: &str, s: &str) -> Result<Vec<Tok>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && (b[*i].is_ascii_alphanumeric() || b[*i] == b'_') {
            *i += 1;
        }
        s[start..*i].to_string()
    };
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let two = if i + 1 < b.len() { &s[i..i + 2] } else { "" };
        let sym2 = ["<>", "<=", ">="].into_iter().find(|t| *t == two);
        if let Some(t) = sym2 {
            out.push(Tok::Sym(t));
            i += 2;
            continue;
        }
        let sym1 = ["=", "<", ">", "(", ")", ",", ".", "[", "]", "+", "-"]
            .into_iter()
            .find(|t| t.as_bytes()[0] == c);
        if let Some(t) = sym1 {
            out.push(Tok::Sym(t));
            i += 1;
            continue;
        }
        if c == b'#' || c == b':' {
            i += 1;
            let w = word(&mut i);
            if w.is_empty() {
                return Err(syntax(kind, &(c as char).to_string(), s));
            }
            let t = format!("{}{w}", c as char);
            out.push(if c == b'#' {
                Tok::Name(t)
            } else {
                Tok::Value(t)
            });
            continue;
        }
        if c.is_ascii_digit() {
            let w = word(&mut i);
            out.push(Tok::Num(w));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let w = word(&mut i);
            out.push(Tok::Ident(w));
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or('?');
        return Err(invalid(format!(
            "Invalid {kind}: Syntax error; token: \"{ch}\", near: \"{}\"",
            near(s, i)
        )));
    }
    Ok(out)
}

fn near(s: &str, i: usize) -> String {
    let start = s[..i]
        .char_indices()
        .rev()
        .nth(5)
        .map(|(j, _)| j)
        .unwrap_or(0);
    s[start..].chars().take(12).collect()
}

fn syntax(kind: &str, tok: &str, near: &str) -> DynamoError {
    invalid(format!(
        "Invalid {kind}: Syntax error; token: \"{tok}\", near: \"{near}\""
    ))
}

// ------------------------------------------------------------ context

/// `ExpressionAttributeNames` and `ExpressionAttributeValues` of a
/// request, recording which were used (unused ones are an error).
#[derive(Debug, Default)]
pub struct Ctx {
    pub names: BTreeMap<String, String>,
    pub values: BTreeMap<String, Attr>,
    used_names: BTreeSet<String>,
    used_values: BTreeSet<String>,
}

impl Ctx {
    pub fn new(names: BTreeMap<String, String>, values: BTreeMap<String, Attr>) -> Ctx {
        Ctx {
            names,
            values,
            ..Ctx::default()
        }
    }

    /// Errors for names or values given but used by no expression.
    pub fn check_all_used(&self) -> Result<()> {
        let unused: Vec<&String> = self
            .names
            .keys()
            .filter(|k| !self.used_names.contains(*k))
            .collect();
        if !unused.is_empty() {
            return Err(invalid(format!(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{}}}",
                unused
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let unused: Vec<&String> = self
            .values
            .keys()
            .filter(|k| !self.used_values.contains(*k))
            .collect();
        if !unused.is_empty() {
            return Err(invalid(format!(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{}}}",
                unused
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }
}

struct Parser<'a> {
    kind: &'static str,
    src: &'a str,
    toks: Vec<Tok>,
    pos: usize,
    ctx: &'a mut Ctx,
}

impl<'a> Parser<'a> {
    fn new(kind: &'static str, src: &'a str, ctx: &'a mut Ctx) -> Result<Parser<'a>> {
        if src.trim().is_empty() {
            return Err(invalid(format!(
                "Invalid {kind}: The expression can not be empty;"
            )));
        }
        Ok(Parser {
            kind,
            src,
            toks: tokenize(kind, src)?,
            pos: 0,
            ctx,
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn err_here(&self) -> DynamoError {
        match self.toks.get(self.pos) {
            Some(t) => {
                let from = self.pos.saturating_sub(1);
                let near: Vec<String> = self.toks[from..(self.pos + 2).min(self.toks.len())]
                    .iter()
                    .map(Tok::text)
                    .collect();
                syntax(self.kind, &t.text(), &near.join(" "))
            }
            None => invalid(format!(
                "Invalid {}: Syntax error; token: \"<EOF>\", near: \"{}\"",
                self.kind,
                near(self.src, self.src.len())
            )),
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<()> {
        if self.peek() == Some(&Tok::Sym(leak(s))) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err_here())
        }
    }

    fn at_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(x)) if *x == s)
    }

    fn at_kw(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| t.is_kw(kw))
    }

    fn end(&self) -> Result<()> {
        if self.pos < self.toks.len() {
            Err(self.err_here())
        } else {
            Ok(())
        }
    }

    fn value(&mut self, v: &str) -> Result<Attr> {
        match self.ctx.values.get(v) {
            Some(a) => {
                self.ctx.used_values.insert(v.to_string());
                Ok(a.clone())
            }
            None => Err(invalid(format!(
                "Invalid {}: An expression attribute value used in expression is not defined; attribute value: {v}",
                self.kind
            ))),
        }
    }

    fn name(&mut self, t: Tok) -> Result<String> {
        match t {
            Tok::Ident(s) if is_reserved(&s) => Err(invalid(format!(
                "Invalid {}: Attribute name is a reserved keyword; reserved keyword: {s}",
                self.kind
            ))),
            Tok::Ident(s) => Ok(s),
            Tok::Name(n) => match self.ctx.names.get(&n) {
                Some(real) => {
                    self.ctx.used_names.insert(n.clone());
                    Ok(real.clone())
                }
                None => Err(invalid(format!(
                    "Invalid {}: An expression attribute name used in the document path is not defined; attribute name: {n}",
                    self.kind
                ))),
            },
            _ => {
                self.pos -= 1;
                Err(self.err_here())
            }
        }
    }

    fn path(&mut self) -> Result<Path> {
        let first = self.next().ok_or_else(|| self.err_here())?;
        let mut p = vec![Step::Name(self.name(first)?)];
        loop {
            if self.at_sym(".") {
                self.pos += 1;
                let t = self.next().ok_or_else(|| self.err_here())?;
                p.push(Step::Name(self.name(t)?));
            } else if self.at_sym("[") {
                self.pos += 1;
                match self.next() {
                    Some(Tok::Num(n)) => p.push(Step::Index(n.parse().map_err(|_| {
                        invalid(format!("Invalid {}: List index is too large", self.kind))
                    })?)),
                    _ => {
                        self.pos -= 1;
                        return Err(self.err_here());
                    }
                }
                self.expect_sym("]")?;
            } else {
                return Ok(p);
            }
        }
    }

    fn is_path_start(&self) -> bool {
        matches!(self.peek(), Some(Tok::Ident(_) | Tok::Name(_)))
    }

    // ---- conditions

    fn cond(&mut self) -> Result<Cond> {
        let mut left = self.and()?;
        while self.at_kw("OR") {
            self.pos += 1;
            let right = self.and()?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Cond> {
        let mut left = self.not()?;
        while self.at_kw("AND") {
            self.pos += 1;
            let right = self.not()?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Cond> {
        if self.at_kw("NOT") {
            self.pos += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn function_name(&self) -> Option<String> {
        match (self.toks.get(self.pos), self.toks.get(self.pos + 1)) {
            (Some(Tok::Ident(f)), Some(Tok::Sym("("))) => Some(f.clone()),
            _ => None,
        }
    }

    fn primary(&mut self) -> Result<Cond> {
        if self.at_sym("(") {
            self.pos += 1;
            let c = self.cond()?;
            self.expect_sym(")")?;
            return Ok(c);
        }
        if let Some(f) = self.function_name()
            && f != "size"
        {
            self.pos += 2;
            let c = match f.as_str() {
                "attribute_exists" => Cond::Exists(self.path()?),
                "attribute_not_exists" => Cond::NotExists(self.path()?),
                "attribute_type" => {
                    let p = self.path()?;
                    self.expect_sym(",")?;
                    Cond::AttrType(p, self.operand()?)
                }
                "begins_with" => {
                    let a = self.operand()?;
                    self.expect_sym(",")?;
                    Cond::BeginsWith(a, self.operand()?)
                }
                "contains" => {
                    let a = self.operand()?;
                    self.expect_sym(",")?;
                    Cond::Contains(a, self.operand()?)
                }
                _ => {
                    return Err(invalid(format!(
                        "Invalid {}: Invalid function name; function: {f}",
                        self.kind
                    )));
                }
            };
            self.expect_sym(")")?;
            return Ok(c);
        }
        let left = self.operand()?;
        let op = match self.peek() {
            Some(Tok::Sym("=")) => CmpOp::Eq,
            Some(Tok::Sym("<>")) => CmpOp::Ne,
            Some(Tok::Sym("<")) => CmpOp::Lt,
            Some(Tok::Sym("<=")) => CmpOp::Le,
            Some(Tok::Sym(">")) => CmpOp::Gt,
            Some(Tok::Sym(">=")) => CmpOp::Ge,
            Some(t) if t.is_kw("BETWEEN") => {
                self.pos += 1;
                let lo = self.operand()?;
                if !self.at_kw("AND") {
                    return Err(self.err_here());
                }
                self.pos += 1;
                let hi = self.operand()?;
                return Ok(Cond::Between(left, lo, hi));
            }
            Some(t) if t.is_kw("IN") => {
                self.pos += 1;
                self.expect_sym("(")?;
                let mut list = vec![self.operand()?];
                while self.at_sym(",") {
                    self.pos += 1;
                    list.push(self.operand()?);
                }
                self.expect_sym(")")?;
                return Ok(Cond::In(left, list));
            }
            _ => return Err(self.err_here()),
        };
        self.pos += 1;
        let right = self.operand()?;
        Ok(Cond::Cmp(left, op, right))
    }

    fn operand(&mut self) -> Result<Operand> {
        if self.function_name().as_deref() == Some("size") {
            self.pos += 2;
            let p = self.path()?;
            self.expect_sym(")")?;
            return Ok(Operand::Size(p));
        }
        match self.peek().cloned() {
            Some(Tok::Value(v)) => {
                self.pos += 1;
                Ok(Operand::Value(self.value(&v)?))
            }
            _ if self.is_path_start() => Ok(Operand::Path(self.path()?)),
            _ => Err(self.err_here()),
        }
    }

    // ---- updates

    fn update(&mut self) -> Result<Update> {
        let mut u = Update::default();
        let mut seen = BTreeSet::new();
        while let Some(t) = self.peek().cloned() {
            let section = match &t {
                Tok::Ident(s) => s.to_ascii_uppercase(),
                _ => return Err(self.err_here()),
            };
            if !["SET", "REMOVE", "ADD", "DELETE"].contains(&section.as_str()) {
                return Err(self.err_here());
            }
            if !seen.insert(section.clone()) {
                return Err(invalid(format!(
                    "Invalid UpdateExpression: The \"{section}\" section can only be used once in an update expression;"
                )));
            }
            self.pos += 1;
            loop {
                match section.as_str() {
                    "SET" => {
                        let p = self.path()?;
                        self.expect_sym("=")?;
                        let v = self.set_value()?;
                        u.set.push((p, v));
                    }
                    "REMOVE" => u.remove.push(self.path()?),
                    _ => {
                        let p = self.path()?;
                        let v = match self.next() {
                            Some(Tok::Value(v)) => self.value(&v)?,
                            _ => {
                                self.pos -= 1;
                                return Err(self.err_here());
                            }
                        };
                        if section == "ADD" {
                            u.add.push((p, v));
                        } else {
                            u.delete.push((p, v));
                        }
                    }
                }
                if self.at_sym(",") {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        // Paths may not overlap (one a prefix of another).
        let mut all: Vec<&Path> = u.set.iter().map(|(p, _)| p).collect();
        all.extend(u.remove.iter());
        all.extend(u.add.iter().map(|(p, _)| p));
        all.extend(u.delete.iter().map(|(p, _)| p));
        for (i, a) in all.iter().enumerate() {
            for b in &all[..i] {
                let n = a.len().min(b.len());
                if a[..n] == b[..n] {
                    return Err(invalid(format!(
                        "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: {}, path two: {}",
                        path_text(b),
                        path_text(a)
                    )));
                }
            }
        }
        Ok(u)
    }

    fn set_value(&mut self) -> Result<SetValue> {
        let a = self.uoperand()?;
        if self.at_sym("+") {
            self.pos += 1;
            return Ok(SetValue::Plus(Box::new(a), Box::new(self.uoperand()?)));
        }
        if self.at_sym("-") {
            self.pos += 1;
            return Ok(SetValue::Minus(Box::new(a), Box::new(self.uoperand()?)));
        }
        Ok(SetValue::Operand(Box::new(a)))
    }

    fn uoperand(&mut self) -> Result<UOperand> {
        if let Some(f) = self.function_name() {
            self.pos += 2;
            let r = match f.as_str() {
                "if_not_exists" => {
                    let p = self.path()?;
                    self.expect_sym(",")?;
                    UOperand::IfNotExists(p, Box::new(self.uoperand()?))
                }
                "list_append" => {
                    let a = self.uoperand()?;
                    self.expect_sym(",")?;
                    UOperand::ListAppend(Box::new(a), Box::new(self.uoperand()?))
                }
                _ => {
                    return Err(invalid(format!(
                        "Invalid UpdateExpression: Invalid function name; function: {f}"
                    )));
                }
            };
            self.expect_sym(")")?;
            return Ok(r);
        }
        match self.peek().cloned() {
            Some(Tok::Value(v)) => {
                self.pos += 1;
                Ok(UOperand::Value(self.value(&v)?))
            }
            _ if self.is_path_start() => Ok(UOperand::Path(self.path()?)),
            _ => Err(self.err_here()),
        }
    }
}

/// DynamoDB's reserved words (one per line, upper case), which may not
/// appear as attribute names in expressions (use `#names` instead).
const RESERVED: &str = include_str!("reserved_words.txt");

fn is_reserved(word: &str) -> bool {
    static SET: std::sync::OnceLock<BTreeSet<&'static str>> = std::sync::OnceLock::new();
    let set = SET.get_or_init(|| RESERVED.lines().map(str::trim).collect());
    set.contains(word.to_ascii_uppercase().as_str())
}

fn leak(s: &str) -> &'static str {
    [
        "=", "<>", "<", "<=", ">", ">=", "(", ")", ",", ".", "[", "]", "+", "-",
    ]
    .into_iter()
    .find(|t| *t == s)
    .unwrap_or("?")
}

/// Parses a condition expression (`kind` names it in messages:
/// `ConditionExpression`, `FilterExpression`, `KeyConditionExpression`).
pub fn parse_condition(kind: &'static str, src: &str, ctx: &mut Ctx) -> Result<Cond> {
    let mut p = Parser::new(kind, src, ctx)?;
    let c = p.cond()?;
    p.end()?;
    Ok(c)
}

pub fn parse_update(src: &str, ctx: &mut Ctx) -> Result<Update> {
    let mut p = Parser::new("UpdateExpression", src, ctx)?;
    let u = p.update()?;
    p.end()?;
    Ok(u)
}

pub fn parse_projection(src: &str, ctx: &mut Ctx) -> Result<Vec<Path>> {
    let mut p = Parser::new("ProjectionExpression", src, ctx)?;
    let mut out = vec![p.path()?];
    while p.at_sym(",") {
        p.pos += 1;
        out.push(p.path()?);
    }
    p.end()?;
    Ok(out)
}

// ------------------------------------------------------------ evaluation

pub fn get_path<'i>(item: &'i Item, path: &Path) -> Option<&'i Attr> {
    let Some(Step::Name(first)) = path.first() else {
        return None;
    };
    let mut cur = item.get(first)?;
    for step in &path[1..] {
        cur = match (step, cur) {
            (Step::Name(n), Attr::M(m)) => m.get(n)?,
            (Step::Index(i), Attr::L(l)) => l.get(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn operand_value(item: &Item, o: &Operand) -> Option<Attr> {
    match o {
        Operand::Path(p) => get_path(item, p).cloned(),
        Operand::Value(v) => Some(v.clone()),
        Operand::Size(p) => {
            let n = match get_path(item, p)? {
                Attr::S(s) => s.len(),
                Attr::B(b) => b.len(),
                Attr::SS(v) | Attr::NS(v) => v.len(),
                Attr::BS(v) => v.len(),
                Attr::L(v) => v.len(),
                Attr::M(m) => m.len(),
                _ => return None,
            };
            Some(Attr::N(n.to_string()))
        }
    }
}

/// Evaluates a condition on an item (an absent item is an empty one).
pub fn eval(c: &Cond, item: &Item) -> bool {
    match c {
        Cond::And(a, b) => eval(a, item) && eval(b, item),
        Cond::Or(a, b) => eval(a, item) || eval(b, item),
        Cond::Not(a) => !eval(a, item),
        Cond::Exists(p) => get_path(item, p).is_some(),
        Cond::NotExists(p) => get_path(item, p).is_none(),
        Cond::Cmp(l, op, r) => {
            let (l, r) = (operand_value(item, l), operand_value(item, r));
            compare(l.as_ref(), *op, r.as_ref())
        }
        Cond::Between(v, lo, hi) => {
            let (v, lo, hi) = (
                operand_value(item, v),
                operand_value(item, lo),
                operand_value(item, hi),
            );
            compare(v.as_ref(), CmpOp::Ge, lo.as_ref())
                && compare(v.as_ref(), CmpOp::Le, hi.as_ref())
        }
        Cond::In(v, list) => {
            let v = operand_value(item, v);
            list.iter()
                .any(|o| compare(v.as_ref(), CmpOp::Eq, operand_value(item, o).as_ref()))
        }
        Cond::BeginsWith(a, b) => match (operand_value(item, a), operand_value(item, b)) {
            (Some(Attr::S(a)), Some(Attr::S(b))) => a.starts_with(&b),
            (Some(Attr::B(a)), Some(Attr::B(b))) => a.starts_with(&b),
            _ => false,
        },
        Cond::Contains(a, b) => match (operand_value(item, a), operand_value(item, b)) {
            (Some(Attr::S(a)), Some(Attr::S(b))) => a.contains(&b),
            (Some(Attr::B(a)), Some(Attr::B(b))) => {
                b.is_empty() || a.windows(b.len()).any(|w| w == b.as_slice())
            }
            (Some(Attr::SS(a)), Some(Attr::S(b))) => a.contains(&b),
            (Some(Attr::NS(a)), Some(b @ Attr::N(_))) => {
                a.iter().any(|x| attr_eq(&Attr::N(x.clone()), &b))
            }
            (Some(Attr::BS(a)), Some(Attr::B(b))) => a.contains(&b),
            (Some(Attr::L(a)), Some(b)) => a.iter().any(|x| attr_eq(x, &b)),
            _ => false,
        },
        Cond::AttrType(p, t) => match (get_path(item, p), operand_value(item, t)) {
            (Some(a), Some(Attr::S(t))) => a.type_name() == t,
            _ => false,
        },
    }
}

pub fn compare(l: Option<&Attr>, op: CmpOp, r: Option<&Attr>) -> bool {
    match op {
        CmpOp::Eq => matches!((l, r), (Some(a), Some(b)) if attr_eq(a, b)),
        CmpOp::Ne => !matches!((l, r), (Some(a), Some(b)) if attr_eq(a, b)),
        _ => {
            let (Some(a), Some(b)) = (l, r) else {
                return false;
            };
            let Some(ord) = attr_cmp(a, b) else {
                return false;
            };
            match op {
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Le => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }
        }
    }
}

fn type_word(a: &Attr) -> &'static str {
    match a {
        Attr::S(_) => "STRING",
        Attr::N(_) => "NUMBER",
        Attr::B(_) => "BINARY",
        Attr::Bool(_) => "BOOLEAN",
        Attr::Null => "NULL",
        Attr::SS(_) => "SS",
        Attr::NS(_) => "NS",
        Attr::BS(_) => "BS",
        Attr::L(_) => "LIST",
        Attr::M(_) => "MAP",
    }
}

fn operand_type_error(op: &str, a: &Attr) -> DynamoError {
    invalid(format!(
        "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: {op}, operand type: {}",
        type_word(a)
    ))
}

fn missing_attr() -> DynamoError {
    invalid("The provided expression refers to an attribute that does not exist in the item")
}

fn uvalue(item: &Item, o: &UOperand) -> Result<Attr> {
    match o {
        UOperand::Path(p) => get_path(item, p).cloned().ok_or_else(missing_attr),
        UOperand::Value(v) => Ok(v.clone()),
        UOperand::IfNotExists(p, dflt) => match get_path(item, p) {
            Some(a) => Ok(a.clone()),
            None => uvalue(item, dflt),
        },
        UOperand::ListAppend(a, b) => match (uvalue(item, a)?, uvalue(item, b)?) {
            (Attr::L(mut x), Attr::L(y)) => {
                x.extend(y);
                Ok(Attr::L(x))
            }
            (Attr::L(_), other) | (other, _) => Err(operand_type_error("list_append", &other)),
        },
    }
}

fn set_value(item: &Item, v: &SetValue) -> Result<Attr> {
    match v {
        SetValue::Operand(o) => uvalue(item, o),
        SetValue::Plus(a, b) | SetValue::Minus(a, b) => {
            let plus = matches!(v, SetValue::Plus(..));
            let sym = if plus { "+" } else { "-" };
            match (uvalue(item, a)?, uvalue(item, b)?) {
                (Attr::N(x), Attr::N(y)) => Ok(Attr::N(if plus {
                    num_add(&x, &y)?
                } else {
                    num_sub(&x, &y)?
                })),
                (Attr::N(_), other) | (other, _) => Err(operand_type_error(sym, &other)),
            }
        }
    }
}

fn invalid_path() -> DynamoError {
    invalid("The document path provided in the update expression is invalid for update")
}

/// The container holding the last step of `path`, created for nothing.
fn parent_mut<'i>(item: &'i mut Item, path: &Path) -> Result<Option<&'i mut Attr>> {
    if path.len() == 1 {
        return Ok(None);
    }
    let Some(Step::Name(first)) = path.first() else {
        return Err(invalid_path());
    };
    let mut cur = item.get_mut(first).ok_or_else(invalid_path)?;
    for step in &path[1..path.len() - 1] {
        cur = match (step, cur) {
            (Step::Name(n), Attr::M(m)) => m.get_mut(n).ok_or_else(invalid_path)?,
            (Step::Index(i), Attr::L(l)) => l.get_mut(*i).ok_or_else(invalid_path)?,
            _ => return Err(invalid_path()),
        };
    }
    Ok(Some(cur))
}

pub fn put_path(item: &mut Item, path: &Path, value: Attr) -> Result<()> {
    let last = path.last().ok_or_else(invalid_path)?;
    match (parent_mut(item, path)?, last) {
        (None, Step::Name(n)) => {
            item.insert(n.clone(), value);
        }
        (Some(Attr::M(m)), Step::Name(n)) => {
            m.insert(n.clone(), value);
        }
        (Some(Attr::L(l)), Step::Index(i)) => {
            if *i < l.len() {
                l[*i] = value;
            } else {
                l.push(value);
            }
        }
        _ => return Err(invalid_path()),
    }
    Ok(())
}

pub fn remove_path(item: &mut Item, path: &Path) -> Result<()> {
    let last = path.last().ok_or_else(invalid_path)?;
    match (parent_mut(item, path), last) {
        (Ok(None), Step::Name(n)) => {
            item.remove(n);
        }
        (Ok(Some(Attr::M(m))), Step::Name(n)) => {
            m.remove(n);
        }
        (Ok(Some(Attr::L(l))), Step::Index(i)) if *i < l.len() => {
            l.remove(*i);
        }
        // Removing something that is not there is not an error.
        _ => {}
    }
    Ok(())
}

/// ADD of `v` to `existing` (an absent attribute takes `v`).
pub fn add_value(existing: Option<&Attr>, v: &Attr) -> Result<Attr> {
    Ok(match (existing, v) {
        (None, Attr::N(_) | Attr::SS(_) | Attr::NS(_) | Attr::BS(_)) => v.clone(),
        (Some(Attr::N(a)), Attr::N(b)) => Attr::N(num_add(a, b)?),
        (Some(Attr::SS(a)), Attr::SS(b)) => Attr::SS(union(a, b, |x, y| x == y)),
        (Some(Attr::NS(a)), Attr::NS(b)) => Attr::NS(union(a, b, |x, y| {
            crate::attr::num_cmp(x, y) == Ordering::Equal
        })),
        (Some(Attr::BS(a)), Attr::BS(b)) => Attr::BS(union(a, b, |x, y| x == y)),
        (Some(e), Attr::N(_) | Attr::SS(_) | Attr::NS(_) | Attr::BS(_)) => {
            return Err(invalid(format!(
                "An operand in the update expression has an incorrect data type; operator: ADD, operand type: {}",
                type_word(e)
            )));
        }
        _ => {
            return Err(invalid(format!(
                "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: {}",
                type_word(v)
            )));
        }
    })
}

fn union<T: Clone>(a: &[T], b: &[T], eq: impl Fn(&T, &T) -> bool) -> Vec<T> {
    let mut out = a.to_vec();
    for x in b {
        if !out.iter().any(|y| eq(x, y)) {
            out.push(x.clone());
        }
    }
    out
}

/// DELETE of the elements of set `v` from `existing`; `None` when the
/// result is empty (the attribute goes away).
pub fn delete_value(existing: Option<&Attr>, v: &Attr) -> Result<Option<Attr>> {
    fn minus<T: Clone>(a: &[T], b: &[T], eq: impl Fn(&T, &T) -> bool) -> Vec<T> {
        a.iter()
            .filter(|x| !b.iter().any(|y| eq(x, y)))
            .cloned()
            .collect()
    }
    let r = match (existing, v) {
        (None, Attr::SS(_) | Attr::NS(_) | Attr::BS(_)) => return Ok(None),
        (Some(Attr::SS(a)), Attr::SS(b)) => Attr::SS(minus(a, b, |x, y| x == y)),
        (Some(Attr::NS(a)), Attr::NS(b)) => Attr::NS(minus(a, b, |x, y| {
            crate::attr::num_cmp(x, y) == Ordering::Equal
        })),
        (Some(Attr::BS(a)), Attr::BS(b)) => Attr::BS(minus(a, b, |x, y| x == y)),
        (Some(e), Attr::SS(_) | Attr::NS(_) | Attr::BS(_)) => {
            return Err(invalid(format!(
                "An operand in the update expression has an incorrect data type; operator: DELETE, operand type: {}",
                type_word(e)
            )));
        }
        _ => {
            return Err(invalid(format!(
                "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, operand type: {}",
                type_word(v)
            )));
        }
    };
    let empty = match &r {
        Attr::SS(v) | Attr::NS(v) => v.is_empty(),
        Attr::BS(v) => v.is_empty(),
        _ => false,
    };
    Ok((!empty).then_some(r))
}

/// Applies an update expression to `item` (every right-hand side is
/// evaluated against the item as it was before the update).
pub fn apply_update(u: &Update, item: &Item) -> Result<Item> {
    let mut new = item.clone();
    let mut values = Vec::with_capacity(u.set.len());
    for (p, v) in &u.set {
        values.push((p, set_value(item, v)?));
    }
    for (p, v) in values {
        put_path(&mut new, p, v)?;
    }
    for p in &u.remove {
        remove_path(&mut new, p)?;
    }
    for (p, v) in &u.add {
        let r = add_value(get_path(item, p), v)?;
        put_path(&mut new, p, r)?;
    }
    for (p, v) in &u.delete {
        match delete_value(get_path(item, p), v)? {
            Some(r) => put_path(&mut new, p, r)?,
            None => remove_path(&mut new, p)?,
        }
    }
    Ok(new)
}

/// Top-level attribute names an update touches (for UPDATED_OLD/NEW).
pub fn updated_names(u: &Update) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let paths = u
        .set
        .iter()
        .map(|(p, _)| p)
        .chain(u.remove.iter())
        .chain(u.add.iter().map(|(p, _)| p))
        .chain(u.delete.iter().map(|(p, _)| p));
    for p in paths {
        if let Some(Step::Name(n)) = p.first() {
            out.insert(n.clone());
        }
    }
    out
}

/// The projection of `item` on `paths` (nested paths keep their parents).
pub fn project(item: &Item, paths: &[Path]) -> Item {
    let mut out = Item::new();
    for p in paths {
        if let Some(v) = get_path(item, p) {
            if p.len() == 1 {
                if let Some(Step::Name(n)) = p.first() {
                    out.insert(n.clone(), v.clone());
                }
            } else {
                // Build the enclosing maps; list indexes become positions in
                // a compacted list as DynamoDB does.
                let mut node = v.clone();
                for step in p[1..].iter().rev() {
                    node = match step {
                        Step::Name(n) => Attr::M([(n.clone(), node)].into_iter().collect()),
                        Step::Index(_) => Attr::L(vec![node]),
                    };
                }
                if let Some(Step::Name(n)) = p.first() {
                    merge(&mut out, n, node);
                }
            }
        }
    }
    out
}

fn merge(out: &mut Item, name: &str, node: Attr) {
    match (out.get_mut(name), node) {
        (Some(Attr::M(a)), Attr::M(b)) => {
            for (k, v) in b {
                merge(a, &k, v);
            }
        }
        (Some(Attr::L(a)), Attr::L(b)) => a.extend(b),
        (_, node) => {
            out.insert(name.to_string(), node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Attr {
        Attr::S(v.into())
    }
    fn n(v: &str) -> Attr {
        Attr::N(v.into())
    }

    fn ctx(names: &[(&str, &str)], values: &[(&str, Attr)]) -> Ctx {
        Ctx::new(
            names
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            values
                .iter()
                .map(|(a, b)| (a.to_string(), b.clone()))
                .collect(),
        )
    }

    fn lease() -> Item {
        let mut i = Item::new();
        i.insert("leaseKey".into(), s("shardId-000000000001"));
        i.insert("leaseOwner".into(), s("worker-a"));
        i.insert("leaseCounter".into(), n("10"));
        i.insert("parentShardId".into(), Attr::SS(vec!["shardId-0".into()]));
        i
    }

    fn check(src: &str, c: &mut Ctx, item: &Item) -> bool {
        eval(
            &parse_condition("ConditionExpression", src, c).unwrap(),
            item,
        )
    }

    #[test]
    fn comparisons_are_numeric_for_numbers() {
        let mut c = ctx(&[], &[(":n", n("9")), (":m", n("10.0"))]);
        assert!(check("leaseCounter > :n", &mut c, &lease()));
        assert!(check("leaseCounter = :m", &mut c, &lease()));
        assert!(check(
            "leaseCounter >= :m AND leaseCounter <= :m",
            &mut c,
            &lease()
        ));
        assert!(!check("leaseCounter < :n", &mut c, &lease()));
        assert!(check("leaseCounter <> :n", &mut c, &lease()));
        c.check_all_used().unwrap();
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let mut c = ctx(&[], &[(":a", s("worker-a")), (":b", s("worker-b"))]);
        // NOT binds tighter than AND, AND tighter than OR.
        assert!(check(
            "leaseOwner = :b AND leaseOwner = :b OR leaseOwner = :a",
            &mut c,
            &lease()
        ));
        assert!(!check(
            "leaseOwner = :b AND (leaseOwner = :b OR leaseOwner = :a)",
            &mut c,
            &lease()
        ));
        assert!(check(
            "NOT leaseOwner = :b AND leaseOwner = :a",
            &mut c,
            &lease()
        ));
        assert!(!check(
            "NOT (leaseOwner = :a OR leaseOwner = :b)",
            &mut c,
            &lease()
        ));
    }

    #[test]
    fn functions_between_in_and_size() {
        let mut c = ctx(
            &[("#o", "leaseOwner"), ("#c", "checkpointOwner")],
            &[
                (":lo", n("5")),
                (":hi", n("10")),
                (":p", s("work")),
                (":x", s("x")),
                (":a", s("worker-a")),
                (":two", n("8")),
                (":ss", s("SS")),
                (":parent", s("shardId-0")),
            ],
        );
        let l = lease();
        assert!(check("leaseCounter BETWEEN :lo AND :hi", &mut c, &l));
        assert!(check("#o IN (:x, :a)", &mut c, &l));
        assert!(!check("#o IN (:x)", &mut c, &l));
        assert!(check("begins_with(#o, :p)", &mut c, &l));
        assert!(check(
            "attribute_exists(leaseKey) AND attribute_not_exists(#c)",
            &mut c,
            &l
        ));
        assert!(check("size(#o) = :two", &mut c, &l));
        assert!(check("attribute_type(parentShardId, :ss)", &mut c, &l));
        assert!(check("contains(parentShardId, :parent)", &mut c, &l));
        c.check_all_used().unwrap();
    }

    #[test]
    fn missing_attributes_make_comparisons_false_but_not_equal_true() {
        let mut c = ctx(&[], &[(":v", s("a"))]);
        let empty = Item::new();
        assert!(!check("nope = :v", &mut c, &empty));
        assert!(!check("nope < :v", &mut c, &empty));
        assert!(check("nope <> :v", &mut c, &empty));
    }

    #[test]
    fn different_types_never_order() {
        let mut c = ctx(&[], &[(":s", s("10"))]);
        assert!(!check("leaseCounter < :s", &mut c, &lease()));
        assert!(!check("leaseCounter >= :s", &mut c, &lease()));
    }

    #[test]
    fn undefined_and_unused_placeholders_are_reported() {
        let mut c = ctx(&[], &[]);
        let e = parse_condition("ConditionExpression", "a = :v", &mut c).unwrap_err();
        assert_eq!(
            e,
            DynamoError::Validation(
                "Invalid ConditionExpression: An expression attribute value used in expression is not defined; attribute value: :v".into()
            )
        );
        let e = parse_condition("ConditionExpression", "attribute_exists(#k)", &mut c).unwrap_err();
        assert!(matches!(e, DynamoError::Validation(m) if m.ends_with("attribute name: #k")));
        let mut c = ctx(&[("#unused", "x")], &[(":v", s("a"))]);
        parse_condition("ConditionExpression", "a = :v", &mut c).unwrap();
        let e = c.check_all_used().unwrap_err();
        assert_eq!(
            e,
            DynamoError::Validation(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {#unused}"
                    .into()
            )
        );
    }

    #[test]
    fn reserved_words_must_be_aliased() {
        let mut c = ctx(&[("#n", "name")], &[(":v", s("a"))]);
        let e = parse_condition("ConditionExpression", "name = :v", &mut c).unwrap_err();
        assert_eq!(
            e,
            DynamoError::Validation(
                "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: name".into()
            )
        );
        assert!(parse_condition("ConditionExpression", "#n = :v", &mut c).is_ok());
        assert!(parse_condition("ConditionExpression", "leaseKey = :v", &mut c).is_ok());
        let e = parse_update("SET Owner = :v", &mut c).unwrap_err();
        assert!(
            matches!(e, DynamoError::Validation(m) if m.starts_with("Invalid UpdateExpression: Attribute name is a reserved keyword"))
        );
    }

    #[test]
    fn syntax_errors_name_the_token() {
        let mut c = ctx(&[], &[(":v", s("a"))]);
        for bad in [
            "a = ",
            "a == :v",
            "(a = :v",
            "a = :v AND",
            "a BETWEEN :v",
            "= :v",
        ] {
            let e = parse_condition("ConditionExpression", bad, &mut c).unwrap_err();
            assert!(
                matches!(&e, DynamoError::Validation(m) if m.starts_with("Invalid ConditionExpression: Syntax error; token:")),
                "{bad}: {e:?}"
            );
        }
        let e = parse_condition("ConditionExpression", " ", &mut c).unwrap_err();
        assert_eq!(
            e,
            DynamoError::Validation(
                "Invalid ConditionExpression: The expression can not be empty;".into()
            )
        );
    }

    #[test]
    fn update_set_remove_add_delete() {
        let mut c = ctx(
            &[("#c", "leaseCounter"), ("#o", "leaseOwner")],
            &[
                (":one", n("1")),
                (":b", s("worker-b")),
                (":p", Attr::SS(vec!["shardId-0".into()])),
                (":q", Attr::SS(vec!["x".into(), "y".into()])),
                (":zero", n("0")),
            ],
        );
        let u = parse_update(
            "SET #c = #c + :one, #o = :b, ownerSwitches = if_not_exists(ownerSwitches, :zero) + :one REMOVE checkpoint ADD tags :q DELETE parentShardId :p",
            &mut c,
        )
        .unwrap();
        c.check_all_used().unwrap();
        let mut item = lease();
        item.insert("checkpoint".into(), s("TRIM_HORIZON"));
        let new = apply_update(&u, &item).unwrap();
        assert_eq!(new["leaseCounter"], n("11"));
        assert_eq!(new["leaseOwner"], s("worker-b"));
        assert_eq!(new["ownerSwitches"], n("1"));
        assert!(!new.contains_key("checkpoint"));
        assert!(!new.contains_key("parentShardId"), "emptied set is removed");
        assert_eq!(new["tags"], Attr::SS(vec!["x".into(), "y".into()]));
        assert_eq!(
            updated_names(&u).into_iter().collect::<Vec<_>>(),
            [
                "leaseCounter",
                "leaseOwner",
                "ownerSwitches",
                "checkpoint",
                "tags",
                "parentShardId"
            ]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
    }

    #[test]
    fn update_rhs_sees_the_old_item() {
        let mut c = ctx(&[], &[(":one", n("1"))]);
        let u = parse_update("SET a = b, b = a ADD c :one", &mut c).unwrap();
        let mut item = Item::new();
        item.insert("a".into(), n("1"));
        item.insert("b".into(), n("2"));
        let new = apply_update(&u, &item).unwrap();
        assert_eq!(
            (new["a"].clone(), new["b"].clone(), new["c"].clone()),
            (n("2"), n("1"), n("1"))
        );
    }

    #[test]
    fn update_errors() {
        let mut c = ctx(&[], &[(":s", s("x")), (":one", n("1"))]);
        let u = parse_update("ADD leaseOwner :one", &mut c).unwrap();
        assert!(apply_update(&u, &lease()).is_err());
        let u = parse_update("ADD x :s", &mut c).unwrap();
        let e = apply_update(&u, &lease()).unwrap_err();
        assert_eq!(e, DynamoError::Validation("Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: STRING".into()));
        let u = parse_update("SET x = absentAttr + :one", &mut c).unwrap();
        assert!(apply_update(&u, &lease()).is_err());
        let e = parse_update("SET a = :s, a = :one", &mut c).unwrap_err();
        assert!(
            matches!(e, DynamoError::Validation(m) if m.contains("Two document paths overlap"))
        );
        let e = parse_update("SET a = :s SET b = :s", &mut c).unwrap_err();
        assert!(
            matches!(e, DynamoError::Validation(m) if m.contains("\"SET\" section can only be used once"))
        );
    }

    #[test]
    fn nested_paths_and_projection() {
        let mut c = ctx(
            &[("#m", "meta"), ("#l", "list")],
            &[(":v", s("deep")), (":w", n("7"))],
        );
        let mut item = lease();
        item.insert("meta".into(), Attr::M(BTreeMap::new()));
        item.insert("list".into(), Attr::L(vec![n("1"), n("2")]));
        let u = parse_update("SET #m.nested = :v, #l[1] = :w, #l[5] = :w", &mut c).unwrap();
        let new = apply_update(&u, &item).unwrap();
        let mut c2 = ctx(&[("#l", "list")], &[(":v", s("deep")), (":w", n("7"))]);
        assert!(check(
            "meta.nested = :v AND #l[1] = :w AND #l[2] = :w",
            &mut c2,
            &new
        ));
        let mut c3 = ctx(&[], &[]);
        let paths = parse_projection("leaseKey, meta.nested", &mut c3).unwrap();
        let p = project(&new, &paths);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p["meta"],
            Attr::M([("nested".to_string(), s("deep"))].into_iter().collect())
        );
    }
}
