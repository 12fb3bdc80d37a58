//! Property-based tests of the `calculator` tool, through the tool itself (its JSON arguments
//! and the number it formats for the model):
//!
//! - any input at all is answered with a finite number or a clear error, never a panic, a NaN,
//!   an infinity or a stack overflow, whatever its size, nesting or characters;
//! - a generated well-formed expression, written with the fewest parentheses the documented
//!   grammar needs, evaluates to what a reference evaluation of its tree gives (within the 15
//!   significant digits the tool prints), and fails exactly where the reference does: division
//!   by zero, overflow, and results that are not real numbers, each with its own message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use paas_agents::tools::{Calculator, Tool, ToolError};
use proptest::prelude::*;
use serde_json::json;

/// The tool's call (it never waits on anything: one poll finishes it).
fn calculate(expression: &str) -> Result<String, ToolError> {
    let mut call = pin!(Calculator.call(json!({ "expression": expression })));
    match call.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("the calculator waited on something"),
    }
}

/// Checks what the tool answered: a finite number, or an error with a stable code and a message.
fn answered(expression: &str) -> Result<f64, ToolError> {
    match calculate(expression) {
        Ok(text) => {
            let value: f64 = text
                .parse()
                .unwrap_or_else(|_| panic!("{expression:?} gave {text:?}, not a number"));
            assert!(value.is_finite(), "{expression:?} gave {text}");
            Ok(value)
        }
        Err(err) => {
            assert!(
                matches!(err.code(), "invalid_arguments" | "tool_failed"),
                "{expression:?}: {err}"
            );
            assert!(err.to_string().len() > "tool failed: ".len(), "{err:?}");
            Err(err)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Any input

/// Pieces of expressions, well-formed or not, and characters the grammar does not know.
fn token() -> impl Strategy<Value = String> {
    let tokens = vec![
        "0",
        "1",
        "2",
        "7",
        "9",
        "10",
        ".",
        "e",
        "E",
        "e+",
        "e-",
        "+",
        "-",
        "*",
        "/",
        "%",
        "^",
        "**",
        "(",
        ")",
        "(",
        ")",
        ",",
        " ",
        "\t",
        "\n",
        "\u{3000}",
        "pi",
        "PI",
        "e",
        "sqrt(",
        "max(",
        "min(",
        "ln(",
        "log2(",
        "asin(",
        "tan(",
        "exp(",
        "abs",
        "x",
        "_",
        "é",
        "中",
        "😀",
        "\u{0}",
        "1e308",
        "1e-308",
        "4.9e-324",
        "1.7976931348623157e308",
        "9e999",
        "99999999",
        "--",
        "0x10",
        "1_000",
        "NaN",
        "inf",
        "infinity",
        "=",
        "$",
        "[",
        "]",
    ];
    prop_oneof![
        8 => prop::sample::select(tokens).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
        1 => "[0-9]{1,400}",
    ]
}

/// Nesting up to and far past the limit, in every form the grammar nests: the input, and
/// whether it is well-formed and within [`MAX_DEPTH`] levels.
fn deep() -> impl Strategy<Value = (String, bool)> {
    let levels = prop_oneof![0..2 * MAX_DEPTH, 0..12_000usize];
    (levels, 0..5usize, any::<bool>()).prop_map(|(n, form, closed)| {
        let (open, close) = match form {
            0 => ("(", ")"),
            1 => ("-", ""),
            2 => ("1^", ""),
            3 => ("sqrt(", ")"),
            _ => ("max(1,", ")"),
        };
        let tail = if closed {
            close.repeat(n)
        } else {
            String::new()
        };
        let input = format!("{}1{tail}", open.repeat(n));
        let fine = n <= MAX_DEPTH && (closed || close.is_empty() || n == 0);
        (input, fine)
    })
}

/// The documented nesting limit.
const MAX_DEPTH: usize = 64;

proptest! {
    #[test]
    fn any_string_gets_a_number_or_a_clear_error(input in any::<String>()) {
        let _ = answered(&input);
    }

    #[test]
    fn any_soup_of_tokens_gets_a_number_or_a_clear_error(
        tokens in prop::collection::vec(token(), 0..120),
    ) {
        let _ = answered(&tokens.concat());
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow((input, fine) in deep()) {
        match answered(&input) {
            Ok(_) => prop_assert!(fine, "accepted: {}", input),
            Err(err) => {
                prop_assert!(!fine, "{}: {}", input, err);
                prop_assert_eq!(err.code(), "invalid_arguments");
            }
        }
    }

    #[test]
    fn huge_numbers_are_numbers_or_too_large(digits in "[1-9][0-9]{0,600}", exponent in any::<i32>()) {
        for text in [digits.clone(), format!("{digits}e{exponent}"), format!("0.{digits}e{exponent}")] {
            match answered(&text) {
                Ok(value) => prop_assert!(value >= 0.0),
                Err(err) => {
                    let message = err.to_string();
                    prop_assert!(
                        message.contains("too large") || message.contains("characters long"),
                        "{}: {}", text, message
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Well-formed expressions against a reference

#[derive(Clone, Copy, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Clone, Debug)]
enum Expr {
    /// A non-negative literal, written in decimal or scientific notation.
    Num(f64, bool),
    Pi,
    E,
    Neg(Box<Expr>),
    Plus(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    /// `a ^ b`, or `a ** b`.
    Pow(Box<Expr>, Box<Expr>, bool),
    Call(&'static str, Box<Expr>),
    MinMax(bool, Vec<Expr>),
    /// Parentheses the grammar does not need.
    Paren(Box<Expr>),
}

/// Why the reference evaluation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fail {
    DivisionByZero,
    Overflow,
    NotReal,
    Undefined,
}

impl Fail {
    fn phrase(self) -> &'static str {
        match self {
            Fail::DivisionByZero => "division by zero",
            Fail::Overflow => "overflow",
            Fail::NotReal => "not a real number",
            Fail::Undefined => "is undefined",
        }
    }
}

fn finite(value: f64) -> Result<f64, Fail> {
    if value.is_nan() {
        Err(Fail::NotReal)
    } else if value.is_infinite() {
        Err(Fail::Overflow)
    } else {
        Ok(value)
    }
}

/// The reference: the tree evaluated directly with `f64` arithmetic.
fn reference(expr: &Expr) -> Result<f64, Fail> {
    Ok(match expr {
        Expr::Num(value, _) => *value,
        Expr::Pi => std::f64::consts::PI,
        Expr::E => std::f64::consts::E,
        Expr::Neg(x) => -reference(x)?,
        Expr::Plus(x) | Expr::Paren(x) => reference(x)?,
        Expr::Bin(op, a, b) => {
            let (a, b) = (reference(a)?, reference(b)?);
            match op {
                Op::Add => finite(a + b)?,
                Op::Sub => finite(a - b)?,
                Op::Mul => finite(a * b)?,
                Op::Div | Op::Rem if b == 0.0 => return Err(Fail::DivisionByZero),
                Op::Div => finite(a / b)?,
                Op::Rem => finite(a % b)?,
            }
        }
        Expr::Pow(a, b, _) => {
            let (a, b) = (reference(a)?, reference(b)?);
            if a == 0.0 && b < 0.0 {
                return Err(Fail::DivisionByZero);
            }
            finite(a.powf(b))?
        }
        Expr::Call(name, x) => {
            let x = reference(x)?;
            let undefined = match *name {
                "sqrt" => x < 0.0,
                "ln" | "log10" | "log2" => x <= 0.0,
                "asin" | "acos" => !(-1.0..=1.0).contains(&x),
                _ => false,
            };
            if undefined {
                return Err(Fail::Undefined);
            }
            finite(match *name {
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
                _ => x.atan(),
            })?
        }
        Expr::MinMax(max, args) => {
            let mut values = args.iter().map(reference);
            let mut acc = values.next().unwrap_or(Ok(0.0))?;
            for value in values {
                let value = value?;
                acc = if *max { acc.max(value) } else { acc.min(value) };
            }
            acc
        }
    })
}

/// How tightly an expression binds: 1 sum, 2 product, 3 sign, 4 power, 5 primary.
fn level(expr: &Expr) -> u8 {
    match expr {
        Expr::Bin(Op::Add | Op::Sub, ..) => 1,
        Expr::Bin(..) => 2,
        Expr::Neg(_) | Expr::Plus(_) => 3,
        Expr::Pow(..) => 4,
        _ => 5,
    }
}

/// The expression as a person writes it: parentheses only where the grammar needs them (and
/// where the tree has redundant ones), `sep` between tokens.
fn render(expr: &Expr, sep: &str) -> String {
    let at_least = |expr: &Expr, min: u8| {
        let text = render(expr, sep);
        if level(expr) >= min {
            text
        } else {
            format!("({sep}{text}{sep})")
        }
    };
    match expr {
        Expr::Num(value, scientific) => {
            if *scientific {
                format!("{value:e}")
            } else {
                format!("{value}")
            }
        }
        Expr::Pi => "pi".into(),
        Expr::E => "e".into(),
        Expr::Neg(x) => format!("-{sep}{}", at_least(x, 3)),
        Expr::Plus(x) => format!("+{sep}{}", at_least(x, 3)),
        Expr::Bin(op, a, b) => {
            let (symbol, left, right) = match op {
                Op::Add => ('+', 1, 2),
                Op::Sub => ('-', 1, 2),
                Op::Mul => ('*', 2, 3),
                Op::Div => ('/', 2, 3),
                Op::Rem => ('%', 2, 3),
            };
            format!(
                "{}{sep}{symbol}{sep}{}",
                at_least(a, left),
                at_least(b, right)
            )
        }
        // Right-associative: the base is a primary, the exponent a signed power.
        Expr::Pow(a, b, stars) => format!(
            "{}{sep}{}{sep}{}",
            at_least(a, 5),
            if *stars { "**" } else { "^" },
            at_least(b, 3)
        ),
        Expr::Call(name, x) => format!("{name}({sep}{}{sep})", render(x, sep)),
        Expr::MinMax(max, args) => {
            let args: Vec<String> = args.iter().map(|a| render(a, sep)).collect();
            let name = if *max { "max" } else { "min" };
            format!("{name}({})", args.join(&format!(",{sep}")))
        }
        Expr::Paren(x) => format!("({sep}{}{sep})", render(x, sep)),
    }
}

fn literal() -> impl Strategy<Value = Expr> {
    let value = prop_oneof![
        3 => (0..1000u32).prop_map(f64::from),
        2 => (0..100_000u32, 0..6i32).prop_map(|(n, k)| f64::from(n) / 10f64.powi(k)),
        1 => any::<f64>().prop_filter("finite", |v| v.is_finite()).prop_map(f64::abs),
        1 => prop::sample::select(vec![0.0, 1e308, 1.7976931348623157e308, 5e-324, 1e-7, 0.1]),
    ];
    (value, any::<bool>()).prop_map(|(value, scientific)| {
        // Long decimal forms (1e300 has 301 digits) only in scientific notation.
        let scientific = scientific || format!("{value}").len() > 24;
        Expr::Num(value, scientific)
    })
}

fn expression() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        8 => literal(),
        1 => Just(Expr::Pi),
        1 => Just(Expr::E),
    ];
    leaf.prop_recursive(5, 40, 4, |inner| {
        let op = prop::sample::select(vec![Op::Add, Op::Sub, Op::Mul, Op::Div, Op::Rem]);
        let function = prop::sample::select(vec![
            "sqrt", "abs", "round", "floor", "ceil", "ln", "log10", "log2", "exp", "sin", "cos",
            "tan", "asin", "acos", "atan",
        ]);
        prop_oneof![
            6 => (op, inner.clone(), inner.clone())
                .prop_map(|(op, a, b)| Expr::Bin(op, Box::new(a), Box::new(b))),
            2 => inner.clone().prop_map(|x| Expr::Neg(Box::new(x))),
            1 => inner.clone().prop_map(|x| Expr::Plus(Box::new(x))),
            2 => (inner.clone(), inner.clone(), any::<bool>())
                .prop_map(|(a, b, stars)| Expr::Pow(Box::new(a), Box::new(b), stars)),
            2 => (function, inner.clone()).prop_map(|(name, x)| Expr::Call(name, Box::new(x))),
            1 => (any::<bool>(), prop::collection::vec(inner.clone(), 1..4))
                .prop_map(|(max, args)| Expr::MinMax(max, args)),
            1 => inner.prop_map(|x| Expr::Paren(Box::new(x))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn well_formed_expressions_agree_with_the_reference(
        expr in expression(),
        sep in prop::sample::select(vec!["", " ", "  ", "\t"]),
    ) {
        let text = render(&expr, sep);
        prop_assume!(text.chars().count() <= 1000);
        match (reference(&expr), answered(&text)) {
            (Ok(expected), Ok(value)) => {
                let tolerance = 1e-13 * expected.abs();
                prop_assert!(
                    (value - expected).abs() <= tolerance,
                    "{} = {} but the tool says {}", text, expected, value
                );
            }
            (Err(fail), Err(err)) => {
                prop_assert_eq!(err.code(), "tool_failed", "{}: {}", text, err);
                prop_assert!(
                    err.to_string().contains(fail.phrase()),
                    "{}: expected {:?}, got {}", text, fail, err
                );
            }
            (expected, got) => {
                prop_assert!(false, "{}: reference {:?}, tool {:?}", text, expected, got);
            }
        }
    }
}
