//! `x-kubernetes-validations`: a small CEL interpreter for the rules CRDs
//! commonly use. Supported: literals (int, double, string, bool, null,
//! lists, maps), `self`/`oldSelf`, field access and indexing, `has()`,
//! `! - * / % + == != < <= > >= && || in ?:`, `size()`, `startsWith`,
//! `endsWith`, `contains`, `matches`, `int()`, `string()`, `double()`, and
//! the macros `all`, `exists`, `exists_one`, `map`, `filter`. A rule that
//! does not parse, uses anything else, or fails at runtime is skipped (not
//! enforced); transition rules (using `oldSelf`) run on updates only, and
//! not inside lists. `messageExpression` is not evaluated (`message` or
//! "failed rule: <rule>" is used).

use crate::error::FieldError;
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Id(String),
    Int(i64),
    Num(f64),
    Str(String),
    Op(&'static str),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = vec![];
    const OPS: [&str; 24] = [
        "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "?", ":", ".",
        ",", "(", ")", "[", "]", "{", "}",
    ];
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch.is_ascii_digit() {
            let st = i;
            while i < c.len()
                && (c[i].is_ascii_digit()
                    || c[i] == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
            {
                i += 1;
            }
            let t: String = c[st..i].iter().collect();
            if i < c.len() && c[i] == 'u' {
                i += 1;
            }
            out.push(if t.contains('.') {
                Tok::Num(t.parse().map_err(|_| "number")?)
            } else {
                Tok::Int(t.parse().map_err(|_| "int")?)
            });
        } else if ch.is_alphabetic() || ch == '_' {
            let st = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Id(c[st..i].iter().collect()));
        } else if ch == '"' || ch == '\'' {
            let q = ch;
            i += 1;
            let mut t = String::new();
            while i < c.len() && c[i] != q {
                if c[i] == '\\' && i + 1 < c.len() {
                    i += 1;
                    t.push(match c[i] {
                        'n' => '\n',
                        't' => '\t',
                        o => o,
                    });
                } else {
                    t.push(c[i]);
                }
                i += 1;
            }
            if i >= c.len() {
                return Err("unterminated string".into());
            }
            i += 1;
            out.push(Tok::Str(t));
        } else {
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            match OPS.iter().find(|o| two.starts_with(**o)) {
                Some(o) => {
                    out.push(Tok::Op(o));
                    i += o.len();
                }
                None => return Err(format!("unexpected {ch}")),
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Ex {
    Lit(Value),
    Var(String),
    List(Vec<Ex>),
    Map(Vec<(Ex, Ex)>),
    Field(Box<Ex>, String),
    Index(Box<Ex>, Box<Ex>),
    Call(Option<Box<Ex>>, String, Vec<Ex>),
    Un(&'static str, Box<Ex>),
    Bin(&'static str, Box<Ex>, Box<Ex>),
    Cond(Box<Ex>, Box<Ex>, Box<Ex>),
}

struct P {
    t: Vec<Tok>,
    i: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    fn eat(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, op: &str) -> Result<(), String> {
        if self.eat(op) {
            Ok(())
        } else {
            Err(format!("expected {op}"))
        }
    }
    fn expr(&mut self) -> Result<Ex, String> {
        let c = self.or()?;
        if self.eat("?") {
            let a = self.expr()?;
            self.expect(":")?;
            let b = self.expr()?;
            return Ok(Ex::Cond(Box::new(c), Box::new(a), Box::new(b)));
        }
        Ok(c)
    }
    fn bin(
        &mut self,
        ops: &[&'static str],
        next: fn(&mut P) -> Result<Ex, String>,
    ) -> Result<Ex, String> {
        let mut l = next(self)?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op(o)) if ops.contains(o) => *o,
                Some(Tok::Id(w)) if w == "in" && ops.contains(&"in") => "in",
                _ => return Ok(l),
            };
            self.i += 1;
            let r = next(self)?;
            l = Ex::Bin(op, Box::new(l), Box::new(r));
        }
    }
    fn or(&mut self) -> Result<Ex, String> {
        self.bin(&["||"], P::and)
    }
    fn and(&mut self) -> Result<Ex, String> {
        self.bin(&["&&"], P::rel)
    }
    fn rel(&mut self) -> Result<Ex, String> {
        self.bin(&["==", "!=", "<", "<=", ">", ">=", "in"], P::add)
    }
    fn add(&mut self) -> Result<Ex, String> {
        self.bin(&["+", "-"], P::mul)
    }
    fn mul(&mut self) -> Result<Ex, String> {
        self.bin(&["*", "/", "%"], P::unary)
    }
    fn unary(&mut self) -> Result<Ex, String> {
        if self.eat("!") {
            return Ok(Ex::Un("!", Box::new(self.unary()?)));
        }
        if self.eat("-") {
            return Ok(Ex::Un("-", Box::new(self.unary()?)));
        }
        self.member()
    }
    fn args(&mut self, close: &str) -> Result<Vec<Ex>, String> {
        let mut a = vec![];
        if self.eat(close) {
            return Ok(a);
        }
        loop {
            a.push(self.expr()?);
            if self.eat(close) {
                return Ok(a);
            }
            self.expect(",")?;
        }
    }
    fn member(&mut self) -> Result<Ex, String> {
        let mut e = self.primary()?;
        loop {
            if self.eat(".") {
                let Some(Tok::Id(n)) = self.peek().cloned() else {
                    return Err("field".into());
                };
                self.i += 1;
                if self.eat("(") {
                    let a = self.args(")")?;
                    e = Ex::Call(Some(Box::new(e)), n, a);
                } else {
                    e = Ex::Field(Box::new(e), n);
                }
            } else if self.eat("[") {
                let ix = self.expr()?;
                self.expect("]")?;
                e = Ex::Index(Box::new(e), Box::new(ix));
            } else {
                return Ok(e);
            }
        }
    }
    fn primary(&mut self) -> Result<Ex, String> {
        let t = self.peek().cloned().ok_or("unexpected end")?;
        self.i += 1;
        Ok(match t {
            Tok::Int(n) => Ex::Lit(json!(n)),
            Tok::Num(n) => Ex::Lit(json!(n)),
            Tok::Str(s) => Ex::Lit(json!(s)),
            Tok::Id(id) => match id.as_str() {
                "true" => Ex::Lit(json!(true)),
                "false" => Ex::Lit(json!(false)),
                "null" => Ex::Lit(Value::Null),
                _ if self.eat("(") => Ex::Call(None, id, self.args(")")?),
                _ => Ex::Var(id),
            },
            Tok::Op("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                e
            }
            Tok::Op("[") => Ex::List(self.args("]")?),
            Tok::Op("{") => {
                let mut m = vec![];
                if !self.eat("}") {
                    loop {
                        let k = self.expr()?;
                        self.expect(":")?;
                        m.push((k, self.expr()?));
                        if self.eat("}") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ex::Map(m)
            }
            other => return Err(format!("unexpected {other:?}")),
        })
    }
}

fn parse(rule: &str) -> Result<Ex, String> {
    let mut p = P {
        t: lex(rule)?,
        i: 0,
    };
    let e = p.expr()?;
    if p.i != p.t.len() {
        return Err("trailing input".into());
    }
    Ok(e)
}

type Env<'a> = Vec<(String, Value)>;

fn num(v: &Value) -> Result<f64, String> {
    v.as_f64().ok_or_else(|| "not a number".to_string())
}

fn truthy(v: Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| "not a bool".into())
}

fn eval(e: &Ex, env: &Env) -> Result<Value, String> {
    Ok(match e {
        Ex::Lit(v) => v.clone(),
        Ex::Var(n) => env
            .iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .ok_or(format!("undeclared {n}"))?,
        Ex::List(xs) => Value::Array(xs.iter().map(|x| eval(x, env)).collect::<Result<_, _>>()?),
        Ex::Map(kv) => {
            let mut m = serde_json::Map::new();
            for (k, v) in kv {
                m.insert(
                    eval(k, env)?.as_str().ok_or("map key")?.to_string(),
                    eval(v, env)?,
                );
            }
            Value::Object(m)
        }
        Ex::Field(b, f) => eval(b, env)?
            .get(f)
            .cloned()
            .ok_or(format!("no such key: {f}"))?,
        Ex::Index(b, i) => {
            let (b, i) = (eval(b, env)?, eval(i, env)?);
            match (&b, &i) {
                (Value::Array(a), Value::Number(n)) => a
                    .get(n.as_u64().ok_or("index")? as usize)
                    .cloned()
                    .ok_or("index out of range")?,
                (Value::Object(m), Value::String(k)) => {
                    m.get(k).cloned().ok_or(format!("no such key: {k}"))?
                }
                _ => return Err("bad index".into()),
            }
        }
        Ex::Un("!", x) => json!(!truthy(eval(x, env)?)?),
        Ex::Un(_, x) => {
            let v = eval(x, env)?;
            if let Some(i) = v.as_i64() {
                json!(-i)
            } else {
                json!(-num(&v)?)
            }
        }
        Ex::Bin("&&", a, b) => json!(truthy(eval(a, env)?)? && truthy(eval(b, env)?)?),
        Ex::Bin("||", a, b) => json!(truthy(eval(a, env)?)? || truthy(eval(b, env)?)?),
        Ex::Bin(op, a, b) => {
            let (a, b) = (eval(a, env)?, eval(b, env)?);
            match *op {
                "==" => {
                    json!(a == b || (a.is_number() && b.is_number() && a.as_f64() == b.as_f64()))
                }
                "!=" => {
                    json!(!(a == b || (a.is_number() && b.is_number() && a.as_f64() == b.as_f64())))
                }
                "in" => json!(match &b {
                    Value::Array(x) => x.contains(&a),
                    Value::Object(m) => a.as_str().is_some_and(|k| m.contains_key(k)),
                    _ => return Err("in".into()),
                }),
                "<" | "<=" | ">" | ">=" => {
                    let ord = match (&a, &b) {
                        (Value::String(x), Value::String(y)) => x.cmp(y),
                        _ => num(&a)?.partial_cmp(&num(&b)?).ok_or("nan")?,
                    };
                    json!(match *op {
                        "<" => ord.is_lt(),
                        "<=" => ord.is_le(),
                        ">" => ord.is_gt(),
                        _ => ord.is_ge(),
                    })
                }
                "+" => match (&a, &b) {
                    (Value::String(x), Value::String(y)) => json!(format!("{x}{y}")),
                    (Value::Array(x), Value::Array(y)) => {
                        Value::Array(x.iter().chain(y).cloned().collect())
                    }
                    _ => arith(&a, &b, op)?,
                },
                _ => arith(&a, &b, op)?,
            }
        }
        Ex::Cond(c, a, b) => {
            if truthy(eval(c, env)?)? {
                eval(a, env)?
            } else {
                eval(b, env)?
            }
        }
        Ex::Call(None, f, args) if f == "has" => {
            let [Ex::Field(b, k)] = args.as_slice() else {
                return Err("has".into());
            };
            json!(eval(b, env)?.get(k).is_some())
        }
        Ex::Call(None, f, args) => {
            let a: Vec<Value> = args
                .iter()
                .map(|x| eval(x, env))
                .collect::<Result<_, _>>()?;
            let x = a.first().ok_or("arity")?;
            match f.as_str() {
                "size" => size(x)?,
                "int" => json!(match x {
                    Value::String(s) => s.parse::<i64>().map_err(|_| "int")?,
                    v => num(v)? as i64,
                }),
                "double" => json!(match x {
                    Value::String(s) => s.parse::<f64>().map_err(|_| "double")?,
                    v => num(v)?,
                }),
                "string" => json!(match x {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                }),
                _ => return Err(format!("unknown function {f}")),
            }
        }
        Ex::Call(Some(recv), m, args)
            if matches!(
                m.as_str(),
                "all" | "exists" | "exists_one" | "map" | "filter"
            ) =>
        {
            let coll = eval(recv, env)?;
            let [Ex::Var(var), body] = args.as_slice() else {
                return Err("macro".into());
            };
            let items: Vec<Value> = match coll {
                Value::Array(a) => a,
                Value::Object(m) => m.keys().map(|k| json!(k)).collect(),
                _ => return Err("macro target".into()),
            };
            let mut results = vec![];
            for it in items {
                let mut env2 = env.clone();
                env2.push((var.clone(), it.clone()));
                results.push((it, eval(body, &env2)?));
            }
            match m.as_str() {
                "all" => json!(results.iter().all(|(_, r)| r == &json!(true))),
                "exists" => json!(results.iter().any(|(_, r)| r == &json!(true))),
                "exists_one" => {
                    json!(results.iter().filter(|(_, r)| r == &json!(true)).count() == 1)
                }
                "map" => Value::Array(results.into_iter().map(|(_, r)| r).collect()),
                _ => Value::Array(
                    results
                        .into_iter()
                        .filter(|(_, r)| r == &json!(true))
                        .map(|(i, _)| i)
                        .collect(),
                ),
            }
        }
        Ex::Call(Some(recv), m, args) => {
            let r = eval(recv, env)?;
            let a: Vec<Value> = args
                .iter()
                .map(|x| eval(x, env))
                .collect::<Result<_, _>>()?;
            let s = || r.as_str().ok_or("not a string".to_string());
            let arg = || {
                a.first()
                    .and_then(Value::as_str)
                    .ok_or("string argument".to_string())
            };
            match m.as_str() {
                "size" => size(&r)?,
                "startsWith" => json!(s()?.starts_with(arg()?)),
                "endsWith" => json!(s()?.ends_with(arg()?)),
                "contains" => json!(s()?.contains(arg()?)),
                "matches" => json!(regex::Regex::new(arg()?)
                    .map_err(|e| e.to_string())?
                    .is_match(s()?)),
                "lowerAscii" => json!(s()?.to_ascii_lowercase()),
                "upperAscii" => json!(s()?.to_ascii_uppercase()),
                _ => return Err(format!("unknown method {m}")),
            }
        }
    })
}

fn size(v: &Value) -> Result<Value, String> {
    Ok(json!(match v {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.len(),
        Value::Object(m) => m.len(),
        _ => return Err("size".into()),
    }))
}

fn arith(a: &Value, b: &Value, op: &str) -> Result<Value, String> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Ok(json!(match op {
            "+" => x.checked_add(y),
            "-" => x.checked_sub(y),
            "*" => x.checked_mul(y),
            "/" => x.checked_div(y),
            _ => x.checked_rem(y),
        }
        .ok_or("overflow or division by zero")?));
    }
    let (x, y) = (num(a)?, num(b)?);
    Ok(json!(match op {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        "/" => x / y,
        _ => x % y,
    }))
}

/// Evaluate a rule against `self` (and `oldSelf`); None when not evaluable.
pub fn check(rule: &str, this: &Value, old: Option<&Value>) -> Option<bool> {
    let e = parse(rule).ok()?;
    let mut env: Env = vec![("self".into(), this.clone())];
    match old {
        Some(o) => env.push(("oldSelf".into(), o.clone())),
        None if rule.contains("oldSelf") => return None,
        None => {}
    }
    eval(&e, &env).ok()?.as_bool()
}

fn type_word(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::Null => "null",
    }
}

fn walk(v: &Value, old: Option<&Value>, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for r in s["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rule = r["rule"].as_str().unwrap_or("");
        if check(rule, v, old) == Some(false) {
            let msg = r["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| format!("failed rule: {rule}"));
            let field = match r["fieldPath"].as_str() {
                Some(fp) => format!("{path}{fp}"),
                None => path.to_string(),
            };
            errs.push(FieldError::other(
                &field,
                "FieldValueInvalid",
                format!("Invalid value: \"{}\": {msg}", type_word(v)),
            ));
        }
    }
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            let addl = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, c) in m {
                if path.is_empty() && k == "metadata" {
                    continue;
                }
                if let Some(cs) = props.and_then(|p| p.get(k)).or(addl) {
                    walk(
                        c,
                        old.and_then(|o| o.get(k)),
                        cs,
                        &crate::schema::join(path, k),
                        errs,
                    );
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, it) in items.iter().enumerate() {
                    walk(it, None, is, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

pub fn validate(obj: &Value, old: Option<&Value>, schema: &Value) -> Vec<FieldError> {
    let mut errs = vec![];
    walk(obj, old, schema, "", &mut errs);
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_rules() {
        let src = json!({"git": {"url": "x"}});
        assert_eq!(
            check("has(self.git) != has(self.configMap)", &src, None),
            Some(true)
        );
        assert_eq!(
            check("has(self.git) != has(self.configMap)", &json!({}), None),
            Some(false)
        );
        let s = json!({"platforms": ["linux/amd64", "linux/arm64"], "n": 3});
        assert_eq!(
            check("self.platforms.all(p, p.startsWith('linux/'))", &s, None),
            Some(true)
        );
        assert_eq!(
            check("size(self.platforms) <= 2 && self.n % 2 == 1", &s, None),
            Some(true)
        );
        assert_eq!(
            check(
                "self.platforms.exists_one(p, p == 'linux/arm64') ? self.n > 5 : true",
                &s,
                None
            ),
            Some(false)
        );
        assert_eq!(
            check("'linux/amd64' in self.platforms", &s, None),
            Some(true)
        );
        assert_eq!(
            check("self.n == oldSelf.n", &s, Some(&json!({"n": 3}))),
            Some(true)
        );
        assert_eq!(check("self.n == oldSelf.n", &s, None), None);
        assert_eq!(check("self.unknownFn()", &s, None), None);
    }
}
