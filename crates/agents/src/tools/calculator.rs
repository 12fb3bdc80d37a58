//! The `calculator` tool: evaluates an arithmetic expression with a hand-written
//! recursive-descent parser (no `eval`, no external crate).
//!
//! Grammar, loosest binding first:
//!
//! ```text
//! expr    := term (('+' | '-') term)*
//! term    := unary (('*' | '/' | '%') unary)*
//! unary   := ('-' | '+') unary | power
//! power   := primary (('^' | '**') unary)?          right-associative; -2^2 = -4
//! primary := number | constant | function '(' [expr (',' expr)*] ')' | '(' expr ')'
//! ```
//!
//! Input is bounded ([`MAX_CHARS`] characters, [`MAX_DEPTH`] levels of nesting, which also
//! bounds the recursion), and every intermediate result must be a finite number: division by
//! zero, overflow and results outside a function's domain are errors, never `NaN` or `inf`.

use paas_llm::ToolSpec;
use serde::Deserialize;
use serde_json::json;

use super::{BoxFuture, Tool, ToolError, parse_arguments};

/// Longest expression accepted, in characters.
pub const MAX_CHARS: usize = 1000;
/// Deepest nesting accepted: parentheses, function calls, unary signs and powers each count.
pub const MAX_DEPTH: usize = 64;

const FUNCTIONS: [&str; 17] = [
    "sqrt", "abs", "round", "floor", "ceil", "ln", "log10", "log2", "exp", "sin", "cos", "tan",
    "asin", "acos", "atan", "min", "max",
];

/// The `calculator` tool.
#[derive(Clone, Copy, Debug, Default)]
pub struct Calculator;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    expression: String,
}

impl Tool for Calculator {
    fn name(&self) -> &'static str {
        "calculator"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().into(),
            description: "Evaluates an arithmetic expression exactly as written and returns the \
                          number. Supports + - * / % and ^ (power, right-associative), \
                          parentheses, unary minus, scientific notation (1.5e3), the constants \
                          pi and e, and the functions sqrt, abs, round, floor, ceil, ln, log10, \
                          log2, exp, sin, cos, tan, asin, acos, atan (radians) and min, max \
                          (any number of arguments)."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "expression": {
                        "type": "string",
                        "description": "The expression, e.g. \"(1 + 2) * 3 ^ 2\" or \"sqrt(2) / 2\".",
                        "maxLength": MAX_CHARS,
                    }
                },
                "required": ["expression"],
                "additionalProperties": false,
            }),
        }
    }

    fn call(&self, arguments: serde_json::Value) -> BoxFuture<'_, Result<String, ToolError>> {
        Box::pin(async move {
            let Arguments { expression } = parse_arguments(arguments)?;
            evaluate(&expression).map(format_number)
        })
    }
}

/// Evaluates an expression.
pub fn evaluate(expression: &str) -> Result<f64, ToolError> {
    let chars = expression.chars().count();
    if chars > MAX_CHARS {
        return Err(invalid(format!(
            "the expression is {chars} characters long; at most {MAX_CHARS} are allowed"
        )));
    }
    let tokens = tokenize(expression)?;
    if tokens.is_empty() {
        return Err(invalid("the expression is empty".into()));
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        depth: 0,
        end: chars + 1,
    };
    let value = parser.expr()?;
    match parser.peek() {
        None => Ok(value),
        Some(token) => Err(invalid(format!(
            "unexpected {} at position {}",
            token.kind.describe(),
            token.pos
        ))),
    }
}

/// Formats a result for the model: integers without a fractional part, binary noise rounded
/// away (0.1 + 0.2 is `0.3`), very large and very small magnitudes in scientific notation.
pub fn format_number(x: f64) -> String {
    if x == 0.0 {
        return "0".into(); // also -0
    }
    const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0; // 2^53
    if x.fract() == 0.0 && x.abs() < EXACT_INTEGERS {
        return format!("{x:.0}");
    }
    // Fifteen significant digits: what an f64 holds reliably. Next to f64::MAX, rounding up
    // leaves the finite range: those keep all their digits rather than print as `inf`.
    let rounded: f64 = format!("{x:.14e}")
        .parse()
        .ok()
        .filter(|rounded: &f64| rounded.is_finite())
        .unwrap_or(x);
    let abs = rounded.abs();
    if rounded.fract() == 0.0 && abs < 1e15 {
        format!("{rounded:.0}")
    } else if !(1e-6..1e15).contains(&abs) {
        format!("{rounded:e}")
    } else {
        format!("{rounded}")
    }
}

fn invalid(message: String) -> ToolError {
    ToolError::InvalidArguments(message)
}

fn failed(message: String) -> ToolError {
    ToolError::Failed(message)
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Number(f64),
    Name(String),
    /// One of `+ - * / % ^ , ( )` (`**` is read as `^`).
    Symbol(char),
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Number(n) => format!("number {}", format_number(*n)),
            Kind::Name(name) => format!("'{name}'"),
            Kind::Symbol(c) => format!("'{c}'"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Token {
    kind: Kind,
    /// 1-based character position in the expression.
    pos: usize,
}

fn tokenize(expression: &str) -> Result<Vec<Token>, ToolError> {
    let chars: Vec<char> = expression.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let pos = i + 1;
        let digit_at = |j: usize| chars.get(j).is_some_and(char::is_ascii_digit);
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && digit_at(i + 1)) {
            let start = i;
            while digit_at(i) {
                i += 1;
            }
            if chars.get(i) == Some(&'.') {
                i += 1;
                while digit_at(i) {
                    i += 1;
                }
            }
            if matches!(chars.get(i), Some('e' | 'E')) {
                let sign = usize::from(matches!(chars.get(i + 1), Some('+' | '-')));
                if digit_at(i + 1 + sign) {
                    i += 1 + sign;
                    while digit_at(i) {
                        i += 1;
                    }
                }
            }
            let text: String = chars[start..i].iter().collect();
            let value: f64 = text
                .parse()
                .map_err(|_| invalid(format!("'{text}' at position {pos} is not a number")))?;
            if !value.is_finite() {
                return Err(invalid(format!(
                    "the number '{text}' at position {pos} is too large"
                )));
            }
            tokens.push(Token {
                kind: Kind::Number(value),
                pos,
            });
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            tokens.push(Token {
                kind: Kind::Name(name.to_ascii_lowercase()),
                pos,
            });
        } else if c == '*' && chars.get(i + 1) == Some(&'*') {
            tokens.push(Token {
                kind: Kind::Symbol('^'),
                pos,
            });
            i += 2;
        } else if "+-*/%^,()".contains(c) {
            tokens.push(Token {
                kind: Kind::Symbol(c),
                pos,
            });
            i += 1;
        } else {
            return Err(invalid(format!(
                "unexpected character '{}' at position {pos}",
                c.escape_debug()
            )));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    depth: usize,
    /// The position just past the last character, for "unexpected end" messages.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn peek_symbol(&self) -> Option<(char, usize)> {
        match self.peek() {
            Some(Token {
                kind: Kind::Symbol(c),
                pos,
            }) => Some((*c, *pos)),
            _ => None,
        }
    }

    fn advance(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).cloned();
        self.next += 1;
        token
    }

    fn descend(&mut self, pos: usize) -> Result<(), ToolError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid(format!(
                "the expression is nested too deeply at position {pos} (at most {MAX_DEPTH} levels)"
            )));
        }
        Ok(())
    }

    fn ascend(&mut self) {
        self.depth -= 1;
    }

    fn expect_symbol(&mut self, expected: char) -> Result<usize, ToolError> {
        match self.advance() {
            Some(Token {
                kind: Kind::Symbol(c),
                pos,
            }) if c == expected => Ok(pos),
            Some(token) => Err(invalid(format!(
                "expected '{expected}' at position {} but found {}",
                token.pos,
                token.kind.describe()
            ))),
            None => Err(invalid(format!(
                "expected '{expected}' at position {} but the expression ended",
                self.end
            ))),
        }
    }

    fn expr(&mut self) -> Result<f64, ToolError> {
        let mut acc = self.term()?;
        while let Some((op @ ('+' | '-'), pos)) = self.peek_symbol() {
            self.advance();
            let rhs = self.term()?;
            let value = if op == '+' { acc + rhs } else { acc - rhs };
            acc = finite(value, || format!("the result of '{op}' at position {pos}"))?;
        }
        Ok(acc)
    }

    fn term(&mut self) -> Result<f64, ToolError> {
        let mut acc = self.unary()?;
        while let Some((op @ ('*' | '/' | '%'), pos)) = self.peek_symbol() {
            self.advance();
            let rhs = self.unary()?;
            let value = match op {
                '*' => acc * rhs,
                _ if rhs == 0.0 => {
                    return Err(failed(format!("division by zero at position {pos}")));
                }
                '/' => acc / rhs,
                _ => acc % rhs,
            };
            acc = finite(value, || format!("the result of '{op}' at position {pos}"))?;
        }
        Ok(acc)
    }

    fn unary(&mut self) -> Result<f64, ToolError> {
        match self.peek_symbol() {
            Some((sign @ ('-' | '+'), pos)) => {
                self.advance();
                self.descend(pos)?;
                let value = self.unary()?;
                self.ascend();
                Ok(if sign == '-' { -value } else { value })
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<f64, ToolError> {
        let base = self.primary()?;
        let Some(('^', pos)) = self.peek_symbol() else {
            return Ok(base);
        };
        self.advance();
        self.descend(pos)?;
        let exponent = self.unary()?;
        self.ascend();
        if base == 0.0 && exponent < 0.0 {
            return Err(failed(format!(
                "division by zero: 0 to a negative power at position {pos}"
            )));
        }
        finite(base.powf(exponent), || {
            format!(
                "{}^{} at position {pos}",
                format_number(base),
                format_number(exponent)
            )
        })
    }

    fn primary(&mut self) -> Result<f64, ToolError> {
        let Some(token) = self.advance() else {
            return Err(invalid(format!(
                "expected a number at position {} but the expression ended",
                self.end
            )));
        };
        match token.kind {
            Kind::Number(value) => Ok(value),
            Kind::Symbol('(') => {
                self.descend(token.pos)?;
                let value = self.expr()?;
                self.expect_symbol(')')?;
                self.ascend();
                Ok(value)
            }
            Kind::Name(name) => {
                if FUNCTIONS.contains(&name.as_str()) {
                    self.call(&name, token.pos)
                } else if self.peek_symbol().is_some_and(|(c, _)| c == '(') {
                    Err(invalid(format!(
                        "unknown function '{name}' at position {}; known functions: {}",
                        token.pos,
                        FUNCTIONS.join(", ")
                    )))
                } else {
                    match name.as_str() {
                        "pi" => Ok(std::f64::consts::PI),
                        "e" => Ok(std::f64::consts::E),
                        _ => Err(invalid(format!(
                            "unknown name '{name}' at position {}; the constants are pi and e",
                            token.pos
                        ))),
                    }
                }
            }
            Kind::Symbol(c) => Err(invalid(format!(
                "expected a number, '(' or a function at position {} but found '{c}'",
                token.pos
            ))),
        }
    }

    fn call(&mut self, name: &str, pos: usize) -> Result<f64, ToolError> {
        if self.peek_symbol().is_none_or(|(c, _)| c != '(') {
            return Err(invalid(format!(
                "expected '(' after the function '{name}' at position {pos}"
            )));
        }
        self.advance();
        self.descend(pos)?;
        let mut args = Vec::new();
        if self.peek_symbol().is_some_and(|(c, _)| c == ')') {
            self.advance();
        } else {
            loop {
                args.push(self.expr()?);
                match self.peek_symbol() {
                    Some((',', _)) => {
                        self.advance();
                    }
                    _ => {
                        self.expect_symbol(')')?;
                        break;
                    }
                }
            }
        }
        self.ascend();
        apply(name, &args, pos)
    }
}

fn finite(value: f64, what: impl FnOnce() -> String) -> Result<f64, ToolError> {
    if value.is_nan() {
        Err(failed(format!("{} is not a real number", what())))
    } else if value.is_infinite() {
        Err(failed(format!("{} is too large (overflow)", what())))
    } else {
        Ok(value)
    }
}

fn apply(name: &str, args: &[f64], pos: usize) -> Result<f64, ToolError> {
    if matches!(name, "min" | "max") {
        let mut values = args.iter().copied();
        let first = values.next().ok_or_else(|| {
            invalid(format!(
                "{name} at position {pos} needs at least one argument"
            ))
        })?;
        return Ok(values.fold(first, |acc, x| {
            if name == "min" {
                acc.min(x)
            } else {
                acc.max(x)
            }
        }));
    }
    let [x] = args else {
        return Err(invalid(format!(
            "{name} at position {pos} takes exactly one argument, not {}",
            args.len()
        )));
    };
    let x = *x;
    let undefined = || {
        failed(format!(
            "{name}({}) at position {pos} is undefined",
            format_number(x)
        ))
    };
    let value = match name {
        "sqrt" if x < 0.0 => return Err(undefined()),
        "ln" | "log10" | "log2" if x <= 0.0 => return Err(undefined()),
        "asin" | "acos" if !(-1.0..=1.0).contains(&x) => return Err(undefined()),
        "sqrt" => x.sqrt(),
        "abs" => x.abs(),
        "round" => x.round(),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        "ln" => x.ln(),
        "log10" => x.log10(),
        "log2" => x.log2(),
        "exp" => x.exp(),
        "sin" => x.sin(),
        "cos" => x.cos(),
        "tan" => x.tan(),
        "asin" => x.asin(),
        "acos" => x.acos(),
        "atan" => x.atan(),
        _ => {
            return Err(invalid(format!(
                "unknown function '{name}' at position {pos}"
            )));
        }
    };
    finite(value, || {
        format!("{name}({}) at position {pos}", format_number(x))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(expression: &str) -> String {
        match evaluate(expression) {
            Ok(value) => format_number(value),
            Err(err) => panic!("{expression}: {err}"),
        }
    }

    fn error(expression: &str) -> ToolError {
        match evaluate(expression) {
            Ok(value) => panic!("{expression} evaluated to {value}"),
            Err(err) => err,
        }
    }

    #[test]
    fn known_values() {
        for (expression, expected) in [
            ("42 * 2", "84"),
            ("1 / 2", "0.5"),
            ("1 + 2 * 3", "7"),
            ("(1+2)*3", "9"),
            ("10 - 4 - 3", "3"),
            ("64 / 4 / 2", "8"),
            ("10 % 3", "1"),
            ("-7 % 3", "-1"),
            ("2^3^2", "512"),
            ("2 ** 3 ** 2", "512"),
            ("(2^3)^2", "64"),
            ("-2^2", "-4"),
            ("(-2)^2", "4"),
            ("2^-1", "0.5"),
            ("--3", "3"),
            ("+-+3", "-3"),
            ("3 - -3", "6"),
            ("2 * -3", "-6"),
            ("max(1, 5, 3)", "5"),
            ("min(4, -2, 8, 0)", "-2"),
            ("max(7)", "7"),
            ("sqrt(16) + abs(-3)", "7"),
            ("round(2.5) + floor(-1.5) + ceil(1.2)", "3"),
            ("ln(e)", "1"),
            ("log10(1000)", "3"),
            ("log2(1024)", "10"),
            ("exp(0)", "1"),
            ("sin(0) + cos(0)", "1"),
            ("sin(pi / 2)", "1"),
            ("tan(0)", "0"),
            ("asin(1) * 2 / pi", "1"),
            ("acos(1)", "0"),
            ("atan(1) * 4 / pi", "1"),
            ("PI", "3.14159265358979"),
            ("Sqrt(4)", "2"),
            ("1e3", "1000"),
            ("1.5E-3 * 2", "0.003"),
            ("2.5e+2", "250"),
            (".5 + 5.", "5.5"),
            ("0.1 + 0.2", "0.3"),
            ("-0", "0"),
            ("0 * -1", "0"),
            ("1e30", "1e30"),
            ("2^100", "1.26765060022823e30"),
            ("1 / 3", "0.333333333333333"),
            ("1e-7", "1e-7"),
            ("9007199254740991", "9007199254740991"),
            // Found by the property tests: these printed as `inf` and `-inf`.
            ("1.7976931348623157e308", "1.7976931348623157e308"),
            ("-1.7976931348623157e308 * 1", "-1.7976931348623157e308"),
            ("1.79769313486231e308", "1.79769313486231e308"),
            (" \t(\n1 )\n", "1"),
            ("((((((((((1))))))))))", "1"),
        ] {
            assert_eq!(eval(expression), expected, "{expression}");
        }
    }

    #[test]
    fn math_errors_are_failures_not_nan_or_inf() {
        for (expression, needle) in [
            ("1 / 0", "division by zero at position 3"),
            ("5 % (2 - 2)", "division by zero at position 3"),
            ("0 ^ -1", "division by zero"),
            ("sqrt(-1)", "sqrt(-1) at position 1 is undefined"),
            ("ln(0)", "undefined"),
            ("log2(-8)", "undefined"),
            ("asin(2)", "undefined"),
            ("(-8) ^ (1/3)", "not a real number"),
            ("10 ^ 400", "overflow"),
            ("2 ^ 2 ^ 2 ^ 2 ^ 2 ^ 2", "overflow"),
            ("9 ^ 9 ^ 9 ^ 9", "overflow"),
            ("exp(1000)", "overflow"),
            ("1e308 * 10", "overflow"),
            ("1e308 + 1e308", "overflow"),
            ("-1e308 - 1e308", "overflow"),
        ] {
            let err = error(expression);
            assert_eq!(err.code(), "tool_failed", "{expression}: {err}");
            assert!(err.to_string().contains(needle), "{expression}: {err}");
        }
        assert_eq!(eval("10 ^ -400"), "0");
    }

    #[test]
    fn syntax_errors_point_at_the_position() {
        for (expression, needle) in [
            ("", "empty"),
            ("   ", "empty"),
            (
                "1 +",
                "expected a number at position 4 but the expression ended",
            ),
            (
                "(1 + 2",
                "expected ')' at position 7 but the expression ended",
            ),
            ("1 + 2)", "unexpected ')' at position 6"),
            ("1 2", "unexpected number 2 at position 3"),
            ("2 pi", "unexpected 'pi' at position 3"),
            ("1 + * 2", "found '*'"),
            ("1 $ 2", "unexpected character '$' at position 3"),
            ("foo + 1", "unknown name 'foo' at position 1"),
            ("foo(1)", "unknown function 'foo'"),
            ("log(10)", "known functions: sqrt"),
            ("sqrt 4", "expected '(' after the function 'sqrt'"),
            ("sqrt(1, 2)", "takes exactly one argument, not 2"),
            ("sqrt()", "not 0"),
            ("max()", "at least one argument"),
            ("max(1,)", "found ')'"),
            ("1e999", "too large"),
            ("2e", "unexpected 'e' at position 2"),
            ("1..2", "unexpected"),
            ("é", "unexpected character"),
            ("x = 1", "unexpected character '=' at position 3"),
        ] {
            let err = error(expression);
            assert_eq!(err.code(), "invalid_arguments", "{expression}: {err}");
            assert!(err.to_string().contains(needle), "{expression}: {err}");
        }
    }

    #[test]
    fn size_and_depth_are_bounded() {
        let long = format!("1{}", "+1".repeat(499)); // 999 characters
        assert_eq!(eval(&long), "500");
        let too_long = format!("{long}+1");
        assert!(error(&too_long).to_string().contains("at most 1000"));
        let nested = |depth: usize| format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
        assert_eq!(eval(&nested(MAX_DEPTH)), "1");
        assert!(
            error(&nested(MAX_DEPTH + 1))
                .to_string()
                .contains("nested too deeply")
        );
        for deep in [
            "(".repeat(1000),
            "-".repeat(999) + "1",
            "2^".repeat(499) + "2",
            "sqrt(".repeat(199),
            "max(1,".repeat(166),
        ] {
            assert_eq!(error(&deep).code(), "invalid_arguments", "{deep}");
        }
    }

    /// Deterministic garbage from a linear congruential generator: the parser must answer
    /// every input with a value or an error, never a panic, a NaN or an infinity.
    #[test]
    fn garbage_never_panics() {
        const ALPHABET: &[&str] = &[
            "0", "1", "2", "7", "9", ".", "e", "E", "+", "-", "*", "/", "%", "^", "**", "(", ")",
            "(", ")", ",", " ", "pi", "sqrt", "max(", "min(", "ln", "log2(", "x", "é", "1e308",
            "0", "tan(", "asin(", "\n", "_", "9e", "--",
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        let (mut ok, mut errors) = (0, 0);
        for _ in 0..20_000 {
            let len = next() % 40;
            let input: String = (0..len)
                .map(|_| ALPHABET[next() % ALPHABET.len()])
                .collect();
            match evaluate(&input) {
                Ok(value) => {
                    assert!(value.is_finite(), "{input:?} gave {value}");
                    assert!(!format_number(value).is_empty());
                    ok += 1;
                }
                Err(err) => {
                    assert!(!err.to_string().is_empty());
                    errors += 1;
                }
            }
        }
        // The generator must exercise both paths, or the test proves little.
        assert!(ok > 100 && errors > 100, "ok {ok}, errors {errors}");
    }

    #[tokio::test]
    async fn the_tool_reads_its_arguments() {
        let tool = Calculator;
        assert_eq!(
            tool.call(json!({"expression": "6 * 7"})).await.unwrap(),
            "42"
        );
        for bad in [
            json!({}),
            json!({"expression": 4}),
            json!("1+1"),
            json!({"expression": "1", "extra": true}),
        ] {
            let err = tool.call(bad.clone()).await.unwrap_err();
            assert_eq!(err.code(), "invalid_arguments", "{bad}");
        }
        assert_eq!(
            tool.call(json!({"expression": "1/0"}))
                .await
                .unwrap_err()
                .code(),
            "tool_failed"
        );
    }
}
