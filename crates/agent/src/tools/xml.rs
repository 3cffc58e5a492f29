//! SOAP responses as data: the leaf elements of the body, by local name.

use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::{Map, Value};

/// Flattens an XML document into `{local_name: text}` for every element holding text.
/// Numbers stay strings: SOAP schemas are not read, so no type is guessed.
pub(crate) fn leaves(body: &str) -> Result<Value, String> {
    let mut reader = Reader::from_str(body);
    reader.config_mut().trim_text(true);
    let mut current: Option<String> = None;
    let mut out = Map::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => current = Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned()),
            Ok(Event::Text(t)) => {
                if let Some(name) = &current {
                    let text = t.unescape().map_err(|e| e.to_string())?;
                    out.insert(name.clone(), Value::String(text.into_owned()));
                }
            }
            Ok(Event::End(_)) => current = None,
            Ok(Event::Eof) => break,
            Err(e) => return Err(e.to_string()),
            Ok(_) => {}
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::leaves;
    use serde_json::json;

    #[test]
    fn leaf_elements_become_fields_by_local_name() {
        let body = r#"<?xml version="1.0"?><s:Envelope xmlns:s="x"><s:Body><R xmlns="urn:a"><Points>1240</Points><Tier>plus &amp; more</Tier></R></s:Body></s:Envelope>"#;
        assert_eq!(leaves(body).unwrap(), json!({"Points": "1240", "Tier": "plus & more"}));
        assert!(leaves("<a><b>").is_ok(), "an unclosed document yields what it has");
        assert!(leaves("<a></b>").is_err());
    }
}
