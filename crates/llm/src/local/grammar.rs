//! The grammar that holds a local model to JSON in JSON mode.
//!
//! llama.cpp samples only tokens the grammar allows, so the answer is a JSON object by
//! construction rather than by hoping. Written in llama.cpp's GBNF: an object at the top,
//! any JSON value inside, bounded whitespace so a small model cannot loop on blanks.

pub const JSON_OBJECT: &str = r#"
root    ::= object
value   ::= object | array | string | number | ("true" | "false" | "null") ws
object  ::= "{" ws ( string ":" ws value ( "," ws string ":" ws value )* )? "}" ws
array   ::= "[" ws ( value ( "," ws value )* )? "]" ws
string  ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\"" ws
number  ::= "-"? ( [0-9] | [1-9] [0-9]{0,15} ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]{1,3} )? ws
ws      ::= [ \t\n]{0,20}
"#;

/// The grammar's start rule.
pub const ROOT: &str = "root";
